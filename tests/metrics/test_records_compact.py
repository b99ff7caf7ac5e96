"""Records cost little: under 200 bytes per finished request and 80 per step, and the tables built from them
are the ones a plain DataFrame + stable sort gives."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from llmsim.metrics.records import REQUEST_COLUMNS, STEP_COLUMNS, RequestLog, StepLog, _sorted_frame
from llmsim.sched.seq import Seq
from llmsim.workload.request import Request


def finished_seq(i: int) -> Seq:
    seq = Seq(Request(i, 0.5 * i, 100 + i, 20))
    seq.first_scheduled_s, seq.first_token_s, seq.finish_s = 0.5 * i + 0.1, 0.5 * i + 0.2, 0.5 * i + 2.0
    seq.num_emitted, seq.computed_total = 20, 119 + i
    seq.gaps = [0.09] * 19
    return seq


def record_bytes(log) -> float:
    """Bytes the log's columns hold (8 per shared text reference)."""
    return sum(len(v) * (v.itemsize if hasattr(v, "itemsize") else 8) for v in log._cols.values())


def test_a_finished_request_costs_under_200_bytes():
    log = RequestLog()
    n = 2000
    for i in range(n):
        log.finished(finished_seq(i), 0)
    assert record_bytes(log) / n == 164  # 11 floats + 9 counts (4 B) + an 8-byte id + 4 references
    df = log.frame()
    assert list(df.columns) == list(REQUEST_COLUMNS)
    assert df["id"].dtype == np.int64 and df["computed_tokens"].dtype == np.int64
    assert df["computed_tokens"].tolist() == [119 + i for i in range(n)]
    assert df["ttft_s"].to_numpy() == pytest.approx(0.2)


def test_a_step_costs_80_bytes():
    log = StepLog()
    for i in range(100):
        log.step((0, 0, float(i), 0.01, 4, 0, 4, 0, 10 + i, 100, 2, 6, 0, 0, 1e12, 1e9))
    log.run({"replica": 0, "engine": 0, "start_s": np.arange(100.0, 110.0), "duration_s": np.full(10, 0.01),
             "batch_size": 4, "prefill_tokens": 0, "decode_tokens": 4, "padded_rows": 0,
             "kv_blocks_used": np.arange(10) + 200, "kv_blocks_total": 100, "queue_len": np.zeros(10, dtype=int),
             "num_in_system": 6, "preempted": 0, "swap_blocks": 0, "flops": 1e12, "hbm_bytes": np.full(10, 1e9)})
    assert record_bytes(log) / 110 == 80
    df = log.frame()
    assert list(df.columns) == list(STEP_COLUMNS)
    assert df["kv_blocks_used"].tolist() == [10 + i for i in range(100)] + [200 + i for i in range(10)]
    assert df["kv_blocks_used"].dtype == np.int32 and df["flops"].dtype == np.float64
    assert df.memory_usage(index=False).sum() / len(df) == 80  # the table too: 4-byte counts, 8-byte floats


def test_tables_equal_a_stable_sort_whether_or_not_rows_arrive_in_order():
    rng = np.random.default_rng(0)
    for trial in range(200):
        n = int(rng.integers(0, 30))
        cols = {"start_s": rng.integers(0, 4, n).astype(np.float64), "replica": rng.integers(0, 3, n),
                "engine": rng.integers(0, 2, n), "x": np.arange(n, dtype=np.float64)}
        if trial % 2:  # half of them already in order
            order = np.lexsort((cols["engine"], cols["replica"], cols["start_s"]))
            cols = {k: v[order] for k, v in cols.items()}
        keys = ["start_s", "replica", "engine"]
        want = pd.DataFrame(cols).sort_values(keys, kind="stable").reset_index(drop=True)
        pd.testing.assert_frame_equal(_sorted_frame(cols, keys), want)


