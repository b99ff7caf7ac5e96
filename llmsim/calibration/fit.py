"""Fit measurements into a profile's ``calibration:`` block, and check the fit on held-out shapes.

The fit is the ratio measured kernel time / unit-efficiency roofline per measured point, grouped by shape
family (see ``llmsim.cost.calibrated``, which interpolates it in log space). The roofline already carries the
shape's FLOPs and bytes, so the ratio (1 / achieved efficiency) varies slowly and interpolates well; outside
the grid it is held at the edge value, which is the roofline with a fitted efficiency.
Pure (numpy): held-out error is computed through the very ``CalibratedTimer`` the simulator uses.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from llmsim.calibration.measurements import OP_CLASSES, Measurement
from llmsim.cost.calibrated import CalibratedTimer
from llmsim.cost.roofline import RooflineTimer
from llmsim.specs import HardwareSpec

# Launch overhead is subtracted from each measured call (the cost model adds it back per kernel); the rest
# is floored so that a call dominated by launch keeps a small positive kernel time.
MIN_KERNEL_FRACTION = 0.02


def roofline_s(m: Measurement, hw: HardwareSpec) -> float:
    """Unit-efficiency roofline seconds of the measured call under ``hw``'s peaks."""
    op = m.operator
    dtype = op.compute_dtype if hw.supports(op.compute_dtype) else "bf16"
    return max(float(op.flops) / hw.peak_flops(dtype), float(op.hbm_bytes) / hw.hbm_bytes_per_s)


def ratio(m: Measurement, hw: HardwareSpec, launch_s: float) -> float:
    kernel = max(m.median_s - launch_s, MIN_KERNEL_FRACTION * m.median_s)
    return kernel / roofline_s(m, hw)


def _axis(m: Measurement) -> tuple[tuple, int, int]:
    """(family, row, position) of a measurement: GEMMs by M, attention by (batch, length), elementwise by elements."""
    c = m.case
    if c.op_class == "gemm":
        return (c.op_class, *c.family), 0, c["m"]
    if c.op_class == "attn_prefill":
        return (c.op_class, *c.family), c["batch"], c["seq"]
    if c.op_class == "attn_decode":
        return (c.op_class, *c.family), c["batch"], c["context"]
    return (c.op_class, *c.family), 0, c["rows"] * c["width"]


def sweep_rows(measurements: list[Measurement]) -> list[list[tuple[int, Measurement]]]:
    """(position, measurement) runs along each swept axis, sorted by position."""
    rows: dict[tuple, list[tuple[int, Measurement]]] = defaultdict(list)
    for m in measurements:
        if m.case.op_class in OP_CLASSES:
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


def _curve(points: dict[int, list[float]]) -> tuple[list[int], list[float]]:
    xs = sorted(points)
    return xs, [float(np.exp(np.mean(np.log(points[x])))) for x in xs]


def _table(rows: dict[int, dict[int, list[float]]]) -> tuple[list[int], list[int], list[list[float]]]:
    """A rectangular (batch x length) table; a batch row's missing lengths (capped by memory or time) take
    the log-space interpolation of that row, held constant beyond its ends."""
    lengths = sorted({x for r in rows.values() for x in r})
    batches = sorted(rows)
    table = []
    for b in batches:
        xs, ys = _curve(rows[b])
        filled = np.exp(np.interp(np.log(lengths), np.log(xs), np.log(ys)))
        table.append([_round(v) for v in filled])
    return batches, lengths, table


def _round(v: float) -> float:
    return float(f"{v:.4g}")


