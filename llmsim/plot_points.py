"""Figures of the points' own tables: latency CDFs of every point and per-configuration timelines (drawn
from a results directory only; see ``llmsim.plots`` for the sweep-level figures and their conventions)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from llmsim.experiment.results import Results  # noqa: E402
from llmsim.plots import _save, latency_axis, rate_column, with_labels  # noqa: E402

CONFIGS_PER_FILE = 4
TIMELINE_BINS = 400
_STYLE = {"stable": "-", "offline": "-", "inconclusive": ":", "overloaded": "--"}
_WORD = {"stable": "", "offline": "", "inconclusive": ", inconclusive", "overloaded": ", OVERLOADED"}


def _verdict(rows: pd.DataFrame) -> str:
    order = ["stable", "offline", "inconclusive", "overloaded"]
    values = [v for v in rows.get("load_verdict", pd.Series(["stable"])) if isinstance(v, str)] or ["stable"]
    return max(values, key=lambda v: order.index(v) if v in order else 2)


def _measured(req: pd.DataFrame) -> pd.DataFrame:
    keep = req["status"] == "finished"
    if "phase" in req:
        keep &= req["phase"] == "measured"
    return req[keep]


LATENCY_COLUMNS = ("ttft_s", "tpot_s", "e2e_s")
CDF_POINTS = 2048  # points drawn per CDF curve: evenly spaced ranks, the first and last included


def _measured_latencies(results: Results, point_id: str) -> pd.DataFrame:
    """TTFT, TPOT and E2E of the point's measured finished requests, the requests table read a block at a
    time and only those columns (a million-request table is never held whole)."""
    parts = [_measured(b)[list(LATENCY_COLUMNS)]
             for b in results.request_blocks(point_id, ("status", "phase", *LATENCY_COLUMNS))]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(LATENCY_COLUMNS))


def _cdf_points(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(values, cumulative fractions) of sorted ``v`` at ``CDF_POINTS`` evenly spaced ranks at most: the
    empirical CDF's own points, thinned where a long run has more than a figure can show."""
    n = len(v)
    idx = np.arange(n) if n <= CDF_POINTS else np.unique(np.linspace(0, n - 1, CDF_POINTS).round().astype(np.int64))
    return v[idx], (idx + 1) / n


def _rated(summary: pd.DataFrame, rate_col: str, figure: str) -> pd.DataFrame:
    """The rows that have a rate to draw at; a point without one (no measured requests, so no measured
    arrival rate: a very short closed-loop run) is left out of ``figure``, and a note says so."""
    rate = pd.to_numeric(summary[rate_col], errors="coerce")
    ok = np.isfinite(rate.to_numpy(np.float64))
    if not ok.all():
        skipped = ", ".join(str(p) for p in summary.loc[~ok, "point_id"])
        print(f"note: {figure}: left out point(s) {skipped}: no {rate_col} (no measured requests; a longer run "
              "or fewer warm-up requests gives some)", file=sys.stderr)
    return summary[ok].assign(**{rate_col: rate[ok]})


def _rate_colors(rates) -> dict:
    rates = sorted(rates)
    cmap = plt.get_cmap("viridis")
    return {r: cmap(0.9 * i / max(len(rates) - 1, 1)) for i, r in enumerate(rates)}


def plot_latency_cdfs(results: Results, out_dir: Path) -> list[Path]:
    """TTFT, TPOT and E2E CDFs: a row per configuration (``CONFIGS_PER_FILE`` rows per file), a curve per
    rate, seeds pooled; every point is drawn."""
    summary = with_labels(results.summary, rate_col := rate_column(results.summary))
    summary = _rated(summary, rate_col, "latency CDFs")
    labels = [label for label in summary["label"].cat.categories if (summary["label"] == label).any()]
    written = []
    for start in range(0, len(labels), CONFIGS_PER_FILE):
        chunk = labels[start:start + CONFIGS_PER_FILE]
        fig, axes = plt.subplots(len(chunk), 3, figsize=(14, 3.2 * len(chunk) + 0.6), squeeze=False)
        for row, label in zip(axes, chunk, strict=True):
            _cdf_row(results, summary[summary["label"] == label], rate_col, row, label)
        fig.suptitle("Latency CDFs of measured requests (seeds pooled); dashed: overloaded, dotted: inconclusive",
                     fontsize=11)
        fig.tight_layout()
        name = "latency_cdf" if start == 0 else f"latency_cdf_{start // CONFIGS_PER_FILE + 1}"
        written += _save(fig, out_dir, name)
    return written


