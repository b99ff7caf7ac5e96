"""``simulate_cluster(spec, requests)``: pools of replicas behind a router, KV moved over links between
prefill and decode pools, optional live migration; one SimPy clock for all of it.

A request arrives, reaches the engines after the front end's delay, and the router sends it to a mixed or
prefill replica; a prefill replica hands it to a decode replica (``llmsim.sim.handoff``). Replica indices
are global (pools in order), so the requests and steps tables read as one deployment's; ``SimResult.pools``
maps each pool to its replicas and role, ``SimResult.transfers`` lists every KV transfer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import simpy

from llmsim.errors import ConfigError
from llmsim.kv import KV_MANAGERS, SwapSpace
from llmsim.metrics.records import RequestLog, StepLog
from llmsim.metrics.summary import detect_overload
from llmsim.registry import Registry
from llmsim.routing import MIGRATIONS, ROUTERS, Router
from llmsim.sched import SCHEDULERS
from llmsim.sched.seq import Seq
from llmsim.sim.closed_loop import ClosedLoopDriver
from llmsim.sim.handoff import Disaggregation
from llmsim.sim.links import Network
from llmsim.sim.migrate import Migrator
from llmsim.sim.pool_replica import PoolReplica
from llmsim.sim.replica import Engine
from llmsim.sim.result import SimResult
from llmsim.sim.spec import ClusterSpec, PoolSpec
from llmsim.sim.spec_stats import seed_speculators, speculation_stats
from llmsim.sim.spec_timer import SpecStepTimer
from llmsim.sim.timer import StepTimer
from llmsim.speculative import Speculator, speculative_scheduler
from llmsim.workload.request import Request

ArrivalsCallback = Callable[[Request, float], Iterable[Request]]


def simulate_cluster(spec: ClusterSpec, requests: Iterable[Request], *, seed: int = 0,
                     max_time_s: float | None = None, arrivals_callback: ArrivalsCallback | None = None,
                     closed_loop: Any = None, max_run_steps: int = 256, check_invariants: bool = False,
                     record_steps: bool = True, steps_spill: Path | None = None) -> SimResult:
    """Simulate ``spec`` serving ``requests`` (non-decreasing ``arrival_s``); the keyword arguments mean what
    they mean for ``simulate``. ``seed`` seeds the request-noise generator and, separately, the routers'.
    ``steps_spill``: a scratch directory the step rows go to once they outgrow a block
    (``llmsim.metrics.spill``; the result's ``steps`` may then be a ``SpilledTable`` over it, which the
    caller removes when done with it)."""
    env = simpy.Environment()
    rng = np.random.default_rng(seed)
    entry = [p for p in spec.pools if p.role != "decode"]
    emitter = next(p for p in spec.pools if p.role != "prefill")  # streams the tokens the client sees
    req_log = RequestLog(spec.frontend_overhead_s + emitter.deployment.runtime.frontend.token_s)
    step_log = StepLog(keep_rows=record_steps, spill=steps_spill)
    feeder = _Feeder(env, _build_router(spec.router, "router", seed, 1), rng, arrivals_callback,
                     entry[0].deployment.runtime.frontend.request_s)
    replicas = _build_replicas(env, spec, step_log, req_log, feeder.on_end, max_run_steps, check_invariants, seed)
    network = Network(env, spec, [r.pool for r in replicas], [_gpus(spec.pool(r.pool)) for r in replicas])
    handoff = _disaggregation(env, spec, replicas, network, req_log, feeder.on_end, seed)
    migrators = _migrators(env, spec, replicas, network, handoff)
    feeder.replicas = [r for r in replicas if r.role != "decode"]
    seed_speculators([(r.index, e) for r in replicas for e in r.engines], seed)
    if closed_loop is None:
        env.process(feeder.source(iter(requests)))
    else:
        feeder.loop = ClosedLoopDriver(env, closed_loop, iter(requests), rng, feeder.send)
        feeder.loop.start()
    env.run(until=max_time_s)
    in_transit = (len(handoff.in_flight) if handoff else 0) + sum(
        sum(1 for s, _ in m.in_flight.values() if s.status == "migrating") for m in migrators)
    unfinished = sum(r.num_resident for r in replicas) + in_transit
    for replica in replicas:
        replica.report_unfinished()
        for eng in replica.engines:  # adapters paged in the KV pool give their blocks back (llmsim.lora.unified)
            if hasattr(eng.lora, "release_all"):
                eng.lora.release_all()
    if handoff is not None:
        handoff.report_unfinished()
    for m in migrators:
        m.report_unfinished(req_log)
    requests_df, steps_df = req_log.frame(release=True), step_log.frame(release=True)
    overload = detect_overload(requests_df, steps_df, unfinished, env.now)
    info = _info(spec, replicas, network, migrators, seed=seed, unfinished=unfinished, end_s=float(env.now))
    if not record_steps:
        info["steps_recorded"], info["steps_simulated"] = False, step_log.num_rows
    info.update(speculation_stats([e.sched for r in replicas for e in r.engines], steps_df))
    pools = {p.name: (p.role, tuple(r.index for r in replicas if r.pool == p.name)) for p in spec.pools}
    return SimResult(requests_df, steps_df, overload, step_log.itl, info, pools=pools,
                     transfers=network.log.frame(), power=_power(spec, replicas))


def _power(spec: ClusterSpec, replicas: list[PoolReplica]) -> tuple:
    """Each replica's power figures and price (``llmsim.cost.energy``); none for a profile without a TDP."""
    from llmsim.cost.energy import replica_power

    out = []
    for r in replicas:
        dep = spec.pool(r.pool).deployment
        if dep.hardware.tdp_w <= 0:
            return ()
        capped = getattr(getattr(r.timer, "cm", None), "power", None) is not None  # its steps run capped
        out.append(replica_power(dep.hardware, dep.layout.tp * dep.layout.pp, dep.precision.compute, capped))
    return tuple(out)


