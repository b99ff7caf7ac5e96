"""The router contract: a pure policy that picks a replica for each arriving request from a narrow view of
each candidate's load and cache. Routers register in ``ROUTERS`` by name; ``{kind: NAME, ...}`` builds one.

A router sees only ``ReplicaView``s (no SimPy, no clock). Policies that draw at random get a seeded
``numpy.random.Generator`` through ``bind`` (the cluster's routing stream), so runs stay reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from llmsim.registry import Registry
from llmsim.workload.request import Request


class ReplicaView(Protocol):
    """What a router may read of a replica: its position in the cluster, the requests it holds (queued,
    running, and for a decode replica those whose KV is on its way), how full its KV cache is, and how many
    leading prompt tokens of a request it already caches."""

    index: int

    @property
    def num_unfinished(self) -> int: ...

    @property
    def kv_usage(self) -> float: ...

    def cached_prefix_tokens(self, request: Request) -> int: ...


class Router:
    """Base class: ``pick(request, replicas) -> index`` into ``replicas`` (never empty). Deterministic given
    the generator ``bind`` hands it; state allowed (a round-robin cursor)."""

    name = "base"

    def bind(self, rng: np.random.Generator) -> None:
        """Receive the cluster's routing generator (called once before the first ``pick``)."""
        self.rng = rng

    def pick(self, request: Request, replicas: Sequence[ReplicaView]) -> int:
        raise NotImplementedError


ROUTERS: Registry[Router] = Registry("router")


def least(replicas: Sequence[ReplicaView], key) -> int:
    """Index of the replica with the smallest ``key(view)``; ties go to the lowest index."""
    return min(range(len(replicas)), key=lambda i: (key(replicas[i]), i))


def check_fraction(name: str, value: object, low: float = 0.0, high: float = 1.0) -> float:
    from llmsim.errors import ConfigError

    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ConfigError(f'"{name}" must be a number in [{low:g}, {high:g}], got {value!r}')
    return float(value)
