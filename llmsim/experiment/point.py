"""Run one sweep point: build specs, workload and cluster from the resolved config, simulate, summarise."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from llmsim.experiment.sweep import Point, resolve_workload_ref
from llmsim.specs import ParallelLayout, Precision, load_hardware, load_model


def load_point_workload(point: Point):
    from llmsim.workload import load_workload

    cfg = point.config
    if isinstance(cfg.workload, str):
        return load_workload(resolve_workload_ref(cfg.workload, point.base_dir, point.where))
    return load_workload(cfg.workload, where=f"{point.where}: workload", base_dir=point.workload_dir)


def preflight(point: Point) -> None:
    """Fail fast, before any point runs, on names and blocks that cannot be built (exit 2, field named)."""
    from llmsim.cost import CostModel
    from llmsim.errors import ConfigError
    from llmsim.sched import SCHEDULERS

    cfg = point.config
    try:
        model, hardware = load_model(cfg.model), load_hardware(cfg.hardware)
        precision = Precision.parse(cfg.precision, cfg.kv_dtype)
        CostModel(model, hardware, ParallelLayout(tp=cfg.layout.tp, pp=cfg.layout.pp), precision)
    except ConfigError as exc:
        raise ConfigError(f"{point.where}: {exc}") from None
    SCHEDULERS.build(dict(cfg.scheduler), where=f"{point.where}: scheduler")
    load_point_workload(point)


def _slo(point: Point) -> dict[str, float]:
    slo = point.config.slo
    targets = {k: v for k, v in (("ttft_s", slo.ttft_s), ("tpot_s", slo.tpot_s), ("e2e_s", slo.e2e_s))
               if v is not None}
    targets.update(slo.percentiles)
    return {**targets, "attainment": slo.attainment} if targets else {}


def mark_phases(requests: pd.DataFrame, point: Point) -> pd.DataFrame:
    """The requests table with its ``phase`` column (warmup / measured / cooldown, in arrival order)."""
    from llmsim.metrics.window import mark_phases as mark

    stop = point.config.stop
    return mark(requests, warmup_requests=stop.warmup_requests, warmup_s=stop.warmup_s,
                cooldown_requests=stop.cooldown_requests, cooldown_s=stop.cooldown_s)


def closed_loop_feed(closed, stream, seed: int):
    """First requests of each user, and the callback issuing a user's next request after its think time."""
    from dataclasses import replace

    it = iter(stream)
    rng = np.random.default_rng([seed, 1])  # think times: their own stream, so lengths do not shift
    initial = []
    for t in closed.start_times_s():
        nxt = next(it, None)
        if nxt is None:
            break
        initial.append(replace(nxt, arrival_s=float(t)))

    def callback(_request, end_s: float):
        nxt = next(it, None)
        return [] if nxt is None else [replace(nxt, arrival_s=end_s + closed.think_s(rng))]

    return initial, callback


def _with_phases(result, point: Point):
    """Mark warm-up and cool-down requests and judge the load over the measured ones."""
    from dataclasses import replace

    from llmsim.metrics.overload import detect_overload

    requests = mark_phases(result.requests, point)
    verdict = detect_overload(requests, result.steps, result.info.get("unfinished", 0), result.info.get("end_s"))
    return replace(result, requests=requests, overloaded=verdict)


def point_requests(point: Point, model):
    """The point's workload spec and its request stream as the simulator receives it (seeded by the
    point's seed; arrival times of a closed-loop workload are set while simulating)."""
    from llmsim.workload import generate_requests

    cfg = point.config
    spec = load_point_workload(point)
    rng = np.random.default_rng(point.seed)
    return spec, generate_requests(spec, rng, num_requests=cfg.stop.num_requests, duration_s=cfg.stop.duration_s,
                                   max_context=model.max_context)


def run_point(point: Point) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """Simulate one point; returns (summary dict, requests table, steps table)."""
    from llmsim.experiment.progress import track
    from llmsim.sim import simulate

    cfg = point.config
    model = load_model(cfg.model)
    hardware = load_hardware(cfg.hardware)
    layout = ParallelLayout(tp=cfg.layout.tp, pp=cfg.layout.pp, dp=cfg.layout.replicas)
    precision = Precision.parse(cfg.precision, cfg.kv_dtype)
    spec, stream = point_requests(point, model)
    stream = track(stream, point.id, cfg.stop.num_requests)  # progress on stderr; results unaffected
    callback, max_time = None, None
    if spec.closed_loop is not None:
        stream, callback = closed_loop_feed(spec.closed_loop, stream, point.seed)
        max_time = cfg.stop.duration_s
    kv = {**(cfg.kv or {}), "gpu_memory_utilization": cfg.memory.gpu_memory_utilization}
    result = simulate(stream, model=model, hardware=hardware, layout=layout, precision=precision,
                      scheduler=dict(cfg.scheduler), kv=kv, seed=point.seed,
                      frontend_overhead_s=cfg.frontend_overhead_s, arrivals_callback=callback,
                      max_time_s=max_time)
    result = _with_phases(result, point)
    summary = result.summary(slo=_slo(point) or None)
    summary["slo_target_attainment"] = cfg.slo.attainment
    gpus = layout.num_gpus
    summary["num_gpus"] = gpus
    summary["output_tokens_per_s_per_gpu"] = summary.get("output_tokens_per_s", 0.0) / gpus
    summary["throughput_rps_per_gpu"] = summary.get("throughput_rps", 0.0) / gpus
    summary = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in summary.items()}
    return summary, result.requests, result.steps
