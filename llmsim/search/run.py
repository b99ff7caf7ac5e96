"""``llmsim search SPEC.yaml --out DIR``: screen -> allocate -> verify -> report, resumable.

The screen and the ILP are deterministic and take seconds, so a re-run recomputes them; the DES trials of
the verification are results directories under ``DIR/verify`` that a re-run finds and skips.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from llmsim.errors import ConfigError, InfeasibleError
from llmsim.search.screen import Candidate, Lengths, Screened, Target, enumerate_candidates, screen
from llmsim.search.spec import SearchSpec, load_spec

LENGTH_SAMPLES = 4000  # requests drawn from each workload for the screen's length quantiles


@dataclass
class Context:
    """Everything resolved from the spec once: specs by name, workloads inline, lengths and targets."""

    spec: SearchSpec
    base_dir: Path
    models: dict[str, Any] = field(default_factory=dict)
    hardware: dict[str, Any] = field(default_factory=dict)
    engines: dict[str, Any] = field(default_factory=dict)
    workloads: dict[str, dict] = field(default_factory=dict)
    lengths: dict[str, Lengths] = field(default_factory=dict)
    targets: dict[str, Target] = field(default_factory=dict)
    prices: dict[str, float] = field(default_factory=dict)
    run_options: dict[str, Any] = field(default_factory=dict)  # run_experiment's jobs / executor


def resolve(spec: SearchSpec, base_dir: Path, where: str) -> Context:
    from llmsim.engines import load_engine
    from llmsim.experiment.cluster_build import at
    from llmsim.specs import load_hardware, load_model

    ctx = Context(spec, base_dir)
    for i, entry in enumerate(spec.models):
        ctx.models.setdefault(entry.model, at(where, f"models[{i}].model", load_model, entry.model))
        ctx.workloads[entry.name] = _inline_workload(entry.workload, base_dir, f"{where}: models[{i}].workload")
        ctx.lengths[entry.name] = _sample_lengths(ctx.workloads[entry.name], base_dir, ctx.models[entry.model],
                                                  f"{where}: models[{i}].workload")
        ctx.targets[entry.name] = _target(spec, entry)
    for name, gpu in spec.gpus.items():
        hw = at(where, f"gpus.{name}", load_hardware, name)
        if gpu.price_per_gpu_hour_usd is not None:
            hw = replace(hw, price_per_hour_usd=float(gpu.price_per_gpu_hour_usd))
            ctx.prices[name] = float(gpu.price_per_gpu_hour_usd)
        ctx.hardware[name] = hw
    for i, eng in enumerate(spec.knobs.engine):
        ctx.engines[eng] = at(where, f"knobs.engine[{i}]", load_engine, eng)
    return ctx


def _inline_workload(ref, base_dir: Path, where: str) -> dict:
    from llmsim.experiment.sweep import resolve_workload_ref
    from llmsim.yamlio import load_yaml

    if isinstance(ref, dict):
        return dict(ref)
    data = load_yaml(resolve_workload_ref(ref, base_dir, where.split(": ")[0]), "workload")
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a workload mapping in {ref!r}")
    return data


def _sample_lengths(workload: dict, base_dir: Path, model, where: str) -> Lengths:
    from llmsim.workload import generate_requests, load_workload

    wl = load_workload(workload, where=where, base_dir=base_dir)
    reqs = list(generate_requests(wl, np.random.default_rng(0), num_requests=LENGTH_SAMPLES,
                                  max_context=model.max_context))
    return Lengths(np.array([r.input_tokens for r in reqs], dtype=np.int64),
                   np.array([r.output_tokens for r in reqs], dtype=np.int64))


def _target(spec: SearchSpec, entry) -> Target:
    slo = spec.slo_for(entry)
    measured = spec.verify.num_requests - spec.verify.warmup_requests
    a = slo.attainment
    margin = 3.0 * math.sqrt(a * (1 - a) / measured)  # three standard errors of a verification's attainment
    return Target(slo.ttft_s, slo.tpot_s, dict(slo.percentiles), a, margin)


def run_screen(ctx: Context) -> tuple[list[Screened], float]:
    """Screen every candidate; returns the verdicts and candidates per CPU second."""
    t0 = time.process_time()
    candidates = enumerate_candidates(ctx.spec)
    out = screen(ctx.spec, candidates, ctx.models, ctx.hardware, ctx.lengths, ctx.targets, ctx.engines)
    spent = max(time.process_time() - t0, 1e-9)
    return out, len(candidates) / spent


def items_for(screened: list[Screened]):
    """ILP items: per (model, role, GPU type, GPUs per replica) the kept candidate with the highest
    estimated capacity (the others cost the same and serve less)."""
    from llmsim.search.ilp import Item

    best: dict[tuple, Screened] = {}
    for s in screened:
        c = s.candidate
        key = (c.model, c.role, c.hardware, c.gpus)
        if s.kept and s.capacity_est_rps > 0 and (key not in best or s.capacity_est_rps > best[key].capacity_est_rps):
            best[key] = s
    return [Item(s.candidate.label, s.candidate.model, s.candidate.role, s.candidate.hardware, s.candidate.gpus,
                 s.usd_per_hour, s.tdp_w, s.capacity_est_rps) for s in best.values()], \
        {s.candidate.label: s.candidate for s in best.values()}


def search(path: str | Path, out_dir: str | Path, *, log=print, jobs: int = 1, executor: str = "local") -> dict:
    """Run the whole search; returns the report's summary dict (also written to ``DIR/search.json``).
    ``jobs`` / ``executor``: how each DES trial runs its seeds (``llmsim run --jobs / --executor``)."""
    from llmsim.search import ilp
    from llmsim.search.report import write_report

    spec, base_dir = load_spec(path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ctx = resolve(spec, base_dir, str(path))
    ctx.run_options = {"jobs": jobs, "executor": executor}
    screened, per_s = run_screen(ctx)
    kept = sum(s.kept for s in screened)
    log(f"screen: {len(screened)} candidates, {kept} kept, {len(screened) - kept} discarded "
        f"({per_s:,.0f} candidates per CPU second)")
    _check_models_kept(spec, screened)
    items, by_label = items_for(screened)
    estimated = items
    rates = {e.name: e.rate_per_s for e in spec.models}
    counts = {name: g.count for name, g in spec.gpus.items()}
    allocations: list = []
    verified: list = []
    for round_ in range(1 + (spec.verify.refine_rounds if spec.verify.top_k else 0)):
        try:
            found = ilp.solve(items, rates, counts, spec.budget_usd_per_hour, spec.objective,
                              top_k=max(1, spec.verify.top_k), exclude=[set(a.replicas) for a in allocations])
        except InfeasibleError:
            if not allocations:
                raise
            break  # every structure the refined program allows was verified already
        log(f"allocate (round {round_}): {len(found)} allocation(s) from {len(items)} configurations "
            f"(CBC: {found[0].status})")
        for alloc in found[:spec.verify.top_k]:
            verified.append(verify_allocation(ctx, alloc, by_label, out / "verify" / f"alloc-{len(allocations)}", log))
            allocations.append(alloc)
        if not spec.verify.top_k:
            allocations.extend(found)
        items = refined(estimated, allocations, verified, rates)
    return write_report(ctx, out, screened, per_s, allocations, by_label, verified, log)


def _check_models_kept(spec: SearchSpec, screened: list[Screened]) -> None:
    """A model none of whose candidates passed the screen makes the search infeasible: say why."""
    from collections import Counter

    for entry in spec.models:
        mine = [s for s in screened if s.candidate.model == entry.name]
        if any(s.kept for s in mine):
            continue
        kinds = Counter(s.reason.split(" ")[0].rstrip(":") for s in mine)
        closest = min(mine, key=lambda s: s.ttft_lb_s if s.ttft_lb_s == s.ttft_lb_s else math.inf)
        raise InfeasibleError(
            f"model {entry.name}: the screen discarded all {len(mine)} candidates ("
            + ", ".join(f"{n} {k}" for k, n in kinds.most_common()) + "); the tightest constraint is the SLO: "
            f"e.g. {closest.candidate.label}: {closest.reason}")


def refined(items, allocations, verified, rates):
    """``items`` (the screen's estimates) with their capacities scaled by measured / estimated goodput of
    the verified allocations that used them (the latest measurement wins); unverified items keep theirs."""
    by_key = {i.key: i for i in items}
    factor: dict[str, float] = {}
    for alloc, per_model in zip(allocations, verified, strict=False):
        for name, (_, result, _) in per_model.items():
            keys = [k for k in alloc.replicas if by_key.get(k) is not None and by_key[k].model == name]
            est = _part_capacity([(by_key[k], alloc.replicas[k]) for k in keys])
            lam = result.goodput_rps if result.goodput_rps is not None else (result.upper_rps or 0.0) / 2
            if est > 0:
                for k in keys:
                    factor[k] = max(lam * rates[name] / est, 1e-3)
    return [replace(i, capacity_rps=i.capacity_rps * factor[i.key]) if i.key in factor else i for i in items]


def _part_capacity(parts) -> float:
    """Estimated requests/s of one model's part: its mixed replicas, or min(prefill, decode) of a split."""
    cap = {r: sum(i.capacity_rps * n for i, n in parts if i.role == r) for r in ("mixed", "prefill", "decode")}
    return cap["mixed"] + min(cap["prefill"], cap["decode"])


def verify_allocation(ctx: Context, alloc, by_label: dict[str, Candidate], out: Path, log) -> dict:
    """Goodput of one allocation in the DES: each model bisected, the smallest rate multiple wins."""
    from llmsim.search.verify import verify_model

    per_model = {}
    for entry in ctx.spec.models:
        parts = [(by_label[k], n) for k, n in alloc.replicas.items() if by_label[k].model == entry.name]
        result, figures = verify_model(ctx.spec, entry, parts, ctx.workloads[entry.name], ctx.prices,
                                       out / entry.name, ctx.base_dir, alloc.lam, ctx.run_options)
        per_model[entry.name] = (parts, result, figures)
        shown = "none" if result.goodput_rps is None else f"{result.goodput_rps * entry.rate_per_s:.3g} req/s"
        log(f"verify {out.name} {entry.name}: goodput {shown} after {len(result.trials)} DES runs")
    return per_model
