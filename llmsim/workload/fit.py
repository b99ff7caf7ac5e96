"""Fitting a workload model to a trace: arrivals and lengths, with goodness of fit and a verdict.

Arrivals: inter-arrival gaps are fitted by maximum likelihood as exponential (Poisson), gamma and Weibull
renewal processes, and as a hyperexponential H2 (EM), which is exactly the gap law of an on/off interrupted
Poisson process (Kuczura 1973), converted to the ``bursty`` process. Each gets a Kolmogorov-Smirnov
distance D. With thousands of gaps KS p-values reject every model of real data, so the verdict uses D as an
effect size: D <= 0.05 fits, <= 0.10 is fair, above that the model is wrong in shape.

Lengths: log-normal, gamma and exponential by maximum likelihood; if none is within D <= 0.05 of the data,
the empirical distribution (201 quantiles) is used instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from llmsim.workload.lengths import normal_score_correlation
from llmsim.workload.modulated import Bursty
from llmsim.workload.traces import TraceData

GOOD_D, FAIR_D = 0.05, 0.10


@dataclass(frozen=True, slots=True)
class Candidate:
    """One fitted model: its YAML block, log-likelihood, AIC and KS distance."""

    name: str
    block: dict
    loglik: float
    aic: float
    ks_d: float

    @property
    def quality(self) -> str:
        return "good" if self.ks_d <= GOOD_D else "fair" if self.ks_d <= FAIR_D else "poor"


@dataclass(frozen=True, slots=True)
class ArrivalFit:
    """Candidates (best AIC first), the proposed ``arrival`` block and a one-paragraph verdict."""

    candidates: tuple[Candidate, ...]
    proposal: dict
    verdict: str
    gaps: np.ndarray = field(repr=False)
    cv: float = 0.0


@dataclass(frozen=True, slots=True)
class LengthFit:
    candidates: tuple[Candidate, ...]
    proposal: dict
    verdict: str


def _sig(x: float, digits: int = 4) -> float:
    """Round to significant digits so written YAML stays readable."""
    return float(f"{x:.{digits}g}")


def _candidate(name: str, block: dict, logpdf: np.ndarray, k: int, ks_d: float) -> Candidate:
    ll = float(np.sum(logpdf))
    return Candidate(name, block, ll, 2 * k - 2 * ll, float(ks_d))


def _ks(x_sorted: np.ndarray, cdf: np.ndarray) -> float:
    """Two-sided KS distance between the sample's ECDF and model CDF values at the sorted sample."""
    n = len(x_sorted)
    upper = np.arange(1, n + 1) / n - cdf
    lower = cdf - np.arange(0, n) / n
    return float(max(upper.max(), lower.max()))


def silence_threshold_s(x: np.ndarray) -> float:
    """Gaps longer than this are silences between bursts.

    Fixed point of tau = m * ln(n), where m is the mean of the gaps below tau: a Poisson burst with mean gap m
    has a gap above m * ln(n) about once in n gaps, so longer gaps are unlikely to be inside a burst.
    """
    m, log_n = float(np.median(x)) / math.log(2), math.log(len(x))
    for _ in range(100):
        inside = x[x <= m * log_n]
        m_new = float(inside.mean())
        if abs(m_new - m) <= 1e-9 * m:
            break
        m = m_new
    return m * log_n


def _bursty_candidate(x: np.ndarray, xs: np.ndarray) -> tuple[Candidate, float]:
    """On/off fit by segmenting at silences; returns the candidate and the share of time spent silent.

    In-burst gaps give the on rate and (gamma MLE) the in-burst CV; silences give the mean off time. Its KS
    distance compares the gaps against a long simulated run of the fitted process (fixed seed), since the
    process has no closed-form gap law once ``on_cv`` is not 1. It has no likelihood, so no AIC.
    """
    tau = silence_threshold_s(x)
    silent, inside = x[x > tau], x[x <= tau]
    k, _, scale = stats.gamma.fit(inside, floc=0) if len(inside) > 2 else (1.0, 0, inside.mean())
    rate = 1.0 / (k * scale)
    block = {
        "kind": "bursty",
        "on_rate_per_s": _sig(rate),
        "mean_on_s": _sig(max(inside.sum() / (len(silent) + 1), 1e-6)),
        # a silence also contains the time to the first arrival of the next burst
        "mean_off_s": _sig(max(float(silent.mean()) - 1.0 / rate, 1e-6) if len(silent) else 1e-6),
        "on_cv": _sig(1 / math.sqrt(k)),
    }
    process = Bursty(**{key: v for key, v in block.items() if key != "kind"})
    sim = np.diff(next(process.chunks(np.random.default_rng(0)))[: max(20_000, len(x)) + 1])
    ks_d = float(stats.ks_2samp(x, sim[sim > 0]).statistic)
    return Candidate("bursty", block, math.nan, math.nan, ks_d), float(silent.sum() / x.sum())