def _gpus(pool: PoolSpec) -> int:
    return pool.gpus_per_replica


def _build_router(router: Router | Mapping[str, Any] | None, where: str, seed: int, stream: int) -> Router:
    if router is None:
        built = ROUTERS.build({"kind": "round_robin"}, where=where)
    elif isinstance(router, Router):
        built = router
    else:
        built = ROUTERS.build(router, where=where)
    built.bind(np.random.default_rng([seed, stream]))  # routing draws do not shift the request noise
    return built


def _build_with(registry: Registry, block: Mapping[str, Any], where: str, **defaults: Any):
    """Build ``block`` with ``defaults`` for the keys it does not set."""
    return registry.build(block, where=where, **{k: v for k, v in defaults.items() if k not in block})


def _adapter_tables(spec: ClusterSpec, seed: int) -> dict:
    """One adapter table per LoRA spec of the cluster (its own random stream: other draws do not shift)."""
    from llmsim.lora import AdapterTable

    # keyed by value: pools built from the same lora: block (prefill and decode pools) share one draw per request
    specs = {p.deployment.lora for p in spec.pools if p.deployment.lora is not None}
    return {s: AdapterTable(s, np.random.default_rng([seed, 3])) for s in specs}


def _build_replicas(env, spec: ClusterSpec, steps: StepLog, requests: RequestLog, on_end, max_run_steps: int,
                    check_invariants: bool, seed: int = 0) -> list[PoolReplica]:
    replicas: list[PoolReplica] = []
    tables = _adapter_tables(spec, seed)
    for pool in spec.pools:
        dep = pool.deployment
        link = SwapSpace(0, dep.block_bytes, dep.host_link.bytes_per_s, dep.host_link.latency_s)  # PCIe timing
        timer = _timer(dep, link)
        for _ in range(pool.replicas):
            engines = _engines(pool, tables, timer)
            replicas.append(PoolReplica(env, len(replicas), engines, timer, steps, requests, on_end, max_run_steps,
                                        check_invariants, pool=pool.name, role=pool.role))
    return replicas


