"""``report.md`` of an imported calibration: what was imported, fit error per kernel class on held-out points
and on unseen shape families, and which shapes a prediction from this profile extrapolates."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from llmsim.calibration.importers import Imported
from llmsim.calibration.report import TARGET, _error_lines


def _imported_lines(imp: Imported) -> list[str]:
    counts = Counter((m.case.op_class, m.case.dtype) for m in imp.measurements)
    lines = ["| class | dtype | kernel shapes |", "|---|---|---:|"]
    lines += [f"| {cls} | {dtype} | {n:,} |" for (cls, dtype), n in sorted(counts.items())]
    return lines


def _span(values: list) -> str:
    return f"{min(values):,}..{max(values):,}"


def _coverage_lines(cal: dict[str, Any]) -> list[str]:
    """Per class and dtype, the measured ranges; a shape outside them is predicted as ``extrapolated``."""
    lines = ["| class | dtype | families | measured range (outside: extrapolated) |", "|---|---|---:|---|"]
    for cls, size_keys in (("gemm", ("m", "n", "k")), ("attn_prefill", ("batch", "seq")),
                           ("attn_decode", ("batch", "context")), ("moe", ("tokens",))):
        by_dtype: dict[str, list[dict]] = {}
        for fam in cal.get(cls, []):
            by_dtype.setdefault(fam["dtype"], []).append(fam)
        for dtype, fams in sorted(by_dtype.items()):
            if cls == "gemm":  # a grid entry counts its measured (N, K) rows
                count = sum(sum(r is not None for r in f["ratio"]) if isinstance(f["n"], list) else 1 for f in fams)
            else:
                count = len(fams)
            parts = []
            for key in size_keys:
                values = [v for f in fams for v in (f[key] if isinstance(f[key], list) else [f[key]])]
                parts.append(f"{key} {_span(values)}")
            if cls.startswith("attn"):
                parts.append("layouts (heads/kv_heads/head_dim): " + ", ".join(
                    sorted({f"{f['heads']}/{f['kv_heads']}/{f['head_dim']}" for f in fams})))
            lines.append(f"| {cls} | {dtype} | {count} | {'; '.join(parts)} |")
    for fam in cal.get("allreduce", []):
        lines.append(f"| allreduce | {fam.get('kind', 'bf16')} | ranks {fam['ranks']} | bytes "
                     f"{_span(fam['bytes'])} |")
    return lines


def _physics_lines(physics: dict[str, Any]) -> list[str]:
    lines = []
    for cls, by_label in sorted(physics.items()):
        if cls == "allreduce":
            lines.append("- allreduce: " + ", ".join(f"{k} {v:.4g}" for k, v in sorted(by_label.items())))
            continue
        for label, consts in sorted(by_label.items()):
            lines.append(f"- {cls} {label}: " + ", ".join(f"{k} {v:.4g}" for k, v in sorted(consts.items())))
    return lines


def write_import_report(folder: Path, imp: Imported, profile: dict, out: Path) -> list[Path]:
    cal = profile["calibration"]
    env = cal["environment"]
    errors = cal.get("heldout_error", {})
    lines = [f"# Calibration of {profile['name']} from imported kernel timings", "",
             f"Profile written: `{out}` (base: {cal['base']}). Command: `{env['command']}`.", "",
             "## Imported", ""]
    lines += [f"- {s}" for s in imp.sources]
    lines += [f"- GPU recorded in the data: {imp.device or 'not recorded'}", "- files read:"]
    lines += [f"  - `{f}`" for f in imp.files]
    lines += [""] + _imported_lines(imp)
    if imp.notes:
        lines += ["", "Rows not used, and other notes:", ""] + [f"- {n}" for n in imp.notes]
    lines += ["", "## Fit", "", cal["method"] + ".", "", "Fitted constants (`calibration.physics`):", "",
              *_physics_lines(cal.get("physics", {})), "",
              "## Error on held-out points", "",
              f"Every other point of each swept axis (ends kept) is held out and predicted by a fit on the rest. "
              f"'Before' is the base profile's roofline, 'after' the calibrated timer. {TARGET}.", ""]
    lines += _error_lines(errors.get("heldout_points", {}))
    lines += ["", "## Error on unseen shape families", "",
              "Each GEMM (N, K), attention head layout and MoE expert layout left out (one at a time, or in 20 "
              "folds for classes with more families), its class refitted (physics and residuals) without it and "
              "predicted: the error to expect for a model whose shapes were not measured.", ""]
    lines += _error_lines(errors.get("unseen_families", {}))
    lines += ["", "## Error on unseen all-reduce group sizes", "",
              "Each TP size left out, the all-reduce algorithm terms fitted on the others, and predicted.", ""]
    lines += _error_lines(errors.get("unseen_tp_sizes", {}))
    lines += ["", "## Coverage: what a prediction extrapolates", "",
              "Inside these ranges a prediction is `interpolated` between measured points; outside them (or for a "
              "dtype, KV format or head layout not listed) it is `extrapolated` from the nearest measured family, "
              "and classes with no data at all use the base roofline (`roofline`).", ""]
    lines += _coverage_lines(cal)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return [path]
