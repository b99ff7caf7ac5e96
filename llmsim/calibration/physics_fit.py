"""Least-squares fits of the structural kernel constants (``llmsim.cost.kernels.Physics``) and of the
all-reduce algorithm terms (``llmsim.cost.collectives.AllReduceTerms``) to measured kernel times.

Robust (soft-L1) least squares on log seconds, so every shape counts by its relative error and an odd point
cannot drag the constants; parameters are fitted in log space within physical bounds. A class is fitted on
at most ``MAX_POINTS`` points, taken evenly from its sorted shapes (the constants are few; the residual grids
carry the detail).
"""

from __future__ import annotations

import math
from dataclasses import fields, replace

import numpy as np
from scipy.optimize import least_squares

from llmsim.calibration.measurements import Measurement, case_precision
from llmsim.cost.collectives import AllReduceTerms, allreduce_algorithm, allreduce_s
from llmsim.cost.kernels import KernelModel, Physics, kernel_seconds
from llmsim.cost.layers import QUANT_BYTES_PER_ELEMENT, QUANT_KERNELS
from llmsim.cost.operators import elementwise
from llmsim.specs import HardwareSpec

MAX_POINTS = 1000
MIN_KERNEL_FRACTION = 0.1
# Constants fitted per class, with bounds: the rest keep the profile's values.
FREE = {
    "gemm": ("compute_eff", "memory_eff", "fixed_s"),
    "moe": ("compute_eff", "memory_eff", "fixed_s"),
    "attn_prefill": ("compute_eff", "fixed_s", "per_seq_s", "cta_tiles"),
    "attn_decode": ("memory_eff", "fixed_s", "cta_s"),
    "elementwise": ("memory_eff", "fixed_s"),
}
BOUNDS = {"compute_eff": (0.02, 1.2), "memory_eff": (0.02, 1.2), "fixed_s": (1e-8, 1e-3),
          "per_seq_s": (1e-10, 1e-5), "cta_tiles": (1e-3, 30.0), "cta_s": (1e-9, 1e-4)}
START = {"per_seq_s": 1e-8, "cta_tiles": 1.0, "cta_s": 1e-6}


def companion_ops(m: Measurement) -> list:
    """Kernels inside the measured region that the cost model times as separate operators."""
    op, out = m.operator, []
    if "kv_cache_write" in m.includes and m.case.op_class in ("attn_prefill", "attn_decode"):
        prec = case_precision(m.case.dtype)
        new = m.case["batch"] * (m.case["seq"] if m.case.op_class == "attn_prefill" else 1)
        width = 2 * m.case["kv_heads"] * m.case["head_dim"]
        out.append(elementwise("kv_cache_write", new * width, prec.act_bytes + prec.kv_bytes, 0.0))
    if "quant" in m.includes and m.case.op_class == "gemm":
        out.append(elementwise(f"{op.name}_quant", m.case["m"] * m.case["k"], QUANT_BYTES_PER_ELEMENT, 3.0,
                               kernels=QUANT_KERNELS))
    return out


def companion_s(m: Measurement, model: KernelModel) -> float:
    return sum(float(kernel_seconds(model.time(op))) for op in companion_ops(m))


def _subsample(ms: list[Measurement]) -> list[Measurement]:
    ms = sorted(ms, key=lambda m: m.case.params)
    step = max(1, math.ceil(len(ms) / MAX_POINTS))
    return ms[::step]


def fit_class_physics(cls: str, ms: list[Measurement], hw: HardwareSpec, launch_s: float) -> dict[str, float]:
    """Fitted constants of one class and dtype label (the keys of ``FREE[cls]``)."""
    model = KernelModel(hw)
    base = model.defaults[cls]
    ms = _subsample(ms)
    ops = [m.operator for m in ms]
    target = np.log([max(m.median_s - m.operator.kernels * launch_s - companion_s(m, model),
                         MIN_KERNEL_FRACTION * m.median_s) for m in ms])
    free = FREE[cls]
    lo = np.log([BOUNDS[k][0] for k in free])
    hi = np.log([BOUNDS[k][1] for k in free])
    x0 = np.clip(np.log([START.get(k) or getattr(base, k) for k in free]), lo + 1e-6, hi - 1e-6)

    def physics(x: np.ndarray) -> Physics:
        return replace(base, **{k: float(v) for k, v in zip(free, np.exp(x), strict=True)})

    def residuals(x: np.ndarray) -> np.ndarray:
        p = physics(x)
        return np.log([float(kernel_seconds(model.time(op, p))) for op in ops]) - target

    fit = least_squares(residuals, x0, bounds=(lo, hi), loss="soft_l1", f_scale=0.05, max_nfev=300)
    p = physics(fit.x)
    return {f.name: float(f"{getattr(p, f.name):.4g}") for f in fields(Physics) if f.name in free}


AR_FREE = {"oneshot": ("oneshot_latency_s", "oneshot_eff"), "twoshot": ("twoshot_latency_s", "twoshot_eff"),
           "ring": ("ring_latency_s", "ring_hop_s", "ring_eff")}
AR_BOUNDS = {"latency_s": (1e-7, 1e-3), "hop_s": (1e-9, 1e-4), "eff": (0.01, 1.5)}


def _ar_bounds(name: str) -> tuple[float, float]:
    return next(b for suffix, b in AR_BOUNDS.items() if name.endswith(suffix))


def fit_allreduce_terms(ms: list[Measurement], hw: HardwareSpec) -> dict[str, float]:
    """Latency floor and bandwidth efficiency of each all-reduce algorithm seen in the measurements
    (vLLM's custom kernel's rows if present, else NCCL's or torch.distributed's, all a ring), fitted over
    every group size at once."""
    kinds = {m.case.kind for m in ms}
    kind = "custom_graph" if "custom_graph" in kinds else ("nccl" if "nccl" in kinds else next(iter(kinds), None))
    ms = [m for m in ms if m.case.kind == kind]
    if not ms:
        return {}
    terms = AllReduceTerms.of(hw)
    custom = kind == "custom_graph"  # vLLM's own kernel (and NCCL above its limit); anything else is a ring
    if not custom:
        terms = replace(terms, custom_max_bytes=0.0)
    algos = sorted({allreduce_algorithm(hw, m.case["bytes"], m.case["ranks"], terms) for m in ms})
    free = [name for a in algos for name in AR_FREE[a]]
    lo = np.log([_ar_bounds(k)[0] for k in free])
    hi = np.log([_ar_bounds(k)[1] for k in free])
    x0 = np.clip(np.log([getattr(terms, k) for k in free]), lo + 1e-6, hi - 1e-6)
    target = np.log([m.median_s for m in ms])

    def residuals(x: np.ndarray) -> np.ndarray:
        t = replace(terms, **dict(zip(free, np.exp(x), strict=True)))
        return np.log([allreduce_s(hw, m.case["bytes"], m.case["ranks"], t) for m in ms]) - target

    fit = least_squares(residuals, x0, bounds=(lo, hi), loss="soft_l1", f_scale=0.05, max_nfev=500)
    out = {k: float(f"{v:.4g}") for k, v in zip(free, np.exp(fit.x), strict=True)}
    return {**out, "custom_max_bytes": terms.custom_max_bytes} if custom else out
