"""What ``llmsim run`` and ``llmsim compare`` print: aligned tables that fit 120 columns, units in the
headers, sweep values as short labels, the load verdict and the request counts of every row; and the
experiment's headline numbers (goodput and capacity per configuration, also written as ``summary.json``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd

from llmsim.experiment.sweep import distinct_labels, rate_key, value_label

WIDTH = 120
STATUS = {"stable": "stable", "overloaded": "OVERLOADED", "inconclusive": "inconclusive", "offline": "offline"}


# --- number formats: never scientific notation, precision that reads ----------------------------------
def fmt_num(x, digits: int = 3) -> str:
    """``3.885e+05`` -> ``388,500``; ``0.01234`` -> ``0.0123``; None/NaN -> ``-``."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    x = float(x)
    if abs(x) >= 10 ** (digits - 1):
        return f"{x:,.0f}"
    if x == 0:
        return "0"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(x))))
    return f"{x:.{decimals}f}"


def fmt_ms(seconds) -> str:
    return fmt_num(None if seconds is None or _nan(seconds) else float(seconds) * 1e3)


def fmt_duration(seconds) -> str:
    """``0.05`` -> ``50 ms``, ``2.0`` -> ``2 s``."""
    s = float(seconds)
    return f"{s * 1e3:g} ms" if s < 1 else f"{s:g} s"


def fmt_frac(x) -> str:
    return "-" if x is None or _nan(x) else f"{float(x):.3f}"


def _nan(x) -> bool:
    try:
        return not math.isfinite(float(x))
    except (TypeError, ValueError):
        return True


@dataclass(frozen=True)
class Column:
    group: str
    name: str
    cells: list[str]
    left: bool = False

    @property
    def width(self) -> int:
        return max(len(self.name), *(len(c) for c in self.cells)) if self.cells else len(self.name)


def render(columns: Sequence[Column], gap: int = 2) -> str:
    """Two header rows (group titles spanning their columns, then names) over the cells."""
    widths = [c.width for c in columns]
    groups: list[list[int]] = []  # runs of neighbouring columns with the same non-empty group
    for i, c in enumerate(columns):
        if groups and c.group and columns[groups[-1][0]].group == c.group:
            groups[-1].append(i)
        else:
            groups.append([i])
    for members in groups:
        title = columns[members[0]].group
        span = sum(widths[i] for i in members) + gap * (len(members) - 1)
        widths[members[-1]] += max(0, len(title) - span)  # a title wider than its columns widens the last
    sep = " " * gap
    top = sep.join(columns[m[0]].group.center(sum(widths[i] for i in m) + gap * (len(m) - 1)) for m in groups)

    def line(cells: list[str]) -> str:
        return sep.join(t.ljust(w) if c.left else t.rjust(w)
                        for t, c, w in zip(cells, columns, widths, strict=True)).rstrip()

    rows = [line([c.name for c in columns])]
    rows += [line([c.cells[i] for c in columns]) for i in range(len(columns[0].cells) if columns else 0)]
    return "\n".join([top.rstrip(), *rows])


# --- the run table --------------------------------------------------------------------------------------
def config_labels(summary: pd.DataFrame, exclude: str | None = None) -> pd.Series:
    """Per row, the sweep values other than ``exclude`` (the rate) as one short label; "" without any."""
    cols = [c for c in summary.columns if c.startswith("sweep.") and c != exclude]
    if not cols:
        return pd.Series([""] * len(summary), index=summary.index, dtype=object)
    labels = distinct_labels([{c: r[c] for c in cols} for _, r in summary[cols].iterrows()])
    return pd.Series(labels, index=summary.index, dtype=object)


def _col(summary: pd.DataFrame, name: str) -> list:
    return list(summary[name]) if name in summary else [None] * len(summary)


def _counts(summary: pd.DataFrame) -> list[str]:
    rej, unf = _col(summary, "num_rejected"), _col(summary, "num_unfinished")
    return [f"{int(r or 0)}/{int(u or 0)}" for r, u in zip(rej, unf, strict=True)]


