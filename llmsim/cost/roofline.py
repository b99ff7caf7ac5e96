"""Operator time: roofline max(compute, memory) at the profile's efficiencies, plus kernel launch gaps.

LLM-Viewer / Williams et al. (2009) roofline: an operator is compute-bound when its arithmetic intensity
(FLOPs per HBM byte) exceeds the ridge point peak_flops / bandwidth, memory-bound otherwise.
A calibrated profile replaces the efficiency constants with fits to measured kernels (``llmsim.cost.calibrated``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from llmsim.cost.operators import Operator
from llmsim.specs import HardwareSpec

COMPUTE_CLASSES = {"gemm": "gemm", "attn_prefill": "attention", "attn_decode": "attention"}


@dataclass(frozen=True, slots=True)
class OpTime:
    """Seconds of one operator, split into the roofline's two sides; ``source`` says where it came from:
    ``roofline`` (default efficiencies), ``interpolated`` / ``extrapolated`` (calibrated fit)."""

    compute_s: float | np.ndarray
    memory_s: float | np.ndarray
    launch_s: float
    comm_s: float = 0.0
    source: str = "roofline"

    @property
    def kernel_s(self) -> float | np.ndarray:
        return np.maximum(self.compute_s, self.memory_s) if isinstance(self.compute_s, np.ndarray) or \
            isinstance(self.memory_s, np.ndarray) else max(self.compute_s, self.memory_s)

    @property
    def total_s(self) -> float | np.ndarray:
        return self.kernel_s + self.launch_s + self.comm_s

    @property
    def bound(self) -> str:
        if self.comm_s > 0:
            return "comm"
        return "compute" if np.all(self.compute_s >= self.memory_s) else "memory"


class OperatorTimer(Protocol):
    def time(self, op: Operator) -> OpTime: ...


class RooflineTimer:
    """Uncalibrated timing: peaks from the datasheet, efficiencies and overheads stated in the profile."""

    def __init__(self, hardware: HardwareSpec) -> None:
        self.hw = hardware
        eff = hardware.efficiency
        self._compute_eff = {"gemm": eff.gemm, "attention": eff.attention}
        self._mem_bw = hardware.hbm_bytes_per_s * eff.memory
        self._launch = hardware.overheads.kernel_launch_s
        self._peak_cache: dict[str, float] = {}

    def peak(self, dtype: str) -> float:
        if dtype not in self._peak_cache:
            # Elementwise kernels run on CUDA cores: the fp32 (non-tensor) peak bounds them.
            self._peak_cache[dtype] = self.hw.peak_flops(dtype) if self.hw.supports(dtype) else \
                self.hw.peak_flops("bf16")
        return self._peak_cache[dtype]

    def time(self, op: Operator) -> OpTime:
        if op.op_class in ("allreduce", "p2p", "alltoall"):
            raise ValueError("collectives are timed by llmsim.cost.collectives")
        eff = self._compute_eff.get(COMPUTE_CLASSES.get(op.op_class, ""), self.hw.efficiency.gemm)
        compute = op.flops / (self.peak(op.compute_dtype) * eff)
        memory = op.hbm_bytes / self._mem_bw
        return OpTime(compute, memory, op.kernels * self._launch)
