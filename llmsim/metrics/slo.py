"""Service-level objectives: per-request targets (attainment), percentile targets, and goodput.

An SLO mapping holds any of
- per-request targets ``ttft_s``, ``tpot_s``, ``e2e_s``: a request attains the SLO when it finished and
  meets every one of them; attainment is the fraction of measured requests that do (rejected and
  unfinished requests are misses);
- percentile targets ``<metric>_p<q>_s`` for metric ``ttft``, ``tpot``, ``itl`` or ``e2e`` and a percentile
  ``q`` in (0, 100), e.g. ``itl_p99_s: 0.1`` (the p99 inter-token latency of Sarathi-Serve's capacity
  claim) or ``ttft_p90_s: 2``: the run meets it when that percentile over the measured requests (over all
  tokens for ITL) is at most the target;
- ``attainment``: the fraction of requests that must attain the per-request targets (default 0.9).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np
import pandas as pd

REQUEST_KEYS = ("ttft_s", "tpot_s", "e2e_s")
PERCENTILE_METRICS = ("ttft", "tpot", "itl", "e2e")
_PERCENTILE = re.compile(r"^(ttft|tpot|itl|e2e)_p(\d{1,2}(?:\.\d+)?)_s$")


def percentile_key(key: str) -> tuple[str, float] | None:
    """``"itl_p99_s"`` -> ``("itl", 99.0)``; None if ``key`` is not a percentile target."""
    m = _PERCENTILE.match(key)
    if not m or not 0 < float(m.group(2)) < 100:
        return None
    return m.group(1), float(m.group(2))


def check_slo_keys(slo: Mapping[str, float]) -> None:
    """ValueError naming the keys that are neither per-request nor percentile targets."""
    unknown = [k for k in slo if k not in REQUEST_KEYS and k != "attainment" and percentile_key(k) is None]
    if unknown:
        raise ValueError(f"slo: unknown target(s) {', '.join(sorted(unknown))}; valid: {', '.join(REQUEST_KEYS)}, "
                         "attainment, or <ttft|tpot|itl|e2e>_p<percentile>_s such as itl_p99_s")


def slo_attainment(requests: pd.DataFrame, slo: Mapping[str, float]) -> float | None:
    """Fraction of ``requests`` (rejected and unfinished ones count as misses) meeting every per-request
    target in ``slo`` (other keys are ignored)."""
    check_slo_keys(slo)
    if not len(requests):
        return None
    return float(_attains(requests, slo).mean())


def _attains(requests: pd.DataFrame, slo: Mapping[str, float]) -> np.ndarray:
    ok = (requests["status"] == "finished").to_numpy().copy()
    for key in REQUEST_KEYS:
        if key in slo:
            v = requests[key].to_numpy(dtype=np.float64)
            ok &= np.nan_to_num(v, nan=0.0 if key == "tpot_s" else np.inf) <= slo[key]
    return ok


def percentile_value(finished: pd.DataFrame, metric: str, q: float, itl=None) -> float | None:
    """The ``q``-th percentile of ``metric`` over finished requests; ITL is over all tokens, from the run's
    inter-token histogram ``itl`` (None without one: per-request gap percentiles are no substitute)."""
    if metric == "itl":
        if itl is None or not itl.total:
            return None
        return float(itl.quantile(q / 100))
    v = finished[f"{metric}_s"].to_numpy(np.float64)
    v = v[np.isfinite(v)]
    return float(np.percentile(v, q)) if v.size else None


def evaluate_slo(requests: pd.DataFrame, finished: pd.DataFrame, slo: Mapping[str, float], window_s: float,
                 itl=None) -> dict:
    """Summary columns for ``slo``: ``slo_attainment`` and ``goodput_rps`` (requests attaining the
    per-request targets per second of the measurement window, as ``vllm bench serve --goodput``), each
    percentile target's value and ``slo_<key>`` target, ``slo_percentiles_met``, and ``slo_met`` (attainment
    at least ``attainment`` and every percentile target met)."""
    check_slo_keys(slo)
    out: dict = {}
    met = True
    if any(k in slo for k in REQUEST_KEYS):
        ok = _attains(requests, slo) if len(requests) else np.zeros(0, dtype=bool)
        out["slo_attainment"] = float(ok.mean()) if ok.size else None
        out["goodput_rps"] = float(ok.sum()) / window_s if window_s > 0 else None
        target = float(slo.get("attainment", 0.9))
        met = out["slo_attainment"] is not None and out["slo_attainment"] >= target
    pct_met = True
    for key, target in slo.items():
        if key == "attainment":
            out["slo_target_attainment"] = float(target)
            continue
        if key in REQUEST_KEYS:
            out[f"slo_{key}"] = float(target)
            continue
        metric, q = percentile_key(key)
        value = percentile_value(finished, metric, q, itl)
        out[key] = value
        out[f"slo_{key}"] = float(target)
        pct_met &= value is not None and value <= target
    if any(percentile_key(k) for k in slo):
        out["slo_percentiles_met"] = bool(pct_met)
    out["slo_met"] = bool(met and pct_met)
    return out
