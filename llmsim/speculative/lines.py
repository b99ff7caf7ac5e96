"""Exact fast path for uniform batches: every row computes ``n`` new tokens and samples ``emits`` of them.

For such a batch the cost model's features depend on the contexts only through their sum ``S`` (causal
pairs ``n S + B n (n + 1) / 2``, KV tokens ``S + B n``), and every operator is linear in those unless it
crosses its roofline ridge. So, like ``llmsim.sim.timer`` does for plain decodes, the step's cost is
computed at both ends of a band of mean contexts (powers of two: [2^(b-1), 2^b)), checked at a third
point, and interpolated; a band in which the cost is not linear (a ridge inside it, a calibrated curve)
is computed exactly every time.
"""

from __future__ import annotations

import math

import numpy as np

TILE = 128  # key-tile width of the attention kernel model (llmsim.cost.kernels attn_tile_k default)


def _close(a: tuple, b: tuple, rel: float = 1e-9) -> bool:
    return all(abs(x - y) <= rel * max(abs(x), abs(y), 1e-30) for x, y in zip(a, b, strict=True))


class UniformLines:
    """``cost(n, batch, ctx_sum, emits, launch, pad)`` -> (stage seconds..., FLOPs, HBM bytes) of a uniform batch
    of ``batch`` rows plus ``pad`` one-token padding rows of context 0 that sample nothing."""

    def __init__(self, cost_model, max_context: int = 131072) -> None:
        self.cm = cost_model
        self.max_context = max_context
        self._lines: dict[tuple, tuple[tuple, tuple, int] | None] = {}
        self.num_calls = 0

    def _exact(self, n: int, batch: int, ctx_sum: int, emits: int, launch: str, pad: int) -> tuple:
        self.num_calls += 1
        base, extra = divmod(int(ctx_sum), batch)
        ctx = [base + 1] * extra + [base] * (batch - extra) + [0] * pad
        new = [n] * batch + [1] * pad
        counts = np.asarray([emits] * batch + [0] * pad, dtype=np.int64)
        c = self.cm.step_time(new, ctx, counts, launch=launch)
        return (*(float(s) for s in c.stage_s), float(c.flops), float(c.hbm_bytes))

    def _line(self, key: tuple, lo: int, hi: int) -> tuple | None:
        """(cost at lo, cost at hi, lo, hi) if the cost is linear in the context sum over [lo, hi], else None."""
        n, batch, emits, launch, pad = key[:5]
        a, b = self._exact(n, batch, lo, emits, launch, pad), self._exact(n, batch, hi, emits, launch, pad)
        third = lo + (hi - lo) // 3
        mid = self._exact(n, batch, third, emits, launch, pad)
        x = (third - lo) / (hi - lo)
        line = tuple(p + x * (q - p) for p, q in zip(a, b, strict=True))
        return (a, b, lo, hi) if _close(line, mid) else None

    def _entry(self, n: int, batch: int, ctx_sum: float, emits: int, launch: str, pad: int) -> tuple | None:
        mean = int(ctx_sum // batch)
        band = mean.bit_length()  # mean context in [2^(band-1), 2^band)
        key = (n, batch, emits, launch, pad, band)
        if key not in self._lines:
            self._lines[key] = self._line(key, batch << (band - 1) if band else 0, batch << band)
        if self._lines[key] is not None:
            return self._lines[key]
        # not linear over the band: try the tile-aligned piece holding this context (attention kernels
        # quantise the keys a query tile reads in tiles of TILE tokens: a kink where context + n crosses one)
        j = math.ceil((ctx_sum / batch + n) / TILE)  # the tile count is constant for mean + n in (j-1, j] tiles
        key = (n, batch, emits, launch, pad, "tile", j)
        if key not in self._lines:
            lo, hi = max(0, batch * ((j - 1) * TILE - n) + 1), batch * (j * TILE - n)
            self._lines[key] = self._line(key, lo, hi) if hi - lo >= 3 else None
        return self._lines[key]

    def cost(self, n: int, batch: int, ctx_sum: float, emits: int, launch: str, pad: int = 0) -> tuple:
        entry = self._entry(n, batch, ctx_sum, emits, launch, pad)
        if entry is None:
            return self._exact(n, batch, int(ctx_sum), emits, launch, pad)
        a, b, lo, hi = entry
        x = (ctx_sum - lo) / (hi - lo)
        return tuple(p + x * (q - p) for p, q in zip(a, b, strict=True))

    def seconds(self, n: int, batch: int, ctx_sum: float, emits: int, launch: str, pad: int = 0) -> float:
        out = self.cost(n, batch, ctx_sum, emits, launch, pad)
        return float(sum(out[:-2]))
