"""Figures drawn from a results directory only (never from live simulator objects).

One figure per question, each readable without the code: SLO attainment vs request rate (goodput marked,
exact or as a bound), latency vs throughput per GPU, output tokens/s per GPU vs tokens/s per user (the
Pareto front InferenceX and ``vllm bench sweep`` draw), TTFT vs tail inter-token latency, latency CDFs
of every point, and per-configuration timelines. Overloaded points (the queue grows: their latencies are
a transient) are drawn as crosses on dashed segments, inconclusive ones hollow; error bars are the range
over seeds, and say so. Configurations keep the order of the sweep, with short labels. PNG and SVG.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

from llmsim.experiment.report import config_labels, experiment_summary, slo_text  # noqa: E402
from llmsim.experiment.results import Results  # noqa: E402
from llmsim.experiment.sweep import rate_key  # noqa: E402

RATE_FALLBACK = "arrival_rate_rps"
_ORDER = {"stable": 0, "offline": 1, "inconclusive": 2, "overloaded": 3}
PLAIN = FuncFormatter(lambda v, _: f"{v:,.0f}" if abs(v) >= 1000 else f"{v:g}")  # 20,000 not 2e+04


def rate_column(summary: pd.DataFrame) -> str:
    """The swept request rate if there is one, else the measured arrival rate."""
    return rate_key([c for c in summary.columns if c.startswith("sweep.")]) or RATE_FALLBACK


def with_labels(summary: pd.DataFrame, rate_col: str) -> pd.DataFrame:
    """``summary`` plus ``label`` (the configuration: sweep values other than the rate), in sweep order."""
    labels = config_labels(summary, rate_col).replace("", "all points")
    return summary.assign(label=pd.Categorical(labels, categories=list(dict.fromkeys(labels)), ordered=True))


def per_point(summary: pd.DataFrame, rate_col: str, columns: list[str]) -> pd.DataFrame:
    """One row per configuration and rate: seed means of ``columns`` (``_min``/``_max`` too), the worst
    load verdict over seeds and the number of seeds."""
    df = with_labels(summary, rate_col)
    cols = [c for c in columns if c in df]
    g = df.groupby(["label", rate_col], observed=True, sort=True)
    out = g[cols].mean()
    out = out.join(g[cols].min().add_suffix("_min")).join(g[cols].max().add_suffix("_max"))
    out["seeds"] = g.size()
    verdict = df["load_verdict"] if "load_verdict" in df else pd.Series("stable", index=df.index)
    out["verdict"] = df.assign(_v=verdict.fillna("inconclusive")).groupby(["label", rate_col], observed=True)["_v"] \
        .agg(lambda v: max(v, key=lambda x: _ORDER.get(x, 2)))
    return out.reset_index()


def _save(fig, out_dir: Path, name: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.svg"]
    for p in paths:
        fig.savefig(p, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return paths


def latency_axis(ax, values, axis: str = "y") -> None:
    """Log scale with plain-number ticks (at 1, 2, 5 x 10^k, or decades only beyond 2.5 decades) when the
    values span a decade or more, else
    linear: every panel has readable tick labels (a log axis over less than a decade has none by default)."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x) and x > 0], dtype=float)
    scale, locator = (getattr(ax, f"set_{axis}scale"), getattr(ax, f"{axis}axis"))
    if v.size and v.max() / v.min() >= 10:
        scale("log")
        decades = np.log10(v.max() / v.min())
        locator.set_major_locator(LogLocator(subs=(1.0,) if decades > 2.5 else (1.0, 2.0, 5.0)))
        locator.set_major_formatter(PLAIN)
        locator.set_minor_formatter(NullFormatter())
    else:
        locator.set_major_formatter(PLAIN)


