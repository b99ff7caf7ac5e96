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


def _at(where: str, field: str, build, *args, **kwargs):
    """``build(*args)``, its user-facing errors prefixed with the file and the field they concern."""
    from llmsim.errors import ConfigError, LlmsimError

    try:
        return build(*args, **kwargs)
    except LlmsimError as exc:
        text = str(exc)
        if text.startswith(f"{where}: "):
            raise ConfigError(text) from None
        if field == "layout" and text[:3] in ("tp=", "pp="):  # "tp=3 does not divide the 32 heads ..."
            field = f"layout.{text[:2]}"
        raise ConfigError(f"{where}: {field}: {text}") from None


def _check_sim_kv(kv: dict, where: str) -> None:
    """The KV keys the simulator reads itself (the rest go to the KV manager, which checks its own)."""
    from llmsim.errors import ConfigError

    for key, integer in (("block_size", True), ("num_blocks", True), ("swap_space_gb", False)):
        if key not in kv:
            continue
        v = kv[key]
        ok = not isinstance(v, bool) and (isinstance(v, int) and v >= 1 if integer else
                                          isinstance(v, int | float) and 0 <= v < math.inf)
        if not ok:
            what = "a positive integer" if integer else "a finite number >= 0"
            raise ConfigError(f"{where}: kv.{key}: expected {what}, got {v!r}")


def preflight(point: Point) -> list[str]:
    """Fail fast, before any point runs (exit 2, file and field named), on what cannot be built or run:
    names and blocks, a TP/PP split or precision the model or hardware cannot take, a model that does not
    fit in memory (the simulator's own memory plan), a run too large for this machine's memory. Returns
    warnings to show once (a trace sorted by time, malformed trace rows skipped)."""
    from llmsim.cost import CostModel
    from llmsim.engines import load_engine, resolve_engine
    from llmsim.experiment.limits import check_run_size
    from llmsim.kv import KV_MANAGERS
    from llmsim.sched import SCHEDULERS
    from llmsim.sim.setup import default_kv_kind, deployment

    cfg, where = point.config, point.where
    model = _at(where, "model", load_model, cfg.model)
    hardware = _at(where, "hardware", load_hardware, cfg.hardware)
    precision = _at(where, "precision", Precision.parse, cfg.precision, cfg.kv_dtype)
    _at(where, "precision", hardware.peak_flops, precision.compute)
    layout = ParallelLayout(tp=cfg.layout.tp, pp=cfg.layout.pp, dp=cfg.layout.replicas)
    cost_model = _at(where, "layout", CostModel, model, hardware, layout, precision)
    engine = _at(where, "engine", load_engine, cfg.engine)
    runtime = _at(where, "scheduler", resolve_engine, engine, hardware, dict(cfg.scheduler), cfg.kv,
                  cfg.max_model_len)
    scheduler = SCHEDULERS.build(dict(runtime.scheduler_block), where=f"{where}: scheduler")
    kv = {"kind": runtime.kv_kind or default_kv_kind(runtime.scheduler_block), **(cfg.kv or {})}
    _check_sim_kv(kv, where)
    dep = _at(where, "layout", deployment, model, hardware, layout, precision, dict(cfg.scheduler),
              {**kv, "gpu_memory_utilization": cfg.memory.gpu_memory_utilization,
               "reserved_bytes": cfg.memory.reserved_bytes}, cfg.max_model_len,
              cost_model, engine)
    KV_MANAGERS.build(dep.kv_block, where=f"{where}: kv",
                      **{k: v for k, v in dep.kv_defaults.items() if k not in dep.kv_block})
    spec = load_point_workload(point)
    check_run_size(where, cfg.stop, spec, scheduler.max_num_seqs, model.max_context)
    return _workload_warnings(spec)


def _workload_warnings(spec) -> list[str]:
    trace = spec.trace
    if trace is None:
        return []
    notes = [f"{trace.path}: {note}" for note in trace.warnings]
    report = trace.malformed_report(limit=3)
    return notes + ([report] if report else [])


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
    kv = {**(cfg.kv or {}), "gpu_memory_utilization": cfg.memory.gpu_memory_utilization,
          "reserved_bytes": cfg.memory.reserved_bytes}
    result = simulate(stream, model=model, hardware=hardware, layout=layout, precision=precision,
                      scheduler=dict(cfg.scheduler), kv=kv, seed=point.seed,
                      frontend_overhead_s=cfg.frontend_overhead_s, arrivals_callback=callback,
                      max_time_s=max_time, engine=cfg.engine, max_model_len=cfg.max_model_len)
    result = _with_phases(result, point)
    summary = result.summary(slo=_slo(point) or None)
    summary["slo_target_attainment"] = cfg.slo.attainment
    gpus = layout.num_gpus
    summary["num_gpus"] = gpus
    summary["output_tokens_per_s_per_gpu"] = summary.get("output_tokens_per_s", 0.0) / gpus
    summary["throughput_rps_per_gpu"] = summary.get("throughput_rps", 0.0) / gpus
    summary = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in summary.items()}
    return summary, result.requests, result.steps
