"""DES check of an allocation: each model's part becomes an experiment (one mixed pool, or a prefill and a
decode pool joined by a link), run through ``llmsim.experiment.runner.run_experiment`` at a given rate, and
goodput is found by bisection on the rate (``llmsim.metrics.goodput_search``).

A rate holds when, on every seed, the run is stable (not overloaded) and its SLO is met (attainment and
percentile targets, ``slo_met``), as ``llmsim.metrics.goodput`` judges a sweep. An allocation's goodput is
the common multiple ``lam`` of all models' target rates at which every model still holds (each model is
bisected on its own, then the smallest multiple wins), reported in requests per second of the whole mix.
Every trial is a results directory under ``OUT/verify/``; a re-run finds finished points there and skips
them (resumable like ``llmsim run``).
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from llmsim.metrics.goodput_search import GoodputSearch, bisect_goodput
from llmsim.search.screen import Candidate

SUMMARY_KEEP = ("ttft_p99_s", "tpot_p99_s", "itl_p99_s", "slo_attainment", "energy_j_per_output_token",
                "cost_usd_per_m_output_tokens_all", "cost_usd_per_m_input_tokens", "cost_usd_per_m_output_tokens",
                "power_mean_w", "load_verdict", "slo_met", "throughput_rps")


def _pool(c: Candidate, replicas: int, role: str) -> dict[str, Any]:
    pool = {"role": role, "replicas": replicas, "hardware": c.hardware, "layout": {"tp": c.tp, "pp": c.pp},
            "precision": c.precision, "engine": c.engine,
            "scheduler": {"kind": "vllm", "max_num_batched_tokens": c.max_num_batched_tokens,
                          "max_num_seqs": c.max_num_seqs}}
    if c.kv_dtype:
        pool["kv_dtype"] = c.kv_dtype
    return pool


def trial_size(verify, rate_per_s: float, scale: int = 1) -> tuple[int, int]:
    """(num_requests, warmup_requests) of a trial: ``num_requests`` or ``min_duration_s`` of arrivals."""
    n = scale * max(verify.num_requests, math.ceil(rate_per_s * verify.min_duration_s))
    return n, math.ceil(n * verify.warmup_requests / verify.num_requests)


def experiment_dict(spec, entry, parts: list[tuple[Candidate, int]], workload: Mapping[str, Any],
                    rate_per_s: float, prices: Mapping[str, float], scale: int = 1) -> dict[str, Any]:
    """A runnable experiment (``llmsim run``) of one model's part of an allocation at ``rate_per_s``;
    ``workload``: the model's workload as an inline mapping; ``prices``: $/GPU-hour overrides by GPU type."""
    slo = spec.slo_for(entry)
    roles = {c.role: (c, n) for c, n in parts}
    first = parts[0][0]
    wl = copy.deepcopy(dict(workload))
    wl.setdefault("arrival", {"kind": "poisson"})
    wl["arrival"] = {**wl["arrival"], "rate_per_s": float(rate_per_s)}
    v = spec.verify
    num, warm = trial_size(v, rate_per_s, scale)
    exp: dict[str, Any] = {
        "name": f"{spec.name}-{entry.name}", "model": entry.model, "hardware": first.hardware,
        "engine": first.engine, "workload": wl,
        "slo": slo.model_dump(mode="json", exclude_defaults=False),
        "stop": {"num_requests": num, "warmup_requests": warm},
        "seeds": list(v.seeds), "router": {"kind": "least_outstanding"},
    }
    if "mixed" in roles:
        exp["cluster"] = {"pools": {"colocated": _pool(*roles["mixed"], "mixed")}}
    else:
        exp["cluster"] = {"pools": {"P": _pool(*roles["prefill"], "prefill"), "D": _pool(*roles["decode"], "decode")},
                          "links": {"pd": {"between": ["P", "D"], **v.pd_link}},
                          "decode_router": {"kind": "least_outstanding"}}
    used = {c.hardware for c, _ in parts}
    if any(h in prices for h in used):
        exp["cost"] = {"price_per_gpu_hour_usd": {h: prices[h] for h in used if h in prices}}
    return exp


def run_rate(exp: dict[str, Any], out_dir: Path, base_dir: Path,
             options: Mapping[str, Any] | None = None) -> tuple[bool | None, str, dict]:
    """Run one experiment (all seeds); (holds, why, seed-mean figures); holds is None when the load
    verdict is inconclusive on some seed and the SLO is met (the run was too short to judge)."""
    from llmsim.experiment.runner import run_experiment

    summary = run_experiment(exp, out_dir=out_dir, base_dir=base_dir, **dict(options or {})).summary
    verdicts = set(summary["load_verdict"].fillna("inconclusive")) if "load_verdict" in summary else {"stable"}
    met = bool(summary["slo_met"].fillna(False).astype(bool).all()) if "slo_met" in summary else False
    figures = {k: _mean(summary[k]) for k in SUMMARY_KEEP if k in summary}
    if "overloaded" in verdicts:
        return False, "overloaded", figures
    if not met:
        return False, f"SLO missed (attainment {figures.get('slo_attainment') or 0:.3f})", figures
    if verdicts - {"stable", "offline"}:
        return None, "inconclusive (run too short to judge the load)", figures
    return True, "holds", figures


def _mean(col) -> Any:
    """The seed mean of a numeric column; the last value of any other (verdicts, flags)."""
    import pandas as pd

    values = col.dropna()
    if not len(values):
        return None
    if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        return float(values.mean())
    last = values.iloc[-1]
    return last.item() if hasattr(last, "item") else last


def verify_model(spec, entry, parts, workload, prices, out_dir: Path, base_dir: Path,
                 start_lam: float, options: Mapping[str, Any] | None = None) -> tuple[GoodputSearch, dict[float, dict]]:
    """Bisection on the multiple ``lam`` of the model's target rate; figures of every trial by rate."""
    figures: dict[float, dict] = {}

    def holds(lam: float):
        rate = lam * entry.rate_per_s
        ok, why = None, ""
        for scale in (1, 2):  # an inconclusive verdict gets one longer run
            exp = experiment_dict(spec, entry, parts, workload, rate, prices, scale)
            ok, why, figs = run_rate(exp, out_dir / f"rate-{_tag(rate)}-x{scale}", base_dir, options)
            figures[lam] = figs
            if ok is not None:
                break
        return bool(ok), why

    search = bisect_goodput(holds, max(start_lam, 1e-3), rel_tol=spec.verify.rel_tol, factor=2.0,
                            min_rate_rps=start_lam / 64, max_rate_rps=start_lam * 16,
                            max_trials=spec.verify.max_trials)
    return search, figures


def _tag(rate: float) -> str:
    return re.sub(r"[^0-9a-z.]", "_", f"{rate:.6g}")