def _renewal_candidates(x: np.ndarray, xs: np.ndarray) -> list[Candidate]:
    rate = 1.0 / x.mean()
    out = [
        _candidate(
            "poisson",
            {"kind": "poisson", "rate_per_s": _sig(rate)},
            stats.expon.logpdf(x, scale=1 / rate),
            1,
            _ks(xs, stats.expon.cdf(xs, scale=1 / rate)),
        )
    ]
    k, _, scale = stats.gamma.fit(x, floc=0)
    out.append(
        _candidate(
            "gamma",
            {"kind": "gamma", "rate_per_s": _sig(1 / (k * scale)), "cv": _sig(1 / math.sqrt(k))},
            stats.gamma.logpdf(x, k, scale=scale),
            2,
            _ks(xs, stats.gamma.cdf(xs, k, scale=scale)),
        )
    )
    c, _, wscale = stats.weibull_min.fit(x, floc=0)
    out.append(
        _candidate(
            "weibull",
            {"kind": "weibull", "rate_per_s": _sig(1 / (wscale * math.gamma(1 + 1 / c))), "shape": _sig(c)},
            stats.weibull_min.logpdf(x, c, scale=wscale),
            2,
            _ks(xs, stats.weibull_min.cdf(xs, c, scale=wscale)),
        )
    )
    return out


def fit_arrivals(arrival_s: np.ndarray) -> ArrivalFit:
    """Fit inter-arrival gaps and propose an ``arrival`` block, with a verdict a person can act on.

    Zero gaps (ties) are dropped: they have no density under any continuous model; spread a quantised
    trace first (``load_trace(..., spread_s=...)``).
    """
    gaps = np.diff(np.asarray(arrival_s, dtype=np.float64))
    x = gaps[gaps > 0]
    if len(x) < 10:
        raise ValueError(f"need at least 10 positive inter-arrival gaps to fit, got {len(x)}")
    xs = np.sort(x)
    cv = float(x.std() / x.mean())
    renewal = sorted(_renewal_candidates(x, xs), key=lambda c: c.aic)
    bursty, silent_share = _bursty_candidate(x, xs)
    proposal, verdict = _arrival_verdict(renewal, bursty, cv, silent_share, len(gaps) - len(x))
    return ArrivalFit((*renewal, bursty), proposal, verdict, gaps, cv)


def _arrival_verdict(
    renewal: list[Candidate], bursty: Candidate, cv: float, silent_share: float, ties: int
) -> tuple[dict, str]:
    best = renewal[0]
    tie_note = f" ({ties} zero gaps ignored)" if ties else ""
    head = (
        f"inter-arrival CV {cv:.2f}{tie_note}; silences between bursts cover {silent_share:.0%} of the time. "
    )
    if best.ks_d <= GOOD_D:
        return best.block, head + f"{best.name} fits well (KS D = {best.ks_d:.3f}); proposing {best.name}."
    tried = ", ".join(f"{c.name} D = {c.ks_d:.3f}" for c in renewal)
    if silent_share >= 0.2 and cv > 2:
        return bursty.block, head + (
            f"No renewal model fits ({tried}): this is on/off traffic, short in-burst gaps separated by long "
            f"silences. Proposing bursty (on/off, KS D = {bursty.ks_d:.3f}), which reproduces the silences; "
            "replaying the trace is the faithful alternative."
        )
    if best.ks_d <= FAIR_D:
        return (
            best.block,
            head + f"{best.name} fits only fairly (KS D = {best.ks_d:.3f}); proposing it anyway.",
        )
    return best.block, head + (
        f"NO candidate fits ({tried}, bursty D = {bursty.ks_d:.3f}). Proposing {best.name} as the least bad; "
        "the trace is probably non-stationary (rate changes over time): replay it, or use stages/diurnal."
    )


