"""Random: each request to a replica drawn uniformly (the baseline of power-of-two-choices analyses)."""

from __future__ import annotations

from collections.abc import Sequence

from llmsim.routing.base import ROUTERS, ReplicaView, Router
from llmsim.workload.request import Request


@ROUTERS.register("random")
class RandomRouter(Router):
    """A replica drawn uniformly at random from the cluster's seeded routing generator."""

    name = "random"

    def pick(self, request: Request, replicas: Sequence[ReplicaView]) -> int:
        return int(self.rng.integers(len(replicas)))