def _timer(dep, link: SwapSpace) -> StepTimer:
    args = (dep.cost_model, dep.runtime, link, dep.kv_bytes_per_token_replica, dep.max_model_len)
    if dep.speculative is None:
        return StepTimer(*args)
    return SpecStepTimer(*args, proposer=dep.speculative.proposer)


def _lora_runtime(dep, table):
    """A multi-LoRA runtime for one engine of ``dep`` (None without adapters)."""
    if dep.lora is None:
        return None
    from functools import partial

    from llmsim.cost.lora import adapter_bytes, lora_step_s
    from llmsim.lora import LoraRuntime

    spec, link = dep.lora, dep.host_link
    kernel = partial(lora_step_s, spec, dep.model, dep.layout, dep.precision, dep.hardware)

    def load_s(adapter: int) -> float:
        return link.latency_s + adapter_bytes(spec, dep.model, dep.layout, dep.precision, adapter) / link.bytes_per_s

    if spec.mode == "unified":
        from llmsim.lora.unified import UnifiedLoraRuntime

        return UnifiedLoraRuntime(spec, table, kernel, load_s,
                                  partial(adapter_bytes, spec, dep.model, dep.layout, dep.precision), dep.block_bytes)
    return LoraRuntime(spec, table, kernel, load_s)


def _engines(pool: PoolSpec, tables: dict | None = None, timer: StepTimer | None = None) -> list[Engine]:
    dep = pool.deployment
    engines = []
    pp = dep.layout.pp
    for ve in range(pp):
        kv = _build_with(KV_MANAGERS, dep.kv_block, "kv", **dep.kv_defaults)
        swap = SwapSpace(dep.swap_blocks // pp, dep.block_bytes, dep.host_link.bytes_per_s,
                         dep.host_link.latency_s) if dep.swap_blocks else None
        sched = SCHEDULERS.build(dep.scheduler_block, where="scheduler")
        sched.bind(kv, swap, dep.max_model_len)
        if dep.lora is not None:
            sched.lora = _lora_runtime(dep, (tables or {})[dep.lora])
            if hasattr(sched.lora, "bind"):
                sched.lora.bind(sched)
        if dep.speculative is not None:
            spec = Speculator(dep.speculative)
            spec.estimate_s = getattr(timer, "estimate_s", None)
            speculative_scheduler(sched, spec)
        if not sched.adoptable and (pool.role == "decode"):
            raise ConfigError(f"cluster.pools.{pool.name}.scheduler: a decode pool needs a scheduler that takes in "
                              f"running requests; {sched.name} does not")
        engines.append(Engine(sched, kv, ve))
    return engines


def _disaggregation(env, spec: ClusterSpec, replicas: list[PoolReplica], network: Network, requests: RequestLog,
                    on_end, seed: int) -> Disaggregation | None:
    prefill = [p for p in spec.pools if p.role == "prefill"]
    if not prefill:
        return None
    dep = prefill[0].deployment
    router = _build_router(spec.decode_router, "decode_router", seed, 2)
    return Disaggregation(env, replicas, router, network, requests, on_end, dep.kv_bytes_per_token_replica,
                          dep.model.num_layers, layerwise=spec.transfer == "layerwise",
                          decode_first=spec.first_token == "decode")


def _migrators(env, spec: ClusterSpec, replicas: list[PoolReplica], network: Network, handoff) -> list[Migrator]:
    if not spec.migration:
        return []
    out = []
    for pool in spec.pools:
        members = [r for r in replicas if r.pool == pool.name]
        if pool.role == "prefill" or len(members) < 2:
            continue
        if not all(e.sched.adoptable for r in members for e in r.engines):
            raise ConfigError(f"migration: pool {pool.name}'s scheduler cannot take in running requests")
        policy = MIGRATIONS.build(spec.migration, where="migration")
        m = Migrator(env, policy, members, network, pool.deployment.kv_bytes_per_token_replica,
                     handoff if pool.role == "decode" else None)
        for r in members:
            r.migrator = m
        out.append(m)
    return out


