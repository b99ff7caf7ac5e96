"""Is a run in steady state? Overload judged from the request records alone, for any batching policy.

A server keeps up when, over the measurement window, it completes requests as fast as they arrive: the
number in the system (arrived, not yet finished) then fluctuates around a level instead of climbing, and
E2E latency does not grow with arrival time. Time to first scheduling is no guide (an MLFQ such as
FastServe's schedules every request at once and then starves it), so this module looks only at arrival
and finish times.

Method. The number in the system N(t) is sampled over the second half of the window (the first half
absorbs the ramp from an empty system that a short warm-up leaves in) and split into ``BATCHES`` batch
means; their least-squares slope is the backlog growth g (requests/s). Its standard error is the larger
of the batch-means one (Law & Kelton ch. 9) and the one a regression over correlated noise has,
sqrt(12 var(N) min(tau, T) / T^3) for a judged span of T seconds and a two-sided correlation time tau of N: the
larger of the infinite-server value (``correlation_time_s``) and the autocorrelation time measured on
the whole window (``autocorrelation_time_s``; near saturation queueing makes it several times longer).
With few, correlated batches the residuals alone understate the noise. The served fraction is the
completions inside the window over the admitted arrivals inside it. Verdicts:

- ``overloaded``: g is at least ``GROWTH_T`` standard errors above zero and at least ``GROWTH_MIN`` of the
  arrival rate, and the window served at most 1 - ``SERVED_DEFICIT`` of its arrivals (98 %);
- ``stable``: not overloaded, no such deficit, g + 2 se under ``STABLE_MAX`` of the arrival rate, and the
  judged half spans at least ``SPAN_TAU`` correlation times tau (time enough for the backlog to show a
  trend and to forget its start);
- ``inconclusive``: neither (the run is too short or too noisy to tell: run more requests);
- ``offline``: every request arrives at once, so there is no arrival rate to keep up with.

The thresholds were set on the quickstart configuration (Llama-3.1-8B, H100, vLLM v1, chat traffic) from
6 seeds x {600, 2000, 4000} requests x rates 2-8 req/s against 20,000-request runs that settle the truth
(stable at 6.5 req/s, overloaded at 7): no stable rate was called overloaded; see
``tests/metrics/test_overload.py`` for the policies checked.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from llmsim.metrics.window import Window, measured_mask, take_rows

BATCHES = 8
GRID = 32 * BATCHES  # samples of N(t) over the judged half
MIN_REQUESTS = 40  # fewer measured requests than this: too few to judge
GROWTH_T = 3.5
GROWTH_MIN = 0.02
SERVED_DEFICIT = 0.02
STABLE_MAX = 0.05
SPAN_TAU = 4.0
JUDGED = 0.5  # the last half of the window
JUDGE_COLUMNS = ("arrival_s", "status", "finish_s")  # what the verdict reads of the admitted requests
VERDICTS = ("stable", "overloaded", "inconclusive", "offline")


@dataclass(frozen=True, slots=True)
class Overload:
    """The load verdict of a run (one of ``VERDICTS``) and the evidence; truthy only when overloaded."""

    overloaded: bool
    reason: str = ""
    verdict: str = "stable"
    served_fraction: float | None = None  # completions / admitted arrivals inside the window
    backlog_growth_rps: float | None = None  # slope of the number in the system over the judged half
    backlog_growth_se_rps: float | None = None
    arrival_rate_rps: float | None = None  # admitted arrivals per second over the judged half
    e2e_first_s: float | None = None  # mean E2E of the first and last batch of arrivals in the judged half
    e2e_last_s: float | None = None

    def __bool__(self) -> bool:
        return self.overloaded

    def fields(self) -> dict:
        """The summary columns: ``load_verdict``, ``overloaded``, ``overload_reason`` and the evidence."""
        return {"load_verdict": self.verdict, "overloaded": self.overloaded, "overload_reason": self.reason,
                "served_fraction": self.served_fraction, "backlog_growth_rps": self.backlog_growth_rps,
                "backlog_growth_se_rps": self.backlog_growth_se_rps}


def number_in_system(requests: pd.DataFrame, times: np.ndarray) -> np.ndarray:
    """Admitted requests that have arrived and not finished at each of ``times`` (unfinished ones never
    leave; rejected ones never enter)."""
    status = requests["status"]
    arrivals = np.sort(requests["arrival_s"].to_numpy(np.float64)[(status != "rejected").to_numpy()])
    departures = np.sort(requests["finish_s"].to_numpy(np.float64)[(status == "finished").to_numpy()])
    return (np.searchsorted(arrivals, times, side="right")
            - np.searchsorted(departures, times, side="right")).astype(np.float64)


def _slope(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares slope of y on x and its standard error (0 when the fit is exact)."""
    xc = x - x.mean()
    sxx = float((xc**2).sum())
    slope = float((xc * (y - y.mean())).sum()) / sxx
    resid = y - y.mean() - slope * xc
    dof = max(len(x) - 2, 1)
    return slope, float(np.sqrt((resid**2).sum() / dof / sxx))