def fit_blocks(measurements: list[Measurement], hw: HardwareSpec, launch_s: float) -> dict:
    """The per-class part of the ``calibration:`` block: shape families with their ratio grids."""
    groups: dict[tuple, dict[int, dict[int, list[float]]]] = defaultdict(lambda: defaultdict(dict))
    for m in measurements:
        if m.case.op_class not in OP_CLASSES:
            continue
        fam, row, pos = _axis(m)
        x = int(round(float(m.operator.hbm_bytes))) if m.case.op_class == "elementwise" else pos
        groups[fam][row].setdefault(x, []).append(ratio(m, hw, launch_s))
    out: dict[str, list] = {cls: [] for cls in OP_CLASSES}
    for fam in sorted(groups, key=str):
        cls, rows = fam[0], groups[fam]
        if cls == "gemm":
            ms, rs = _curve(rows[0])
            out[cls].append({"dtype": fam[1], "n": fam[2], "k": fam[3], "m": ms, "ratio": [_round(r) for r in rs]})
        elif cls == "elementwise":
            xs, rs = _curve(rows[0])
            out[cls].append({"kind": fam[1], "bytes": xs, "ratio": [_round(r) for r in rs]})
        else:
            batches, lengths, table = _table(rows)
            length = "seq" if cls == "attn_prefill" else "context"
            out[cls].append({"dtype": fam[1], "heads": fam[2], "kv_heads": fam[3], "head_dim": fam[4],
                             "batch": batches, length: lengths, "ratio": table})
    return {cls: fams for cls, fams in out.items() if fams}


def fitted_efficiency(blocks: dict) -> dict[str, float]:
    """Roofline efficiencies for shapes no calibration covers: 1 / ratio at the largest measured size."""
    def eff(values: list[float]) -> float:
        return round(min(1.0, float(np.median([1.0 / v for v in values]))), 3)

    out = {}
    if "gemm" in blocks:
        out["gemm"] = eff([f["ratio"][-1] for f in blocks["gemm"]])
    if "attn_prefill" in blocks:
        out["attention"] = eff([f["ratio"][-1][-1] for f in blocks["attn_prefill"]])
    copy = [f for f in blocks.get("elementwise", []) if f["kind"] == "copy"]
    if copy:
        out["memory"] = eff([copy[0]["ratio"][-1]])
    return out


@dataclass(frozen=True, slots=True)
class Prediction:
    op_class: str
    kind: str
    measured_s: float
    before_s: float
    after_s: float
    source: str


def predict(held: list[Measurement], before: HardwareSpec, after: HardwareSpec,
            with_launch: bool = True) -> list[Prediction]:
    """Held-out predictions before (roofline of the base profile) and after calibration. ``with_launch``:
    the measurements include a launch gap per kernel (eager timing); imported CUDA-graph timings do not."""
    roof, cal = RooflineTimer(before), CalibratedTimer(after)
    out = []
    for m in held:
        t, r = cal.time(m.operator), roof.time(m.operator)
        after_s = float(t.total_s) if with_launch else float(t.total_s - t.launch_s)
        before_s = float(r.total_s) if with_launch else float(r.total_s - r.launch_s)
        out.append(Prediction(m.case.op_class, m.case.kind, m.median_s, before_s, after_s, t.source))
    return out


def family_holdout(measurements: list[Measurement], before: HardwareSpec,
                   fitted: Callable[[list[Measurement]], HardwareSpec]) -> list[Prediction]:
    """Leave one shape family out at a time (a GEMM's (N, K), an attention head layout, an elementwise kernel),
    fit the rest, predict it: the error on shapes no measurement covers (labelled extrapolated)."""
    fams: dict[tuple, list[Measurement]] = defaultdict(list)
    for m in measurements:
        if m.case.op_class in OP_CLASSES:
            fams[_axis(m)[0]].append(m)
    out = []
    for fam, ms in fams.items():
        if sum(1 for f in fams if f[0] == fam[0]) < 2:
            continue
        rest = [m for m in measurements if m.case.op_class in OP_CLASSES and _axis(m)[0] != fam]
        out += predict(ms, before, fitted(rest))
    return out


def error_table(preds: list[Prediction]) -> dict[str, dict[str, float]]:
    """Per class: count, median and p90 absolute relative error before and after calibration."""
    out = {}
    for cls in OP_CLASSES:
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