def _kv_stats(replicas: list[PoolReplica]) -> dict[str, int | float]:
    """Block books (allocated must equal freed at the end), prefix-cache hits and misses, swap traffic."""
    engines = [e for r in replicas for e in r.engines]
    kvs = [e.kv for e in engines]
    swaps = [e.sched.swap for e in engines if e.sched.swap is not None]
    query = sum(getattr(kv, "num_query_tokens", 0) for kv in kvs)
    hits = sum(getattr(kv, "num_hit_tokens", 0) for kv in kvs)
    tiers: dict[str, float] = {}
    for kv in kvs:  # KV hierarchy (llmsim.kv.tiers): per-tier hits, writes, evictions, loads
        for key, value in (kv.tier_stats() if hasattr(kv, "tier_stats") else {}).items():
            tiers[key] = tiers.get(key, 0) + value
    if tiers and query:
        tiers["kv_gpu_hit_rate"] = hits / query
        tiers["kv_cpu_hit_rate"] = tiers["kv_cpu_hit_tokens"] / query
        tiers["kv_disk_hit_rate"] = tiers["kv_disk_hit_tokens"] / query
    return {**tiers,
        "kv_blocks_allocated": sum(kv.num_allocated for kv in kvs),
        "kv_blocks_freed": sum(kv.num_freed for kv in kvs),
        "prefix_query_tokens": query, "prefix_cached_tokens": hits, "prefix_miss_tokens": query - hits,
        "prefix_hit_rate": hits / query if query else 0.0,
        "prefix_evicted_blocks": sum(getattr(kv, "num_evicted", 0) for kv in kvs),
        "swap_out_blocks": sum(s.num_swapped_out for s in swaps),
        "swap_in_blocks": sum(s.num_swapped_in for s in swaps),
    }


def _lora_stats(replicas: list[PoolReplica]) -> dict[str, float]:
    """Adapter loads (count, seconds), LoRA kernel seconds and distinct adapters per step, over all engines."""
    runs = [e.lora for r in replicas for e in r.engines if e.lora is not None]
    if not runs:
        return {}
    stats = [r.stats() for r in runs]
    steps = sum(s["lora_steps"] for s in stats)
    out = {k: sum(s[k] for s in stats) for k in ("lora_loads", "lora_load_s", "lora_kernel_s", "lora_steps")}
    out["lora_distinct_per_step"] = sum(s["lora_distinct_per_step"] * s["lora_steps"] for s in stats) / steps \
        if steps else 0.0
    return out


def _info(spec: ClusterSpec, replicas: list[PoolReplica], network: Network, migrators: list[Migrator],
          **run: Any) -> dict[str, Any]:
    first = spec.pools[0].deployment
    runtime = next(p for p in spec.pools if p.role != "decode").deployment.runtime
    info = dict(first.info, **run, frontend_overhead_s=spec.frontend_overhead_s,
                frontend_request_s=runtime.frontend.request_s, frontend_token_s=runtime.frontend.token_s)
    info["cost_calls"] = sum({id(r.timer): r.timer.num_calls for r in replicas}.values())
    info.update(_kv_stats(replicas))
    info.update(_lora_stats(replicas))
    info.update(cluster_totals(spec))
    if not spec.is_single:
        info.update(spec.info)
        for pool in spec.pools:
            members = [r for r in replicas if r.pool == pool.name]
            for key, value in _kv_stats(members).items():
                if key.startswith("prefix_") and key != "prefix_evicted_blocks":
                    info[f"pool.{pool.name}.{key}"] = value
        info.update(network.stats())
    if migrators:
        stats = [m.stats() for m in migrators]
        info["migrations"] = sum(s["migrations"] for s in stats)
        info["migrations_aborted"] = sum(s["migrations_aborted"] for s in stats)
        downtimes = [d for m in migrators for d in m.downtime_s]
        info["migration_downtime_mean_s"] = float(np.mean(downtimes)) if downtimes else 0.0
        info["migration_downtime_max_s"] = max(downtimes, default=0.0)
    return info


