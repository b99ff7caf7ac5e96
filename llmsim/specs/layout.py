"""Parallel layout of one deployment: tensor (tp), pipeline (pp), data (dp = replicas) and expert (ep)."""

from __future__ import annotations

from dataclasses import dataclass

from llmsim.errors import ConfigError


@dataclass(frozen=True, slots=True)
class ParallelLayout:
    """``tp`` x ``pp`` GPUs form one replica; ``dp`` independent replicas serve in parallel.

    ``ep`` > 1 spreads MoE experts over the replica's ``tp`` GPUs (expert parallelism) instead of
    sharding every expert (the vLLM default for MoE with TP).
    """

    tp: int = 1
    pp: int = 1
    dp: int = 1
    ep: int = 1

    def __post_init__(self) -> None:
        for name in ("tp", "pp", "dp", "ep"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name}: must be a positive integer, got {value!r}")
        if self.ep > 1 and self.ep != self.tp:
            raise ConfigError(f"ep: expert parallelism spans the tp group here; ep must be 1 or {self.tp}")

    @property
    def gpus_per_replica(self) -> int:
        return self.tp * self.pp

    @property
    def num_gpus(self) -> int:
        return self.tp * self.pp * self.dp
