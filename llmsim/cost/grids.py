"""Interpolation of measured correction ratios: along a swept size (``Curve``), over two swept sizes
(``Table``), and across shape families (``FamilyGrid``: GEMM (N, K), attention head layouts).

All values are logs (log size, log ratio): piecewise-linear interpolation in log-log space, exact at every
measured point, held constant beyond the ends. Pure: numpy only.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence
from typing import Any

import numpy as np

from llmsim.errors import ConfigError


def logs(values: Sequence[float], where: str) -> list[float]:
    out = []
    for v in values:
        v = float(v)
        if not v > 0:
            raise ConfigError(f"{where}: expected positive numbers, got {v!r}")
        out.append(math.log(v))
    if out != sorted(out) or len(set(out)) != len(out):
        raise ConfigError(f"{where}: grid must be strictly increasing")
    return out


def log_ratios(values: Sequence[Any], where: str) -> list[float]:
    try:
        out = [math.log(float(v)) for v in values]
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: expected positive numbers") from None
    return out


class Curve:
    """Piecewise-linear y(x) on a sorted grid, held constant beyond both ends (x and y are logs)."""

    __slots__ = ("xs", "ys", "_xa", "_ya")

    def __init__(self, xs: list[float], ys: list[float]) -> None:
        if len(xs) != len(ys) or not xs:
            raise ConfigError("calibration curve: grid and ratio lists must be non-empty and of equal length")
        self.xs, self.ys = xs, ys
        self._xa, self._ya = np.asarray(xs), np.asarray(ys)

    def inside(self, x: float) -> bool:
        return self.xs[0] - 1e-9 <= x <= self.xs[-1] + 1e-9

    def inside_array(self, x: np.ndarray) -> bool:
        return bool(np.all(x >= self.xs[0] - 1e-9) and np.all(x <= self.xs[-1] + 1e-9))

    def at(self, x: float) -> float:
        xs, ys = self.xs, self.ys
        i = bisect_right(xs, x)
        if i == 0:
            return ys[0]
        if i == len(xs):
            return ys[-1]
        x0, x1 = xs[i - 1], xs[i]
        return ys[i - 1] + (ys[i] - ys[i - 1]) * (x - x0) / (x1 - x0)

    def at_array(self, x: np.ndarray) -> np.ndarray:
        return np.interp(x, self._xa, self._ya)


class Table:
    """Bilinear y(u, v) on a rectangular grid (u = log sequences, v = log length), clamped at the edges."""

    __slots__ = ("us", "rows")

    def __init__(self, us: list[float], vs: list[float], table: Sequence[Sequence[float]], where: str) -> None:
        if len(table) != len(us) or any(len(row) != len(vs) for row in table):
            raise ConfigError(f"{where}: ratio table must have one row per batch value and one column per length")
        self.us = us
        self.rows = [Curve(vs, log_ratios(row, where)) for row in table]

    def _bracket(self, u: float) -> tuple[int, int, float]:
        us = self.us
        i = bisect_right(us, u)
        if i == 0:
            return 0, 0, 0.0
        if i == len(us):
            return i - 1, i - 1, 0.0
        return i - 1, i, (u - us[i - 1]) / (us[i] - us[i - 1])

    def inside(self, u: float, v) -> bool:
        ok_u = self.us[0] - 1e-9 <= u <= self.us[-1] + 1e-9
        row = self.rows[0]
        return ok_u and (row.inside_array(v) if isinstance(v, np.ndarray) else row.inside(v))

    def at(self, u: float, v):
        i, j, w = self._bracket(u)
        if isinstance(v, np.ndarray):
            a = self.rows[i].at_array(v)
            return a if i == j else a + w * (self.rows[j].at_array(v) - a)
        a = self.rows[i].at(v)
        return a if i == j else a + w * (self.rows[j].at(v) - a)


def _bracket(value: float, grid: list[float], skip_equal: bool) -> tuple[float, float, float] | None:
    """Grid neighbours of ``value`` and its weight on the upper one in log space; None outside the grid.
    ``skip_equal``: bracket a grid value by its two neighbours (to interpolate over a missing family)."""
    if value < grid[0] or value > grid[-1]:
        return None
    i = bisect_right(grid, value)
    if grid[i - 1] == value:
        if not skip_equal:
            return value, value, 0.0
        if i - 1 == 0 or i == len(grid):
            return None
        lo, hi = grid[i - 2], grid[i]
    else:
        lo, hi = grid[i - 1], grid[i]
    return lo, hi, math.log(value / lo) / math.log(hi / lo)


class FamilyGrid:
    """Shape families on a 2-D grid of sizes (a, b), e.g. GEMM (N, K) or attention (heads, KV heads).

    ``plan(a, b)`` returns the measured families to blend, with weights that sum to 1, and whether the shape
    lies between measured families (``True``: interpolated) or only near one (``False``: the nearest, in log
    space, extrapolated). Between families: bilinear in (log a, log b); where a corner is missing, the mean of
    the interpolations around it along a and along b; failing both, 1-D along either axis.
    """

    def __init__(self, families: dict[tuple[int, int], Any]) -> None:
        self.families = families
        self.a_axis = sorted({a for a, _ in families})
        self.b_axis = sorted({b for _, b in families})
        self._plans: dict[tuple[int, int], tuple] = {}

    def _corners(self, a: int, b: int, skip_a: bool, skip_b: bool) -> list | None:
        ba, bb = _bracket(a, self.a_axis, skip_a), _bracket(b, self.b_axis, skip_b)
        if ba is None or bb is None:
            return None
        (a0, a1, wa), (b0, b1, wb) = ba, bb
        corners = [(a0, b0, (1 - wa) * (1 - wb)), (a1, b0, wa * (1 - wb)), (a0, b1, (1 - wa) * wb),
                   (a1, b1, wa * wb)]
        found = [(self.families.get((x, y)), w) for x, y, w in corners if w > 0]
        return found if found and all(f is not None for f, _ in found) else None

    def _between(self, a: int, b: int) -> tuple | None:
        for tries in (((False, False),), ((True, False), (False, True)), ((True, True),)):
            plans = [p for p in (self._corners(a, b, sa, sb) for sa, sb in tries) if p]
            if plans:
                return tuple((f, w / len(plans)) for p in plans for f, w in p)
        return None

    def nearest(self, a: float, b: float) -> Any:
        la, lb = math.log(max(a, 1e-30)), math.log(max(b, 1e-30))
        key = min(self.families, key=lambda k: (math.log(k[0]) - la) ** 2 + (math.log(k[1]) - lb) ** 2)
        return self.families[key]

    def plan(self, a: int, b: int) -> tuple[tuple, bool]:
        key = (a, b)
        if key not in self._plans:
            if key in self.families:
                self._plans[key] = (((self.families[key], 1.0),), True)
            else:
                between = self._between(a, b)
                self._plans[key] = (between, True) if between else (((self.nearest(a, b), 1.0),), False)
        return self._plans[key]
