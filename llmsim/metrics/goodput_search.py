"""Goodput as one number: bisection over the request rate to the highest rate at which the SLO holds.

``bisect_goodput(holds, ...)`` asks ``holds(rate)`` (run a simulation at that rate and judge it: every seed
stable and the SLO attainment target met, as ``llmsim.metrics.goodput`` judges a sweep's rates) and keeps a
bracket ``[lo, hi]``: the SLO holds at ``lo`` and fails at ``hi``. It first grows (or shrinks) the start
rate by ``factor`` until it has a bracket, then halves it until ``hi - lo <= rel_tol * hi``. The answer is
``lo``: a rate that was run and passed, never an extrapolation. Attainment is assumed to fall with the
rate (DistServe's goodput definition presumes it); a curve that is not monotone can make bisection stop at
any crossing, which the recorded evaluations show.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True, slots=True)
class RateTrial:
    rate_rps: float
    holds: bool
    detail: str = ""  # why it failed (overloaded, attainment 0.83 < 0.9, ...) or the attainment reached


@dataclass(frozen=True)
class GoodputSearch:
    """Goodput (req/s; None when even ``min_rate_rps`` fails), the failing rate above it (None when the SLO
    held up to ``max_rate_rps``), every trial in order, and per-GPU and per-dollar figures."""

    goodput_rps: float | None
    upper_rps: float | None
    trials: tuple[RateTrial, ...] = field(default_factory=tuple)
    num_gpus: int = 1
    usd_per_hour: float = 0.0

    @property
    def goodput_rps_per_gpu(self) -> float | None:
        return None if self.goodput_rps is None else self.goodput_rps / self.num_gpus

    @property
    def requests_per_usd(self) -> float | None:
        """Requests served within the SLO per dollar at goodput (req/s x 3600 s/h / $/h)."""
        if self.goodput_rps is None or self.usd_per_hour <= 0:
            return None
        return self.goodput_rps * 3600.0 / self.usd_per_hour

    def to_dict(self) -> dict:
        out = asdict(self)
        out["trials"] = [asdict(t) for t in self.trials]
        out.update(goodput_rps_per_gpu=self.goodput_rps_per_gpu, requests_per_usd=self.requests_per_usd)
        return out


def bisect_goodput(holds: Callable[[float], bool | tuple[bool, str]], start_rps: float, *,
                   rel_tol: float = 0.05, factor: float = 2.0, min_rate_rps: float | None = None,
                   max_rate_rps: float | None = None, num_gpus: int = 1, usd_per_hour: float = 0.0,
                   max_trials: int = 40) -> GoodputSearch:
    """Highest rate at which ``holds(rate)`` is true, to ``rel_tol``; see the module doc. ``holds`` may
    return ``(ok, detail)``."""
    if not start_rps > 0 or not 0 < rel_tol < 1 or not factor > 1:
        raise ValueError(f"bisect_goodput: need start_rps > 0, 0 < rel_tol < 1, factor > 1; got {start_rps}, "
                         f"{rel_tol}, {factor}")
    low_limit = min_rate_rps if min_rate_rps is not None else start_rps / factor**6
    high_limit = max_rate_rps if max_rate_rps is not None else start_rps * factor**10
    trials: list[RateTrial] = []

    def run(rate: float) -> bool:
        got = holds(rate)
        ok, detail = got if isinstance(got, tuple) else (bool(got), "")
        trials.append(RateTrial(float(rate), bool(ok), detail))
        return bool(ok)

    lo, hi = _bracket(run, start_rps, factor, low_limit, high_limit)
    common = {"num_gpus": num_gpus, "usd_per_hour": usd_per_hour}
    if lo is None or hi is None:
        return GoodputSearch(lo, hi, tuple(trials), **common)
    while hi - lo > rel_tol * hi and len(trials) < max_trials:
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if run(mid) else (lo, mid)
    return GoodputSearch(lo, hi, tuple(trials), **common)


def _bracket(run: Callable[[float], bool], start: float, factor: float, low_limit: float,
             high_limit: float) -> tuple[float | None, float | None]:
    """``(lo, hi)`` with the SLO holding at ``lo`` and failing at ``hi``; ``(None, failing)`` when it fails
    down to ``low_limit``, ``(passing, None)`` when it holds up to ``high_limit``."""
    rate = start
    if run(rate):
        while rate < high_limit:
            nxt = min(rate * factor, high_limit)
            if not run(nxt):
                return rate, nxt
            rate = nxt
        return rate, None
    while rate > low_limit:
        nxt = max(rate / factor, low_limit)
        if run(nxt):
            return nxt, rate
        rate = nxt
    return None, rate
