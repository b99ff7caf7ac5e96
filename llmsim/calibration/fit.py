"""Fit measurements into a profile's ``calibration:`` block (format 2, read by ``llmsim.cost.calibrated``).

Two stages. ``fit_physics``: per kernel class and dtype label, the constants of the structural kernel
model (``llmsim.cost.kernels``; efficiencies, fixed time, per-sequence and per-CTA work), and the all-reduce
algorithm terms (``llmsim.cost.collectives``), by robust least squares in log time. ``residual_blocks``: per
measured point, ratio = measured kernel time / structural time, grouped by shape family and interpolated
in log space by the timer. The physics carries predictions to shapes nobody measured; the residual makes
measured shapes exact. Other kernels inside a timed region (``Measurement.includes``) are timed as the
cost model times them and subtracted, so that no kernel is counted twice.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from llmsim.calibration.measurements import Measurement
from llmsim.calibration.physics_fit import companion_s, fit_allreduce_terms, fit_class_physics
from llmsim.cost.calibrated import FORMAT, CalibratedTimer
from llmsim.cost.kernels import KernelModel, Physics, kernel_seconds
from llmsim.cost.roofline import RooflineTimer
from llmsim.specs import HardwareSpec

FITTED_CLASSES = ("gemm", "attn_prefill", "attn_decode", "moe", "elementwise")
# Launch and companion kernels are subtracted from each measured call; the rest is floored so that a call
# dominated by them keeps a small positive kernel time.
MIN_KERNEL_FRACTION = 0.1
SPIKE = math.log(1.5)  # an isolated point this much above both neighbours is noise (AIC README caveat 6)
MOE_DISTRIBUTIONS = ("balanced", "power_law_1.01", "power_law_1.2")


def _moe_ffn(m: Measurement) -> int:
    return -(-m.case["inter"] // m.case["tp"]) if m.case["ep"] == 1 else m.case["inter"]


def family_of(m: Measurement) -> tuple:
    """The shape family a measurement belongs to: what stays fixed along the swept sizes."""
    c = m.case
    if c.op_class == "moe":
        return ("moe", c.dtype, c["hidden"], _moe_ffn(m), c["experts"], c["topk"], c["ep"])
    return (c.op_class, *c.family)


def _axis(m: Measurement) -> tuple[tuple, int, float]:
    """(family, row, position) of a measurement: GEMMs by M, attention by (batch, length), MoE by tokens,
    elementwise by HBM bytes."""
    c = m.case
    fam = family_of(m)
    if c.op_class == "gemm":
        return fam, 0, c["m"]
    if c.op_class == "attn_prefill":
        return fam, c["batch"], c["seq"]
    if c.op_class == "attn_decode":
        return fam, c["batch"], c["context"]
    if c.op_class == "moe":
        return fam, 0, c["tokens"]
    return fam, 0, int(round(float(m.operator.hbm_bytes)))


def fitted_measurements(measurements: list[Measurement]) -> list[Measurement]:
    """The rows the fit uses: the classes it models, one MoE routing distribution per expert layout (uniform
    when measured, as the cost model assumes; else the mildest skew)."""
    out = [m for m in measurements if m.case.op_class in FITTED_CLASSES and m.case.op_class != "moe"]
    moe: dict[tuple, dict[str, list[Measurement]]] = defaultdict(lambda: defaultdict(list))
    for m in measurements:
        if m.case.op_class == "moe":
            moe[family_of(m)][m.case.kind].append(m)
    for by_dist in moe.values():
        pick = next((d for d in MOE_DISTRIBUTIONS if d in by_dist), sorted(by_dist)[0])
        out += by_dist[pick]
    return out


def sweep_rows(measurements: list[Measurement]) -> list[list[tuple[float, Measurement]]]:
    """(position, measurement) runs along each swept axis, sorted by position."""
    rows: dict[tuple, list[tuple[float, Measurement]]] = defaultdict(list)
    for m in measurements:
        if m.case.op_class in FITTED_CLASSES:
            fam, row, pos = _axis(m)
            rows[(fam, row)].append((pos, m))
    return [sorted(r, key=lambda pm: pm[0]) for r in rows.values()]


def split_heldout(measurements: list[Measurement]) -> tuple[list[Measurement], list[Measurement]]:
    """Every other point along each swept axis is held out, the two ends kept: held-out shapes lie between
    fitted ones, as unseen batch sizes and lengths do in a simulation."""
    fit, held = [], []
    for row in sweep_rows(measurements):
        for i, (_, m) in enumerate(row):
            (held if len(row) >= 3 and i % 2 == 1 and i < len(row) - 1 else fit).append(m)
    return fit, held


def physics_label(m: Measurement) -> str:
    """The dtype label a measurement's constants are filed under (``llmsim.cost.kernels.label_of``)."""
    return "all" if m.case.op_class == "elementwise" else m.case.dtype