def draw_series(ax, x, y, verdicts, color, label, yerr=None) -> None:
    """A configuration's points in rate order: solid between stable points, dashed towards others; filled
    markers when stable, hollow when inconclusive, crosses when overloaded."""
    x, y, verdicts = np.asarray(x, float), np.asarray(y, float), list(verdicts)
    for i in range(len(x) - 1):
        steady = verdicts[i] == verdicts[i + 1] == "stable"
        ax.plot(x[i:i + 2], y[i:i + 2], color=color, linestyle="-" if steady else "--", linewidth=1.4)
    if yerr is not None:
        ax.errorbar(x, y, yerr=yerr, fmt="none", ecolor=color, elinewidth=1, capsize=3)
    for xi, yi, v in zip(x, y, verdicts, strict=True):
        if v == "overloaded":
            ax.plot([xi], [yi], marker="X", markersize=9, color=color, markeredgecolor="black", linestyle="none")
        else:
            ax.plot([xi], [yi], marker="o", markersize=6, color=color, linestyle="none",
                    markerfacecolor=color if v in ("stable", "offline") else "white")
    ax.plot([], [], color=color, marker="o", label=label)  # one legend entry per configuration


def status_legend(verdicts) -> list[Line2D]:
    """Legend proxies for the marker styles that appear."""
    present = set(verdicts)
    out = [Line2D([], [], color="grey", marker="o", linestyle="-", label="stable")]
    if "inconclusive" in present:
        out.append(Line2D([], [], color="grey", marker="o", markerfacecolor="white", linestyle="--",
                          label="inconclusive (run too short to tell)"))
    if "overloaded" in present:
        out.append(Line2D([], [], color="grey", marker="X", markeredgecolor="black", linestyle="--",
                          label="overloaded (queue grows: a transient)"))
    return out


def _colors(labels) -> dict:
    cmap = plt.get_cmap("tab10")
    return {label: cmap(i % 10) for i, label in enumerate(labels)}


def _handles(ax, pts: pd.DataFrame, extra: list | None = None) -> tuple[list, list]:
    handles, labels = ax.get_legend_handles_labels()
    proxies = status_legend(pts["verdict"]) + (extra or [])
    if pts["label"].nunique() == 1 and pts["label"].iloc[0] == "all points":
        handles, labels = [], []
    return handles + proxies, labels + [p.get_label() for p in proxies]


def _legend(ax, pts: pd.DataFrame, loc: str = "best", extra: list | None = None) -> None:
    ax.legend(*_handles(ax, pts, extra), fontsize=7, loc=loc)


def _seed_note(pts: pd.DataFrame) -> str:
    n = int(pts["seeds"].max()) if len(pts) else 1
    return f"; bars: range over {n} seeds" if n > 1 else ""


def plot_attainment(summary: pd.DataFrame, out_dir: Path) -> list[Path]:
    if "slo_attainment" not in summary or summary["slo_attainment"].isna().all():
        return []
    rate_col = rate_column(summary)
    pts = per_point(summary, rate_col, ["slo_attainment"])
    target = float(summary["slo_target_attainment"].iloc[0]) if "slo_target_attainment" in summary else 0.9
    goodputs = {c["label"]: c for c in experiment_summary(summary)["configurations"]}
    colors = _colors(pts["label"].cat.categories)
    fig, ax = plt.subplots(figsize=(8, 5))
    right = float(pts[rate_col].max())
    for i, (label, g) in enumerate(pts.groupby("label", observed=True)):
        err = np.vstack([g["slo_attainment"] - g["slo_attainment_min"], g["slo_attainment_max"] - g["slo_attainment"]])
        draw_series(ax, g[rate_col], g["slo_attainment"], g["verdict"], colors[label], label,
                    err if g["seeds"].max() > 1 else None)
        _mark_goodput(ax, goodputs.get(label), target, target - 0.035 * (i + 1), colors[label], right)
    ax.axhline(target, color="grey", linestyle=":", linewidth=1)
    ax.text(right, target, f"target {target:.0%} ", va="bottom", ha="right", fontsize=7, color="grey")
    ax.set_xlabel("request rate (requests/s)")
    ax.set_ylabel("SLO attainment (fraction of requests)")
    ax.set_ylim(-0.02, 1.05)
    ax.set_title(f"SLO attainment vs request rate\n{slo_text(summary)}; star: goodput, bracket: goodput bounds"
                 f"{_seed_note(pts)}", fontsize=9)
    _legend(ax, pts, "lower left")
    return _save(fig, out_dir, "slo_attainment")