def _e2e_by_arrival(adm: pd.DataFrame, end_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Arrival times and E2E (engine side) of admitted requests; unfinished ones get the lower bound
    ``end_s - arrival``."""
    arrival = adm["arrival_s"].to_numpy(np.float64)
    finish = np.where(adm["status"] == "finished", adm["finish_s"].to_numpy(np.float64), end_s)
    return arrival, finish - arrival


def detect_overload(requests: pd.DataFrame, steps: pd.DataFrame | None = None, unfinished: int = 0,
                    end_s: float | None = None) -> Overload:
    """Judge the measured requests (``phase == "measured"``, or all) of a run; see the module docstring.
    ``steps`` is unused (kept for callers); ``unfinished`` and ``end_s`` describe a run cut off by a
    time limit (its unfinished requests count as still in the system)."""
    window = Window.of(requests)
    adm = take_rows(requests, measured_mask(requests) & (requests["status"] != "rejected").to_numpy(), JUDGE_COLUMNS)
    end = float(end_s) if end_s is not None else float(requests["finish_s"].max() if len(requests) else 0.0)
    if window.length_s <= 0:
        return Overload(False, "all requests arrive at once: no arrival rate to keep up with", "offline")
    served = int(window.completed_mask(requests).sum()) / len(adm) if len(adm) else None
    if len(adm) < MIN_REQUESTS:
        why = f"only {len(adm)} measured requests (at least {MIN_REQUESTS} needed to judge)"
        if unfinished:
            why += f"; {unfinished} unfinished when the run stopped"
        return Overload(False, why, "inconclusive", served_fraction=served)
    return _judge(requests, adm, window, end, served)


def _judge(requests: pd.DataFrame, adm: pd.DataFrame, window: Window, end_s: float,
           served: float | None) -> Overload:
    start = window.end_s - JUDGED * window.length_s
    span = window.end_s - start
    times = start + (np.arange(GRID) + 0.5) * span / GRID
    n_grid = number_in_system(requests, times)
    growth, se = _slope(times.reshape(BATCHES, -1).mean(axis=1), n_grid.reshape(BATCHES, -1).mean(axis=1))
    arrival, e2e = _e2e_by_arrival(adm, end_s)
    late = arrival >= start
    rate = float(late.sum()) / span
    resid = n_grid - n_grid.mean() - growth * (times - times.mean())
    tau = max(2 * correlation_time_s(e2e[late]), _window_autocorrelation_s(requests, window))
    se = max(se, float(np.sqrt(12 * resid.var() * min(tau, span) / span**3)))  # tau > span: two ends
    batch_s = span / BATCHES
    which = np.minimum(((arrival[late] - start) / batch_s).astype(np.int64), BATCHES - 1)
    e_first = float(e2e[late][which == 0].mean()) if (which == 0).any() else None
    e_last = float(e2e[late][which == BATCHES - 1].mean()) if (which == BATCHES - 1).any() else None
    evidence = dict(served_fraction=served, backlog_growth_rps=growth, backlog_growth_se_rps=se,
                    arrival_rate_rps=rate, e2e_first_s=e_first, e2e_last_s=e_last)
    text = _evidence_text(growth, se, rate, served, e_first, e_last)
    deficit = served is not None and served <= 1 - SERVED_DEFICIT
    if growth >= GROWTH_T * se and growth >= GROWTH_MIN * rate and deficit:
        return Overload(True, f"backlog grows: {text}", "overloaded", **evidence)
    if growth + 2 * se < STABLE_MAX * rate and span >= SPAN_TAU * tau and not deficit:
        return Overload(False, "", "stable", **evidence)
    if span < SPAN_TAU * tau:
        hint = (f"the judged span ({span:.3g} s) is under {SPAN_TAU:g} correlation times of the backlog "
                f"({tau:.3g} s)")
    elif deficit:
        hint = "the window served too little, but the backlog trend is within noise"
    else:
        hint = "the backlog trend is within noise of the threshold"
    return Overload(False, f"cannot tell ({hint}; run more requests): {text}", "inconclusive", **evidence)


def _window_autocorrelation_s(requests: pd.DataFrame, window: Window) -> float:
    """Autocorrelation time of N(t) over the window past its first tenth, after a linear detrend: a longer
    stretch than the judged one, so that slow wandering is seen as noise, not removed as trend."""
    t = np.linspace(window.start_s + 0.1 * window.length_s, window.end_s, 4 * GRID)
    n = number_in_system(requests, t)
    slope, _ = _slope(t, n)
    return autocorrelation_time_s(n - n.mean() - slope * (t - t.mean()), t[1] - t[0])


def correlation_time_s(e2e: np.ndarray) -> float:
    """E[S^2] / (2 E[S]) for time in system S: the (one-sided) correlation time of the number in an
    infinite-server queue (M/G/inf), which a continuously batching engine far below saturation resembles."""
    e2e = e2e[np.isfinite(e2e)]
    if not e2e.size or e2e.mean() <= 0:
        return 0.0
    return float((e2e**2).mean() / (2 * e2e.mean()))


def autocorrelation_time_s(x: np.ndarray, dt: float) -> float:
    """Two-sided integrated autocorrelation time of a series sampled every ``dt`` seconds, summed up to
    the first lag beyond five times the running estimate (Sokal's window); 0 for a constant series.
    Near saturation queueing makes it several times the infinite-server value."""
    x = x - x.mean()
    n = len(x)
    if not n or not np.any(x):
        return 0.0
    f = np.fft.rfft(x, 2 * n)
    acf = np.fft.irfft(f * np.conj(f))[:n]
    acf = acf / acf[0]
    tau = 1.0
    for lag in range(1, n):
        tau += 2 * acf[lag]
        if lag >= 5 * tau:
            break
    return float(max(tau, 1.0) * dt)


def _evidence_text(growth: float, se: float, rate: float, served: float | None, e_first: float | None,
                   e_last: float | None) -> str:
    parts = [f"number in system {growth:+.3g} ± {se:.2g} req/s ({growth / rate:+.1%} of the {rate:.3g} req/s "
             "arriving) over the last half of the window"]
    if served is not None:
        parts.append(f"served {served:.1%} of arrivals in the window")
    if e_first is not None and e_last is not None:
        parts.append(f"E2E {e_first:.3g} s -> {e_last:.3g} s")
    return "; ".join(parts)
