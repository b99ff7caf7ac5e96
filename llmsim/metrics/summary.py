"""Records -> one flat, JSON-able summary: latency percentiles, throughput, SLO attainment and goodput, KV
use, MFU/MBU, the load verdict (stable / overloaded / inconclusive) and the cross-checks (Little's law).

A summary describes the measured requests (``phase == "measured"`` when the table has a phase column, see
``llmsim.metrics.window``); throughput counts completions inside the window of their arrivals.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from llmsim.metrics.histogram import LogHistogram
from llmsim.metrics.overload import Overload, detect_overload
from llmsim.metrics.slo import REQUEST_KEYS, evaluate_slo, slo_attainment
from llmsim.metrics.window import Rows, Selection, Window, in_span, measured_mask, take_rows

__all__ = ["Overload", "detect_overload", "latency_stats", "littles_law", "slo_attainment", "summarize"]

LATENCIES = ("queue_s", "ttft_s", "tpot_s", "e2e_s", "itl_max_s")
QUANTILES = (("p50", 50), ("p90", 90), ("p99", 99))
SLO_KEYS = REQUEST_KEYS


def _clean(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def latency_stats(df: pd.DataFrame) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for col in LATENCIES:
        v = df[col].to_numpy(dtype=np.float64) if col in df else np.empty(0)
        v = v[np.isfinite(v)]
        out[f"{col[:-2]}_mean_s"] = _clean(float(v.mean())) if v.size else None
        for name, q in QUANTILES:
            out[f"{col[:-2]}_{name}_s"] = _clean(float(np.percentile(v, q))) if v.size else None
    return out


def littles_law(requests: pd.DataFrame, steps: pd.DataFrame) -> dict[str, float | None]:
    """L measured from the engine's queues (time-weighted over steps) vs lambda * W from request records."""
    fin = take_rows(requests, (requests["status"] == "finished").to_numpy(), ("arrival_s", "finish_s"))
    if not len(fin) or not len(steps):
        return {"littles_L": None, "littles_lambda_W": None}
    t0 = float(fin["arrival_s"].min())
    t1 = float(fin["finish_s"].max())
    span = max(t1 - t0, 1e-12)
    w = (fin["finish_s"] - fin["arrival_s"]).to_numpy(dtype=np.float64)  # engine-side time in system
    busy = 0.0
    for b in Rows(steps).blocks():  # time-weighted requests in the system, a block of steps at a time
        busy += (b["num_in_system"] * b["duration_s"]).sum()
    L = float(busy) / span
    return {"littles_L": L, "littles_lambda_W": float(len(fin) / span * w.mean())}


def summarize(requests: pd.DataFrame, steps: pd.DataFrame, *, itl: LogHistogram | None = None,
              slo: Mapping[str, float] | None = None, peak_flops_per_s: float = 0.0,
              peak_hbm_bytes_per_s: float = 0.0, overload: Overload | None = None) -> dict:
    """Flat dict of the run's measured requests; ``peak_*`` are totals over all GPUs of all replicas (for
    MFU / MBU); ``slo``: see ``llmsim.metrics.slo``; ``overload``: the verdict (judged here when None)."""
    meas = Selection(requests, measured_mask(requests))  # columns read as needed, never a copy of the table
    fin = meas.where((meas["status"] == "finished").to_numpy())
    window = Window.of(requests)
    out: dict = _counts(requests, meas)
    t0 = float(meas["arrival_s"].min()) if len(meas) else 0.0
    t1 = float(fin["finish_s"].max()) if len(fin) else t0
    out["duration_s"] = t1 - t0
    out["window_s"] = window.length_s
    out.update(latency_stats(fin))
    if itl is not None:
        out["itl_mean_s"] = _clean(itl.mean)
        for name, q in QUANTILES:
            out[f"itl_{name}_s"] = _clean(itl.quantile(q / 100))
    out.update(_throughput(requests, meas, fin, window))
    out["preemptions"] = int(meas["preemptions"].sum()) if len(meas) else 0
    out["prefix_hit_tokens"] = int(meas["prefix_hit_tokens"].sum()) if len(meas) else 0
    in_window = Rows(steps)
    if window.length_s > 0 and len(steps):
        in_window = Rows(steps, in_span(steps, window.start_s, window.end_s))
    out.update(_step_stats(in_window, peak_flops_per_s, peak_hbm_bytes_per_s))
    out.update(littles_law(requests, steps))
    overload = overload if overload is not None else detect_overload(requests, steps)
    out.update(overload.fields())
    if slo:
        out.update(evaluate_slo(meas, fin, slo, window.length_s, itl))
        if overload.overloaded:
            out["slo_met"] = False  # the measured latencies are a transient; the steady state is worse
    return {k: (_clean(v) if isinstance(v, float) else v) for k, v in out.items()}


