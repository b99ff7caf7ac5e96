"""Summaries of a long run reduce its step table a block of rows at a time (``Rows.blocks``) so that they
hold one block's temporaries: the figures must be those of the whole table at once."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import llmsim.metrics.window as window
from llmsim.experiment.runner import run_experiment

TWO_REPLICAS = {
    "name": "blocks", "model": "llama-3.1-8b", "hardware": "h100-sxm", "layout": {"replicas": 2},
    "scheduler": {"kind": "vllm", "mode": "v1"},
    "workload": {"arrival": {"kind": "poisson", "rate_per_s": 12.0},
                 "input_len": {"kind": "uniform", "low": 64, "high": 900},
                 "output_len": {"kind": "uniform", "low": 8, "high": 80}},
    "stop": {"num_requests": 120, "warmup_requests": 20, "cooldown_requests": 10},
}


def _summary(block: int | None, monkeypatch) -> pd.Series:
    if block is not None:
        monkeypatch.setattr(window, "ROW_BLOCK", block)
    res = run_experiment(dict(TWO_REPLICAS), None)
    return res.summary.iloc[0], res.steps(res.summary["point_id"].iloc[0])


@pytest.mark.parametrize("block", [7, 64])
def test_blockwise_step_figures_equal_the_whole_table(block, monkeypatch):
    whole, steps = _summary(None, monkeypatch)
    assert len(steps) > 10 * block and steps["replica"].nunique() == 2  # many blocks, both replicas in them
    blocked, _ = _summary(block, monkeypatch)
    keys = ["num_steps", "kv_utilization_mean", "kv_utilization_max", "mean_batch_size", "mfu", "mbu",
            "computed_tokens_per_s", "littles_L", "energy_j", "power_mean_w", "energy_j_per_output_token",
            "cost_usd_per_m_input_tokens", "cost_usd_per_m_output_tokens", "capacity_use", "served_fraction",
            "backlog_growth_rps", "throughput_rps", "output_tokens_per_s"]
    for key in keys:
        a, b = whole[key], blocked[key]
        assert a is not None and math.isfinite(a) and a != 0, key
        assert b == pytest.approx(a, rel=1e-12, abs=0), key


def test_blocks_cover_every_selected_row_once():
    df = pd.DataFrame({"x": np.arange(23, dtype=np.float64)})
    mask = (np.arange(23) % 3) != 0
    for size in (1, 5, 23, 100):
        parts = [b["x"] for b in window.Rows(df, mask).blocks(size)]
        assert np.array_equal(np.concatenate(parts), df["x"].to_numpy()[mask]), size
        assert len(parts) == (1 if size >= 23 else math.ceil(23 / size))


def _random_steps(rng, n: int) -> pd.DataFrame:
    """A step table with many equal durations (ties in the duration sort) and two replicas."""
    return pd.DataFrame({
        "replica": rng.integers(0, 2, n).astype(np.int32), "start_s": np.cumsum(rng.random(n)),
        "duration_s": rng.choice([0.01, 0.02, 0.025, 0.04], n) + (rng.random(n) < 0.3) * rng.random(n),
        "batch_size": rng.integers(1, 64, n).astype(np.int32), "prefill_tokens": rng.integers(0, 900, n).astype(np.int32),
        "decode_tokens": rng.integers(0, 64, n).astype(np.int32), "kv_blocks_used": rng.integers(0, 900, n),
        "kv_blocks_total": np.full(n, 1000)})


def _kernel_evidence_by_argsort(cost_model, steps, context):
    """The octile sampling as first written: a stable argsort of the durations, ``np.array_split`` of the
    ranks, the middle row of each part and the part's summed durations as a pandas Series."""
    from llmsim.cost.evidence import evidence_fractions, weighted_fractions
    from llmsim.trust.annotate import SAMPLES, _batch

    dur = steps["duration_s"].to_numpy()
    order = np.argsort(dur, kind="stable")
    by_duration = pd.Series(dur[order])
    parts = []
    for chunk in np.array_split(np.arange(len(order)), min(SAMPLES, len(order))):
        row = steps.iloc[int(order[chunk[len(chunk) // 2]])]
        parts.append((evidence_fractions(cost_model.operator_costs(*_batch(row, context))),
                      float(by_duration.iloc[chunk].sum())))
    return weighted_fractions(parts)


class _RecordingModel:
    """Stands in for a cost model: remembers the batches it was asked to cost."""

    def __init__(self):
        self.batches = []

    def operator_costs(self, new, ctx):
        self.batches.append((tuple(new), tuple(ctx)))
        return []


@pytest.mark.parametrize("n", [1, 5, 8, 9, 300, 1001])
def test_kernel_evidence_samples_the_rows_of_a_stable_duration_sort(n, monkeypatch):
    from llmsim.trust.annotate import kernel_evidence

    steps = _random_steps(np.random.default_rng(n), n)
    ref_model, new_model = _RecordingModel(), _RecordingModel()
    want = _kernel_evidence_by_argsort(ref_model, steps, 700.0)
    monkeypatch.setattr(window, "ROW_BLOCK", 7)  # the one-pass row search over many blocks
    got = kernel_evidence(new_model, steps, 700.0)
    assert new_model.batches == ref_model.batches and len(new_model.batches) == min(8, n)
    assert got == want


def test_engine_share_and_capacity_use_blockwise_equal_the_whole_table(monkeypatch):
    from llmsim.experiment.cluster_build import build_cluster
    from llmsim.experiment.runner import _coerce
    from llmsim.experiment.sweep import expand
    from llmsim.specs import load_model
    from llmsim.trust.annotate import engine_step_share, peak_capacity_use

    cfg, base, where, _ = _coerce(dict(TWO_REPLICAS), None, ())
    point = expand(cfg, base, where)[0]
    cluster, _ = build_cluster(point.config, load_model(point.config.model), point.where)
    dep = cluster.pools[0].deployment
    steps = _random_steps(np.random.default_rng(3), 2000)
    whole = engine_step_share(dep.runtime, steps), peak_capacity_use(dep, steps, 700.0)
    monkeypatch.setattr(window, "ROW_BLOCK", 64)
    blocked = engine_step_share(dep.runtime, steps), peak_capacity_use(dep, steps, 700.0)
    assert 0 < whole[0] < 1 and 0 < whole[1] <= 1
    assert blocked == pytest.approx(whole, rel=1e-12, abs=0)


def test_a_selection_reads_the_selected_rows_of_one_column_as_a_copy_of_the_table_would():
    rng = np.random.default_rng(8)
    df = pd.DataFrame({"x": rng.random(50), "n": rng.integers(0, 9, 50), "s": rng.choice(["a", "b"], 50)})
    first = rng.random(50) < 0.7
    sel = window.Selection(df, first)
    assert len(sel) == first.sum() and "n" in sel and "y" not in sel and list(sel.columns) == ["x", "n", "s"]
    copy = df[first]
    for c in ("x", "n", "s"):
        pd.testing.assert_series_equal(sel[c], copy[c], check_exact=True)  # values, dtype and row labels
    second = (copy["n"] > 3).to_numpy()
    inner = sel.where(second)
    assert len(inner) == second.sum()
    pd.testing.assert_series_equal(inner["x"], copy[second]["x"], check_exact=True)
    whole = window.Selection(df, np.ones(50, dtype=bool))["x"]  # every row: the column itself, not a copy
    assert np.shares_memory(whole.to_numpy(), df["x"].to_numpy())


def test_span_masks_and_columns_read_blockwise_equal_the_whole_column(monkeypatch):
    steps = _random_steps(np.random.default_rng(9), 500)
    start = steps["start_s"].to_numpy()
    lo, hi = float(start[37]), float(start[411])  # both ends inclusive, on a row's value
    monkeypatch.setattr(window, "ROW_BLOCK", 64)
    assert np.array_equal(window.in_span(steps, lo, hi), (start >= lo) & (start <= hi))
    got = window.column(steps, "batch_size")
    assert got.dtype == np.float64 and np.array_equal(got, steps["batch_size"].to_numpy(np.float64))
    assert len(window.in_span(steps.iloc[:0], lo, hi)) == 0


def test_the_steps_of_a_pool_are_picked_blockwise_as_isin_would(monkeypatch):
    from llmsim.trust.annotate import _of_replicas

    steps = _random_steps(np.random.default_rng(10), 400)
    steps["replica"] = np.random.default_rng(11).integers(0, 5, 400).astype(np.int32)
    monkeypatch.setattr(window, "ROW_BLOCK", 64)
    for pool in ((0,), (1, 3), (0, 1, 2, 3, 4)):
        assert np.array_equal(_of_replicas(steps, pool), steps["replica"].isin(pool).to_numpy()), pool


def _pool_figures_by_copies(requests, pools):
    """The request side of ``pool_summary`` as first written: copies of the measured, finished and per-pool
    requests."""
    meas = requests[requests["phase"] == "measured"]
    fin = meas[meas["status"] == "finished"]
    out = {}
    for name, (role, members) in pools.items():
        here = fin[(fin["prefill_replica"] if role == "prefill" else fin["replica"]).isin(members)]
        out[f"pool.{name}.requests"] = len(here)
        for col in ("queue_s", "handoff_s", "transfer_s"):
            v = here[col].to_numpy(np.float64)
            v = v[np.isfinite(v)]
            out[f"{name}.{col}"] = (float(v.mean()), float(np.percentile(v, 50)), float(np.percentile(v, 99))) \
                if v.size else None
    return out


def test_pool_figures_from_selections_equal_those_from_copied_tables():
    from llmsim.metrics.pools import pool_summary

    rng = np.random.default_rng(12)
    n = 400
    requests = pd.DataFrame({
        "status": rng.choice(["finished", "finished", "rejected", "unfinished"], n),
        "phase": rng.choice(["warmup", "measured", "measured", "cooldown"], n),
        "replica": rng.integers(2, 6, n), "prefill_replica": rng.integers(0, 3, n),  # some outside either pool
        "queue_s": rng.random(n), "handoff_s": rng.random(n) * 0.1, "transfer_s": rng.random(n) * 0.01})
    steps = _random_steps(rng, 300)
    steps["replica"] = rng.integers(0, 5, 300).astype(np.int32)
    pools = {"p": ("prefill", (0, 1)), "d": ("decode", (2, 3, 4))}
    got = pool_summary(requests, steps, pools)
    want = _pool_figures_by_copies(requests, pools)
    assert got["pool.p.requests"] == want["pool.p.requests"] > 0
    assert got["pool.d.requests"] == want["pool.d.requests"] > 0
    assert (got["pool.p.queue_p50_s"], got["pool.p.queue_p99_s"]) == want["p.queue_s"][1:]
    for col in ("handoff", "transfer"):
        assert (got[f"pool.d.{col}_mean_s"], got[f"pool.d.{col}_p99_s"]) == \
            (want[f"d.{col}_s"][0], want[f"d.{col}_s"][2])
