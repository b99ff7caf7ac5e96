"""Live-migration decisions (Llumnix, OSDI'24): when the load of the replicas in a pool is imbalanced by more
than a threshold, move a running request from the most to the least loaded replica.

Pure decision logic, like a router: the cluster process (``llmsim.sim.migrate``) measures the loads, asks
``pick_pair`` and ``pick_request`` every ``interval_s``, and pays the KV transfer on the link. Load is
Llumnix's "virtual usage" in spirit: the fraction of a replica's KV blocks held by its requests plus those
its queued requests need (so a replica with a queue looks loaded before its cache fills).
"""

from __future__ import annotations

from collections.abc import Sequence

from llmsim.errors import ConfigError
from llmsim.registry import Registry
from llmsim.routing.base import check_fraction

MIGRATIONS: Registry[MigrationPolicy] = Registry("migration policy")


class MigrationPolicy:
    """``pick_pair(loads) -> (source, destination)`` or None; ``pick_request(candidates) -> index``, where a
    candidate is ``(tokens in its KV, priority)`` of a running, decoding request on the source."""

    name = "base"
    interval_s = 0.05
    max_in_flight = 1

    def pick_pair(self, loads: Sequence[float]) -> tuple[int, int] | None:
        raise NotImplementedError

    def pick_request(self, candidates: Sequence[tuple[int, int]]) -> int:
        raise NotImplementedError


def _positive(name: str, value: object, integer: bool = False) -> float:
    ok = not isinstance(value, bool) and isinstance(value, int if integer else int | float) and value > 0
    if not ok or value != value or value == float("inf"):
        raise ConfigError(f'"{name}" must be a {"positive integer" if integer else "finite number > 0"}, '
                          f"got {value!r}")
    return value


@MIGRATIONS.register("llumnix")
class LlumnixMigration(MigrationPolicy):
    """Migrate when ``max(load) - min(load) > threshold`` (loads in [0, 1+]), checked every ``interval_s``
    simulated seconds, at most ``max_in_flight`` migrations at once per pool. The request moved is the one
    cheapest to move that is least urgent: the largest priority number (lowest priority) first, then the
    fewest KV tokens (Llumnix migrates low-priority, short requests first)."""

    name = "llumnix"

    def __init__(self, threshold: float = 0.3, interval_s: float = 0.05, max_in_flight: int = 1) -> None:
        self.threshold = check_fraction("threshold", threshold, 0.0, 10.0)
        self.interval_s = float(_positive("interval_s", interval_s))
        self.max_in_flight = int(_positive("max_in_flight", max_in_flight, integer=True))

    def pick_pair(self, loads: Sequence[float]) -> tuple[int, int] | None:
        if len(loads) < 2:
            return None
        src = max(range(len(loads)), key=lambda i: (loads[i], -i))
        dst = min(range(len(loads)), key=lambda i: (loads[i], i))
        return (src, dst) if loads[src] - loads[dst] > self.threshold else None

    def pick_request(self, candidates: Sequence[tuple[int, int]]) -> int:
        return min(range(len(candidates)), key=lambda i: (-candidates[i][1], candidates[i][0], i))
