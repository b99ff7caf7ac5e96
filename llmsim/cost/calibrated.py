"""Operator time from measured kernels: the roofline corrected by a ratio interpolated in log space.

A profile's ``calibration:`` block (written by ``llmsim calibrate``) stores, per operator class and shape
family, the *ratio* measured kernel seconds / unit-efficiency roofline seconds, i.e. ``1 / achieved
efficiency``, on the measured grid:

- ``gemm``: one curve per (dtype, N, K) over M (tokens);
- ``attn_prefill``: one table per (dtype, heads, kv_heads, head_dim) over (sequences, sequence length);
- ``attn_decode``: one table per (dtype, heads, kv_heads, head_dim) over (sequences, context length);
- ``elementwise``: one curve per kernel kind (copy, rms_norm, ...) over HBM bytes.

A prediction is ``ratio x roofline`` (piecewise-linear interpolation of log ratio in log size: exact at every
measured point, smooth between them) plus the launch overhead. Outside the measured range, or for a shape
family that was not measured, the nearest measured ratio is held constant (a roofline with the fitted
efficiency) and the prediction says ``extrapolated``; classes or dtypes with no data fall back to the plain
roofline (``roofline``). Pure: numpy only, all tables prepared in ``__init__``.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from llmsim.cost.operators import Operator
from llmsim.cost.roofline import OpTime, RooflineTimer
from llmsim.errors import ConfigError
from llmsim.specs import HardwareSpec
from llmsim.specs.precision import PRECISIONS

# Kernel kind whose measured curve stands for each elementwise operator of llmsim.cost.layers.
ELEMENTWISE_KIND = {
    "kv_cache_write": "copy", "embedding": "copy", "copy": "copy",
    "attn_norm": "rms_norm", "mlp_norm": "rms_norm", "final_norm": "rms_norm", "qk_norm": "rms_norm",
    "rms_norm": "rms_norm",
    "mlp_act": "silu", "moe_act": "silu", "silu": "silu",
    "sampling": "softmax", "softmax": "softmax",
}
ATTENTION_KEYS = ("heads", "kv_heads", "head_dim")


def _logs(values: Sequence[float], where: str) -> list[float]:
    out = []
    for v in values:
        v = float(v)
        if not v > 0:
            raise ConfigError(f"{where}: expected positive numbers, got {v!r}")
        out.append(math.log(v))
    if out != sorted(out) or len(set(out)) != len(out):
        raise ConfigError(f"{where}: grid must be strictly increasing")
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

    __slots__ = ("us", "rows", "_ua")

    def __init__(self, us: list[float], vs: list[float], table: Sequence[Sequence[float]], where: str) -> None:
        if len(table) != len(us) or any(len(row) != len(vs) for row in table):
            raise ConfigError(f"{where}: ratio table must have one row per batch value and one column per length")
        self.us = us
        self.rows = [Curve(vs, [math.log(float(r)) for r in row]) for row in table]
        self._ua = np.asarray(us)

    def inside(self, u: float, v: float) -> bool:
        return self.us[0] - 1e-9 <= u <= self.us[-1] + 1e-9 and self.rows[0].inside(v)

    def _bracket(self, u: float) -> tuple[int, int, float]:
        us = self.us
        i = bisect_right(us, u)
        if i == 0:
            return 0, 0, 0.0
        if i == len(us):
            return i - 1, i - 1, 0.0
        return i - 1, i, (u - us[i - 1]) / (us[i] - us[i - 1])

    def at(self, u: float, v: float) -> float:
        i, j, w = self._bracket(u)
        a = self.rows[i].at(v)
        return a if i == j else a + w * (self.rows[j].at(v) - a)

    def at_array(self, u: float, v: np.ndarray) -> np.ndarray:
        i, j, w = self._bracket(u)
        a = self.rows[i].at_array(v)
        return a if i == j else a + w * (self.rows[j].at_array(v) - a)

    def inside_array(self, u: float, v: np.ndarray) -> bool:
        xs = self.rows[0].xs
        return bool(self.us[0] - 1e-9 <= u <= self.us[-1] + 1e-9 and np.all(v >= xs[0] - 1e-9)
                    and np.all(v <= xs[-1] + 1e-9))


def _families(block: Any, cls: str) -> list[Mapping[str, Any]]:
    if block is None:
        return []
    if not isinstance(block, Sequence) or not all(isinstance(f, Mapping) for f in block):
        raise ConfigError(f"calibration.{cls}: expected a list of shape families (mappings)")
    return list(block)


def _alias(dtype: str, measured: Mapping[str, Any]) -> str:
    """fp16 and bf16 run the same tensor-core paths: one stands in for the other when only it was measured."""
    if dtype not in measured and dtype in ("bf16", "fp16"):
        other = "fp16" if dtype == "bf16" else "bf16"
        if other in measured:
            return other
    return dtype


# (weights, compute) of a GEMM -> the precision name its measurements are filed under (llmsim.specs.precision)
GEMM_LABELS = {(w, c): name for name, (w, c) in PRECISIONS.items()}


def _gemm_label(op: Operator) -> str:
    return GEMM_LABELS.get((op.storage_dtype or op.compute_dtype, op.compute_dtype), op.compute_dtype)


def _bracket(value: int, grid: list[int], skip_equal: bool = False) -> tuple[int, int, float] | None:
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


def _corners(n: int, k: int, ns: list[int], ks: list[int], skip_n: bool = False,
             skip_k: bool = False) -> list[tuple[int, int, float]] | None:
    bn, bk = _bracket(n, ns, skip_n), _bracket(k, ks, skip_k)
    if bn is None or bk is None:
        return None
    (n0, n1, wn), (k0, k1, wk) = bn, bk
    out = [(n0, k0, (1 - wn) * (1 - wk)), (n1, k0, wn * (1 - wk)), (n0, k1, (1 - wn) * wk), (n1, k1, wn * wk)]
    return [c for c in out if c[2] > 0]


def _nearest(key: tuple[float, ...], candidates: list[tuple[tuple[float, ...], Any]]):
    """The candidate closest to ``key`` in log space (shape families differ multiplicatively)."""
    lk = [math.log(max(k, 1e-30)) for k in key]
    return min(candidates, key=lambda c: sum((a - math.log(b)) ** 2 for a, b in zip(lk, c[0], strict=True)))[1]


class CalibratedTimer:
    """``OperatorTimer`` of a calibrated profile: measured ratios over the roofline, see the module docstring."""

    def __init__(self, hardware: HardwareSpec) -> None:
        cal = hardware.calibration
        if not isinstance(cal, Mapping):
            raise ConfigError(f"hardware {hardware.name}: calibration: expected a mapping")
        self.hw = hardware
        self._roofline = RooflineTimer(hardware)
        ref = cal.get("reference") or {}
        peaks = ref.get("peak_flops_per_s") or hardware.peak_flops_per_s
        self._peaks = {str(k): float(v) for k, v in peaks.items()}
        self._bw = float(ref.get("hbm_bytes_per_s", hardware.hbm_bytes_per_s))
        self._launch = hardware.overheads.kernel_launch_s
        self._gemm: dict[tuple[int, int, str], Curve] = {}
        self._gemm_by_dtype: dict[str, list] = {}
        for i, fam in enumerate(_families(cal.get("gemm"), "gemm")):
            where = f"calibration.gemm[{i}]"
            key = (int(fam["n"]), int(fam["k"]), str(fam["dtype"]))
            curve = Curve(_logs(fam["m"], f"{where}.m"), [math.log(float(r)) for r in fam["ratio"]])
            self._gemm[key] = curve
            self._gemm_by_dtype.setdefault(key[2], []).append(((key[0], key[1]), curve))
        self._gemm_axes = {d: (sorted({nk[0] for nk, _ in fams}), sorted({nk[1] for nk, _ in fams}))
                           for d, fams in self._gemm_by_dtype.items()}
        self._gemm_plans: dict[tuple[int, int, str], tuple] = {}
        self._attn: dict[str, dict] = {}
        self._attn_by_dtype: dict[str, dict[str, list]] = {}
        for cls, length in (("attn_prefill", "seq"), ("attn_decode", "context")):
            self._attn[cls], self._attn_by_dtype[cls] = {}, {}
            for i, fam in enumerate(_families(cal.get(cls), cls)):
                where = f"calibration.{cls}[{i}]"
                dims = tuple(int(fam[k]) for k in ATTENTION_KEYS)
                table = Table(_logs(fam["batch"], f"{where}.batch"), _logs(fam[length], f"{where}.{length}"),
                              fam["ratio"], where)
                self._attn[cls][(*dims, str(fam["dtype"]))] = table
                self._attn_by_dtype[cls].setdefault(str(fam["dtype"]), []).append((dims, table))
        self._elem: dict[str, Curve] = {}
        for i, fam in enumerate(_families(cal.get("elementwise"), "elementwise")):
            self._elem[str(fam["kind"])] = Curve(_logs(fam["bytes"], f"calibration.elementwise[{i}].bytes"),
                                                 [math.log(float(r)) for r in fam["ratio"]])
        self._elem_pooled = self._pool(list(self._elem.values()))

    @staticmethod
    def _pool(curves: list[Curve]) -> Curve | None:
        """Median log ratio over the measured kernel kinds, for elementwise kernels of an unmeasured kind."""
        if not curves:
            return None
        xs = sorted({x for c in curves for x in c.xs})
        return Curve(xs, [float(np.median([c.at(x) for c in curves])) for x in xs])

    def peak(self, dtype: str) -> float:
        return self._peaks[dtype] if dtype in self._peaks else self._roofline.peak(dtype)

    def _scaled(self, op: Operator, log_ratio, source: str) -> OpTime:
        ratio = np.exp(log_ratio) if isinstance(log_ratio, np.ndarray) else math.exp(log_ratio)
        compute = op.flops / self.peak(op.compute_dtype) * ratio
        memory = op.hbm_bytes / self._bw * ratio
        return OpTime(compute, memory, op.kernels * self._launch, source=source)

    def time(self, op: Operator) -> OpTime:
        cls = op.op_class
        if cls == "gemm":
            return self._time_gemm(op)
        if cls in ("attn_prefill", "attn_decode"):
            return self._time_attention(op)
        if cls == "elementwise":
            return self._time_elementwise(op)
        return self._roofline.time(op)

    def _gemm_plan(self, n: int, k: int, dtype: str) -> tuple:
        """(corner curves with bilinear weights in (log N, log K), exact): the measured (N, K) families around
        an unmeasured one, or its nearest family (``exact`` False) when it lies outside the measured grid."""
        key = (n, k, dtype)
        if key not in self._gemm_plans:
            curve = self._gemm.get(key)
            if curve is not None:
                plan = (((curve, 1.0),), True)
            else:
                plan = self._gemm_between(n, k, dtype)
            self._gemm_plans[key] = plan
        return self._gemm_plans[key]

    def _gemm_between(self, n: int, k: int, dtype: str) -> tuple:
        """Bilinear over the surrounding measured (N, K) families; where one of them is missing, the mean of
        the interpolations along N and along K around it; else the nearest family (extrapolated)."""
        ns, ks = self._gemm_axes[dtype]
        for tries in (((False, False),), ((True, False), (False, True)), ((True, True),)):
            plans = []
            for skip_n, skip_k in tries:
                corners = _corners(n, k, ns, ks, skip_n, skip_k) or []
                found = [(self._gemm.get((a, b, dtype)), w) for a, b, w in corners]
                if found and all(c is not None for c, _ in found):
                    plans.append(found)
            if plans:
                return tuple((c, w / len(plans)) for found in plans for c, w in found), True
        return ((_nearest((n, k), self._gemm_by_dtype[dtype]), 1.0),), False

    def _time_gemm(self, op: Operator) -> OpTime:
        m, n, k = op.shape
        label = _gemm_label(op)
        dtype = _alias(label, self._gemm_by_dtype)
        same_kernel = dtype in self._gemm_by_dtype
        if not same_kernel:  # e.g. a weight-only GEMM without its own data: the 16-bit kernel's, extrapolated
            dtype = _alias(op.compute_dtype, self._gemm_by_dtype)
            if dtype not in self._gemm_by_dtype:
                return self._roofline.time(op)
        curves, exact = self._gemm_plan(int(n), int(k), dtype)
        exact = exact and same_kernel
        x = math.log(max(float(m), 1e-9))
        log_ratio = sum(w * c.at(x) for c, w in curves)
        inside = exact and all(c.inside(x) for c, _ in curves)
        return self._scaled(op, log_ratio, "interpolated" if inside else "extrapolated")

    def _time_attention(self, op: Operator) -> OpTime:
        cls = op.op_class
        tokens, heads, kv_heads, head_dim, kv_tokens = op.shape
        dtype = _alias(op.compute_dtype, self._attn_by_dtype[cls])
        kv = op.storage_dtype or op.compute_dtype
        label = dtype if _alias(kv, {dtype: 0}) == dtype else f"{dtype}/kv-{kv}"
        same_kernel = label in self._attn_by_dtype[cls]
        dtype = label if same_kernel else dtype
        table = self._attn[cls].get((int(heads), int(kv_heads), int(head_dim), dtype))
        exact = table is not None
        if not exact:
            near = self._attn_by_dtype[cls].get(dtype)
            if not near:
                return self._roofline.time(op)
            table = _nearest((heads, kv_heads, head_dim), near)
        if cls == "attn_decode":
            seqs = float(tokens)
            length = np.asarray(kv_tokens, dtype=np.float64) / seqs if isinstance(kv_tokens, np.ndarray) \
                else float(kv_tokens) / seqs
        else:
            # Equivalent causal sequence length from the (query, key) pairs: a lone prompt of S tokens has
            # S(S+1)/2 pairs; chunked prefill over a context c counts as S + 2c.
            pairs = op.flops / (4.0 * heads * head_dim)
            length = max(2.0 * float(pairs) / float(tokens) - 1.0, 1.0)
            seqs = max(float(tokens) / length, 1.0)
        # A KV-cache format without its own measurements is another kernel: the 16-bit data, extrapolated.
        exact = exact and same_kernel
        u = math.log(seqs)
        if isinstance(length, np.ndarray):
            v = np.log(np.maximum(length, 1.0))
            inside = exact and table.inside_array(u, v)
            return self._scaled(op, table.at_array(u, v), "interpolated" if inside else "extrapolated")
        v = math.log(max(length, 1.0))
        inside = exact and table.inside(u, v)
        return self._scaled(op, table.at(u, v), "interpolated" if inside else "extrapolated")

    def _time_elementwise(self, op: Operator) -> OpTime:
        curve = self._elem.get(ELEMENTWISE_KIND.get(op.name, ""))
        exact = curve is not None
        if not exact:
            curve = self._elem_pooled
            if curve is None:
                return self._roofline.time(op)
        x = math.log(max(float(op.hbm_bytes), 1.0))
        return self._scaled(op, curve.at(x), "interpolated" if exact and curve.inside(x) else "extrapolated")
