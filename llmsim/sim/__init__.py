"""Discrete-event simulation of serving replicas and clusters (the only package that imports SimPy).

Public API::

    result = simulate(requests, model=..., hardware=..., layout=ParallelLayout(tp, pp, dp), precision=...,
                      scheduler={"kind": "vllm", "mode": "v1", ...}, kv={"kind": "prefix", ...}, seed=0,
                      frontend_overhead_s=0.0, max_time_s=None, router=None, max_model_len=None,
                      arrivals_callback=None, closed_loop=None)
    result = simulate_cluster(ClusterSpec(pools, links, router=..., decode_router=..., transfer="whole",
                                          first_token="prefill", migration=None), requests, seed=0)
    result.requests      # DataFrame, one row per request (llmsim.metrics.REQUEST_COLUMNS)
    result.steps         # DataFrame, one row per engine step (llmsim.metrics.STEP_COLUMNS)
    result.transfers     # DataFrame, one row per KV transfer over a link (llmsim.sim.links)
    result.summary(slo={"ttft_s": 1.0, "tpot_s": 0.05})   # flat JSON-able dict (pool.NAME.* per pool)
    result.overloaded    # truthy Overload(reason=...) when arrivals outpaced service
    result.info          # resolved configuration, KV capacity, capacity bound, block books

``simulate`` is the one-pool cluster. Pools (``llmsim.sim.spec.pool_spec``) are ``mixed``, ``prefill`` or
``decode``; KV moves between them over SimPy link ports (``llmsim.sim.links``, ``llmsim.sim.handoff``);
live migration is ``llmsim.sim.migrate``. Routers and migration policies are pure and live in
``llmsim.routing`` (``ROUTERS``, ``Router`` are re-exported here); schedulers and KV managers are chosen by
name from ``llmsim.sched.SCHEDULERS`` and ``llmsim.kv.KV_MANAGERS``.
"""

from typing import TYPE_CHECKING

from llmsim.lazy import lazy_exports

_EXPORTS = {"simulate_cluster": "cluster", "SimResult": "result", "ROUTERS": "router", "LeastLoadedRouter": "router",
            "RoundRobinRouter": "router", "Router": "router", "simulate": "simulate", "ClusterSpec": "spec",
            "LinkSpec": "spec", "PoolSpec": "spec", "pool_spec": "spec"}
__getattr__ = lazy_exports(__name__, _EXPORTS, globals())  # SimPy and pandas only when a name is used
__all__ = ["ROUTERS", "ClusterSpec", "LeastLoadedRouter", "LinkSpec", "PoolSpec", "RoundRobinRouter", "Router",
           "SimResult", "pool_spec", "simulate", "simulate_cluster"]

if TYPE_CHECKING:
    from llmsim.sim.cluster import simulate_cluster
    from llmsim.sim.result import SimResult
    from llmsim.sim.router import ROUTERS, LeastLoadedRouter, RoundRobinRouter, Router
    from llmsim.sim.simulate import simulate
    from llmsim.sim.spec import ClusterSpec, LinkSpec, PoolSpec, pool_spec