def test_runs_without_step_rows_keep_every_request_prediction():
    from llmsim.sim import simulate
    from tests.sim.conftest import generate_requests

    reqs = generate_requests(80, 20.0, seed=3)
    kw = dict(model="llama-3.1-8b", hardware="h100-sxm", seed=0)
    full, lean = simulate(reqs, **kw), simulate(reqs, record_steps=False, **kw)
    assert full.requests.to_csv() == lean.requests.to_csv()
    assert len(lean.steps) == 0 and list(lean.steps.columns) == list(STEP_COLUMNS)
    assert lean.info["steps_simulated"] == len(full.steps)
    a, b = full.summary(), lean.summary()
    for key in ("ttft_p99_s", "tpot_p50_s", "itl_p99_s", "throughput_rps", "e2e_p50_s"):
        assert a[key] == b[key], key
    assert b["kv_utilization_mean"] is None and b["mfu"] is None


def test_runs_without_step_rows_report_unknown_not_zero():
    """Energy, the input/output cost split and the steps in the measured window need the step rows: without
    them they are None (all steps simulated: ``steps_simulated``), never the 0 J / $0 / 0 steps an empty table
    would sum to."""
    from llmsim.sim import simulate
    from tests.sim.conftest import generate_requests

    reqs = generate_requests(60, 20.0, seed=4)
    kw = dict(model="llama-3.1-8b", hardware="h100-sxm", seed=0)
    a, b = simulate(reqs, **kw).summary(), simulate(reqs, record_steps=False, **kw).summary()
    assert a["energy_j"] > 0 and a["cost_usd_per_m_input_tokens"] > 0
    for key in ("energy_j", "power_mean_w", "energy_j_per_output_token", "cost_usd_per_m_input_tokens",
                "cost_usd_per_m_output_tokens"):
        assert b[key] is None, key
    assert b["num_steps"] is None and b["steps_simulated"] >= a["num_steps"] > 0
    for key in ("usd_per_hour", "cost_usd_per_m_tokens", "cost_usd_per_m_output_tokens_all"):
        assert b[key] == a[key], key


def test_selected_rows_read_as_the_filtered_table():
    """``Rows`` / ``take_rows`` (what summaries read instead of ``steps[mask]`` copies) select the same rows,
    masks of masks included, and hand back the table itself when every row is selected."""
    from llmsim.metrics.window import Rows, take_rows

    rng = np.random.default_rng(3)
    df = pd.DataFrame({"x": rng.normal(size=50), "n": rng.integers(0, 9, 50).astype(np.int32)})
    for _ in range(20):
        m1 = rng.random(50) < 0.7
        rows = Rows(df, m1)
        sub = df[m1]
        assert len(rows) == len(sub) and rows["x"].tolist() == sub["x"].tolist()
        m2 = rng.random(len(sub)) < 0.5
        assert rows.where(m2)["n"].tolist() == sub[m2]["n"].tolist()
        assert take_rows(df, m1, ("n",)).equals(df.loc[m1, ["n"]])
    everything = np.ones(50, dtype=bool)
    assert take_rows(df, everything) is df and Rows(df, everything)["x"] is not None
    assert Rows(df).where(everything)["x"].tolist() == df["x"].tolist()


@pytest.mark.parametrize("block", [1, 2, 3, 5, 1 << 18])
def test_order_check_over_blocks_is_the_pairwise_definition(block, monkeypatch):
    """The order check runs over overlapping blocks of rows (bounded temporaries): a pair out of order that
    straddles two blocks must still be seen."""
    import llmsim.metrics.records as records

    monkeypatch.setattr(records, "SORT_CHECK_ROWS", block)
    rng = np.random.default_rng(1)
    for _ in range(300):
        n = int(rng.integers(0, 12))
        keys = [np.sort(rng.integers(0, 3, n)).astype(np.float64), rng.integers(0, 2, n)]
        if rng.random() < 0.5 and n > 1:  # break the order at one random place
            i = int(rng.integers(1, n))
            keys[0][i - 1], keys[0][i] = keys[0][i] + 1, keys[0][i - 1]
        pairs = list(zip(keys[0].tolist(), keys[1].tolist(), strict=True))
        assert records._is_sorted(keys) == all(a <= b for a, b in zip(pairs, pairs[1:], strict=False)), (block, pairs)
