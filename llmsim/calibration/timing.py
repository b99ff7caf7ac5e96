"""Timing harness: warm-up, CUDA events on a GPU (synchronised wall clock on a CPU), samples of several
back-to-back calls, repeated until the spread is small; median and spread recorded.

Back-to-back calls are what a serving engine issues, so a sample's per-call time includes the launch gap a
real step pays for small kernels; the fit separates the launch overhead measured on its own.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Timing:
    """Seconds per call: median over samples; ``spread`` = interquartile range / median."""

    median_s: float
    spread: float
    samples: int
    calls_per_sample: int


def relative_iqr(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    q = statistics.quantiles(values, n=4, method="inclusive")
    return (q[2] - q[0]) / statistics.median(values)


class Harness:
    """Times a zero-argument callable on ``device`` ("cuda" or "cpu") with the given torch module."""

    def __init__(self, torch: Any, device: str, *, min_repeats: int = 5, max_repeats: int = 20,
                 target_spread: float = 0.03, min_sample_s: float = 2e-3, max_case_s: float = 5.0) -> None:
        if min_repeats < 1 or max_repeats < min_repeats:
            raise ValueError('"min_repeats" must be >= 1 and "max_repeats" >= "min_repeats"')
        self.torch, self.device = torch, device
        self.min_repeats, self.max_repeats = min_repeats, max_repeats
        self.target_spread, self.min_sample_s, self.max_case_s = target_spread, min_sample_s, max_case_s

    def sync(self) -> None:
        if self.device == "cuda":
            self.torch.cuda.synchronize()

    def _sample(self, fn: Callable[[], Any], calls: int) -> float:
        if self.device == "cuda":
            start = self.torch.cuda.Event(enable_timing=True)
            end = self.torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(calls):
                fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) * 1e-3 / calls
        self.sync()
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        self.sync()
        return (time.perf_counter() - t0) / calls

    def time(self, fn: Callable[[], Any], context: AbstractContextManager | None = None) -> Timing:
        """Warm up, size a sample to last ``min_sample_s``, then sample until the spread is small."""
        with context or nullcontext():
            deadline = time.perf_counter() + self.max_case_s
            # Warm-up (allocator, kernel selection, caches, clocks); the fastest warm-up call sizes a sample.
            one = min(self._sample(fn, 1) for _ in range(3))
            if one < 1e-4:
                self._sample(fn, max(1, int(2e-3 / max(one, 1e-7))))
            calls = max(1, min(10_000, math.ceil(self.min_sample_s / max(one, 1e-7))))
            samples: list[float] = []
            while len(samples) < self.max_repeats:
                samples.append(self._sample(fn, calls))
                if len(samples) >= self.min_repeats and (relative_iqr(samples) <= self.target_spread
                                                          or time.perf_counter() > deadline):
                    break
        return Timing(statistics.median(samples), relative_iqr(samples), len(samples), calls)
