"""Routers: pick the replica for each arriving request. The seam for multi-replica policies (and, later,
prefill/decode pairs): implement ``pick`` and register the class under a name."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from llmsim.registry import Registry
from llmsim.workload.request import Request


class ReplicaView(Protocol):
    """What a router may read of a replica."""

    index: int

    @property
    def num_unfinished(self) -> int: ...

    @property
    def kv_usage(self) -> float: ...


class Router:
    """Base class: ``pick(request, replicas) -> index`` into ``replicas``. Deterministic; state allowed."""

    name = "base"

    def pick(self, request: Request, replicas: Sequence[ReplicaView]) -> int:
        raise NotImplementedError


ROUTERS: Registry[Router] = Registry("router")


@ROUTERS.register("round_robin")
class RoundRobinRouter(Router):
    """Replicas in turn, as a plain load balancer does (the default)."""

    name = "round_robin"

    def __init__(self) -> None:
        self._next = 0

    def pick(self, request: Request, replicas: Sequence[ReplicaView]) -> int:
        i = self._next % len(replicas)
        self._next += 1
        return i


@ROUTERS.register("least_loaded")
class LeastLoadedRouter(Router):
    """The replica with the fewest unfinished requests (ties: lowest index)."""

    name = "least_loaded"

    def pick(self, request: Request, replicas: Sequence[ReplicaView]) -> int:
        return min(range(len(replicas)), key=lambda i: (replicas[i].num_unfinished, i))
