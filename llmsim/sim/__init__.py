"""Discrete-event simulation of serving replicas (the only package that imports SimPy).

Public API::

    result = simulate(requests, model=..., hardware=..., layout=ParallelLayout(tp, pp, dp), precision=...,
                      scheduler={"kind": "vllm", "mode": "v1", ...}, kv={"kind": "prefix", ...}, seed=0,
                      frontend_overhead_s=0.0, max_time_s=None, router=None, max_model_len=None,
                      arrivals_callback=None, closed_loop=None)
    result.requests      # DataFrame, one row per request (llmsim.metrics.REQUEST_COLUMNS)
    result.steps         # DataFrame, one row per engine step (llmsim.metrics.STEP_COLUMNS)
    result.summary(slo={"ttft_s": 1.0, "tpot_s": 0.05})   # flat JSON-able dict
    result.overloaded    # truthy Overload(reason=...) when arrivals outpaced service
    result.info          # resolved configuration, KV capacity, capacity bound, block books

``Router`` (``pick(request, replicas) -> index``; ``RoundRobinRouter`` is the default,
``LeastLoadedRouter`` the other built-in) is the seam for multi-replica policies; routers register in
``ROUTERS`` by name. Schedulers and KV managers are chosen by name from ``llmsim.sched.SCHEDULERS`` and
``llmsim.kv.KV_MANAGERS``.
"""

from llmsim.sim.result import SimResult
from llmsim.sim.router import ROUTERS, LeastLoadedRouter, RoundRobinRouter, Router
from llmsim.sim.simulate import simulate

__all__ = ["ROUTERS", "LeastLoadedRouter", "RoundRobinRouter", "Router", "SimResult", "simulate"]