def _cdf_row(results: Results, rows: pd.DataFrame, rate_col: str, axes, label: str) -> None:
    colors = _rate_colors(rows[rate_col].unique())
    values = {col: [] for col in ("ttft_s", "tpot_s", "e2e_s")}
    for rate, g in rows.groupby(rate_col, sort=True):
        req = pd.concat([_measured_latencies(results, pid) for pid in g["point_id"]], ignore_index=True)
        verdict = _verdict(g)
        for ax, col in zip(axes, values, strict=True):
            v = np.sort(req[col].dropna().to_numpy(float)) * (1.0 if col == "e2e_s" else 1e3)
            v = v[v > 0]
            if len(v):
                values[col].append(v)
                x, y = _cdf_points(v)
                ax.plot(x, y, color=colors[rate], linestyle=_STYLE.get(verdict, "-"),
                        label=f"{rate:g} req/s{_WORD.get(verdict, '')}")
    names = (("ttft_s", "TTFT", "ms"), ("tpot_s", "TPOT", "ms"), ("e2e_s", "E2E latency", "s"))
    for ax, (col, name, unit) in zip(axes, names, strict=True):
        if values[col]:
            v = np.concatenate(values[col])
            latency_axis(ax, [v.min(), v.max()], "x")
        ax.set_xlabel(f"{name} ({unit})")
        ax.set_ylabel("fraction of requests")
        ax.set_title(f"{name} CDF" + ("" if label == "all points" else f" — {label}"), fontsize=9)
        ax.grid(alpha=0.3)
    if axes[-1].get_legend_handles_labels()[0]:
        axes[-1].legend(fontsize=7, loc="lower right", title="request rate", title_fontsize=7)


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=-]+", "_", label).strip("_") or "all"


def plot_timelines(results: Results, out_dir: Path) -> list[Path]:
    """Per configuration, one figure of batch size, KV use and requests in the system over simulated time,
    a line per rate (the lowest seed; binned means)."""
    summary = with_labels(results.summary, rate_col := rate_column(results.summary))
    summary = _rated(summary, rate_col, "timelines")
    labels = [label for label in summary["label"].cat.categories if (summary["label"] == label).any()]
    seed = summary["seed"].min()
    written = []
    for label in labels:
        rows = summary[(summary["label"] == label) & (summary["seed"] == seed)]
        lines = {pid: _timeline_means(results, pid) for pid in rows["point_id"]}
        if not any(line is not None for line in lines.values()):
            print(f"note: timeline{'' if label == 'all points' else ' of ' + label}: left out, no step table "
                  "(the points ran with output.steps: false, or ran no step)", file=sys.stderr)
            continue
        fig, axes = plt.subplots(3, 1, figsize=(10, 7.5), sharex=True)
        colors = _rate_colors(rows[rate_col].unique())
        for _, r in rows.sort_values(rate_col).iterrows():
            line = lines[r["point_id"]]
            if line is not None:
                _timeline(axes, line, colors[r[rate_col]], f"{r[rate_col]:g} req/s{_WORD.get(r.get('load_verdict'), '')}",
                          _STYLE.get(r.get("load_verdict"), "-"))
        axes[0].set_ylabel("batch size (sequences)")
        axes[1].set_ylabel("KV blocks used (%)")
        axes[2].set_ylabel("requests in the system\n(waiting + running)")
        axes[2].set_xlabel("simulated time (s)")
        for ax in axes:
            ax.grid(alpha=0.3)
        if axes[0].get_legend_handles_labels()[0]:
            axes[0].legend(fontsize=7, loc="upper right", title="request rate", title_fontsize=7)
        title = "Timeline" + ("" if label == "all points" else f" — {label}") + f", seed {seed}"
        axes[0].set_title(f"{title} (means over {TIMELINE_BINS} time bins)", fontsize=10)
        fig.tight_layout()
        written += _save(fig, out_dir, "timeline" if len(labels) == 1 else f"timeline_{_slug(label)}")
    return written


TIMELINE_COLUMNS = ("start_s", "batch_size", "kv_blocks_used", "kv_blocks_total", "num_in_system")


def _timeline_means(results: Results, point_id: str) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]] | None:
    """(bin centres, steps per bin, per series the sum over each bin's steps) of a point's step table, read a
    block at a time (``Results.step_blocks``: a million-request run's table is never held whole); None
    when the point has no step rows. Series: batch size, KV blocks used (%), requests in the system."""
    lo, hi, n = np.inf, -np.inf, 0
    for b in results.step_blocks(point_id, ("start_s",)):
        if len(b):
            t = b["start_s"].to_numpy(float)
            lo, hi, n = min(lo, t.min()), max(hi, t.max()), n + len(t)
    if not n:
        return None
    edges = np.linspace(lo, hi + 1e-9, TIMELINE_BINS + 1)
    counts = np.zeros(TIMELINE_BINS, dtype=np.int64)
    sums = [np.zeros(TIMELINE_BINS) for _ in range(3)]
    for b in results.step_blocks(point_id, TIMELINE_COLUMNS):
        which = np.clip(np.searchsorted(edges, b["start_s"].to_numpy(float), side="right") - 1, 0,
                        TIMELINE_BINS - 1)
        counts += np.bincount(which, minlength=TIMELINE_BINS)
        total = b["kv_blocks_total"].replace(0, np.nan).to_numpy(float)
        series = (b["batch_size"].to_numpy(float), 100 * b["kv_blocks_used"].to_numpy(float) / total,
                  b["num_in_system"].to_numpy(float))
        for acc, v in zip(sums, series, strict=True):
            acc += np.bincount(which, weights=np.nan_to_num(v), minlength=TIMELINE_BINS)
    return (edges[:-1] + edges[1:]) / 2, counts, sums


def _timeline(axes, line: tuple, color, label: str, style: str) -> None:
    centre, counts, sums = line
    ok = counts > 0
    for ax, total in zip(axes, sums, strict=True):
        mean = total / np.maximum(counts, 1)
        ax.plot(centre[ok], mean[ok], color=color, linewidth=0.9, linestyle=style, label=label)
