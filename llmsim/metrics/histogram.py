"""A log-binned histogram for distributions too long to keep (the global inter-token-latency series):
memory is fixed, quantiles are exact to the bin width (0.5 % relative by default).

Binning is deferred: ``add`` keeps the array (a collapsed decode run adds its step durations once, weighted
by the batch, thousands of times a second) and bins what it holds in one pass when ``PENDING`` values wait
or when the counts are read. The running sum is taken at ``add`` in call order, so the mean is the same to
the bit as binning every call at once."""

from __future__ import annotations

import numpy as np

PENDING = 1 << 16  # values held before they are binned in bulk


class LogHistogram:
    """Counts of positive values in geometric bins from ``lo`` to ``hi`` (values outside are clamped)."""

    def __init__(self, lo: float = 1e-6, hi: float = 1e4, rel_width: float = 0.005) -> None:
        self.lo, self.hi = lo, hi
        self._log_lo = np.log(lo)
        self._step = np.log1p(rel_width)
        self.num_bins = int(np.ceil((np.log(hi) - self._log_lo) / self._step)) + 1
        self._counts = np.zeros(self.num_bins, dtype=np.int64)
        self._max = 0.0
        self._pending: list[np.ndarray] = []  # arrays not binned yet, and their weights
        self._weights: list[int] = []
        self._num_pending = 0
        self.total = 0
        self.sum = 0.0

    def add(self, values, weight: int = 1) -> None:
        """Count ``values`` ``weight`` times each. An array is held, not copied, until it is binned: the
        caller does not change it afterwards."""
        v = np.asarray(values, dtype=np.float64).ravel()
        if not v.size or weight <= 0:
            return
        self.total += v.size * weight
        self.sum += float(v.sum()) * weight
        self._pending.append(v)
        self._weights.append(weight)
        self._num_pending += v.size
        if self._num_pending >= PENDING:
            self._bin()

    def _bin(self) -> None:
        """Bin the values ``add`` holds: one ``bincount`` for all of them."""
        if not self._pending:
            return
        v = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
        idx = np.clip(((np.log(np.maximum(v, self.lo)) - self._log_lo) / self._step).astype(np.int64),
                      0, self.num_bins - 1)
        if all(w == 1 for w in self._weights):
            self._counts += np.bincount(idx, minlength=self.num_bins)
        else:  # integer weights as floats: exact below 2**53 per bin
            w = np.repeat(np.asarray(self._weights, dtype=np.float64), [a.size for a in self._pending])
            self._counts += np.bincount(idx, weights=w, minlength=self.num_bins).astype(np.int64)
        self._max = max(self._max, float(v.max()))
        self._pending, self._weights, self._num_pending = [], [], 0

    @property
    def counts(self) -> np.ndarray:
        """Values per bin."""
        self._bin()
        return self._counts

    @property
    def max(self) -> float:
        self._bin()
        return self._max

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
