"""The trust block ``llmsim run`` prints under its table: per row the grade and the interval of the headline
metrics, and how the grades and intervals were made."""

from __future__ import annotations

import math

import pandas as pd

HEADLINE = (("ttft_p99_s", "TTFT p99 ms", 1e3), ("tpot_p50_s", "TPOT p50 ms", 1e3), ("e2e_p50_s", "E2E p50 s", 1.0))


def _num(x) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def cell(row: pd.Series, metric: str, scale: float) -> str:
    """``412 [210-830] A``: value, interval (``-`` where none applies) and grade."""
    from llmsim.experiment.report import fmt_num

    v, lo, hi = (_num(row.get(k)) for k in (metric, f"lo.{metric}", f"hi.{metric}"))
    if v is None:
        return "-"
    band = f"[{fmt_num(lo * scale)}-{fmt_num(hi * scale)}]" if lo is not None and hi is not None else "[-]"
    grade = row.get(f"grade.{metric}")
    return f"{fmt_num(v * scale)} {band} {grade if isinstance(grade, str) else '-'}"


def trust_table(summary: pd.DataFrame) -> str:
    """Empty when the summary carries no grades (results written before they existed)."""
    from llmsim.experiment.report import Column, config_labels, render
    from llmsim.experiment.sweep import rate_key, value_label

    if "grade" not in summary or summary.empty:
        return ""
    level = _num(summary["interval_level"].iloc[0]) if "interval_level" in summary else 0.9
    cols = []
    rate = rate_key([c for c in summary.columns if c.startswith("sweep.")])
    labels = config_labels(summary, rate)
    if labels.str.len().max():
        cols.append(Column("", "config", [label[:30] for label in labels], left=True))
    if rate:
        cols.append(Column("", "rate", [value_label(v) for v in summary[rate]]))
    for metric, name, scale in HEADLINE:
        cols.append(Column(f"{level:.0%} interval, grade", name,
                           [cell(row, metric, scale) for _, row in summary.iterrows()], left=True))
    notes = [
        "grade: A = >=80 % of the metric's time from measured kernels and a fitted engine profile, B = with",
        "  extrapolated kernels, C = mostly roofline or an unfitted profile (one letter worse near capacity),",
        "  D = overloaded (no interval); intervals: split conformal on real vLLM runs' errors of that grade",
        "  (llmsim/trust/residuals.json); [-] = too few real-run errors of that grade or worse",
    ]
    return render(cols) + "\n" + "\n".join(notes)