def _slo_cells(summary: pd.DataFrame) -> list[str]:
    att, met = _col(summary, "slo_attainment"), _col(summary, "slo_met")
    cells = []
    for a, m in zip(att, met, strict=True):
        flag = "" if m is None or _nan(m) else (" ok" if bool(m) else " miss")
        cells.append((fmt_frac(a) if a is not None and not _nan(a) else "-") + flag)
    return cells


def run_columns(summary: pd.DataFrame, config_names: list[str] | None = None) -> list[Column]:
    rate = rate_key([c for c in summary.columns if c.startswith("sweep.")])
    cols: list[Column] = []
    if config_names is not None:
        cols.append(Column("", "config", config_names, left=True))
    if rate:
        cols.append(Column("", "rate", [value_label(v) for v in summary[rate]]))
    if summary["seed"].nunique() > 1:
        cols.append(Column("", "seed", [str(s) for s in summary["seed"]]))
    cols.append(Column("", "status", [STATUS.get(v, str(v)) for v in _col(summary, "load_verdict")], left=True))
    if "grade" in summary:  # evidence grade of the row's metrics (llmsim.trust.grades)
        cols.append(Column("", "grade", [g if isinstance(g, str) else "-" for g in summary["grade"]]))
    per_gpu = "num_gpus" in summary and summary["num_gpus"].fillna(1).max() > 1
    tok = "output_tokens_per_s_per_gpu" if per_gpu else "output_tokens_per_s"
    cols += [Column("served", "req/s", [fmt_num(v) for v in _col(summary, "throughput_rps")]),
             Column("served", "tok/s/GPU" if per_gpu else "tok/s", [fmt_num(v) for v in _col(summary, tok)])]
    for metric, group in (("ttft", "TTFT ms"), ("tpot", "TPOT ms")):
        for q in ("p50", "p99"):
            cols.append(Column(group, q, [fmt_ms(v) for v in _col(summary, f"{metric}_{q}_s")]))
    cols.append(Column("ITL ms", "p99", [fmt_ms(v) for v in _col(summary, "itl_p99_s")]))
    cols.append(Column("E2E s", "p50", [fmt_num(v) for v in _col(summary, "e2e_p50_s")]))
    if "slo_attainment" in summary or "slo_met" in summary:
        cols.append(Column("SLO", "attain", _slo_cells(summary), left=True))
    cols.append(Column("requests", "rej/unf", _counts(summary)))
    cols.append(Column("requests", "preempt", [str(int(v or 0)) for v in _col(summary, "preemptions")]))
    return cols


def run_table(summary: pd.DataFrame) -> str:
    """The table ``llmsim run`` prints, with a legend of configurations when their labels are long."""
    rate = rate_key([c for c in summary.columns if c.startswith("sweep.")])
    labels = config_labels(summary, rate)
    legend = ""
    names = None
    if labels.str.len().max():
        names = list(labels)
        table = render(run_columns(summary, names))
        if max(len(line) for line in table.splitlines()) > WIDTH and labels.str.len().max() > len("config"):
            order = list(dict.fromkeys(labels))
            code = {label: chr(ord("A") + i) if i < 26 else f"C{i}" for i, label in enumerate(order)}
            names = [code[label] for label in labels]
            legend = "\n".join(f"  {code[label]}: {label}" for label in order) + "\n"
    text = render(run_columns(summary, names))
    return (f"configurations:\n{legend}\n" if legend else "") + text + _footnotes(summary)


def _footnotes(summary: pd.DataFrame) -> str:
    verdicts = set(_col(summary, "load_verdict"))
    notes = ["", "status: judged from throughput vs arrivals and the growth of the number in the system over the run",
             "rej/unf: requests rejected (they can never fit) / unfinished when the run stopped; latencies are of",
             "  the measured (not warm-up or cool-down) finished requests"]
    if "overloaded" in verdicts:
        notes.append("warning: OVERLOADED rows serve less than arrives, so the queue grows without bound: their")
        notes.append("  latencies describe a transient, not a steady state")
    if "inconclusive" in verdicts:
        notes.append("note: inconclusive rows ran too briefly to tell a steady state from a growing queue; raise")
        notes.append("  stop.num_requests (overload_reason in the summary says why)")
    return "\n".join(notes)


