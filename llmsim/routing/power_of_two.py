"""Power of two choices (Mitzenmacher, 2001): sample two replicas, send to the less loaded one."""

from __future__ import annotations

from collections.abc import Sequence

from llmsim.errors import ConfigError
from llmsim.routing.base import ROUTERS, ReplicaView, Router
from llmsim.workload.request import Request

LOADS = ("outstanding", "kv")


@ROUTERS.register("power_of_two")
class PowerOfTwoRouter(Router):
    """Two distinct replicas drawn at random, the less loaded of them chosen; ``load``: ``outstanding``
    (unfinished requests, default) or ``kv`` (KV-cache use). Ties go to the first drawn."""

    name = "power_of_two"

    def __init__(self, load: str = "outstanding") -> None:
        if load not in LOADS:
            raise ConfigError(f'"load" must be one of {", ".join(LOADS)}, got {load!r}')
        self.load = load

    def _load(self, view: ReplicaView) -> float:
        return view.num_unfinished if self.load == "outstanding" else view.kv_usage

    def pick(self, request: Request, replicas: Sequence[ReplicaView]) -> int:
        n = len(replicas)
        if n == 1:
            return 0
        a, b = (int(x) for x in self.rng.choice(n, size=2, replace=False))
        return b if self._load(replicas[b]) < self._load(replicas[a]) else a
