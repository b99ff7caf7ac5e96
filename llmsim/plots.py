"""Figures drawn from a results directory only (never from live simulator objects).

One figure per question: SLO attainment vs request rate (goodput marked), throughput vs latency, latency
CDFs, and per-point timelines of batch size, KV use and queue length. PNG and SVG, axes with units.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402

from llmsim.experiment.results import Results  # noqa: E402

RATE_FALLBACK = "arrival_rate_rps"


def rate_column(summary: pd.DataFrame) -> str:
    """The swept request rate if there is one, else the measured arrival rate."""
    swept = [c for c in summary.columns if c.startswith("sweep.") and "rate" in c]
    return swept[0] if swept else RATE_FALLBACK


def config_labels(summary: pd.DataFrame, rate_col: str) -> pd.Series:
    """A legend label per row naming the configuration: the sweep values other than the rate."""
    cols = [c for c in summary.columns if c.startswith("sweep.") and c != rate_col]
    if not cols:
        return pd.Series(["all points"] * len(summary), index=summary.index)
    return summary[cols].apply(lambda r: ", ".join(_value_label(c, v) for c, v in r.items()), axis=1)


def _value_label(column: str, value) -> str:
    """``scheduler={"kind": "vllm", "mode": "v0"}`` reads better as ``vllm mode=v0``."""
    name = column.removeprefix("sweep.")
    if isinstance(value, str) and value.startswith("{"):
        try:
            block = json.loads(value)
        except ValueError:
            return f"{name}={value}"
        kind = block.pop("kind", name)
        return " ".join([str(kind), *(f"{k}={v}" for k, v in block.items())])
    return f"{name}={value}"


def seed_mean(summary: pd.DataFrame, rate_col: str, value: str) -> pd.DataFrame:
    """Mean and 95 % confidence half-width over seeds, per configuration and rate."""
    df = summary.assign(label=config_labels(summary, rate_col))
    g = df.groupby(["label", rate_col])[value]
    out = g.agg(["mean", "std", "count"]).reset_index()
    out["ci95"] = 1.96 * out["std"].fillna(0.0) / np.sqrt(out["count"])
    return out.sort_values(["label", rate_col])


def goodput(rates: np.ndarray, attainment: np.ndarray, target: float) -> float | None:
    """Highest rate at which attainment >= target, interpolating linearly where it crosses down."""
    order = np.argsort(rates)
    r, a = rates[order], attainment[order]
    if not len(r) or a[0] < target:
        return None
    for i in range(1, len(r)):
        if a[i] < target:
            return float(r[i - 1] + (a[i - 1] - target) / (a[i - 1] - a[i]) * (r[i] - r[i - 1]))
    return float(r[-1])


def _save(fig, out_dir: Path, name: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.svg"]
    for p in paths:
        fig.savefig(p, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return paths


def plot_attainment(summary: pd.DataFrame, out_dir: Path) -> list[Path]:
    if "slo_attainment" not in summary or summary["slo_attainment"].isna().all():
        return []
    rate_col = rate_column(summary)
    stats = seed_mean(summary, rate_col, "slo_attainment")
    target = float(summary.get("slo_target_attainment", pd.Series([0.9])).iloc[0])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, g in stats.groupby("label"):
        line = ax.errorbar(g[rate_col], g["mean"], yerr=g["ci95"], marker="o", capsize=3, label=label)
        rates, att = g[rate_col].to_numpy(float), g["mean"].to_numpy(float)
        gp = goodput(rates, att, target)
        if gp is not None and gp >= rates.max():  # never dropped below target: goodput is at least this
            ax.annotate(f"goodput >= {gp:g}", (gp, target), textcoords="offset points", xytext=(-60, -18),
                        fontsize=8, color=line[0].get_color())
        elif gp is not None:
            ax.axvline(gp, color=line[0].get_color(), linestyle=":", alpha=0.8)
            ax.plot([gp], [target], marker="*", markersize=14, color=line[0].get_color())
    ax.axhline(target, color="grey", linestyle="--", linewidth=1, label=f"target {target:.0%}")
    ax.set_xlabel("request rate (requests/s)")
    ax.set_ylabel("SLO attainment (fraction of requests)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("SLO attainment vs request rate (star: goodput)")
    ax.legend(fontsize=8)
    return _save(fig, out_dir, "slo_attainment")


def plot_throughput_latency(summary: pd.DataFrame, out_dir: Path) -> list[Path]:
    rate_col = rate_column(summary)
    panels = [("ttft_p50_s", "TTFT p50"), ("ttft_p99_s", "TTFT p99"), ("tpot_p50_s", "TPOT p50"),
              ("tpot_p99_s", "TPOT p99")]
    panels = [p for p in panels if p[0] in summary]
    if not panels or "output_tokens_per_s" not in summary:
        return []
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), squeeze=False)
    df = summary.assign(label=config_labels(summary, rate_col))
    for ax, (col, title) in zip(axes.flat, panels, strict=False):
        for label, g in df.groupby("label"):
            m = g.groupby(rate_col)[["output_tokens_per_s", col]].mean().sort_index()
            ax.plot(m["output_tokens_per_s"], m[col] * 1e3, marker="o", label=label)
        ax.set_xlabel("output throughput (tokens/s)")
        ax.set_ylabel(f"{title} (ms)")
        ax.set_yscale("log")
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_title(f"{title} vs throughput")
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, out_dir, "throughput_latency")


def plot_latency_cdfs(results: Results, out_dir: Path, max_points: int = 10) -> list[Path]:
    summary = results.summary
    first_seed = summary[summary["seed"] == summary["seed"].min()].head(max_points)
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for _, row in first_seed.iterrows():
        req = results.requests(row["point_id"])
        req = req[req["status"] == "finished"]
        label = _point_label(row)
        for ax, col in zip(axes, ("ttft_s", "tpot_s", "e2e_s"), strict=True):
            v = np.sort(req[col].dropna().to_numpy(float))
            if len(v):
                ax.plot(v * 1e3, np.arange(1, len(v) + 1) / len(v), label=label)
    for ax, name in zip(axes, ("TTFT", "TPOT", "E2E latency"), strict=True):
        ax.set_xlabel(f"{name} (ms)")
        ax.set_ylabel("fraction of requests")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(f"{name} CDF")
    fig.tight_layout()
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2, fontsize=7)
    return _save(fig, out_dir, "latency_cdf")


def _point_label(row: pd.Series) -> str:
    parts = [_value_label(c, row[c]) for c in row.index if c.startswith("sweep.")]
    return ", ".join(parts) or str(row["point_id"])


def plot_timeline(results: Results, point_id: str, out_dir: Path) -> list[Path]:
    steps = results.steps(point_id)
    if not len(steps):
        return []
    fig, axes = plt.subplots(3, 1, figsize=(9, 7), sharex=True)
    t = steps["start_s"].to_numpy(float)
    axes[0].plot(t, steps["batch_size"], linewidth=0.8)
    axes[0].set_ylabel("batch size (sequences)")
    used = steps["kv_blocks_used"] / steps["kv_blocks_total"].replace(0, np.nan)
    axes[1].plot(t, used * 100, linewidth=0.8, color="tab:orange")
    axes[1].set_ylabel("KV blocks used (%)")
    axes[2].plot(t, steps["queue_len"], linewidth=0.8, color="tab:red")
    axes[2].set_ylabel("queue length (requests)")
    axes[2].set_xlabel("simulated time (s)")
    axes[0].set_title(f"timeline of point {point_id}")
    fig.tight_layout()
    return _save(fig, out_dir, f"timeline_{point_id}")


def plot_tradeoff(summary: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Median TTFT against p99 inter-token latency, one marker per configuration and rate (the
    Sarathi-Serve trade-off: smaller chunks, lower ITL tail, higher TTFT)."""
    if not {"ttft_p50_s", "itl_p99_s"} <= set(summary.columns):
        return []
    rate_col = rate_column(summary)
    df = summary.assign(label=config_labels(summary, rate_col))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, g in df.groupby("label"):
        m = g.groupby(rate_col)[["ttft_p50_s", "itl_p99_s"]].mean()
        ax.plot(m["ttft_p50_s"] * 1e3, m["itl_p99_s"] * 1e3, marker="o", label=label)
    ax.set_xlabel("TTFT p50 (ms)")
    ax.set_ylabel("inter-token latency p99 (ms)")
    ax.set_title("TTFT vs tail inter-token latency")
    ax.legend(fontsize=7)
    return _save(fig, out_dir, "ttft_vs_itl")


def plot_all(directory: str | Path, out_dir: str | Path | None = None, timelines: int = 3) -> list[Path]:
    """Every figure for a results directory; returns the files written (under DIR/plots by default)."""
    results = Results.load(directory)
    out = Path(out_dir) if out_dir is not None else Path(directory) / "plots"
    written = plot_attainment(results.summary, out) + plot_throughput_latency(results.summary, out)
    written += plot_tradeoff(results.summary, out)
    written += plot_latency_cdfs(results, out)
    for pid in results.summary["point_id"].head(timelines):
        written += plot_timeline(results, pid, out)
    return written
