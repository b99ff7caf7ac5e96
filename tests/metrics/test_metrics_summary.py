"""Summaries computed by hand on small tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from llmsim.metrics import LogHistogram, detect_overload, latency_stats, slo_attainment, summarize
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
    df = requests_table(ttft=[0.1, 0.1], tpot=[0.01, 0.01], arrival=np.array([0.0, 0.3]))
    s = summarize(df, steps_table(), peak_flops_per_s=1e13, peak_hbm_bytes_per_s=1e12)
    span = 0.3 + 0.1 + 0.09
    assert s["duration_s"] == pytest.approx(span)
    assert s["throughput_rps"] == pytest.approx(2 / span)
    assert s["output_tokens_per_s"] == pytest.approx(20 / span)
    assert s["kv_utilization_mean"] == pytest.approx(0.5)
    assert s["mfu"] == pytest.approx(4e12 / (0.4 * 1e13))
    assert s["mbu"] == pytest.approx(4e11 / (0.4 * 1e12))


def test_overload_detected_from_growing_queue_only():
    n = 40
    arrival = np.arange(n, dtype=float)
    growing = requests_table([0.1] * n, [0.01] * n, queue=0.3 * arrival, arrival=arrival)
    steady = requests_table([0.1] * n, [0.01] * n, queue=np.full(n, 0.2), arrival=arrival)
    steps = steps_table()
    over = detect_overload(growing, steps, 0, 40.0)
    assert over and over.queue_growth_s_per_s == pytest.approx(0.3, rel=0.05) and "grows" in over.reason
    assert not detect_overload(steady, steps, 0, 40.0)
    assert detect_overload(steady, steps, 10, 40.0)  # cut off with a quarter of the work undone