def _mark_goodput(ax, gp: dict | None, target: float, y: float, color, right: float) -> None:
    """A star at an exact goodput (on the target line); otherwise a bracket at height ``y`` from the lower
    bound to the rate that fails (an arrow when none does), labelled ``goodput >= X``."""
    if gp is None or gp.get("goodput_rps") is None:
        return
    if gp["exact"]:
        ax.plot([gp["goodput_rps"]], [target], marker="*", markersize=15, color=color, markeredgecolor="black")
        return
    lo, hi = gp["goodput_rps"], gp["upper_rps"] if gp["upper_rps"] is not None else right
    if hi > lo:
        ax.annotate("", xy=(hi, y), xytext=(lo, y),
                    arrowprops=dict(arrowstyle="|-|" if gp["upper_rps"] is not None else "]->", color=color, lw=1.2))
    ax.text(lo, y, f"goodput >= {lo:g} ", fontsize=7, color=color, va="center", ha="right")


def plot_throughput_latency(summary: pd.DataFrame, out_dir: Path) -> list[Path]:
    """TTFT and TPOT percentiles vs output tokens/s per GPU (comparable across layouts)."""
    panels = [p for p in (("ttft_p50_s", "TTFT p50"), ("ttft_p99_s", "TTFT p99"), ("tpot_p50_s", "TPOT p50"),
                          ("tpot_p99_s", "TPOT p99")) if p[0] in summary]
    tput = "output_tokens_per_s_per_gpu" if "output_tokens_per_s_per_gpu" in summary else "output_tokens_per_s"
    if not panels or tput not in summary:
        return []
    rate_col = rate_column(summary)
    bands = [f"{b}.{p[0]}" for p in panels for b in ("lo", "hi") if f"{b}.{p[0]}" in summary]
    summary = summary.assign(**{b: pd.to_numeric(summary[b], errors="coerce") for b in bands})
    pts = per_point(summary, rate_col, [tput, *(p[0] for p in panels), *bands])
    colors = _colors(pts["label"].cat.categories)
    fig, axes = plt.subplots(2, 2, figsize=(11, 8), squeeze=False)
    for ax, (col, title) in zip(axes.flat, panels, strict=False):
        for label, g in pts.groupby("label", observed=True):
            draw_series(ax, g[tput], g[col] * 1e3, g["verdict"], colors[label], label)
            interval_band(ax, g, tput, col, colors[label])
        latency_axis(ax, pts[col] * 1e3)
        ax.set_xlabel("output throughput (tokens/s per GPU)")
        ax.set_ylabel(f"{title} (ms)")
        ax.set_title(f"{title} vs throughput per GPU", fontsize=10)
        ax.grid(alpha=0.3)
    fig.suptitle("Latency vs throughput: one point per request rate (seed means); bands: prediction intervals",
                 fontsize=11)
    fig.tight_layout()
    handles, labels = _handles(axes.flat[0], pts)
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(len(labels), 5), fontsize=8)
    return _save(fig, out_dir, "throughput_latency")


def interval_band(ax, g: pd.DataFrame, x: str, col: str, color) -> None:
    """The prediction interval of ``col`` (``lo.``/``hi.`` columns, llmsim.trust.intervals) as a band."""
    lo, hi = f"lo.{col}", f"hi.{col}"
    if lo not in g or hi not in g or g[[lo, hi]].isna().all().all():
        return
    ax.fill_between(g[x].to_numpy(float), g[lo].to_numpy(float) * 1e3, g[hi].to_numpy(float) * 1e3, color=color,
                    alpha=0.12, linewidth=0)


