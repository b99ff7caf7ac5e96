"""Per-pool figures of a cluster run: how busy each pool's replicas were, how long requests queued there, how
full their KV caches ran, and (decode pools) how long the handoff from the prefill pool and the KV transfer
took. Keys are ``pool.NAME.METRIC``; measured requests only (see ``llmsim.metrics.window``), steps of the
whole run."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from llmsim.metrics.window import Selection, measured_mask, take_rows


def _pct(values: np.ndarray, q: float) -> float | None:
    v = values[np.isfinite(values)]
    return float(np.percentile(v, q)) if v.size else None


def _mean(values: np.ndarray) -> float | None:
    v = values[np.isfinite(values)]
    return float(v.mean()) if v.size else None


def pool_summary(requests: pd.DataFrame, steps: pd.DataFrame,
                 pools: Mapping[str, tuple[str, tuple[int, ...]]]) -> dict:
    """``utilization`` (busy step seconds over the run's span, per replica), ``kv_utilization_mean``
    (time-weighted), ``mean_batch_size``, ``queue_p50_s`` / ``queue_p99_s`` (arrival to first prefill step,
    for the pool that prefilled), and for decode pools ``handoff_mean_s`` / ``handoff_p99_s`` and
    ``transfer_mean_s`` / ``transfer_p99_s``."""
    meas = Selection(requests, measured_mask(requests))  # columns read as needed, never a copy of the table
    fin = meas.where((meas["status"] == "finished").to_numpy())
    out: dict = {}
    if len(steps):
        start = steps["start_s"].to_numpy(np.float64)
        span = max(float((start + steps["duration_s"].to_numpy(np.float64)).max() - start.min()), 1e-12)
    else:
        span = 1e-12
    for name, (role, members) in pools.items():
        key = f"pool.{name}."
        st = take_rows(steps, steps["replica"].isin(members).to_numpy(),
                       ("duration_s", "kv_blocks_used", "kv_blocks_total", "batch_size"))
        dur = st["duration_s"].to_numpy(np.float64)
        util = st["kv_blocks_used"].to_numpy(np.float64) / np.maximum(st["kv_blocks_total"].to_numpy(np.float64), 1)
        out[key + "utilization"] = float(dur.sum()) / (span * max(1, len(members)))
        out[key + "kv_utilization_mean"] = float((util * dur).sum() / dur.sum()) if dur.sum() > 0 else None
        out[key + "mean_batch_size"] = float(st["batch_size"].mean()) if len(st) else None
        prefilled = fin["prefill_replica"] if role == "prefill" else fin["replica"]
        here = fin.where(prefilled.isin(members).to_numpy())
        out[key + "requests"] = int(len(here))
        if role != "decode":
            q = here["queue_s"].to_numpy(np.float64)
            out[key + "queue_p50_s"], out[key + "queue_p99_s"] = _pct(q, 50), _pct(q, 99)
        else:
            for col in ("handoff_s", "transfer_s"):
                v = here[col].to_numpy(np.float64)
                out[key + col.replace("_s", "_mean_s")] = _mean(v)
                out[key + col.replace("_s", "_p99_s")] = _pct(v, 99)
    return out
