"""Summary statistics of a trace: what ``llmsim workload describe`` prints."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from llmsim.workload.traces import TraceData

_BINS_S = (1, 5, 10, 30, 60, 300, 600, 1800, 3600, 21600, 86400)
_PERCENTILES = (50, 90, 99)
_SPARK = "▁▂▃▄▅▆▇█"


@dataclass(frozen=True, slots=True)
class LengthStats:
    """Token-length summary; percentiles use linear interpolation (numpy's default)."""

    mean: float
    min: int
    p50: float
    p90: float
    p99: float
    max: int

    @classmethod
    def of(cls, values: np.ndarray) -> LengthStats:
        p50, p90, p99 = np.percentile(values, _PERCENTILES)
        return cls(
            float(values.mean()), int(values.min()), float(p50), float(p90), float(p99), int(values.max())
        )


@dataclass(frozen=True, slots=True)
class TraceSummary:
    """What a trace looks like. Arrival fields are None for length-only traces.

    ``mean_rate_per_s`` is requests / (last arrival - first arrival); ``interarrival_cv`` is std / mean of
    the gaps; ``rate_per_s`` is the request count per ``rate_bin_s`` bin divided by the bin width;
    ``prefix_hit_share`` is the share of prompt tokens an unbounded prefix cache would hit (None without
    prefix ids); ``tied_arrival_share`` is the share of zero gaps (high values mean a quantised clock).
    """

    path: str
    format: str
    requests: int
    malformed_rows: int
    duration_s: float | None
    mean_rate_per_s: float | None
    interarrival_cv: float | None
    tied_arrival_share: float | None
    rate_bin_s: float | None
    rate_per_s: tuple[float, ...] | None
    input_tokens: LengthStats
    output_tokens: LengthStats
    io_pearson: float
    io_spearman: float
    prefix_hit_share: float | None

    def to_dict(self) -> dict:
        return asdict(self)


def prefix_hit_share(trace: TraceData) -> float | None:
    """Share of prompt tokens served from an unbounded prefix cache, replaying requests in arrival order.

    A request hits its longest run of leading blocks already seen (radix-cache semantics: block i can only
    hit if blocks 0..i-1 did); hit tokens are capped at the prompt length, since the last block is partial.
    """
    if trace.hash_ids is None:
        return None
    seen: set[int] = set()
    hit = 0
    for ids, prompt in zip(trace.hash_ids, trace.input_tokens.tolist(), strict=True):
        matched = 0
        for h in ids:
            if h not in seen:
                break
            matched += 1
        hit += min(matched * trace.chunk_tokens, prompt)
        seen.update(ids)
    return hit / float(trace.input_tokens.sum())


def _bin_width(duration_s: float) -> float:
    """The smallest round bin width that gives at most 60 bins."""
    for width in _BINS_S:
        if duration_s / width <= 60:
            return float(width)
    return float(_BINS_S[-1])


def _arrival_fields(trace: TraceData, bin_s: float | None) -> dict:
    t = trace.arrival_s
    if t is None or len(t) < 2:
        keys = (
            "duration_s",
            "mean_rate_per_s",
            "interarrival_cv",
            "tied_arrival_share",
            "rate_bin_s",
            "rate_per_s",
        )
        return dict.fromkeys(keys)
    duration = float(t[-1] - t[0])
    gaps = np.diff(t)
    width = bin_s or _bin_width(duration)
    counts = np.bincount(((t - t[0]) // width).astype(np.int64))
    return {
        "duration_s": duration,
        "mean_rate_per_s": len(t) / duration if duration > 0 else math.inf,
        "interarrival_cv": float(gaps.std() / gaps.mean()) if gaps.mean() > 0 else math.inf,
        "tied_arrival_share": float(np.mean(gaps == 0)),
        "rate_bin_s": width,
        "rate_per_s": tuple(float(c) / width for c in counts),
    }


def describe_trace(trace: TraceData, bin_s: float | None = None) -> TraceSummary:
    """Compute the summary; ``bin_s`` overrides the rate-over-time bin width."""
    inp, out = trace.input_tokens, trace.output_tokens
    constant = inp.min() == inp.max() or out.min() == out.max()
    return TraceSummary(
        path=trace.path,
        format=trace.format,
        requests=len(trace),
        malformed_rows=len(trace.malformed),
        **_arrival_fields(trace, bin_s),
        input_tokens=LengthStats.of(inp),
        output_tokens=LengthStats.of(out),
        io_pearson=0.0 if constant else float(np.corrcoef(inp, out)[0, 1]),
        io_spearman=0.0 if constant else float(stats.spearmanr(inp, out).statistic),
        prefix_hit_share=prefix_hit_share(trace),
    )


def sparkline(values: tuple[float, ...] | list[float]) -> str:
    """One character per value, scaled from 0 to the maximum."""
    top = max(values) if values else 0
    if top <= 0:
        return _SPARK[0] * len(values)
    return "".join(_SPARK[min(int(v / top * (len(_SPARK) - 1) + 0.5), len(_SPARK) - 1)] for v in values)


def _fmt(value: float | None, unit: str = "", digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}g}{unit}" if abs(value) < 1e6 else f"{value:.4g}{unit}"


def format_summary(s: TraceSummary) -> str:
    """A readable table for the terminal."""
    rows = [
        ("trace", f"{s.path} ({s.format})"),
        (
            "requests",
            f"{s.requests}" + (f" ({s.malformed_rows} malformed rows skipped)" if s.malformed_rows else ""),
        ),
        ("duration", _fmt(s.duration_s, " s", 5)),
        ("mean rate", _fmt(s.mean_rate_per_s, " req/s")),
        ("inter-arrival CV", _fmt(s.interarrival_cv)),
    ]
    if s.tied_arrival_share:
        rows.append(
            ("tied arrivals", f"{s.tied_arrival_share:.1%} of gaps are 0 (quantised clock? try --spread-s)")
        )
    if s.rate_per_s:
        r = np.array(s.rate_per_s)
        rows.append(
            (
                f"rate per {s.rate_bin_s:g} s",
                f"min {r.min():.3g} / median {np.median(r):.3g} / max {r.max():.3g} req/s",
            )
        )
        rows.append(("", sparkline(s.rate_per_s)))
    for name, ls in (("input tokens", s.input_tokens), ("output tokens", s.output_tokens)):
        rows.append(
            (
                name,
                f"mean {ls.mean:.1f}  min {ls.min}  p50 {ls.p50:.0f}  p90 {ls.p90:.0f}  p99 {ls.p99:.0f}  max {ls.max}",
            )
        )
    rows.append(("input/output corr", f"pearson {s.io_pearson:.3f}  spearman {s.io_spearman:.3f}"))
    hit = (
        "- (no prefix ids)"
        if s.prefix_hit_share is None
        else f"{s.prefix_hit_share:.1%} of prompt tokens (unbounded cache)"
    )
    rows.append(("prefix reuse", hit))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