def _discrete_ks(values_sorted: np.ndarray, cdf) -> float:
    """KS distance for integer data against a continuous model rounded to integers."""
    uniq, counts = np.unique(values_sorted, return_counts=True)
    ecdf = np.cumsum(counts) / len(values_sorted)
    below = np.concatenate([[0.0], ecdf[:-1]])
    return float(max(np.abs(ecdf - cdf(uniq + 0.5)).max(), np.abs(below - cdf(uniq - 0.5)).max()))


def fit_lengths(values: np.ndarray, what: str = "lengths") -> LengthFit:
    """Fit a token-length column; proposes a parametric block, or empirical quantiles when none fits."""
    v = np.sort(np.asarray(values, dtype=np.float64))
    bounds = {"min": int(v[0]), "max": int(v[-1])}
    logs = np.log(v)
    mu, sigma = float(logs.mean()), float(max(logs.std(), 1e-6))
    k, _, scale = stats.gamma.fit(v, floc=0)
    cands = [
        _candidate(
            "lognormal",
            {"kind": "lognormal", "mean": _sig(math.exp(mu + sigma**2 / 2)), "sigma": _sig(sigma), **bounds},
            stats.lognorm.logpdf(v, sigma, scale=math.exp(mu)),
            2,
            _discrete_ks(v, lambda q: stats.lognorm.cdf(q, sigma, scale=math.exp(mu))),
        ),
        _candidate(
            "gamma",
            {"kind": "gamma", "mean": _sig(k * scale), "cv": _sig(1 / math.sqrt(k)), **bounds},
            stats.gamma.logpdf(v, k, scale=scale),
            2,
            _discrete_ks(v, lambda q: stats.gamma.cdf(q, k, scale=scale)),
        ),
        _candidate(
            "exponential",
            {"kind": "exponential", "mean": _sig(float(v.mean())), **bounds},
            stats.expon.logpdf(v, scale=v.mean()),
            1,
            _discrete_ks(v, lambda q: stats.expon.cdf(q, scale=v.mean())),
        ),
    ]
    best = min(cands, key=lambda c: c.ks_d)
    if v[0] == v[-1]:
        return LengthFit(tuple(cands), {"kind": "fixed", "value": int(v[0])}, f"{what}: constant {int(v[0])}")
    if best.ks_d <= GOOD_D:
        return LengthFit(tuple(cands), best.block, f"{what}: {best.name} fits (KS D = {best.ks_d:.3f})")
    quantiles = np.quantile(v, np.linspace(0, 1, 201))
    block = {"kind": "empirical", "quantiles": [round(float(q), 1) for q in quantiles], **bounds}
    verdict = f"{what}: no parametric model fits (best {best.name}, KS D = {best.ks_d:.3f}); using empirical quantiles"
    return LengthFit(tuple(cands), block, verdict)


@dataclass(frozen=True, slots=True)
class WorkloadFit:
    """Everything ``workload fit`` learns from a trace."""

    source: str
    arrival: ArrivalFit | None
    input_len: LengthFit
    output_len: LengthFit
    correlation: float

    def workload_mapping(self, rate_per_s: float | None = None) -> dict:
        """A workload YAML mapping that regenerates similar traffic (Poisson at ``rate_per_s`` if the
        trace has no arrivals)."""
        arrival = (
            self.arrival.proposal if self.arrival else {"kind": "poisson", "rate_per_s": rate_per_s or 1.0}
        )
        return {
            "description": f"Fitted to {self.source} by `llmsim workload fit`",
            "arrival": arrival,
            "input_len": self.input_len.proposal,
            "output_len": self.output_len.proposal,
            "correlation": round(self.correlation, 3),
        }


def fit_trace(trace: TraceData) -> WorkloadFit:
    """Fit arrivals (when the trace has them), both length columns and their correlation."""
    arrival = fit_arrivals(trace.arrival_s) if trace.arrival_s is not None else None
    return WorkloadFit(
        source=trace.path,
        arrival=arrival,
        input_len=fit_lengths(trace.input_tokens, "input_len"),
        output_len=fit_lengths(trace.output_tokens, "output_len"),
        correlation=normal_score_correlation(trace.input_tokens, trace.output_tokens),
    )