def fit_physics(measurements: list[Measurement], hw: HardwareSpec, launch_s: float) -> dict:
    """``calibration.physics``: fitted constants per class and dtype label, and all-reduce terms."""
    groups: dict[tuple[str, str], list[Measurement]] = defaultdict(list)
    for m in fitted_measurements(measurements):
        groups[(m.case.op_class, physics_label(m))].append(m)
    out: dict[str, dict] = {}
    for (cls, label), ms in sorted(groups.items()):
        out.setdefault(cls, {})[label] = fit_class_physics(cls, ms, hw, launch_s)
    ar = fit_allreduce_terms([m for m in measurements if m.case.op_class == "allreduce"], hw)
    if ar:
        out["allreduce"] = ar
    return out


def _round(v: float) -> float:
    return float(f"{v:.4g}")


def _despike(points: dict[float, float]) -> tuple[dict[float, float], int]:
    """Replace a log ratio sticking out above both neighbours by more than ``SPIKE`` by their mean."""
    xs = sorted(points)
    out, fixed = dict(points), 0
    for i in range(1, len(xs) - 1):
        a, y, b = points[xs[i - 1]], points[xs[i]], points[xs[i + 1]]
        if y - a > SPIKE and y - b > SPIKE:
            out[xs[i]], fixed = (a + b) / 2, fixed + 1
    return out, fixed


def kernel_ratio(m: Measurement, model: KernelModel, physics: Physics, launch_s: float) -> float:
    """Measured kernel seconds (launch and companion kernels removed) over the structural model's."""
    op = m.operator
    kernel = max(m.median_s - op.kernels * launch_s - companion_s(m, model),
                 MIN_KERNEL_FRACTION * m.median_s)
    return kernel / float(kernel_seconds(model.time(op, physics)))


def residual_blocks(measurements: list[Measurement], hw: HardwareSpec, physics: dict, launch_s: float,
                    notes: list[str] | None = None) -> dict:
    """Per class, shape families with their residual ratio grids (format 2)."""
    model = KernelModel(hw, physics)
    groups: dict[tuple, dict[int, dict[float, list[float]]]] = defaultdict(lambda: defaultdict(dict))
    for m in fitted_measurements(measurements):
        fam, row, pos = _axis(m)
        p, _ = model.physics(m.case.op_class, physics_label(m))
        groups[fam][row].setdefault(pos, []).append(math.log(kernel_ratio(m, model, p, launch_s)))
    out: dict[str, list] = {cls: [] for cls in FITTED_CLASSES}
    spikes = 0
    for fam in sorted(groups, key=str):
        rows = {}
        for row, points in groups[fam].items():
            rows[row], n = _despike({x: float(np.mean(v)) for x, v in points.items()})
            spikes += n
        out[fam[0]].append(_family_block(fam, rows))
    if spikes and notes is not None:
        notes.append(f"{spikes} isolated spikes (>= 1.5x both neighbours along a swept size) replaced by the "
                     "mean of their neighbours before interpolation")
    out["gemm"] = gemm_grids(out["gemm"])
    return {cls: fams for cls, fams in out.items() if fams}


