"""Goodput and capacity of a configuration from a rate sweep's summaries (one row per rate x seed).

Goodput is the highest request rate at which the SLO holds (DistServe's definition): attainment of the
per-request targets at least the target fraction, every percentile target met, and the server in steady
state. Each rate is judged over its seeds: *ok* when every seed is stable and the SLO holds on the seed
mean; *fail* when any seed is overloaded or the SLO fails (an inconclusive run that already misses its SLO
misses it in steady state too); *unknown* when a seed is inconclusive and the SLO holds. Walking up the
rates, goodput lies between the highest *ok* rate before the first *fail* and that *fail*. It is exact
(interpolated on attainment, as a curve crossing the target) only when those two rates are neighbours,
both stable, and attainment is what fails; otherwise the lower end is reported with ``exact: false``: an
overloaded rate's attainment is a transient, not a point on the curve.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class RateJudgement:
    rate: float
    status: str  # ok | fail | unknown
    verdict: str  # stable | overloaded | inconclusive | offline (worst over seeds)
    attainment: float | None
    attainment_fails: bool


@dataclass(frozen=True)
class Goodput:
    """One configuration's goodput (requests/s; None when even the lowest rate fails or there is no SLO),
    whether it is exact, the rate that bounds it from above, and the capacity bracket from the verdicts."""

    label: str
    goodput_rps: float | None
    exact: bool
    upper_rps: float | None
    highest_stable_rps: float | None
    lowest_overloaded_rps: float | None
    inconclusive_rps: list[float] = field(default_factory=list)
    num_gpus: int = 1
    upper_reason: str = ""  # why the rate above fails: "overloaded" or "misses the SLO"
    usd_per_hour: float = 0.0  # the configuration's price (profiles' indicative GPU-hour prices)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["goodput_rps_per_gpu"] = None if self.goodput_rps is None else self.goodput_rps / self.num_gpus
        out["goodput_requests_per_usd"] = (None if self.goodput_rps is None or self.usd_per_hour <= 0
                                           else self.goodput_rps * 3600.0 / self.usd_per_hour)
        out["text"] = self.text()
        return out

    def text(self, unit: str = "req/s") -> str:
        """``5.4 req/s``, ``>= 6 req/s (7 overloaded)``, ``< 2 req/s (2 misses the SLO)``, ..."""
        notes = [f"{self.upper_rps:g} {self.upper_reason}"] if self.upper_rps is not None else []
        if self.inconclusive_rps:
            notes.append(f"{', '.join(f'{r:g}' for r in self.inconclusive_rps)} inconclusive: run more requests")
        if self.goodput_rps is None:
            return f"< {self.upper_rps:g} {unit} ({'; '.join(notes)})" if self.upper_rps is not None else "n/a"
        if self.exact:
            return f"{self.goodput_rps:.3g} {unit}"
        if self.upper_rps is None and not self.inconclusive_rps:
            notes.insert(0, "it holds at every rate run")
        return f">= {self.goodput_rps:g} {unit} ({'; '.join(notes)})"


_VERDICT_ORDER = {"stable": 0, "offline": 1, "inconclusive": 2, "overloaded": 3}


def judge_rates(rows: pd.DataFrame, rate_col: str) -> list[RateJudgement]:
    """One judgement per rate (seeds pooled), in increasing rate."""
    out = []
    for rate, g in rows.groupby(rate_col, sort=True):
        verdicts = g["load_verdict"].fillna("inconclusive") if "load_verdict" in g else pd.Series(["stable"])
        worst = max(verdicts, key=lambda v: _VERDICT_ORDER.get(v, 2))
        att = float(g["slo_attainment"].mean()) if "slo_attainment" in g and g["slo_attainment"].notna().any() else None
        target = float(g["slo_target_attainment"].iloc[0]) if "slo_target_attainment" in g else 0.9
        att_fails = att is not None and att < target
        pct_fails = "slo_percentiles_met" in g and not bool(g["slo_percentiles_met"].fillna(False).astype(bool).all())
        fails = att_fails or pct_fails
        status = "fail" if worst == "overloaded" or fails else ("ok" if worst == "stable" else "unknown")
        out.append(RateJudgement(float(rate), status, worst, att, att_fails and not pct_fails))
    return out


def goodput(rows: pd.DataFrame, rate_col: str, label: str = "all points", target: float = 0.9) -> Goodput:
    """Goodput of one configuration (``rows``: its summaries over rates and seeds); see the module doc."""
    judged = judge_rates(rows, rate_col)
    has_slo = "slo_met" in rows or "slo_attainment" in rows
    stable = [j.rate for j in judged if j.verdict == "stable"]
    overloaded = [j.rate for j in judged if j.verdict == "overloaded"]
    gpus = int(rows["num_gpus"].iloc[0]) if "num_gpus" in rows and rows["num_gpus"].notna().any() else 1
    price = rows["price_per_hour_usd"] if "price_per_hour_usd" in rows else pd.Series(dtype=float)
    common = dict(label=label, highest_stable_rps=max(stable) if stable else None,
                  lowest_overloaded_rps=min(overloaded) if overloaded else None, num_gpus=gpus,
                  usd_per_hour=float(price.iloc[0]) if price.notna().any() else 0.0)
    if not has_slo:
        return Goodput(goodput_rps=None, exact=False, upper_rps=None, inconclusive_rps=[], **common)
    first_fail = next((i for i, j in enumerate(judged) if j.status == "fail"), None)
    below = judged[:first_fail] if first_fail is not None else judged
    oks = [i for i, j in enumerate(below) if j.status == "ok"]
    unknown = [j.rate for j in below[oks[-1] + 1 if oks else 0:] if j.status == "unknown"]
    upper = judged[first_fail].rate if first_fail is not None else None
    if first_fail is not None:
        common["upper_reason"] = "overloaded" if judged[first_fail].verdict == "overloaded" else "misses the SLO"
    if not oks:
        return Goodput(goodput_rps=None, exact=False, upper_rps=upper, inconclusive_rps=unknown, **common)
    lo = judged[oks[-1]]
    value, exact = lo.rate, False
    if first_fail == oks[-1] + 1:
        hi = judged[first_fail]
        if hi.verdict == "stable" and hi.attainment_fails and lo.attainment is not None:
            value = float(np.interp(target, [hi.attainment, lo.attainment], [hi.rate, lo.rate]))
            exact = True
    return Goodput(goodput_rps=value, exact=exact, upper_rps=upper, inconclusive_rps=unknown, **common)