def pareto_front(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Indices of the points no other point beats on both x and y (higher is better), by increasing x."""
    order = np.lexsort((-y, -x))
    front, best = [], -np.inf
    for i in order:
        if y[i] > best:
            front.append(i)
            best = y[i]
    return np.asarray(front[::-1], dtype=int)


def plot_interactivity(summary: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Output tokens/s per GPU vs tokens/s per user (1 / median TPOT), with the Pareto front of the steady
    points: the trade-off InferenceX and ``vllm bench sweep`` plot."""
    need = {"tpot_p50_s", "output_tokens_per_s_per_gpu"}
    if not need <= set(summary.columns):
        return []
    rate_col = rate_column(summary)
    pts = per_point(summary, rate_col, sorted(need))
    pts = pts[pts["tpot_p50_s"] > 0]
    if pts.empty:
        return []
    pts = pts.assign(per_user=1.0 / pts["tpot_p50_s"])
    colors = _colors(pts["label"].cat.categories)
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for label, g in pts.groupby("label", observed=True):
        draw_series(ax, g["per_user"], g["output_tokens_per_s_per_gpu"], g["verdict"], colors[label], label)
        for _, r in g.iterrows():
            ax.annotate(f"{r[rate_col]:g}", (r["per_user"], r["output_tokens_per_s_per_gpu"]), fontsize=6,
                        textcoords="offset points", xytext=(4, 3), color=colors[label])
    steady = pts[pts["verdict"] == "stable"]
    extra = []
    if len(steady) > 1:
        idx = pareto_front(steady["per_user"].to_numpy(float), steady["output_tokens_per_s_per_gpu"].to_numpy(float))
        front = steady.iloc[idx]
        ax.plot(front["per_user"], front["output_tokens_per_s_per_gpu"], color="grey", linewidth=6, alpha=0.3,
                zorder=0, solid_capstyle="round")
        extra = [Line2D([], [], color="grey", linewidth=6, alpha=0.3, label="Pareto front of the stable points")]
    ax.set_xlabel("interactivity: tokens/s per user (1 / median TPOT)")
    ax.set_ylabel("output throughput (tokens/s per GPU)")
    ax.set_title("Throughput per GPU vs interactivity (labels: request rate, req/s)", fontsize=10)
    ax.grid(alpha=0.3)
    _legend(ax, pts, "best", extra)
    return _save(fig, out_dir, "throughput_vs_interactivity")


def plot_tradeoff(summary: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Median TTFT against p99 inter-token latency, one marker per configuration and rate (the
    Sarathi-Serve trade-off: smaller chunks, lower ITL tail, higher TTFT)."""
    if not {"ttft_p50_s", "itl_p99_s"} <= set(summary.columns):
        return []
    rate_col = rate_column(summary)
    pts = per_point(summary, rate_col, ["ttft_p50_s", "itl_p99_s"])
    colors = _colors(pts["label"].cat.categories)
    fig, ax = plt.subplots(figsize=(8, 5))
    for label, g in pts.groupby("label", observed=True):
        draw_series(ax, g["ttft_p50_s"] * 1e3, g["itl_p99_s"] * 1e3, g["verdict"], colors[label], label)
    latency_axis(ax, pts["ttft_p50_s"] * 1e3, "x")
    latency_axis(ax, pts["itl_p99_s"] * 1e3, "y")
    ax.set_xlabel("TTFT p50 (ms)")
    ax.set_ylabel("inter-token latency p99 (ms)")
    ax.set_title("TTFT vs tail inter-token latency (one point per configuration and rate)", fontsize=10)
    ax.grid(alpha=0.3)
    _legend(ax, pts)
    return _save(fig, out_dir, "ttft_vs_itl")


def plot_all(directory: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """Every figure for a results directory; returns the files written (under DIR/plots by default)."""
    from llmsim.plot_points import plot_latency_cdfs, plot_timelines

    results = Results.load(directory)
    out = Path(out_dir) if out_dir is not None else Path(directory) / "plots"
    s = results.summary
    written = plot_attainment(s, out) + plot_throughput_latency(s, out) + plot_interactivity(s, out)
    written += plot_tradeoff(s, out)
    written += plot_latency_cdfs(results, out) + plot_timelines(results, out)
    return written


__all__ = ["latency_axis", "pareto_front", "per_point", "plot_all", "plot_attainment",
           "plot_interactivity", "plot_throughput_latency", "plot_tradeoff", "rate_column"]
