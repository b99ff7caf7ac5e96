"""Summaries computed by hand on small tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from llmsim.metrics import LogHistogram, latency_stats, slo_attainment, summarize
from llmsim.metrics.records import REQUEST_COLUMNS, STEP_COLUMNS


def requests_table(ttft, tpot, status=None, queue=None, arrival=None):
    n = len(ttft)
    status = status or ["finished"] * n
    arrival = arrival if arrival is not None else np.arange(n, dtype=float)
    queue = queue if queue is not None else np.zeros(n)
    e2e = np.asarray(ttft) + 9 * np.asarray(tpot)
    data = {c: [0] * n for c in REQUEST_COLUMNS}
    data.update(id=list(range(n)), status=status, reason=["" if s == "finished" else "x" for s in status],
                arrival_s=arrival, input_tokens=[100] * n, output_tokens=[10] * n, queue_s=queue, ttft_s=ttft,
                tpot_s=tpot, e2e_s=e2e, finish_s=np.asarray(arrival) + e2e, itl_max_s=tpot)
    return pd.DataFrame(data)


def steps_table(n=4, used=50, total=100):
    data = {c: np.zeros(n) for c in STEP_COLUMNS}
    data.update(start_s=np.arange(n) * 0.1, duration_s=np.full(n, 0.1), kv_blocks_used=np.full(n, used),
                kv_blocks_total=np.full(n, total), batch_size=np.full(n, 2), flops=np.full(n, 1e12),
                hbm_bytes=np.full(n, 1e11), num_in_system=np.full(n, 2))
    return pd.DataFrame(data)


def test_histogram_quantiles_within_bin_width():
    rng = np.random.default_rng(0)
    v = rng.lognormal(-4, 1, 100_000)
    h = LogHistogram()
    h.add(v[:50_000])
    h.add(v[50_000:])
    for q in (0.5, 0.9, 0.99):
        assert h.quantile(q) == pytest.approx(np.quantile(v, q), rel=0.01)
    assert h.mean == pytest.approx(v.mean()) and h.total == v.size
    h2 = LogHistogram()
    h2.add([0.01, 0.02], weight=3)
    assert h2.total == 6 and np.isnan(LogHistogram().quantile(0.5))


def test_latency_percentiles_and_slo_attainment_by_hand():
    df = requests_table(ttft=[0.1, 0.2, 0.3, 0.4], tpot=[0.01, 0.02, 0.03, 0.05])
    stats = latency_stats(df)
    assert stats["ttft_mean_s"] == pytest.approx(0.25)
    assert stats["ttft_p50_s"] == pytest.approx(0.25)
    assert slo_attainment(df, {"ttft_s": 0.25, "tpot_s": 0.04}) == 0.5
    df2 = requests_table(ttft=[0.1, 0.1], tpot=[0.01, 0.01], status=["finished", "rejected"])
    assert slo_attainment(df2, {"ttft_s": 1.0}) == 0.5  # a rejection is a miss


def test_summary_throughput_kv_and_mfu():
    df = requests_table(ttft=[0.1, 0.1], tpot=[0.01, 0.01], arrival=np.array([0.0, 0.0]))
    s = summarize(df, steps_table(), peak_flops_per_s=1e13, peak_hbm_bytes_per_s=1e12)
    span = 0.1 + 0.09  # a burst: over the makespan
    assert s["duration_s"] == pytest.approx(span) and s["window_s"] == 0.0
    assert s["throughput_rps"] == pytest.approx(2 / span)
    assert s["output_tokens_per_s"] == pytest.approx(20 / span)
    assert s["kv_utilization_mean"] == pytest.approx(0.5)
    assert s["mfu"] == pytest.approx(4e12 / (0.4 * 1e13))
    assert s["mbu"] == pytest.approx(4e11 / (0.4 * 1e12))
    assert s["load_verdict"] == "offline" and s["overloaded"] is False


def test_throughput_counts_completions_inside_the_arrival_window_only():
    # one request a second for 10 s, each taking 2.5 s: completions at 2.5, 3.5, ..., 11.5
    n = 11
    df = requests_table(ttft=[0.5] * n, tpot=[2.0 / 9] * n, arrival=np.arange(n, dtype=float))
    s = summarize(df, steps_table())
    done_in_window = 8  # those finishing at 2.5 ... 9.5 of the window [0, 10]
    assert s["window_s"] == pytest.approx(10.0)
    assert s["throughput_rps"] == pytest.approx(done_in_window / 10.0)
    assert s["output_tokens_per_s"] == pytest.approx(10 * done_in_window / 10.0)
    assert s["arrival_rate_rps"] == pytest.approx(1.0)
    assert s["duration_s"] == pytest.approx(12.5)  # the makespan is still reported


def test_warmup_and_cooldown_rows_are_marked_and_left_out():
    from llmsim.metrics import mark_phases

    n = 12
    arrival = np.arange(n, dtype=float)[::-1].copy()  # ids in reverse arrival order
    df = requests_table(ttft=list(np.arange(n) * 0.1 + 0.1), tpot=[0.01] * n, arrival=arrival)
    marked = mark_phases(df, warmup_requests=2, cooldown_requests=3)
    phase = dict(zip(marked["id"], marked["phase"], strict=True))
    assert [phase[i] for i in (11, 10)] == ["warmup", "warmup"]  # the two earliest arrivals
    assert [phase[i] for i in (0, 1, 2)] == ["cooldown"] * 3  # the three latest
    s = summarize(marked, steps_table())
    assert s["num_requests"] == 7 and s["num_warmup"] == 2 and s["num_cooldown"] == 3
    assert s["ttft_mean_s"] == pytest.approx(np.mean(np.arange(3, 10) * 0.1 + 0.1))
    by_time = mark_phases(df, warmup_s=4.0, cooldown_s=2.5)
    assert list(by_time.sort_values("arrival_s")["phase"]) == ["warmup"] * 4 + ["measured"] * 5 + ["cooldown"] * 3


@pytest.mark.parametrize("warm,cool,warm_s,cool_s", [(0, 0, 0.0, 0.0), (5, 7, 0.0, 0.0), (3, 0, 2.0, 1.5),
                                                     (0, 4, 0.0, 3.0), (40, 40, 0.0, 0.0),
                                                     (3, 40, 0.0, 0.0)])
def test_phases_follow_arrival_rank_with_ties_broken_by_id(warm, cool, warm_s, cool_s):
    from llmsim.metrics import mark_phases

    rng = np.random.default_rng(warm + 10 * cool)
    n = 30
    df = pd.DataFrame({"id": rng.permutation(n), "arrival_s": rng.integers(0, 8, n).astype(float)})  # many ties
    ranked = df.sort_values(["arrival_s", "id"]).reset_index()
    rank = np.empty(n, dtype=int)
    rank[ranked["index"].to_numpy()] = np.arange(n)
    last = df["arrival_s"].max()
    want = np.where((rank < warm) | (df["arrival_s"] < warm_s), "warmup",
                    np.where((rank >= n - cool) | ((df["arrival_s"] > last - cool_s) & (cool_s > 0)), "cooldown",
                             "measured"))
    got = mark_phases(df, warmup_requests=warm, cooldown_requests=cool, warmup_s=warm_s, cooldown_s=cool_s)
    assert list(got["phase"]) == list(want)
    assert list(df.columns) == ["id", "arrival_s"]  # not in place: the table is left alone


def test_the_window_counts_only_finished_requests_that_end_inside_it():
    from llmsim.metrics.window import Window

    df = pd.DataFrame({"status": ["finished", "rejected", "unfinished", "finished", "finished"],
                       "arrival_s": [0.0, 1.0, 2.0, 3.0, 10.0], "finish_s": [2.5, 1.0, 9.0, 11.0, 12.0],
                       "input_tokens": [10, 20, 30, 40, 50]})
    window = Window.of(df)  # arrivals span [0, 10]: the rejected and unfinished rows end inside it too
    assert list(window.completed_mask(df)) == [True, False, False, False, False]
    done = window.completed(df, ("input_tokens",))
    assert list(done.columns) == ["input_tokens"] and list(done["input_tokens"]) == [10]
