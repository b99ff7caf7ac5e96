"""Run one sweep point: build specs, workload and cluster from the resolved config, simulate, summarise."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from llmsim.errors import ConfigError
from llmsim.experiment.sweep import Point, resolve_workload_ref
from llmsim.specs import load_model


def load_point_workload(point: Point):
    from llmsim.workload import load_workload

    cfg = point.config
    if isinstance(cfg.workload, str):
        return load_workload(resolve_workload_ref(cfg.workload, point.base_dir, point.where))
    return load_workload(cfg.workload, where=f"{point.where}: workload", base_dir=point.workload_dir)


def preflight(point: Point) -> list[str]:
    """Fail fast, before any point runs (exit 2, file and field named), on what cannot be built or run:
    names and blocks, a TP/PP split or precision the model or hardware cannot take, a model that does not
    fit in memory (the simulator's own memory plan), in every pool of a cluster, its links, routers and
    migration policy, a run too large for this machine's memory. Returns warnings to show once (a trace
    sorted by time, malformed trace rows skipped)."""
    from llmsim.experiment.cluster_build import at, build_cluster
    from llmsim.experiment.limits import check_run_size

    cfg, where = point.config, point.where
    model = at(where, "model", load_model, cfg.model)
    cluster, _ = build_cluster(cfg, model, where, check=True)
    seqs = min(int(p.deployment.scheduler_block.get("max_num_seqs") or 256) for p in cluster.pools)
    spec = load_point_workload(point)
    check_run_size(where, cfg.stop, spec, seqs, model.max_context)
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


def mark_phases(requests: pd.DataFrame, point: Point, inplace: bool = False) -> pd.DataFrame:
    """The requests table with its ``phase`` column (warmup / measured / cooldown, in arrival order);
    ``inplace``: added to ``requests`` itself, not to a copy."""
    from llmsim.metrics.window import mark_phases as mark

    stop = point.config.stop
    return mark(requests, warmup_requests=stop.warmup_requests, warmup_s=stop.warmup_s,
                cooldown_requests=stop.cooldown_requests, cooldown_s=stop.cooldown_s, inplace=inplace)


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

    requests = mark_phases(result.requests, point, inplace=True)  # the run's own table: no copy of it
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


def _per_resource(summary: dict, cluster) -> dict:
    """Throughput per GPU, per dollar (the profiles' indicative hourly prices) and per provisioned kilowatt
    (TDP): the figures Splitwise compares clusters by."""
    gpus = cluster.num_gpus
    out = {"num_gpus": gpus, "replicas": sum(p.replicas for p in cluster.pools)}
    tokens, rps = summary.get("output_tokens_per_s") or 0.0, summary.get("throughput_rps") or 0.0
    out["output_tokens_per_s_per_gpu"] = tokens / gpus
    out["throughput_rps_per_gpu"] = rps / gpus
    price, watts = summary.get("price_per_hour_usd") or 0.0, summary.get("tdp_w") or 0.0
    out["output_tokens_per_usd"] = tokens * 3600 / price if price else None
    out["output_tokens_per_s_per_kw"] = tokens / (watts / 1e3) if watts else None
    return out


def run_point(point: Point, transform=None, steps_spill: Path | None = None) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """Simulate one point; returns (summary dict, requests table, steps table). ``transform(cluster)``, if
    given, returns the cluster to simulate instead (``llmsim.trust.sensitivity`` perturbs cost models);
    ``steps_spill``: the scratch directory of a long run's step rows (see ``simulate_cluster``)."""
    from llmsim.experiment.cluster_build import build_cluster
    from llmsim.experiment.progress import track
    from llmsim.sim.cluster import simulate_cluster

    cfg = point.config
    model = load_model(cfg.model)
    cluster, _ = build_cluster(cfg, model, point.where)
    if transform is not None:
        cluster = transform(cluster)
    spec, stream = point_requests(point, model)
    stream = track(stream, point.id, cfg.stop.num_requests)  # progress on stderr; results unaffected
    callback, max_time = None, None
    sampling = cfg.sampling
    if (sampling.n > 1 or sampling.beam_width > 1) and spec.closed_loop is not None:
        raise ConfigError(f"{point.where}: sampling: parallel sampling and beam search with closed-loop users are "
                          "not modelled")
    if sampling.n > 1:
        from llmsim.workload.parallel import fan_out

        stream = fan_out(stream, sampling.n, sampling.share_prompt)
    if sampling.beam_width > 1:
        from llmsim.workload.beam import BeamSearch

        beams = BeamSearch(sampling.beam_width)
        stream, callback = beams.initial(stream), beams.callback
    if spec.closed_loop is not None:
        stream, callback = closed_loop_feed(spec.closed_loop, stream, point.seed)
        max_time = cfg.stop.duration_s
    result = simulate_cluster(cluster, stream, seed=point.seed, arrivals_callback=callback, max_time_s=max_time,
                              steps_spill=steps_spill)
    result = _with_phases(result, point)
    summary = result.summary(slo=_slo(point) or None)
    summary["slo_target_attainment"] = cfg.slo.attainment
    if sampling.n > 1:
        from llmsim.metrics.parallel import parent_summary

        summary.update(parent_summary(result.requests, sampling.n))
    if sampling.beam_width > 1:
        from llmsim.metrics.parallel import beam_summary

        summary.update(beam_summary(result.requests, sampling.beam_width))
    summary.update(_per_resource(summary, cluster))
    from llmsim.trust.annotate import annotate  # evidence grade and interval of each metric

    summary.update(annotate(summary, result, cluster))
    summary = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in summary.items()}
    return summary, result.requests, result.steps
