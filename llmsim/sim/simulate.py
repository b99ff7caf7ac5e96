"""``simulate(requests, ...)``: one deployment of ``layout.dp`` replicas behind a router, i.e. the one-pool
cluster (``llmsim.sim.cluster.simulate_cluster`` runs any ``ClusterSpec``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from llmsim.routing import Router
from llmsim.sim.cluster import ArrivalsCallback, simulate_cluster
from llmsim.sim.result import SimResult
from llmsim.sim.setup import deployment
from llmsim.sim.spec import ClusterSpec
from llmsim.workload.request import Request


def simulate(requests: Iterable[Request], *, model, hardware, layout=None, precision=None,
             scheduler: Mapping[str, Any] | None = None, kv: Mapping[str, Any] | None = None, seed: int = 0,
             frontend_overhead_s: float = 0.0, max_time_s: float | None = None,
             router: Router | Mapping[str, Any] | None = None, max_model_len: int | None = None,
             arrivals_callback: ArrivalsCallback | None = None, closed_loop: Any = None, cost_model=None,
             max_run_steps: int = 256, check_invariants: bool = False, engine: Any = None,
             record_steps: bool = True, speculative: Mapping[str, Any] | None = None) -> SimResult:
    """Simulate ``layout.dp`` replicas serving ``requests`` (iterable in non-decreasing ``arrival_s``).

    ``model`` / ``hardware``: specs or names; ``layout`` (default tp=pp=dp=1) and ``precision`` (default
    bf16) too. ``scheduler``: ``{kind: NAME, ...}`` (default ``{kind: vllm}``, i.e. v1); ``kv``: ``{kind:
    paged|prefix|contiguous, block_size, gpu_memory_utilization, num_blocks, swap_space_gb, ...}`` (default
    prefix for vllm v1 / sjf, contiguous for static / orca, paged otherwise). ``seed`` seeds the one
    generator (predictor noise). ``frontend_overhead_s`` is added to TTFT and E2E. ``max_time_s`` stops
    the clock (unfinished requests then count toward overload). ``router``: a ``Router`` or ``{kind:
    NAME, ...}`` from ``llmsim.routing.ROUTERS``. ``arrivals_callback(request, end_time_s)`` is called when a request ends
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
    ``frontend_overhead_s``) after the engine emits it. ``record_steps=False`` keeps no row per step (runs of
    millions of requests): ``result.steps`` is then empty, the summary's step statistics (KV utilisation, MFU,
    Little's L, ...) are None and ``info["steps_simulated"]`` counts the steps. ``speculative``: a
    ``speculative:`` block (``llmsim.speculative.config``) turns on speculative decoding.
    """
    dep = deployment(model, hardware, layout, precision, scheduler, kv, max_model_len, cost_model, engine)
    if speculative is not None:
        from llmsim.speculative import attach_speculative

        dep = attach_speculative(dep, speculative, user_num_blocks="num_blocks" in (kv or {}))
    spec = ClusterSpec.single(dep, router=router, frontend_overhead_s=frontend_overhead_s)
    return simulate_cluster(spec, requests, seed=seed, max_time_s=max_time_s, arrivals_callback=arrivals_callback,
                            closed_loop=closed_loop, max_run_steps=max_run_steps, check_invariants=check_invariants,
                            record_steps=record_steps)