def gemm_families(entries: list[dict]) -> list[dict]:
    """Grid entries expanded back into one entry per measured (N, K) family."""
    out = []
    for e in entries:
        if not isinstance(e["n"], list):
            out.append(e)
            continue
        ks = e["k"]
        out += [{"dtype": e["dtype"], "n": e["n"][j // len(ks)], "k": ks[j % len(ks)], "m": e["m"], "ratio": row}
                for j, row in enumerate(e["ratio"]) if row is not None]
    return out


def gemm_grids(families: list[dict]) -> list[dict]:
    """GEMM families of one dtype that fill most of an N x K grid over the same M values, written as one
    grid entry (``n``, ``k`` and ``m`` lists, one ratio row per (N, K), N-major, null where unmeasured):
    the same numbers, a third of the YAML. Other families stay one entry each."""
    by_dtype: dict[str, list[dict]] = defaultdict(list)
    for f in families:
        by_dtype[f["dtype"]].append(f)
    out = []
    for dtype, fams in by_dtype.items():
        ns, ks = sorted({f["n"] for f in fams}), sorted({f["k"] for f in fams})
        same_m = all(f["m"] == fams[0]["m"] for f in fams)
        if not same_m or len(fams) < 0.5 * len(ns) * len(ks) or len(fams) < 4:
            out += fams
            continue
        rows = {(f["n"], f["k"]): f["ratio"] for f in fams}
        out.append({"dtype": dtype, "m": fams[0]["m"], "n": ns, "k": ks,
                    "ratio": [rows.get((n, k)) for n in ns for k in ks]})
    return out


def _family_block(fam: tuple, rows: dict[int, dict[float, float]]) -> dict:
    cls = fam[0]
    if cls in ("gemm", "moe", "elementwise"):
        xs = sorted(rows[0])
        ratio = [_round(math.exp(rows[0][x])) for x in xs]
        if cls == "gemm":
            return {"dtype": fam[1], "n": fam[2], "k": fam[3], "m": xs, "ratio": ratio}
        if cls == "moe":
            return {"dtype": fam[1], **dict(zip(("hidden", "ffn", "experts", "topk", "ep"), fam[2:], strict=True)),
                    "tokens": xs, "ratio": ratio}
        return {"kind": fam[1], "bytes": xs, "ratio": ratio}
    batches, lengths, table = _table(rows)
    length = "seq" if cls == "attn_prefill" else "context"
    return {"dtype": fam[1], "heads": fam[2], "kv_heads": fam[3], "head_dim": fam[4],
            "batch": batches, length: lengths, "ratio": table}


def _table(rows: dict[int, dict[float, float]]) -> tuple[list[int], list[float], list[list[float]]]:
    """A rectangular (batch x length) table; a batch row's missing lengths (capped by memory or time) take
    the log-space interpolation of that row, held constant beyond its ends."""
    lengths = sorted({x for r in rows.values() for x in r})
    batches = sorted(rows)
    table = []
    for b in batches:
        xs = sorted(rows[b])
        filled = np.interp(np.log(lengths), np.log(xs), [rows[b][x] for x in xs])
        table.append([_round(math.exp(v)) for v in filled])
    return batches, lengths, table


def fit_blocks(measurements: list[Measurement], hw: HardwareSpec, launch_s: float,
               notes: list[str] | None = None) -> dict:
    """The fitted part of a ``calibration:`` block: ``format``, ``physics`` and the residual grids."""
    physics = fit_physics(measurements, hw, launch_s)
    return {"format": FORMAT, "physics": physics, **residual_blocks(measurements, hw, physics, launch_s, notes)}


@dataclass(frozen=True, slots=True)
class Prediction:
    op_class: str
    kind: str
    measured_s: float
    before_s: float
    after_s: float
    source: str
    dtype: str = ""


def predict(held: list[Measurement], before: HardwareSpec, after: HardwareSpec,
            with_launch: bool = True) -> list[Prediction]:
    """Held-out predictions before (the base profile's roofline) and after calibration, of each timed
    region (the kernel plus the companion kernels it includes). ``with_launch``: the measurements include a
    launch gap per kernel (eager timing); CUDA-graph timings do not."""
    roof, cal = RooflineTimer(before), CalibratedTimer(after)
    out = []
    for m in held:
        t, r = cal.time(m.operator), roof.time(m.operator)
        extra_after = companion_s(m, cal.model)
        extra_before = companion_s(m, roof.kernels)
        after_s = float(t.total_s if with_launch else t.total_s - t.launch_s) + extra_after
        before_s = float(r.total_s if with_launch else r.total_s - r.launch_s) + extra_before
        out.append(Prediction(m.case.op_class, m.case.kind, m.median_s, before_s, after_s, t.source, m.case.dtype))
    return out


def error_table(preds: list[Prediction]) -> dict[str, dict[str, float]]:
    """Per class: count, median and p90 absolute relative error before and after calibration."""
    out = {}
    for cls in (*FITTED_CLASSES, "allreduce"):
        ps = [p for p in preds if p.op_class == cls]
        if not ps:
            continue
        before = [abs(p.before_s - p.measured_s) / p.measured_s for p in ps]
        after = [abs(p.after_s - p.measured_s) / p.measured_s for p in ps]
        out[cls] = {"n": len(ps), "median_before": _pct(before, 50), "p90_before": _pct(before, 90),
                    "median_after": _pct(after, 50), "p90_after": _pct(after, 90)}
    return out


def _pct(values: list[float], q: float) -> float:
    v = float(np.percentile(values, q))
    return round(v, 4) if math.isfinite(v) else v
