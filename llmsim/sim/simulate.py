"""``simulate(requests, ...)``: build replicas from specs and policy blocks, feed the requests, run SimPy."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import simpy

from llmsim.errors import ConfigError
from llmsim.kv import KV_MANAGERS, SwapSpace
from llmsim.metrics.records import RequestLog, StepLog
from llmsim.metrics.summary import detect_overload
from llmsim.registry import Registry
from llmsim.sched import SCHEDULERS
from llmsim.sched.seq import Seq
from llmsim.sim.closed_loop import ClosedLoopDriver
from llmsim.sim.replica import Engine, Replica
from llmsim.sim.result import SimResult
from llmsim.sim.router import ROUTERS, Router
from llmsim.sim.setup import Deployment, deployment
from llmsim.sim.timer import StepTimer
from llmsim.workload.request import Request

ArrivalsCallback = Callable[[Request, float], Iterable[Request]]


def simulate(requests: Iterable[Request], *, model, hardware, layout=None, precision=None,
             scheduler: Mapping[str, Any] | None = None, kv: Mapping[str, Any] | None = None, seed: int = 0,
             frontend_overhead_s: float = 0.0, max_time_s: float | None = None,
             router: Router | Mapping[str, Any] | None = None, max_model_len: int | None = None,
             arrivals_callback: ArrivalsCallback | None = None, closed_loop: Any = None, cost_model=None,
             max_run_steps: int = 256, check_invariants: bool = False, engine: Any = None) -> SimResult:
    """Simulate ``layout.dp`` replicas serving ``requests`` (iterable in non-decreasing ``arrival_s``).

    ``model`` / ``hardware``: specs or names; ``layout`` (default tp=pp=dp=1) and ``precision`` (default
    bf16) too. ``scheduler``: ``{kind: NAME, ...}`` (default ``{kind: vllm}``, i.e. v1); ``kv``: ``{kind:
    paged|prefix|contiguous, block_size, gpu_memory_utilization, num_blocks, swap_space_gb, ...}`` (default
    prefix for vllm v1 / sjf, contiguous for static / orca, paged otherwise). ``seed`` seeds the one
    generator (predictor noise). ``frontend_overhead_s`` is added to TTFT and E2E. ``max_time_s`` stops
    the clock (unfinished requests then count toward overload). ``router``: a ``Router`` or ``{kind:
    round_robin|least_loaded}``. ``arrivals_callback(request, end_time_s)`` is called when a request ends
    (finished or rejected) at the client-side time ``end_time_s`` and returns further requests (arrival
    >= that time) to inject. ``closed_loop`` (an object with ``users``, ``start_times_s()`` and
    ``think_s(rng)``, e.g. the workload package's ``ClosedLoop``) makes ``requests`` the contents users
    send in turn, their ``arrival_s`` set when sent (see ``llmsim.sim.closed_loop``). ``cost_model``
    overrides the ``CostModel`` (tests). ``max_run_steps`` caps collapsed decode runs (1 = no collapsing).
    ``check_invariants`` checks scheduler and KV books after every step (tests). ``engine``: an engine
    profile (``EngineProfile``, a name such as ``"vllm-0.15"``, or ``{name: ..., **overrides}``; default the
    generic engine): its defaults fill what ``scheduler`` and ``kv`` leave unset, and its runtime (CUDA
    graphs, async scheduling, CPU and front-end costs) times the steps. A request reaches the engine
    ``frontend.request_s`` after it arrives; every token reaches the client ``frontend.token_s`` (plus
    ``frontend_overhead_s``) after the engine emits it.
    """
    dep = deployment(model, hardware, layout, precision, scheduler, kv, max_model_len, cost_model, engine)
    runtime = dep.runtime
    env = simpy.Environment()
    rng = np.random.default_rng(seed)
    req_log, step_log = RequestLog(frontend_overhead_s + runtime.frontend.token_s), StepLog()
    feeder = _Feeder(env, _build_router(router), rng, arrivals_callback, runtime.frontend.request_s)
    link = SwapSpace(0, dep.block_bytes, dep.host_link.bytes_per_s, dep.host_link.latency_s)  # PCIe timing
    timer = StepTimer(dep.cost_model, runtime, link, dep.kv_bytes_per_token_replica, dep.max_model_len)
    replicas = [_build_replica(env, i, dep, timer, step_log, req_log, feeder.on_end, max_run_steps,
                               check_invariants) for i in range(dep.layout.dp)]
    feeder.replicas = replicas
    if closed_loop is None:
        env.process(feeder.source(iter(requests)))
    else:
        feeder.loop = ClosedLoopDriver(env, closed_loop, iter(requests), rng, feeder.send)
        feeder.loop.start()
    env.run(until=max_time_s)
    unfinished = sum(r.num_unfinished for r in replicas)
    for replica in replicas:
        replica.report_unfinished()
    requests_df, steps_df = req_log.frame(), step_log.frame()
    overload = detect_overload(requests_df, steps_df, unfinished, env.now)
    info = dict(dep.info, seed=seed, frontend_overhead_s=frontend_overhead_s,
                frontend_request_s=runtime.frontend.request_s, frontend_token_s=runtime.frontend.token_s,
                unfinished=unfinished,
                end_s=float(env.now), cost_calls=timer.num_calls, **_kv_stats(replicas))
    return SimResult(requests_df, steps_df, overload, step_log.itl, info)


def _kv_stats(replicas: list[Replica]) -> dict[str, int | float]:
    """Block books (allocated must equal freed at the end), prefix-cache hits and misses, swap traffic."""
    engines = [e for r in replicas for e in r.engines]
    kvs = [e.kv for e in engines]
    swaps = [e.sched.swap for e in engines if e.sched.swap is not None]
    query = sum(getattr(kv, "num_query_tokens", 0) for kv in kvs)
    hits = sum(getattr(kv, "num_hit_tokens", 0) for kv in kvs)
    return {
        "kv_blocks_allocated": sum(kv.num_allocated for kv in kvs),
        "kv_blocks_freed": sum(kv.num_freed for kv in kvs),
        "prefix_query_tokens": query, "prefix_cached_tokens": hits, "prefix_miss_tokens": query - hits,
        "prefix_hit_rate": hits / query if query else 0.0,
        "prefix_evicted_blocks": sum(getattr(kv, "num_evicted", 0) for kv in kvs),
        "swap_out_blocks": sum(s.num_swapped_out for s in swaps),
        "swap_in_blocks": sum(s.num_swapped_in for s in swaps),
    }


def _build_router(router: Router | Mapping[str, Any] | None) -> Router:
    if router is None:
        return ROUTERS.build({"kind": "round_robin"}, where="router")
    if isinstance(router, Router):
        return router
    return ROUTERS.build(router, where="router")


def _build_with(registry: Registry, block: Mapping[str, Any], where: str, **defaults: Any):
    """Build ``block`` with ``defaults`` for the keys it does not set."""
    return registry.build(block, where=where, **{k: v for k, v in defaults.items() if k not in block})


def _build_replica(env, index: int, dep: Deployment, timer: StepTimer, steps: StepLog, requests: RequestLog,
                   on_end, max_run_steps: int, check_invariants: bool) -> Replica:
    engines = []
    pp = dep.layout.pp
    for ve in range(pp):
        kv = _build_with(KV_MANAGERS, dep.kv_block, "kv", **dep.kv_defaults)
        swap = SwapSpace(dep.swap_blocks // pp, dep.block_bytes, dep.host_link.bytes_per_s,
                         dep.host_link.latency_s) if dep.swap_blocks else None
        sched = SCHEDULERS.build(dep.scheduler_block, where="scheduler")
        sched.bind(kv, swap, dep.max_model_len)
        engines.append(Engine(sched, kv, ve))
    return Replica(env, index, engines, timer, steps, requests, on_end, max_run_steps, check_invariants)


class _Feeder:
    """Feeds requests to replicas through the router, in arrival order, and injects closed-loop ones."""

    def __init__(self, env: simpy.Environment, router: Router, rng: np.random.Generator,
                 callback: ArrivalsCallback | None, delay_s: float = 0.0) -> None:
        self.env = env
        self.delay_s = delay_s  # client send -> engine (front end)
        self.router = router
        self.rng = rng
        self.callback = callback
        self.replicas: list[Replica] = []
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
