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
            "cost_usd_per_m_input_tokens", "cost_usd_per_m_output_tokens"]
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
