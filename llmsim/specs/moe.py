"""How tokens spread over a mixture-of-experts layer's experts: routing skew, measured popularity, capacity.

The step of an expert-parallel layer waits for its most loaded GPU (the all-to-all combine, or the
all-reduce after the experts, is a barrier). ``busiest_share`` is that GPU's load relative to its uniform
share ``tokens x top_k / ep``: 1 for uniform routing, up to ``ep`` when one GPU gets every pair.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from llmsim.errors import ConfigError


@dataclass(frozen=True, slots=True)
class MoERouting:
    """``skew`` (>= 1): the busiest EP GPU's load over its uniform share, given directly; or ``popularity``:
    the measured fraction of routed (token, expert) pairs that go to each expert (sums to 1; one entry per
    expert). ``capacity_factor`` (GShard / Switch Transformer expert capacity): each expert takes at most
    ``capacity_factor x tokens x top_k / experts`` pairs and drops the rest (they pass through on the
    residual); ``None`` drops nothing, as vLLM, SGLang and TensorRT-LLM serve (no capacity limit)."""

    skew: float = 1.0
    popularity: tuple[float, ...] | None = None
    capacity_factor: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.skew, bool) or not isinstance(self.skew, int | float) or not 1 <= self.skew < math.inf:
            raise ConfigError(f"moe.skew: must be a finite number >= 1 (1 = uniform routing), got {self.skew!r}")
        if self.capacity_factor is not None and not (isinstance(self.capacity_factor, int | float)
                                                     and 1 <= self.capacity_factor < math.inf):
            raise ConfigError(f"moe.capacity_factor: must be a finite number >= 1 or null, got "
                              f"{self.capacity_factor!r}")
        if self.popularity is not None:
            pop = self.popularity
            if not pop or any(isinstance(p, bool) or not isinstance(p, int | float) or not 0 <= p < math.inf
                              for p in pop):
                raise ConfigError("moe.popularity: expected a list of non-negative numbers, one per expert")
            if abs(sum(pop) - 1.0) > 1e-6:
                raise ConfigError(f"moe.popularity: the fractions must sum to 1, they sum to {sum(pop):.6g}")
            if self.skew != 1.0:
                raise ConfigError("moe.skew: give skew or popularity, not both")

    def expert_loads(self, experts: int) -> list[float]:
        """Each expert's share of the routed pairs after the capacity limit (dropped pairs removed)."""
        if self.popularity is None:
            return [1.0 / experts] * experts
        if len(self.popularity) != experts:
            raise ConfigError(f"moe.popularity: {len(self.popularity)} entries for a model with {experts} experts")
        cap = math.inf if self.capacity_factor is None else self.capacity_factor / experts
        return [min(p, cap) for p in self.popularity]

    def busiest_share(self, experts: int, ep: int) -> float:
        """The busiest EP GPU's pairs over its uniform share (experts placed contiguously, ``experts / ep`` per
        GPU, as vLLM's ``expert_map`` does without EPLB). A capacity limit caps it at ``capacity_factor``."""
        if ep <= 1:
            return 1.0
        if self.popularity is None:
            share = min(self.skew, float(ep))
            return share if self.capacity_factor is None else min(share, self.capacity_factor)
        loads, per = self.expert_loads(experts), experts // ep
        return max(sum(loads[r * per:(r + 1) * per]) for r in range(ep)) * ep

    def dropped_fraction(self, experts: int, ep: int) -> float:
        """Fraction of routed pairs dropped by the capacity limit (0 without one)."""
        if self.capacity_factor is None:
            return 0.0
        if self.popularity is not None:
            return 1.0 - sum(self.expert_loads(experts))
        if ep <= 1:
            return 0.0
        # skew: the busiest GPU sends the pairs above capacity away; the others are under capacity
        busiest = min(self.skew, float(ep))
        return max(0.0, busiest - self.capacity_factor) / ep


def routing_from_dict(data: object, where: str = "moe") -> MoERouting:
    """A ``moe:`` block (``skew``, ``popularity``, ``capacity_factor``); errors name ``where``."""
    if data is None:
        return MoERouting()
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping with skew, popularity or capacity_factor")
    unknown = sorted(set(data) - {"skew", "popularity", "capacity_factor"})
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key (expected skew, popularity, capacity_factor)")
    pop = data.get("popularity")
    if pop is not None and not isinstance(pop, list | tuple):
        raise ConfigError(f"{where}.popularity: expected a list of fractions, one per expert")
    try:
        return MoERouting(skew=data.get("skew", 1.0), popularity=None if pop is None else tuple(pop),
                          capacity_factor=data.get("capacity_factor"))
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("moe.", f"{where}.", 1)) from None
