"""Parallel layout of one deployment: tensor (tp), pipeline (pp), data (dp = replicas) and expert (ep)."""

from __future__ import annotations

from dataclasses import dataclass, field

from llmsim.errors import ConfigError
from llmsim.specs.moe import MoERouting

EP_COMMS = ("allreduce", "alltoall")


@dataclass(frozen=True, slots=True)
class ParallelLayout:
    """``tp`` x ``pp`` GPUs form one replica; ``dp`` independent replicas serve in parallel.

    ``ep`` > 1 spreads MoE experts over the replica's ``tp`` GPUs (expert parallelism) instead of sharding
    every expert: ``ep`` groups of ``tp / ep`` GPUs each hold ``experts / ep`` whole experts (each sharded
    ``tp / ep`` ways); attention stays tensor parallel over all ``tp`` GPUs. ``ep_comm`` is how tokens reach
    the experts: ``allreduce`` (vLLM with one data-parallel rank, ``FusedMoEParallelConfig.use_all2all_kernels``
    is false: every GPU holds all tokens, runs its local experts, and the TP all-reduce sums the experts'
    partial outputs; vllm/model_executor/layers/fused_moe/config.py, v0.15.1) or ``alltoall`` (DeepEP / pplx
    dispatch and combine: each GPU sends its share of the tokens to the GPUs of their top-k experts and back).
    ``moe``: how evenly tokens spread over the experts (``llmsim.specs.moe``).
    """

    tp: int = 1
    pp: int = 1
    dp: int = 1
    ep: int = 1
    ep_comm: str = "allreduce"
    moe: MoERouting = field(default_factory=MoERouting)

    def __post_init__(self) -> None:
        for name in ("tp", "pp", "dp", "ep"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name}: must be a positive integer, got {value!r}")
        if self.ep > 1 and self.tp % self.ep:
            raise ConfigError(f"ep: expert parallelism spans the tp group; ep must divide tp={self.tp}, "
                              f"got {self.ep}")
        if self.ep_comm not in EP_COMMS:
            raise ConfigError(f"ep_comm: must be one of {', '.join(EP_COMMS)}, got {self.ep_comm!r}")

    @property
    def expert_tp(self) -> int:
        """GPUs each expert is sharded over (tp / ep)."""
        return self.tp // self.ep

    @property
    def gpus_per_replica(self) -> int:
        return self.tp * self.pp

    @property
    def num_gpus(self) -> int:
        return self.tp * self.pp * self.dp
