"""Prediction intervals from the residuals of real runs: split conformal, by metric family and grade.

A residual is ``r = ln(predicted / measured)`` of one metric of one stage of one real run
(``benchmarks/real_runs.py --write-residuals`` writes them to ``residuals.json`` here, with how they were
made). For a new prediction ``y`` of grade ``g`` the interval at level ``1 - a`` is
``[y e^-q, y e^q]``, where ``q`` is the ``ceil((n + 1)(1 - a))``-th smallest ``|r|`` of the ``n``
residuals of that family and grade (split conformal prediction, Vovk et al. 2005; Lei et al. 2018, JASA
113:1094): if the new run is exchangeable with the calibration runs, the measured value falls inside with
probability at least ``1 - a``, whatever the residuals' distribution. With fewer than
``ceil(1 / a) - 1`` residuals no finite ``q`` exists; since the stages of one run share its errors, the
residuals must also come from at least that many distinct runs (the exchangeable units).

Worse grades are never narrower: a grade with too few residuals of its own pools them with every worse
grade's, and ``q`` of a grade is at least ``q`` of each better grade (near-capacity runs are graded one
letter worse, so that is where they widen). Overloaded runs (grade D) get no interval. Summary metrics
without residuals of their own use the nearest measured family (``FAMILIES``); ``proxy`` says which do.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from llmsim.trust.grades import GRADES

LEVEL = 0.9
DEFAULT_PATH = Path(__file__).with_name("residuals.json")
# summary column -> (residual family, proxy?): the family whose real-run errors stand for the metric's
FAMILIES: dict[str, tuple[str, bool]] = {
    "ttft_mean_s": ("ttft_mean", False), "ttft_p50_s": ("ttft_mean", True), "ttft_p90_s": ("ttft_p90", False),
    "ttft_p99_s": ("ttft_p99", False), "e2e_mean_s": ("e2e_mean", False), "e2e_p50_s": ("e2e_mean", True),
    "e2e_p90_s": ("e2e_p90", False), "e2e_p99_s": ("e2e_p99", False), "tpot_mean_s": ("itl", False),
    "tpot_p50_s": ("itl", True), "tpot_p90_s": ("itl", True), "tpot_p99_s": ("itl", True),
    "itl_mean_s": ("itl", False), "throughput_rps": ("throughput", False),
    "output_tokens_per_s": ("throughput", True),
}


def min_residuals(level: float) -> int:
    """Fewest residuals for which the conformal quantile at ``level`` is finite."""
    return math.ceil((1.0 - 1e-12) / (1.0 - level)) - 1


def conformal_quantile(abs_residuals: Sequence[float], level: float = LEVEL) -> float:
    """The ``ceil((n + 1) level)``-th smallest of ``n`` absolute residuals (inf when that exceeds n)."""
    if not 0 < level < 1:
        raise ValueError(f'"level" must be in (0, 1), got {level!r}')
    v = np.sort(np.abs(np.asarray(abs_residuals, dtype=np.float64)))
    k = math.ceil((len(v) + 1) * level - 1e-9)
    return float(v[k - 1]) if 1 <= k <= len(v) else math.inf


@dataclass(frozen=True, slots=True)
class Residual:
    run: str
    model: str
    family: str
    grade: str
    log_ratio: float
    stage: int = -1
    pressure: float = 0.0


@dataclass(frozen=True, slots=True)
class Quantile:
    q: float  # half-width in log space (inf: no finite interval)
    n: int  # residuals it rests on
    pooled: str  # which grades' residuals were used, e.g. "B" or "B+C"

    def bounds(self, value: float) -> tuple[float, float] | None:
        if value is None or not math.isfinite(self.q) or not math.isfinite(value):
            return None
        return value * math.exp(-self.q), value * math.exp(self.q)


@dataclass(frozen=True)
class ResidualTable:
    rows: tuple[Residual, ...] = ()
    provenance: Mapping[str, object] = field(default_factory=dict)

    def excluding(self, run: str | None = None, model: str | None = None) -> ResidualTable:
        """The table without one run's (or one model's) residuals: for held-out coverage."""
        keep = tuple(r for r in self.rows if (run is None or r.run != run) and (model is None or r.model != model))
        return ResidualTable(keep, self.provenance)

    def quantile(self, family: str, grade: str, level: float = LEVEL) -> Quantile:
        """Conformal half-width for ``family`` at ``grade`` (see the module docstring)."""
        if grade not in GRADES[:-1]:
            return Quantile(math.inf, 0, "")
        own = self._own(family, grade, level)
        if not own.n:
            return own
        q = own.q
        for g in GRADES[: GRADES.index(grade)]:  # never narrower than a better grade
            better = self._own(family, g, level)
            if better.n and math.isfinite(better.q):
                q = max(q, better.q)
        return Quantile(q, own.n, own.pooled)

    def _own(self, family: str, grade: str, level: float) -> Quantile:
        """Residuals of ``grade``, pooled with worse grades until there are enough."""
        need = min_residuals(level)
        values: list[float] = []
        runs: set[str] = set()
        used = []
        for g in GRADES[GRADES.index(grade):-1]:
            got = [r for r in self.rows if r.family == family and r.grade == g]
            if got:
                values += [r.log_ratio for r in got]
                runs |= {r.run for r in got}
                used.append(g)
            if len(runs) >= need:
                break
        if not values:
            return Quantile(math.inf, 0, "")
        # the stages of one run are not independent: the guarantee needs `need` exchangeable runs
        q = conformal_quantile(values, level) if len(runs) >= need else math.inf
        return Quantile(q, len(values), "+".join(used))


def load_residuals(path: str | Path | None = None) -> ResidualTable:
    """The residual table (every set in the file); empty when the file is absent. Parsed once per file
    version (every simulated point asks for it)."""
    p = Path(path) if path is not None else DEFAULT_PATH
    if not p.is_file():
        return ResidualTable()
    st = p.stat()
    return _load(str(p.resolve()), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=8)
def _load(path: str, _mtime_ns: int, _size: int) -> ResidualTable:
    p = Path(path)
    data = json.loads(p.read_text(encoding="utf-8"))
    rows = []
    for _name, block in sorted(data.get("sets", {}).items()):
        for r in block.get("residuals", []):
            rows.append(Residual(r["run"], r["model"], r["family"], r["grade"], float(r["log_ratio"]),
                                 int(r.get("stage", -1)), float(r.get("pressure", 0.0))))
    return ResidualTable(tuple(rows), {k: v.get("provenance", {}) for k, v in data.get("sets", {}).items()})


def write_residual_set(path: str | Path, name: str, provenance: Mapping[str, object],
                       rows: Iterable[Residual]) -> None:
    """Replace set ``name`` of the residual file (other sets are kept), sorted for stable diffs."""
    p = Path(path)
    data = json.loads(p.read_text(encoding="utf-8")) if p.is_file() else {}
    sets = data.setdefault("sets", {})
    ordered = sorted(rows, key=lambda r: (r.run, r.stage, r.family))
    sets[name] = {"provenance": dict(provenance), "residuals": [
        {"run": r.run, "model": r.model, "stage": r.stage, "family": r.family, "grade": r.grade,
         "log_ratio": round(r.log_ratio, 6), "pressure": round(r.pressure, 4)} for r in ordered]}
    data["format"] = "llmsim residuals 1: log_ratio = ln(predicted / measured), see llmsim/trust/intervals.py"
    p.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def metric_interval(table: ResidualTable, metric: str, value: float | None, grade: str,
                    level: float = LEVEL) -> tuple[float, float] | None:
    """Interval of a summary metric (``FAMILIES`` key) predicted as ``value`` at ``grade``; None when there
    is no family, too few residuals, or the run is overloaded."""
    fam = FAMILIES.get(metric)
    if fam is None or value is None:
        return None
    return table.quantile(fam[0], grade, level).bounds(float(value))


def held_out_coverage(table: ResidualTable, level: float = LEVEL, by: str = "run") -> dict[str, tuple[int, int]]:
    """Per family, (covered, with an interval) over every residual when the table it is judged by leaves
    out its own run (``by="run"``) or every run of its model (``by="model"``); residuals whose held-out
    table gives no finite interval are not counted (``missing_intervals`` counts them)."""
    out: dict[str, tuple[int, int]] = {}
    for r in table.rows:
        rest = table.excluding(run=r.run) if by == "run" else table.excluding(model=r.model)
        q = rest.quantile(r.family, r.grade, level).q
        if not math.isfinite(q):
            continue
        hit, n = out.get(r.family, (0, 0))
        out[r.family] = (hit + (abs(r.log_ratio) <= q), n + 1)
    return out


def missing_intervals(table: ResidualTable, level: float = LEVEL, by: str = "run") -> int:
    """Residuals whose held-out table gives no finite interval (too few residuals of their grade or worse)."""
    n = 0
    for r in table.rows:
        rest = table.excluding(run=r.run) if by == "run" else table.excluding(model=r.model)
        n += not math.isfinite(rest.quantile(r.family, r.grade, level).q)
    return n