# --- the experiment's headline numbers --------------------------------------------------------------------
def slo_text(summary: pd.DataFrame) -> str:
    """``TTFT <= 1 s, TPOT <= 50 ms, on 90 % of requests; ITL p99 <= 100 ms``."""
    row = summary.iloc[0]
    per_request = [f"{m} <= {fmt_duration(row[f'slo_{k}'])}" for k, m in (("ttft_s", "TTFT"), ("tpot_s", "TPOT"),
                                                                         ("e2e_s", "E2E")) if _has(row, f"slo_{k}")]
    text = ", ".join(per_request)
    if text:
        target = row["slo_target_attainment"] if _has(row, "slo_target_attainment") else 0.9
        text += f" on {float(target):.0%} of requests"
    pct = [c.removeprefix("slo_") for c in summary.columns if c.startswith("slo_") and c.endswith("_s")
           and "_p" in c and _has(row, c)]
    pct_text = ", ".join(f"{k.split('_')[0].upper()} {k.split('_')[1]} <= {fmt_duration(row['slo_' + k])}"
                         for k in pct)
    return "; ".join(t for t in (text, pct_text) if t)


def _has(row: pd.Series, key: str) -> bool:
    return key in row and row[key] is not None and not _nan(row[key])


def experiment_summary(summary: pd.DataFrame) -> dict:
    """Goodput and capacity per configuration (``summary.json``); empty configurations without a rate sweep."""
    from llmsim.metrics.goodput import goodput

    rate = rate_key([c for c in summary.columns if c.startswith("sweep.")])
    if rate is None:
        return {"rate_column": None, "slo": slo_text(summary), "configurations": []}
    labels = config_labels(summary, rate)
    configs = []
    for label in dict.fromkeys(labels):
        rows = summary[labels == label]
        configs.append(goodput(rows, rate, label or "all points",
                               float(rows["slo_target_attainment"].iloc[0])
                               if "slo_target_attainment" in rows else 0.9).to_dict())
    return {"rate_column": rate, "slo": slo_text(summary), "configurations": configs}


def headline(exp: dict) -> str:
    """Lines printed under the run table: goodput and the capacity bracket per configuration."""
    lines = []
    for c in exp.get("configurations", []):
        name = f"{c['label']}: " if c["label"] != "all points" else ""
        stable = (f"highest stable rate {c['highest_stable_rps']:g} req/s" if c["highest_stable_rps"] is not None
                  else "no stable rate")
        over = (f"overloaded from {c['lowest_overloaded_rps']:g}" if c["lowest_overloaded_rps"] is not None
                else "none overloaded")
        capacity = f"{stable}, {over}"
        if exp.get("slo"):
            lines.append(f"{name}goodput {c['text']}; {capacity}")
        else:
            lines.append(f"{name}{capacity}")
    if lines and exp.get("slo"):
        lines.insert(0, f"goodput: the highest rate at which the SLO holds in steady state ({exp['slo']})")
    return "\n".join(lines)


# --- compare: runs side by side -----------------------------------------------------------------------------
METRICS: dict[str, tuple[str, str, Callable]] = {  # name -> (group, summary column, formatter)
    "status": ("status", "load_verdict", None),
    "grade": ("grade", "grade", None),  # evidence grade (llmsim.trust.grades), the worst over seeds
    "served": ("served req/s", "throughput_rps", fmt_num),
    "tokens": ("out tok/s/GPU", "output_tokens_per_s_per_gpu", fmt_num),
    "ttft_p50": ("TTFT p50 ms", "ttft_p50_s", fmt_ms),
    "ttft_p99": ("TTFT p99 ms", "ttft_p99_s", fmt_ms),
    "tpot_p50": ("TPOT p50 ms", "tpot_p50_s", fmt_ms),
    "tpot_p99": ("TPOT p99 ms", "tpot_p99_s", fmt_ms),
    "itl_p99": ("ITL p99 ms", "itl_p99_s", fmt_ms),
    "e2e_p50": ("E2E p50 s", "e2e_p50_s", fmt_num),
    "attainment": ("SLO attain", "slo_attainment", fmt_frac),
    "goodput": ("goodput req/s", "goodput_rps", fmt_num),
    "rejected": ("rejected", "num_rejected", fmt_num),
    "preemptions": ("preempt", "preemptions", fmt_num),
}
DEFAULT_METRICS = ("status", "grade", "served", "ttft_p50", "ttft_p99", "tpot_p50", "itl_p99", "e2e_p50", "attainment",
                   "tokens", "preemptions")


