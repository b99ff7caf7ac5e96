"""Deferred binning (``LogHistogram.add`` holds arrays and bins them in bulk) counts what binning every call
at once counts, and keeps the running sum to the bit."""

import numpy as np

from llmsim.metrics import histogram
from llmsim.metrics.histogram import LogHistogram


def _eager(h: LogHistogram, calls) -> tuple[np.ndarray, float, int, float]:
    """Counts, sum, total and max as binning each call when it is made does."""
    counts, total, acc, top = np.zeros(h.num_bins, dtype=np.int64), 0, 0.0, 0.0
    for v, w in calls:
        v = np.asarray(v, dtype=np.float64)
        idx = np.clip(((np.log(np.maximum(v, h.lo)) - np.log(h.lo)) / np.log1p(0.005)).astype(np.int64),
                      0, h.num_bins - 1)
        counts += np.bincount(idx, minlength=h.num_bins) * w
        total += v.size * w
        acc += float(v.sum()) * w
        top = max(top, float(v.max()))
    return counts, acc, total, top


def test_deferred_binning_counts_as_binning_each_call(monkeypatch):
    monkeypatch.setattr(histogram, "PENDING", 1000)  # several bulk passes, and values still held at the end
    rng = np.random.default_rng(3)
    calls = [(rng.lognormal(-4, 1.5, rng.integers(1, 300)), int(rng.integers(1, 129))) for _ in range(200)]
    calls += [(rng.lognormal(-4, 1, 50), 1) for _ in range(20)]  # unweighted calls: the other bincount path
    calls.append(([1e-9, 5e5], 2))  # clamped at both ends
    h = LogHistogram()
    for i, (v, w) in enumerate(calls):
        h.add(v, weight=w)
        if i == 100:
            assert h.quantile(0.5) > 0  # a read between adds bins what is held and goes on
    counts, acc, total, top = _eager(h, calls)
    assert np.array_equal(h.counts, counts)
    assert h.sum == acc and h.total == total and h.max == top  # the sum in call order: the same bits
    assert h.mean == acc / total
