"""Operator time from measured kernels: the structural kernel model with fitted constants, times a measured
residual interpolated in log space.

A profile's ``calibration:`` block (written by ``llmsim calibrate``, format 2) holds:

- ``physics``: per class and dtype label, the constants of ``llmsim.cost.kernels`` fitted to the
  measurements (efficiencies, fixed time, per-sequence and per-CTA work), and for ``allreduce`` the latency
  floors and bandwidth efficiencies of each algorithm (``llmsim.cost.collectives``);
- residual grids, ``ratio = measured / structural model`` on the measured points, per shape family:
  ``gemm`` over M per (dtype, N, K); ``attn_prefill`` / ``attn_decode`` over (sequences, length) per head
  layout; ``moe`` over tokens per expert layout; ``elementwise`` over bytes per kernel kind; and measured
  ``allreduce`` curves (seconds over bytes) per group size.

A prediction inside a measured family (or between measured GEMM (N, K) / attention head-layout families) is
``interpolated``: exact at every measured point, log-linear between them. Outside the grid, or for a family
that only has a nearest neighbour, the residual is held at the edge / taken from the nearest family and the
prediction says ``extrapolated``; so does a dtype that only has fitted physics of another kernel. A class or
dtype with no data at all uses the profile's constants (``roofline``). Pure: numpy only, tables built in
``__init__``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from llmsim.cost.collectives import AllReduceTerms, allreduce_s
from llmsim.cost.grids import Curve, FamilyGrid, Table, log_ratios, logs
from llmsim.cost.kernels import KernelModel, Physics, label_of
from llmsim.cost.operators import Operator
from llmsim.cost.roofline import COMM_CLASSES, OpTime, comm_time
from llmsim.errors import ConfigError
from llmsim.specs import HardwareSpec

FORMAT = 2
# Kernel kind whose measured curve stands for each elementwise operator of llmsim.cost.layers.
ELEMENTWISE_KIND = {
    "kv_cache_write": "copy", "embedding": "copy", "copy": "copy",
    "attn_norm": "rms_norm", "mlp_norm": "rms_norm", "final_norm": "rms_norm", "qk_norm": "rms_norm",
    "rms_norm": "rms_norm",
    "mlp_act": "silu", "silu": "silu",
    "sampling": "softmax", "softmax": "softmax",
}
MOE_KEYS = ("hidden", "ffn", "experts", "topk", "ep")


def _families(block: Any, cls: str) -> list[Mapping[str, Any]]:
    if block is None:
        return []
    if not isinstance(block, Sequence) or not all(isinstance(f, Mapping) for f in block):
        raise ConfigError(f"calibration.{cls}: expected a list of shape families (mappings)")
    return list(block)


def _field(fam: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in fam:
        raise ConfigError(f"{where}: missing field {key!r}")
    return fam[key]


def _curve(fam: Mapping[str, Any], axis: str, where: str, values: str = "ratio") -> Curve:
    return Curve(logs(_field(fam, axis, where), f"{where}.{axis}"), log_ratios(_field(fam, values, where), where))


def _swap16(label: str) -> str | None:
    head, sep, tail = label.partition("/")
    other = {"bf16": "fp16", "fp16": "bf16"}.get(head)
    return other + sep + tail if other else None


def _nearest(key: tuple[float, ...], candidates: list[tuple[tuple[float, ...], Any]]):
    """The candidate closest to ``key`` in log space (shape families differ multiplicatively)."""
    lk = [math.log(max(k, 1e-30)) for k in key]
    return min(candidates, key=lambda c: sum((a - math.log(b)) ** 2 for a, b in zip(lk, c[0], strict=True)))[1]


class CalibratedTimer:
    """``OperatorTimer`` of a calibrated profile: fitted structural model x measured residual (module docstring)."""

    def __init__(self, hardware: HardwareSpec) -> None:
        cal = hardware.calibration
        if not isinstance(cal, Mapping):
            raise ConfigError(f"hardware {hardware.name}: calibration: expected a mapping")
        if cal.get("format", FORMAT) != FORMAT:
            raise ConfigError(f"hardware {hardware.name}: calibration format {cal.get('format')!r} is not read by "
                              f"this llmsim (format {FORMAT}); refit it: llmsim calibrate --from-csv DIR or --import")
        self.hw = hardware
        ref = cal.get("reference") or {}
        physics = cal.get("physics") or {}
        if not isinstance(physics, Mapping):
            raise ConfigError("calibration.physics: expected a mapping")
        self.model = KernelModel(hardware, physics, ref.get("peak_flops_per_s"), ref.get("hbm_bytes_per_s"))
        self._launch = hardware.overheads.kernel_launch_s
        self._gemm = self._gemm_grids(_families(cal.get("gemm"), "gemm"))
        self._attn = {cls: self._attn_grids(_families(cal.get(cls), cls), cls) for cls in ("attn_prefill",
                                                                                           "attn_decode")}
        self._moe = self._moe_curves(_families(cal.get("moe"), "moe"))
        self._elem = {str(_field(f, "kind", f"calibration.elementwise[{i}]")):
                      _curve(f, "bytes", f"calibration.elementwise[{i}]")
                      for i, f in enumerate(_families(cal.get("elementwise"), "elementwise"))}
        self._elem_pooled = self._pool(list(self._elem.values()))
        self._allreduce = {int(_field(f, "ranks", f"calibration.allreduce[{i}]")):
                           _curve(f, "bytes", f"calibration.allreduce[{i}]", "seconds")
                           for i, f in enumerate(_families(cal.get("allreduce"), "allreduce"))}
        self._ar_terms = AllReduceTerms.of(hardware, physics.get("allreduce")) if physics.get("allreduce") else None

    # --- tables ---------------------------------------------------------------------------------------
    @staticmethod
    def _gemm_grids(fams: list[Mapping[str, Any]]) -> dict[str, FamilyGrid]:
        """One entry per (N, K) family, or a grid entry: ``n`` and ``k`` lists, one ratio row per (N, K)."""
        by_label: dict[str, dict[tuple[int, int], Curve]] = {}
        for i, fam in enumerate(fams):
            where = f"calibration.gemm[{i}]"
            curves = by_label.setdefault(str(_field(fam, "dtype", where)), {})
            n, k = _field(fam, "n", where), _field(fam, "k", where)
            if not isinstance(n, list):
                curves[(int(n), int(k))] = _curve(fam, "m", where)
                continue
            xs, rows = logs(_field(fam, "m", where), f"{where}.m"), _field(fam, "ratio", where)
            if not isinstance(k, list) or not isinstance(rows, list) or len(rows) != len(n) * len(k):
                raise ConfigError(f"{where}: a grid entry needs n and k lists and len(n) x len(k) ratio rows")
            for j, row in enumerate(rows):
                if row is not None:
                    curves[(int(n[j // len(k)]), int(k[j % len(k)]))] = Curve(xs, log_ratios(row, where))
        return {label: FamilyGrid(f) for label, f in by_label.items()}

    @staticmethod
    def _attn_grids(fams: list[Mapping[str, Any]], cls: str) -> dict[tuple[str, int], FamilyGrid]:
        length = "seq" if cls == "attn_prefill" else "context"
        by_key: dict[tuple[str, int], dict[tuple[int, int], Table]] = {}
        for i, fam in enumerate(fams):
            where = f"calibration.{cls}[{i}]"
            table = Table(logs(_field(fam, "batch", where), f"{where}.batch"),
                          logs(_field(fam, length, where), f"{where}.{length}"), _field(fam, "ratio", where), where)
            key = (str(_field(fam, "dtype", where)), int(_field(fam, "head_dim", where)))
            by_key.setdefault(key, {})[(int(_field(fam, "heads", where)), int(_field(fam, "kv_heads", where)))] = table
        return {key: FamilyGrid(f) for key, f in by_key.items()}

    @staticmethod
    def _moe_curves(fams: list[Mapping[str, Any]]) -> dict[str, dict[tuple[int, ...], Curve]]:
        out: dict[str, dict[tuple[int, ...], Curve]] = {}
        for i, fam in enumerate(fams):
            where = f"calibration.moe[{i}]"
            key = tuple(int(_field(fam, k, where)) for k in MOE_KEYS)
            out.setdefault(str(_field(fam, "dtype", where)), {})[key] = _curve(fam, "tokens", where)
        return out

    @staticmethod
    def _pool(curves: list[Curve]) -> Curve | None:
        """Median log ratio over the measured kernel kinds, for elementwise kernels of an unmeasured kind."""
        if not curves:
            return None
        xs = sorted({x for c in curves for x in c.xs})
        return Curve(xs, [float(np.median([c.at(x) for c in curves])) for x in xs])

    # --- timing ---------------------------------------------------------------------------------------
    def peak(self, dtype: str) -> float:
        return self.model.peak(dtype)

    def _physics(self, op: Operator, label: str) -> tuple[Physics, str]:
        """Constants for the operator and how they were obtained: ``own`` (fitted on this dtype label),
        ``other`` (fitted on the 16-bit kernel of the same class), ``default`` (the profile's)."""
        p, fitted = self.model.physics(op.op_class, label)
        if fitted:
            return p, "own"
        p, fitted = self.model.physics(op.op_class, op.compute_dtype)
        return p, "other" if fitted else "default"

    def time(self, op: Operator) -> OpTime:
        cls = op.op_class
        if cls in COMM_CLASSES:
            return self._time_comm(op)
        label = label_of(op)
        p, how = self._physics(op, label)
        fixed, compute, memory = self.model.time(op, p)
        residual = self._residual(op, label) if how == "own" else None
        if residual is None:
            source, log_r = ("roofline" if how == "default" else "extrapolated"), 0.0
        else:
            log_r, inside = residual
            source = "interpolated" if inside else "extrapolated"
        r = np.exp(log_r) if isinstance(log_r, np.ndarray) else math.exp(log_r)
        return OpTime(compute * r, memory * r, op.kernels * self._launch, source=source, fixed_s=fixed * r)

    def _residual(self, op: Operator, label: str):
        """(log ratio, inside the measured grid) for the operator, or None when its class has no grid."""
        cls = op.op_class
        swapped = _swap16(label)
        if swapped and not self._has_grid(cls, label, op) and self._has_grid(cls, swapped, op):
            label = swapped  # fp16 and bf16 run the same tensor-core kernels
        if cls == "gemm":
            return self._gemm_residual(op, label)
        if cls in ("attn_prefill", "attn_decode"):
            return self._attn_residual(op, label)
        if cls == "moe":
            return self._moe_residual(op, label)
        if cls == "elementwise":
            return self._elem_residual(op)
        return None

    def _has_grid(self, cls: str, label: str, op: Operator) -> bool:
        if cls == "gemm":
            return label in self._gemm
        if cls in ("attn_prefill", "attn_decode"):
            return (label, int(op.shape[3])) in self._attn[cls]
        return cls == "moe" and label in self._moe

    def _gemm_residual(self, op: Operator, label: str):
        grid = self._gemm.get(label)
        if grid is None:
            return None
        m, n, k = op.shape
        curves, between = grid.plan(int(n), int(k))
        x = math.log(max(float(m), 1e-9))
        return sum(w * c.at(x) for c, w in curves), between and all(c.inside(x) for c, _ in curves)

    def _attn_residual(self, op: Operator, label: str):
        cls = op.op_class
        tokens, heads, kv_heads, head_dim, kv_tokens = op.shape[:5]
        grid = self._attn[cls].get((label, int(head_dim)))
        if grid is None:
            return None
        tables, between = grid.plan(int(heads), int(kv_heads))
        if cls == "attn_decode":
            seqs = float(tokens)
            kv = np.asarray(kv_tokens, dtype=np.float64) if isinstance(kv_tokens, np.ndarray) else float(kv_tokens)
            v = np.log(np.maximum(kv / seqs, 1.0)) if isinstance(kv, np.ndarray) else math.log(max(kv / seqs, 1.0))
            chunked = False
        else:
            # Equivalent causal prompt length from the (query, key) pairs; a chunk over cached context
            # was never measured (the grids hold whole prompts), so it is extrapolated.
            seqs = max(float(op.shape[5]), 1.0)
            pairs = float(op.flops) / (4.0 * heads * head_dim) / seqs
            v = math.log(max((math.sqrt(8.0 * pairs + 1.0) - 1.0) / 2.0, 1.0))
            chunked = float(kv_tokens) > 1.001 * float(tokens)
        u = math.log(seqs)
        log_r = sum(w * t.at(u, v) for t, w in tables)
        return log_r, between and not chunked and all(t.inside(u, v) for t, _ in tables)

    def _moe_residual(self, op: Operator, label: str):
        curves = self._moe.get(label)
        if not curves:
            return None
        tokens, hidden, ffn, experts, topk, ep, _ = op.shape
        key = (int(hidden), int(ffn), int(experts), int(topk), int(ep))
        curve = curves.get(key)
        exact = curve is not None
        if not exact:  # the nearest layout, among those with the same expert parallelism when there are any:
            # how unevenly tokens land on the busiest GPU depends on ep more than on the layer's sizes
            same_ep = [(k, c) for k, c in curves.items() if k[4] == key[4]]
            curve = _nearest(key, same_ep or list(curves.items()))
        x = math.log(max(float(tokens), 1.0))
        return curve.at(x), exact and curve.inside(x)

    def _elem_residual(self, op: Operator):
        curve = self._elem.get(ELEMENTWISE_KIND.get(op.name, ""))
        exact = curve is not None
        if not exact:
            curve = self._elem_pooled
            if curve is None:
                return None
        x = math.log(max(float(op.hbm_bytes), 1.0))
        return curve.at(x), exact and curve.inside(x)

    def _time_comm(self, op: Operator) -> OpTime:
        if op.op_class != "allreduce" or op.comm_ranks <= 1 or op.comm_bytes <= 0:
            return OpTime(0.0, 0.0, 0.0, comm_s=comm_time(self.hw, op) if op.op_class != "p2p" else 0.0)
        curve = self._allreduce.get(int(op.comm_ranks))  # measured on one node: that many ranks fit in one
        x = math.log(float(op.comm_bytes))
        if curve is not None and curve.inside(x):
            return OpTime(0.0, 0.0, 0.0, comm_s=math.exp(curve.at(x)), source="interpolated")
        if self._ar_terms is None:
            return OpTime(0.0, 0.0, 0.0, comm_s=comm_time(self.hw, op))
        seconds = allreduce_s(self.hw, op.comm_bytes, op.comm_ranks, self._ar_terms)
        return OpTime(0.0, 0.0, 0.0, comm_s=seconds, source="extrapolated")
