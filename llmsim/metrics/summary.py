"""Records -> one flat, JSON-able summary: latency percentiles, throughput, SLO attainment, KV use, MFU/MBU,
and the cross-checks (Little's law, overload)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from llmsim.metrics.histogram import LogHistogram

LATENCIES = ("queue_s", "ttft_s", "tpot_s", "e2e_s", "itl_max_s")
QUANTILES = (("p50", 50), ("p90", 90), ("p99", 99))
SLO_KEYS = ("ttft_s", "tpot_s", "e2e_s")


@dataclass(frozen=True, slots=True)
class Overload:
    """Whether the run was overloaded (arrivals outpaced service: the queue grows without bound), and why.
    Truthy when overloaded."""

    overloaded: bool
    reason: str = ""
    queue_growth_s_per_s: float = 0.0

    def __bool__(self) -> bool:
        return self.overloaded


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


def slo_attainment(requests: pd.DataFrame, slo: Mapping[str, float]) -> float | None:
    """Fraction of all requests (rejected ones count as misses) meeting every given target."""
    unknown = set(slo) - set(SLO_KEYS)
    if unknown:
        raise ValueError(f"slo: unknown target(s) {', '.join(sorted(unknown))}; valid: {', '.join(SLO_KEYS)}")
    if not len(requests):
        return None
    ok = (requests["status"] == "finished").to_numpy().copy()
    for key, target in slo.items():
        v = requests[key].to_numpy(dtype=np.float64)
        ok &= np.nan_to_num(v, nan=0.0 if key == "tpot_s" else np.inf) <= target
    return float(ok.mean())


def detect_overload(requests: pd.DataFrame, steps: pd.DataFrame, unfinished: int, end_s: float) -> Overload:
    """Overloaded if the queueing delay grows with arrival time (last quarter vs first quarter of arrivals,
    more than 2 % of elapsed time and more than ten median steps) or requests were left unfinished with a
    growing queue when the run was cut off."""
    fin = requests[requests["status"] == "finished"]
    if len(fin) < 8:
        return Overload(unfinished > 0, f"{unfinished} requests unfinished at the end" if unfinished else "")
    fin = fin.sort_values("arrival_s", kind="stable")
    q = len(fin) // 4
    first, last = fin.iloc[:q], fin.iloc[-q:]
    dt = float(last["arrival_s"].mean() - first["arrival_s"].mean())
    growth = float(last["queue_s"].mean() - first["queue_s"].mean()) / dt if dt > 0 else 0.0
    step_s = float(steps["duration_s"].median()) if len(steps) else 0.0
    if growth > 0.02 and float(last["queue_s"].mean()) > 10 * step_s:
        span = float(fin["arrival_s"].max() - fin["arrival_s"].min()) or 1.0
        served = float(fin["finish_s"].max() - fin["arrival_s"].min()) or 1.0
        return Overload(True, f"queueing delay grows by {growth:.3f} s per s of arrivals "
                              f"(arrivals {len(fin) / span:.3g} req/s, served {len(fin) / served:.3g} req/s)",
                        growth)
    if unfinished > 0 and unfinished > 0.05 * len(requests):
        return Overload(True, f"{unfinished} requests unfinished when the run stopped at {end_s:.3g} s", growth)
    return Overload(False, "", growth)


def littles_law(requests: pd.DataFrame, steps: pd.DataFrame) -> dict[str, float | None]:
    """L measured from the engine's queues (time-weighted over steps) vs lambda * W from request records."""
    fin = requests[requests["status"] == "finished"]
    if not len(fin) or not len(steps):
        return {"littles_L": None, "littles_lambda_W": None}
    t0 = float(fin["arrival_s"].min())
    t1 = float(fin["finish_s"].max())
    span = max(t1 - t0, 1e-12)
    w = (fin["finish_s"] - fin["arrival_s"]).to_numpy(dtype=np.float64)  # engine-side time in system
    L = float((steps["num_in_system"] * steps["duration_s"]).sum()) / span
    return {"littles_L": L, "littles_lambda_W": float(len(fin) / span * w.mean())}


def summarize(requests: pd.DataFrame, steps: pd.DataFrame, *, itl: LogHistogram | None = None,
              slo: Mapping[str, float] | None = None, peak_flops_per_s: float = 0.0,
              peak_hbm_bytes_per_s: float = 0.0, overload: Overload | None = None) -> dict:
    """Flat dict of the run; ``peak_*`` are totals over all GPUs of all replicas (for MFU / MBU)."""
    fin = requests[requests["status"] == "finished"]
    out: dict = {"num_requests": len(requests), "num_finished": len(fin),
                 "num_rejected": int((requests["status"] == "rejected").sum())}
    t0 = float(requests["arrival_s"].min()) if len(requests) else 0.0
    t1 = float(fin["finish_s"].max()) if len(fin) else t0
    span = max(t1 - t0, 1e-12)
    out["duration_s"] = t1 - t0
    out.update(latency_stats(fin))
    if itl is not None:
        out["itl_mean_s"] = _clean(itl.mean)
        for name, q in QUANTILES:
            out[f"itl_{name}_s"] = _clean(itl.quantile(q / 100))
    out["throughput_rps"] = len(fin) / span
    out["input_tokens_per_s"] = float(fin["input_tokens"].sum()) / span
    out["output_tokens_per_s"] = float(fin["output_tokens"].sum()) / span
    out["preemptions"] = int(requests["preemptions"].sum()) if len(requests) else 0
    out["prefix_hit_tokens"] = int(requests["prefix_hit_tokens"].sum()) if len(requests) else 0
    out.update(_step_stats(steps, peak_flops_per_s, peak_hbm_bytes_per_s))
    out.update(littles_law(requests, steps))
    if slo:
        out["slo_attainment"] = slo_attainment(requests, slo)
        for key, target in slo.items():
            out[f"slo_{key}"] = float(target)
    if overload is not None:
        out["overloaded"] = bool(overload)
        out["overload_reason"] = overload.reason
    return {k: (_clean(v) if isinstance(v, float) else v) for k, v in out.items()}


def _step_stats(steps: pd.DataFrame, peak_flops: float, peak_bytes: float) -> dict:
    if not len(steps):
        return {"num_steps": 0, "kv_utilization_mean": None, "kv_utilization_max": None, "mfu": None, "mbu": None}
    dur = steps["duration_s"].to_numpy(dtype=np.float64)
    util = steps["kv_blocks_used"].to_numpy(dtype=np.float64) / steps["kv_blocks_total"].to_numpy(dtype=np.float64)
    start = steps["start_s"].to_numpy(dtype=np.float64)
    span = max(float((start + dur).max() - start.min()), 1e-12)
    return {
        "num_steps": len(steps),
        "kv_utilization_mean": float((util * dur).sum() / max(dur.sum(), 1e-12)),
        "kv_utilization_max": float(util.max()),
        "mean_batch_size": float(steps["batch_size"].mean()),
        "mfu": float(steps["flops"].sum()) / (span * peak_flops) if peak_flops else None,
        "mbu": float(steps["hbm_bytes"].sum()) / (span * peak_bytes) if peak_bytes else None,
        "computed_tokens_per_s": float((steps["prefill_tokens"] + steps["decode_tokens"]).sum()) / span,
    }