def _counts(requests: pd.DataFrame, meas: pd.DataFrame) -> dict:
    status = meas["status"]
    phase = requests["phase"] if "phase" in requests else pd.Series("measured", index=requests.index)
    return {"num_requests": len(meas), "num_finished": int((status == "finished").sum()),
            "num_rejected": int((status == "rejected").sum()), "num_unfinished": int((status == "unfinished").sum()),
            "num_warmup": int((phase == "warmup").sum()), "num_cooldown": int((phase == "cooldown").sum())}


def _throughput(requests: pd.DataFrame, meas: pd.DataFrame, fin: pd.DataFrame, window: Window) -> dict:
    """Completions per second inside the arrival window (steady state: the drain after the last arrival is
    left out); for a burst (no window) over the makespan of the measured requests."""
    done = window.completed(requests, ("input_tokens", "output_tokens"))
    span = window.length_s
    if span <= 0 or not len(done):
        done = fin
        t0 = float(meas["arrival_s"].min()) if len(meas) else 0.0
        span = (float(fin["finish_s"].max()) if len(fin) else t0) - t0
    span = max(span, 1e-12)
    return {"arrival_rate_rps": (len(meas) - 1) / window.length_s if window.length_s > 0 else None,
            "throughput_rps": len(done) / span,
            "input_tokens_per_s": float(done["input_tokens"].sum()) / span,
            "output_tokens_per_s": float(done["output_tokens"].sum()) / span}


def _step_stats(steps: Rows, peak_flops: float, peak_bytes: float) -> dict:
    if not len(steps):
        return {"num_steps": 0, "kv_utilization_mean": None, "kv_utilization_max": None, "mfu": None, "mbu": None}
    # Sums, extremes and counts over blocks of the table (``Rows.blocks``): a long run's summary holds one
    # block's temporaries; a table of one block gives the whole-column figures exactly.
    busy = util_busy = flops = hbm = 0.0
    util_max = end = -np.inf
    first = np.inf
    batch = tokens = 0
    for b in steps.blocks():
        if not len(b):
            continue
        dur = b["duration_s"].astype(np.float64)
        util = b["kv_blocks_used"].astype(np.float64) / b["kv_blocks_total"].astype(np.float64)
        start = b["start_s"].astype(np.float64)
        end, first = max(end, (start + dur).max()), min(first, start.min())
        util_busy, busy = util_busy + (util * dur).sum(), busy + dur.sum()
        util_max = max(util_max, util.max())
        batch += int(b["batch_size"].sum(dtype=np.int64))
        flops, hbm = flops + b["flops"].sum(), hbm + b["hbm_bytes"].sum()
        tokens += int(b["prefill_tokens"].sum(dtype=np.int64) + b["decode_tokens"].sum(dtype=np.int64))
    span = max(float(end - first), 1e-12)
    return {
        "num_steps": len(steps),
        "kv_utilization_mean": float(util_busy / max(busy, 1e-12)),
        "kv_utilization_max": float(util_max),
        "mean_batch_size": batch / len(steps),
        "mfu": float(flops) / (span * peak_flops) if peak_flops else None,
        "mbu": float(hbm) / (span * peak_bytes) if peak_bytes else None,
        "computed_tokens_per_s": tokens / span,
    }
