"""Round robin: replicas in turn, as a plain load balancer (nginx, Kubernetes services) does."""

from __future__ import annotations

from collections.abc import Sequence

from llmsim.routing.base import ROUTERS, ReplicaView, Router
from llmsim.workload.request import Request


@ROUTERS.register("round_robin")
class RoundRobinRouter(Router):
    """Replicas in turn (the default)."""

    name = "round_robin"

    def __init__(self) -> None:
        self._next = 0

    def pick(self, request: Request, replicas: Sequence[ReplicaView]) -> int:
        i = self._next % len(replicas)
        self._next += 1
        return i