def cluster_totals(spec: ClusterSpec) -> dict[str, Any]:
    """Whole-cluster figures: GPUs, peaks (for MFU / MBU), the capacity bound, price and power; and each
    pool's role, hardware, layout and KV capacity (``pool.NAME.*``) when there is more than one pool."""
    pools = spec.pools
    out: dict[str, Any] = {
        "num_gpus": spec.num_gpus,
        "price_per_hour_usd": sum(p.replicas * _gpus(p) * p.deployment.hardware.price_per_hour_usd for p in pools),
        "tdp_w": sum(p.replicas * _gpus(p) * p.deployment.hardware.tdp_w for p in pools),
    }
    if len(pools) == 1:
        return out
    out["dp"] = sum(p.replicas for p in pools)
    out["hardware"] = "+".join(dict.fromkeys(p.deployment.hardware.name for p in pools))
    for key in ("peak_flops_per_s", "peak_hbm_bytes_per_s", "capacity_tokens_per_s"):  # pool totals already
        out[key] = sum(p.deployment.info[key] for p in pools)
    out["pools"] = ",".join(p.name for p in pools)
    out["transfer"] = spec.transfer
    out["first_token"] = spec.first_token
    for p in pools:
        d = p.deployment
        out.update({f"pool.{p.name}.role": p.role, f"pool.{p.name}.replicas": p.replicas,
                    f"pool.{p.name}.hardware": d.hardware.name, f"pool.{p.name}.tp": d.layout.tp,
                    f"pool.{p.name}.pp": d.layout.pp, f"pool.{p.name}.engine": d.info["engine"],
                    f"pool.{p.name}.scheduler": d.info["scheduler"],
                    f"pool.{p.name}.num_blocks_per_replica": d.info["num_blocks_per_replica"]})
    return out


class _Feeder:
    """Feeds requests to replicas through the router, in arrival order, and injects closed-loop ones."""

    def __init__(self, env: simpy.Environment, router: Router, rng: np.random.Generator,
                 callback: ArrivalsCallback | None, delay_s: float = 0.0) -> None:
        self.env = env
        self.delay_s = delay_s  # client send -> engine (front end)
        self.router = router
        self.rng = rng
        self.callback = callback
        self.replicas: list[PoolReplica] = []
        self.loop: ClosedLoopDriver | None = None
        self._last = 0.0
        self._submitted = 0

    def source(self, requests: Iterator[Request]):
        for req in requests:
            if req.arrival_s < self._last:
                raise ConfigError(f"requests: arrival_s must be non-decreasing (request {req.id} arrives at "
                                  f"{req.arrival_s} after one at {self._last})")
            self._last = req.arrival_s
            at = req.arrival_s + self.delay_s
            if at > self.env.now:
                yield self.env.timeout(at - self.env.now)
            self.submit(req)

    def send(self, req: Request) -> None:
        """A client sends ``req`` now: it reaches the engine after the front-end delay."""
        if self.delay_s > 0:
            self.env.process(self._later(req))
        else:
            self.submit(req)

    def submit(self, req: Request) -> None:
        self._submitted += 1
        seq = Seq(req, noise=float(self.rng.standard_normal()), key=self._submitted)
        self.replicas[self.router.pick(req, self.replicas)].submit(seq)

    def on_end(self, seq: Seq, client_time_s: float) -> None:
        if self.loop is not None:
            self.loop.on_end(seq.req, client_time_s)
        if self.callback is None:
            return
        for req in self.callback(seq.req, client_time_s) or ():
            if req.arrival_s < client_time_s - 1e-12:
                raise ConfigError(f"arrivals_callback: request {req.id} arrives at {req.arrival_s}, before "
                                  f"the end ({client_time_s}) that triggered it")
            self.env.process(self._later(req))

    def _later(self, req: Request):
        yield self.env.timeout(max(0.0, req.arrival_s + self.delay_s - self.env.now))
        self.submit(req)
