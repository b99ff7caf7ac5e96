"""A log-binned histogram for distributions too long to keep (the global inter-token-latency series):
memory is fixed, quantiles are exact to the bin width (0.5 % relative by default)."""

from __future__ import annotations

import numpy as np


class LogHistogram:
    """Counts of positive values in geometric bins from ``lo`` to ``hi`` (values outside are clamped)."""

    def __init__(self, lo: float = 1e-6, hi: float = 1e4, rel_width: float = 0.005) -> None:
        self.lo, self.hi = lo, hi
        self._log_lo = np.log(lo)
        self._step = np.log1p(rel_width)
        self.num_bins = int(np.ceil((np.log(hi) - self._log_lo) / self._step)) + 1
        self.counts = np.zeros(self.num_bins, dtype=np.int64)
        self.total = 0
        self.sum = 0.0
        self.max = 0.0

    def add(self, values, weight: int = 1) -> None:
        v = np.asarray(values, dtype=np.float64).ravel()
        if not v.size or weight <= 0:
            return
        idx = np.clip(((np.log(np.maximum(v, self.lo)) - self._log_lo) / self._step).astype(np.int64),
                      0, self.num_bins - 1)
        self.counts += np.bincount(idx, minlength=self.num_bins) * weight
        self.total += v.size * weight
        self.sum += float(v.sum()) * weight
        self.max = max(self.max, float(v.max()))

    def quantile(self, q: float) -> float:
        """Value at quantile ``q`` (bin centre, geometric); NaN when empty."""
        if not self.total:
            return float("nan")
        rank = q * (self.total - 1)
        i = int(np.searchsorted(np.cumsum(self.counts), rank, side="right"))
        i = min(i, self.num_bins - 1)
        return float(np.exp(self._log_lo + (i + 0.5) * self._step))

    @property
    def mean(self) -> float:
        return self.sum / self.total if self.total else float("nan")
