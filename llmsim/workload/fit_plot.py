"""The ``workload fit --plot`` figure: fitted vs empirical distributions.

Fitted curves are drawn from samples of the fitted processes themselves (fixed seed), so every candidate,
on/off and empirical ones included, is shown the same way it would generate traffic.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from llmsim.workload.arrivals import ARRIVALS
from llmsim.workload.describe import describe_trace
from llmsim.workload.fit import WorkloadFit
from llmsim.workload.lengths import LENGTHS
from llmsim.workload.traces import TraceData

_SAMPLES = 20_000


def _ecdf(ax, values: np.ndarray, label: str, **style) -> None:
    v = np.sort(values)
    ax.step(v, np.arange(1, len(v) + 1) / len(v), where="post", label=label, **style)


def _gaps_of(block: dict) -> np.ndarray:
    process = ARRIVALS.build(block)
    times = next(process.chunks(np.random.default_rng(0)))[: _SAMPLES + 1]
    gaps = np.diff(times)
    return gaps[gaps > 0]


def _arrival_panel(ax, fit: WorkloadFit) -> None:
    gaps = fit.arrival.gaps[fit.arrival.gaps > 0]
    _ecdf(ax, gaps, "trace", color="black", linewidth=2)
    for cand in fit.arrival.candidates:
        _ecdf(ax, _gaps_of(cand.block), f"{cand.name} (D={cand.ks_d:.3f})", alpha=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("inter-arrival gap (s)")
    ax.set_ylabel("CDF")
    ax.set_title(f"Inter-arrival gaps (CV {fit.arrival.cv:.2f})")
    ax.legend(fontsize=7)


def _rate_panel(ax, trace: TraceData) -> None:
    s = describe_trace(trace)
    rate = np.array(s.rate_per_s)
    ax.step(np.arange(len(rate)) * s.rate_bin_s, rate, where="post", color="black")
    ax.set_xlabel("time (s)")
    ax.set_ylabel(f"req/s per {s.rate_bin_s:g} s")
    ax.set_title("Rate over time")


def _length_panel(ax, values: np.ndarray, block: dict, what: str) -> None:
    _ecdf(ax, values, "trace", color="black", linewidth=2)
    model = LENGTHS.build(block).sample(np.random.default_rng(0), _SAMPLES)
    _ecdf(ax, model, f"fitted {block['kind']}", color="tab:red")
    ax.set_xscale("log")
    ax.set_xlabel(f"{what} tokens")
    ax.set_ylabel("CDF")
    ax.set_title(f"{what.capitalize()} length")
    ax.legend(fontsize=7)


def plot_fit(fit: WorkloadFit, trace: TraceData, path: str | Path) -> None:
    """Write a 2x2 PNG: inter-arrival CDFs, rate over time, input and output length CDFs."""
    fig = Figure(figsize=(11, 8), layout="constrained")
    axes = fig.subplots(2, 2)
    if fit.arrival is not None:
        _arrival_panel(axes[0, 0], fit)
        _rate_panel(axes[0, 1], trace)
    else:
        for ax in axes[0]:
            ax.text(0.5, 0.5, "no timestamps in this trace", ha="center", va="center")
            ax.set_axis_off()
    _length_panel(axes[1, 0], trace.input_tokens, fit.input_len.proposal, "input")
    _length_panel(axes[1, 1], trace.output_tokens, fit.output_len.proposal, "output")
    fig.suptitle(f"workload fit: {Path(fit.source).name}")
    fig.savefig(path, dpi=110)
