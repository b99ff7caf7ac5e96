"""``report.md`` and plots of a calibration: environment, what was measured, held-out error before and after."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmsim.calibration.fit import Prediction, gemm_families
from llmsim.calibration.measurements import OP_CLASSES
from llmsim.calibration.runner import Run

TARGET = "target: median <= 5 %, p90 <= 15 % per class"


def _pct(v: float) -> str:
    return f"{100 * v:.1f} %"


def _error_lines(errors: dict[str, dict[str, float]]) -> list[str]:
    lines = ["| class | held-out shapes | median before | p90 before | median after | p90 after |",
             "|---|---:|---:|---:|---:|---:|"]
    for cls, e in errors.items():
        lines.append(f"| {cls} | {e['n']} | {_pct(e['median_before'])} | {_pct(e['p90_before'])} | "
                     f"{_pct(e['median_after'])} | {_pct(e['p90_after'])} |")
    return lines


def _entries(blocks: dict, cls: str) -> list[dict]:
    return gemm_families(blocks.get(cls, [])) if cls == "gemm" else blocks.get(cls, [])


def _measured_lines(run: Run, blocks: dict) -> list[str]:
    lines = ["| class | family | points | sizes |", "|---|---|---:|---|"]
    for cls in OP_CLASSES:
        for fam in _entries(blocks, cls):
            if cls == "gemm":
                name, sizes = f"{fam['dtype']} N={fam['n']} K={fam['k']}", f"M {fam['m'][0]}..{fam['m'][-1]}"
                points = len(fam["m"])
            elif cls == "elementwise":
                name, sizes = fam["kind"], f"{fam['bytes'][0]:,}..{fam['bytes'][-1]:,} bytes"
                points = len(fam["bytes"])
            else:
                length = "seq" if cls == "attn_prefill" else "context"
                name = f"{fam['dtype']} heads={fam['heads']} kv={fam['kv_heads']} d={fam['head_dim']}"
                sizes = f"batch {fam['batch']}, {length} {fam[length][0]}..{fam[length][-1]}"
                points = len(fam["batch"]) * len(fam[length])
            lines.append(f"| {cls} | {name} | {points} | {sizes} |")
    return lines


def write_report(folder: Path, run: Run, errors: dict, preds: list[Prediction], blocks: dict,
                 profile: Path, unseen: dict | None = None) -> list[Path]:
    plots = _plot(folder, preds) + _plot_efficiency(folder, blocks)
    env = run.env
    cpu = env["device"] == "cpu"
    lines = [f"# Calibration of {env['name']}" + (" (CPU run, not a GPU)" if cpu else ""), ""]
    if cpu:
        lines += ["This is a CPU run: it exercises the calibration pipeline end to end. Its numbers describe "
                  "this CPU only and say nothing about any GPU.", ""]
    lines += [f"Profile written: `{profile}` (base: {run.base_name}). Command: `{env['command']}`.", "",
              "## Environment", ""]
    lines += [f"- {k}: {v}" for k, v in env.items() if k != "command"]
    lines += ["", f"Launch overhead (back-to-back tiny kernel): {run.launch_s * 1e6:.2f} us. "
              f"Planned {run.planned_s:.0f} s, took {run.wall_s:.0f} s; {len(run.measurements)} shapes measured.", "",
              "## Fit", "",
              "Per kernel class and dtype, the constants of the structural kernel model (llmsim.cost.kernels) are "
              "fitted by robust least squares; per shape family, the residual measured / model is interpolated "
              "piecewise-linearly in log space over the measured grid; outside the grid (or for an unmeasured "
              "family: between or nearest measured ones) the residual is held at the edge value and the fitted "
              "model carries the prediction. Every prediction says which: `interpolated`, `extrapolated` or "
              "`roofline`.", "",
              "## Held-out error", "",
              f"Every other point of each swept axis (ends kept) is held out; the fit uses the rest. 'Before' is "
              f"the base profile's roofline with its default efficiencies, 'after' the calibrated timer. {TARGET}.",
              "The profile itself is fitted on all points.", ""]
    lines += _error_lines(errors)
    if unseen:
        lines += ["", "Unseen shape families: each GEMM (N, K), attention head layout and elementwise kernel left "
                  "out in turn, predicted from the others (nearest family; labelled `extrapolated`). This is the "
                  "error to expect for a model whose shapes were not measured.", ""]
        lines += _error_lines(unseen)
    lines += ["", "## Measured", ""] + _measured_lines(run, blocks)
    if run.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in run.notes]
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    lines += ["", "Raw data: one CSV per class in this folder, one row per kernel shape (median seconds per call, "
              "spread = interquartile range / median)."]
    path = folder / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return [path, *plots]


def _plot(folder: Path, preds: list[Prediction]) -> list[Path]:
    try:
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:  # pragma: no cover - matplotlib is a core dependency
        return []
    classes = [c for c in OP_CLASSES if any(p.op_class == c for p in preds)]
    if not classes:
        return []
    fig, axes = plt.subplots(1, len(classes), figsize=(4.2 * len(classes), 4.2), squeeze=False)
    for ax, cls in zip(axes[0], classes, strict=True):
        ps = [p for p in preds if p.op_class == cls]
        meas = [p.measured_s for p in ps]
        _scatter(ax, meas, [p.before_s for p in ps], [p.after_s for p in ps])
        ax.set_title(f"{cls} (held out, n={len(ps)})")
        ax.set_xlabel("measured s")
    axes[0][0].set_ylabel("predicted s")
    fig.tight_layout()
    path = folder / "predicted_vs_measured.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return [path]


def _scatter(ax: Any, meas: list[float], before: list[float], after: list[float]) -> None:
    lo, hi = min(meas + before + after), max(meas + before + after)
    ax.plot([lo, hi], [lo, hi], color="black", lw=0.8)
    ax.scatter(meas, before, s=12, marker="x", color="grey", label="roofline (before)")
    ax.scatter(meas, after, s=12, color="tab:blue", label="calibrated (after)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.legend(fontsize=7)


def _plot_efficiency(folder: Path, blocks: dict) -> list[Path]:
    """Achieved efficiency (1 / fitted ratio) along each swept axis, one line per family (or batch row)."""
    import matplotlib.pyplot as plt  # noqa: PLC0415 (backend chosen in _plot)

    classes = [c for c in OP_CLASSES if blocks.get(c)]
    if not classes:
        return []
    fig, axes = plt.subplots(1, len(classes), figsize=(4.2 * len(classes), 4.2), squeeze=False)
    for ax, cls in zip(axes[0], classes, strict=True):
        for fam in _entries(blocks, cls):
            if cls == "gemm":
                ax.plot(fam["m"], [1 / r for r in fam["ratio"]], marker=".", label=f"N={fam['n']} K={fam['k']}")
                ax.set_xlabel("M (tokens)")
            elif cls == "elementwise":
                ax.plot(fam["bytes"], [1 / r for r in fam["ratio"]], marker=".", label=fam["kind"])
                ax.set_xlabel("bytes")
            else:
                length = "seq" if cls == "attn_prefill" else "context"
                for b, row in zip(fam["batch"], fam["ratio"], strict=True):
                    ax.plot(fam[length], [1 / r for r in row], marker=".",
                            label=f"h={fam['heads']} kv={fam['kv_heads']} b={b}")
                ax.set_xlabel(length)
        ax.set_xscale("log")
        ax.set_title(f"{cls}: model / measured")
        ax.legend(fontsize=6)
    fig.tight_layout()
    path = folder / "efficiency.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return [path]