def status_over_seeds(verdicts: pd.Series) -> str:
    """The worst verdict over seeds, with the count when seeds disagree (``OVERLOADED 1/2``)."""
    order = ["overloaded", "inconclusive", "offline", "stable"]
    values = [v for v in verdicts if isinstance(v, str)]
    if not values:
        return "-"
    worst = min(values, key=lambda v: order.index(v) if v in order else len(order))
    n = values.count(worst)
    return STATUS.get(worst, worst) + (f" {n}/{len(values)}" if n < len(values) else "")


def run_names(directories: Sequence[str]) -> list[str]:
    """Column names for compared runs: the directories' names, numbered when two are the same."""
    from pathlib import Path

    names = [Path(d).name or str(d) for d in directories]
    if len(set(names)) < len(names):
        names = [f"{i + 1}:{n}" for i, n in enumerate(names)]
    return names


def _per_point(summary: pd.DataFrame, keep: list[str]) -> pd.DataFrame:
    """One row per sweep point (seeds pooled): numeric means, the worst verdict; index = point label."""
    sweep = [c for c in summary.columns if c.startswith("sweep.")]
    labels = config_labels(summary) if sweep else pd.Series([""] * len(summary), index=summary.index)
    labels = labels.replace("", "(all)")
    rows = {}
    for label, g in summary.groupby(labels, sort=False):
        row = {c: g[c].mean() for c in keep if c in g and c != "load_verdict" and pd.api.types.is_numeric_dtype(g[c])}
        if "load_verdict" in g:
            row["load_verdict"] = status_over_seeds(g["load_verdict"])
        if "grade" in g:
            from llmsim.trust.grades import worst

            row["grade"] = worst(g["grade"]) or "-"
        rows[label] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def compare_text(summaries: Sequence[pd.DataFrame], names: Sequence[str],
                 metrics: Sequence[str] = DEFAULT_METRICS) -> str:
    """Runs side by side: one row per sweep point (matched by label), one column per run under each metric;
    metrics that do not fit in ``WIDTH`` columns are left out (and named in a last line)."""
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        from llmsim.errors import ConfigError

        raise ConfigError(f"--metrics: unknown metric(s) {', '.join(unknown)}; choose from {', '.join(METRICS)}")
    keep = [METRICS[m][1] for m in metrics]
    tables = [_per_point(s, keep) for s in summaries]
    points = list(dict.fromkeys(label for t in tables for label in t.index))
    shown, legend = points, ""
    full = render(_compare_columns(tables, names, points, shown, list(metrics)))
    if max(len(p) for p in points) > 30 and max(len(line) for line in full.splitlines()) > WIDTH:
        shown = [chr(ord("A") + i) if i < 26 else f"P{i}" for i in range(len(points))]
        legend = "points:\n" + "\n".join(f"  {c}: {p}" for c, p in zip(shown, points, strict=True)) + "\n\n"
    chosen = list(metrics)
    left_out: list[str] = []
    while True:
        text = render(_compare_columns(tables, names, points, shown, chosen))
        if max(len(line) for line in text.splitlines()) <= WIDTH or len(chosen) <= 1:
            break
        left_out.insert(0, chosen.pop())
    if left_out:
        import textwrap

        note = f"(left out to fit {WIDTH} columns: {', '.join(left_out)}; choose with --metrics)"
        text += "\n" + "\n".join(textwrap.wrap(note, WIDTH))
    return legend + text


def _compare_columns(tables: list[pd.DataFrame], names: Sequence[str], points: list[str], shown: list[str],
                     metrics: list[str]) -> list[Column]:
    cols = [Column("", "point", shown, left=True)]
    for m in metrics:
        group, col, fmt = METRICS[m]
        for t, name in zip(tables, names, strict=True):
            cells = []
            for p in points:
                v = t.at[p, col] if p in t.index and col in t.columns else None
                cells.append(("-" if v is None or (not isinstance(v, str) and _nan(v)) else str(v)) if fmt is None
                             else fmt(v))
            cols.append(Column(group, name, cells, left=fmt is None))
    return cols
