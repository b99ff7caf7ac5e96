"""Load-aware routers: least outstanding requests, least KV-cache use."""

from __future__ import annotations

from collections.abc import Sequence

from llmsim.routing.base import ROUTERS, ReplicaView, Router, least
from llmsim.workload.request import Request


@ROUTERS.register("least_outstanding")
class LeastOutstandingRouter(Router):
    """The replica with the fewest unfinished requests (queued + running + KV in flight; ties: lowest
    index), as Envoy's and vLLM production-stack's least-request balancing."""

    name = "least_outstanding"

    def pick(self, request: Request, replicas: Sequence[ReplicaView]) -> int:
        return least(replicas, lambda r: r.num_unfinished)


@ROUTERS.register("least_loaded")
class LeastLoadedRouter(LeastOutstandingRouter):
    """Alias of ``least_outstanding`` (the name llmsim used first)."""

    name = "least_loaded"


@ROUTERS.register("least_kv")
class LeastKVRouter(Router):
    """The replica whose KV cache is least used (ties: fewest unfinished requests, then lowest index)."""

    name = "least_kv"

    def pick(self, request: Request, replicas: Sequence[ReplicaView]) -> int:
        return least(replicas, lambda r: (r.kv_usage, r.num_unfinished))
