"""Operator time: the roofline with structural kernel terms at the profile's constants, plus launch gaps.

LLM-Viewer / Williams et al. (2009) roofline: an operator is compute-bound when its arithmetic intensity
(FLOPs per HBM byte) exceeds the ridge point peak_flops / bandwidth, memory-bound otherwise. On top of it,
``llmsim.cost.kernels`` adds what real kernels do (tile and wave quantisation, fixed time per kernel,
FlashAttention's tiles, grouped MoE GEMMs) and ``llmsim.cost.collectives`` times collectives by algorithm.
A calibrated profile replaces the constants with fits to measured kernels (``llmsim.cost.calibrated``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from llmsim.cost.collectives import allreduce_s, alltoall_s
from llmsim.cost.kernels import KernelModel
from llmsim.cost.operators import Operator
from llmsim.specs import HardwareSpec

COMM_CLASSES = ("allreduce", "alltoall", "p2p")


@dataclass(frozen=True, slots=True)
class OpTime:
    """Seconds of one operator: the roofline's two sides, the kernels' fixed GPU time, launch gaps and
    communication; ``source`` says where it came from: ``roofline`` (the profile's constants),
    ``interpolated`` / ``extrapolated`` (calibrated fit). ``kernel_s = fixed_s + max(compute_s, memory_s)``."""

    compute_s: float | np.ndarray
    memory_s: float | np.ndarray
    launch_s: float
    comm_s: float = 0.0
    source: str = "roofline"
    fixed_s: float | np.ndarray = 0.0

    @property
    def kernel_s(self) -> float | np.ndarray:
        if isinstance(self.compute_s, np.ndarray) or isinstance(self.memory_s, np.ndarray) or \
                isinstance(self.fixed_s, np.ndarray):
            return self.fixed_s + np.maximum(self.compute_s, self.memory_s)
        return self.fixed_s + max(self.compute_s, self.memory_s)

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


def comm_time(hardware: HardwareSpec, op: Operator) -> float:
    """Seconds of a collective operator on the profile's interconnect (``llmsim.cost.collectives``)."""
    if op.op_class == "allreduce":
        return allreduce_s(hardware, op.comm_bytes, op.comm_ranks)
    if op.op_class == "alltoall":
        return alltoall_s(hardware, op.comm_bytes, op.comm_ranks)
    raise ValueError(f"no timing for collective class {op.op_class!r}")


class RooflineTimer:
    """Uncalibrated timing: peaks from the datasheet, efficiencies and kernel constants stated in the profile."""

    def __init__(self, hardware: HardwareSpec) -> None:
        self.hw = hardware
        self.kernels = KernelModel(hardware)
        self._launch = hardware.overheads.kernel_launch_s

    def peak(self, dtype: str) -> float:
        return self.kernels.peak(dtype)

    def time(self, op: Operator) -> OpTime:
        if op.op_class in COMM_CLASSES:
            return OpTime(0.0, 0.0, 0.0, comm_s=comm_time(self.hw, op))
        fixed, compute, memory = self.kernels.time(op)
        return OpTime(compute, memory, op.kernels * self._launch, fixed_s=fixed)
