"""Grade and interval of each summary metric of a simulated run, as flat summary fields.

From the run's step records it measures where step time came from: kernel evidence on a sample of steps
(``CostModel.operator_costs`` of each sampled step's batch, weighted by the step time its sample stands
for), the engine profile's CPU share of step time and its front-end share of TTFT/E2E, whether that
profile was fitted, and how much of its capacity the engine used (``capacity_use``). ``llmsim.trust.grades`` turns
that into a grade per metric, ``llmsim.trust.intervals`` into an interval.

Fields added to a summary: ``grade`` (the worst of the graded metrics), ``evidence_measured_share``,
``evidence_extrapolated_share`` (of step time), ``capacity_use``, ``interval_level``, and per metric
``M``: ``grade.M``, ``lo.M``, ``hi.M`` (the last two only where an interval applies).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace

import numpy as np
import pandas as pd

from llmsim.cost.evidence import evidence_fractions, weighted_fractions
from llmsim.metrics.window import Rows, column, take_rows
from llmsim.trust.grades import Evidence, grade, worst
from llmsim.trust.intervals import FAMILIES, LEVEL, ResidualTable, load_residuals, metric_interval

SAMPLES = 8  # steps costed per pool for the kernel evidence (one per duration octile)
GRADED = (*FAMILIES, "itl_p50_s", "itl_p90_s", "itl_p99_s")
FRONTEND_METRICS = ("ttft_", "e2e_")


def _batch(row, context: float) -> tuple[list[int], list[int]]:
    """A batch with the step's counts: prefill tokens spread over its non-decode sequences, decode rows at
    the mean context."""
    decode = int(row.decode_tokens)
    prefill_seqs = max(int(row.batch_size) - decode, 1 if row.prefill_tokens > 0 else 0)
    new, ctx = [], []
    if prefill_seqs:
        per = max(1, int(round(row.prefill_tokens / prefill_seqs)))
        new += [per] * prefill_seqs
        ctx += [0] * prefill_seqs
    new += [1] * decode
    ctx += [int(context)] * decode
    return (new, ctx) if new else ([1], [int(context)])


def kernel_evidence(cost_model, steps: pd.DataFrame, context: float) -> dict[str, float]:
    """Kernel-time fractions by source over ``steps``, from one costed step per duration octile (the step at
    the middle rank of each octile of a stable sort by duration, weighted by the octile's step time). Holds
    one sorted copy of the durations, not the table's rows in that order."""
    n = len(steps)
    if not n:
        return evidence_fractions([])
    dur = column(steps, "duration_s")
    dur.sort(kind="stable")
    sections = min(SAMPLES, n)
    size, extra = divmod(n, sections)  # the rank ranges of ``np.array_split(range(n), sections)``
    bounds = np.cumsum([0] + [size + 1] * extra + [size] * (sections - extra))
    ranks = [int(a + (b - a) // 2) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    parts = []
    for row_number, a, b in zip(_rows_at_ranks(steps, dur, ranks), bounds[:-1], bounds[1:], strict=True):
        new, ctx = _batch(steps.iloc[row_number], context)
        parts.append((evidence_fractions(cost_model.operator_costs(new, ctx)), float(dur[a:b].sum())))
    return weighted_fractions(parts)


def _rows_at_ranks(steps: pd.DataFrame, sorted_dur: np.ndarray, ranks: list[int]) -> list[int]:
    """Row numbers of the steps at ``ranks`` of a stable sort by duration (equal durations in row order),
    found in one pass over the duration column a block at a time."""
    want = [[sorted_dur[r], r - int(np.searchsorted(sorted_dur, sorted_dur[r], side="left"))] for r in ranks]
    found = [-1] * len(ranks)
    at = 0
    for b in Rows(steps).blocks():
        d = b["duration_s"]
        for i, (value, k) in enumerate(want):
            if found[i] < 0:
                equal = np.flatnonzero(d == value)
                if k < len(equal):
                    found[i] = at + int(equal[k])
                else:
                    want[i][1] = k - len(equal)
        at += len(d)
    return found


def engine_step_share(runtime, steps: pd.DataFrame) -> float:
    """Share of step time that is the engine's CPU work: all of it when scheduling is serial, only where it
    sets the period under async scheduling (``EngineRuntime.period_s``). Summed a block of steps at a time."""
    if not len(steps):
        return 0.0
    shown_s = busy_s = 0.0
    for b in Rows(steps).blocks():
        dur = b["duration_s"].astype(np.float64)
        cpu = runtime.cpu.seconds(b["batch_size"].astype(np.float64),
                                  (b["prefill_tokens"] + b["decode_tokens"]).astype(np.float64))
        shown = np.where(cpu >= dur * (1 - 1e-9), dur, 0.0) if runtime.async_scheduling else np.minimum(cpu, dur)
        shown_s, busy_s = shown_s + shown.sum(), busy_s + dur.sum()
    return float(shown_s / max(busy_s, 1e-300))


MEAN_COLUMNS = ("batch_size", "prefill_tokens", "decode_tokens", "kv_blocks_used", "kv_blocks_total")
WINDOWS = 4  # capacity use is judged per quarter of the run and the highest kept (a staged load peaks late)


def peak_capacity_use(dep, steps: pd.DataFrame, context: float) -> float:
    """The highest ``capacity_use`` over ``WINDOWS`` equal stretches of simulated time."""
    if not len(steps):
        return 0.0
    lo, hi = np.inf, -np.inf
    for b in Rows(steps).blocks():
        start = b["start_s"].astype(np.float64)
        lo, hi = min(lo, start.min()), max(hi, start.max())
    edges = np.linspace(lo, hi, WINDOWS + 1)
    which = np.concatenate([np.clip(np.searchsorted(edges, b["start_s"].astype(np.float64), side="right") - 1,
                                    0, WINDOWS - 1).astype(np.int8) for b in Rows(steps).blocks()])
    return max(_capacity_use(dep, Rows(steps, which == k), context) for k in range(WINDOWS))


def capacity_use(dep, steps: pd.DataFrame, context: float) -> float:
    """Share of the throughput the replica could reach with the same request mix: the time-averaged step
    (its prefill tokens, decode rows and KV use) grown until the first engine limit binds (max_num_seqs,
    max_num_batched_tokens, KV blocks) by a factor ``f``; the share is ``s(full) / (f s(mean))`` with ``s``
    the step period (GPU time from the cost model, the engine's CPU time as ``EngineRuntime.period_s``
    combines them). 1 means the engine runs at its limit; a queue then grows with any extra load."""
    return _capacity_use(dep, Rows(steps), context)


def _capacity_use(dep, steps: Rows, context: float) -> float:
    if not len(steps):
        return 0.0
    mean = _step_means(steps)
    block = dep.scheduler_block
    limits = [mean["kv_blocks_total"] / max(mean["kv_blocks_used"], 1e-9)]
    seqs = block.get("max_num_seqs") or block.get("max_batch_size")
    if seqs:
        limits.append(float(seqs) / max(mean["batch_size"], 1e-9))
    budget = block.get("max_num_batched_tokens")
    if budget:
        limits.append(float(budget) / max(mean["prefill_tokens"] + mean["decode_tokens"], 1e-9))
    f = max(1.0, min(limits))
    return min(1.0, _period(dep, mean, f, context) / (f * _period(dep, mean, 1.0, context)))


def _step_means(steps: Rows) -> dict[str, float]:
    """Step-time-weighted means of ``MEAN_COLUMNS``, a block of steps at a time (two passes: the weights are
    normalised by the total first)."""
    total = 0.0
    for b in steps.blocks():
        total += b["duration_s"].astype(np.float64).sum()
    total = max(total, 1e-300)
    mean = dict.fromkeys(MEAN_COLUMNS, 0.0)
    for b in steps.blocks():
        w = b["duration_s"].astype(np.float64) / total
        for c in MEAN_COLUMNS:
            mean[c] += float((b[c].astype(np.float64) * w).sum())
    return mean


def _period(dep, mean: Mapping[str, float], f: float, context: float) -> float:
    """Step period of the mean step scaled by ``f`` (whole sequences, at least one)."""
    row = pd.Series({"batch_size": max(1, round(mean["batch_size"] * f)),
                     "prefill_tokens": round(mean["prefill_tokens"] * f),
                     "decode_tokens": round(mean["decode_tokens"] * f)})
    new, ctx = _batch(row, context)
    gpu = sum(dep.cost_model.step_time(new, ctx).stage_s)
    cpu = dep.runtime.cpu.seconds(len(new), sum(new))
    return dep.runtime.period_s(gpu, cpu)


def run_evidence(cluster, pools: Mapping, requests: pd.DataFrame, steps: pd.DataFrame,
                 verdict: str) -> Evidence:
    """Step-level evidence of a run (engine share of step time, not yet of any metric), pools weighted by
    their step time."""
    fin = take_rows(requests, (requests["status"] == "finished").to_numpy(), ("input_tokens", "output_tokens")) \
        if len(requests) else requests
    context = float(fin["input_tokens"].mean() + fin["output_tokens"].mean() / 2) if len(fin) else 0.0
    parts, eng, press, weights = [], [], [], []
    for pool in cluster.pools:
        idx = pools.get(pool.name, (None, ()))[1] if pools else ()
        st = take_rows(steps, _of_replicas(steps, idx)) if idx and "replica" in steps else steps
        dep = pool.deployment
        w = float(sum(b["duration_s"].sum() for b in Rows(st).blocks())) if len(st) else 0.0
        parts.append((kernel_evidence(dep.cost_model, st, context), w))
        eng.append(engine_step_share(dep.runtime, st))
        press.append(peak_capacity_use(dep, st, context))
        weights.append(w)
    frac = weighted_fractions(parts)
    total = sum(weights) or 1.0
    fitted = all(bool(p.deployment.runtime.profile.fitted_on) for p in cluster.pools)
    return Evidence(frac["interpolated"], frac["extrapolated"], frac["roofline"],
                    engine_share=min(1.0, sum(e * w for e, w in zip(eng, weights, strict=True)) / total),
                    engine_fitted=fitted, pressure=max(press, default=0.0), verdict=verdict)


def metric_evidence(step: Evidence, metric: str, value: float | None, frontend_s: float) -> Evidence:
    """The step evidence of one metric: TTFT and E2E add the front end's share of their time."""
    if not metric.startswith(FRONTEND_METRICS) or not value or value <= 0:
        return step
    f = min(1.0, frontend_s / value)
    return replace(step, engine_share=min(1.0, f + (1 - f) * step.engine_share))


def trust_fields(summary: Mapping, step: Evidence, frontend_s: float, table: ResidualTable | None = None,
                 level: float = LEVEL) -> dict:
    """The summary fields of the module docstring."""
    table = table if table is not None else load_residuals()
    measured, extrapolated, _ = step.shares()
    out: dict = {"evidence_measured_share": measured, "evidence_extrapolated_share": extrapolated,
                 "capacity_use": step.pressure, "interval_level": level}
    letters = []
    for m in GRADED:
        value = summary.get(m)
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            continue
        g = grade(metric_evidence(step, m, value, frontend_s))
        letters.append(g.letter)
        bounds = metric_interval(table, m, value, g.letter, level)
        out[f"grade.{m}"] = g.letter
        if bounds:  # absent, not None, where no interval applies: all-None columns have no stable dtype
            out[f"lo.{m}"], out[f"hi.{m}"] = bounds
    out["grade"] = worst(letters)
    return out


def _of_replicas(steps: pd.DataFrame, replicas) -> np.ndarray:
    """Row mask of the steps of ``replicas``, a block of rows at a time."""
    out = np.empty(len(steps), dtype=bool)
    at = 0
    wanted = np.asarray(list(replicas))
    for b in Rows(steps).blocks():
        r = b["replica"]
        out[at:at + len(r)] = np.isin(r, wanted)
        at += len(r)
    return out


def frontend_seconds(cluster, info: Mapping) -> float:
    """Client-side seconds TTFT and E2E carry outside the engine loop."""
    return float(cluster.frontend_overhead_s) + float(info.get("frontend_request_s", 0.0) or 0.0) + \
        float(info.get("frontend_token_s", 0.0) or 0.0)


def annotate(summary: Mapping, result, cluster, table: ResidualTable | None = None) -> dict:
    """``trust_fields`` of a simulated point (``result``: ``SimResult`` with phases marked)."""
    verdict = summary.get("load_verdict") or "stable"
    ev = run_evidence(cluster, result.pools, result.requests, result.steps, verdict)
    return trust_fields(summary, ev, frontend_seconds(cluster, result.info), table)
