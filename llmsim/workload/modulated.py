"""Arrival processes whose rate changes over time: on/off bursts (MMPP-2), piecewise stages, diurnal.

Registered in ``ARRIVALS`` next to the renewal processes of ``arrivals.py``; same streaming contract.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from llmsim.workload.arrivals import (
    ARRIVALS,
    CHUNK,
    Constant,
    Gamma,
    check_cv,
    check_non_negative,
    check_positive,
)

MAX_PER_SOJOURN = 1e7


@ARRIVALS.register("bursty")
@dataclass(frozen=True, slots=True)
class Bursty:
    """On/off traffic: a two-state Markov-modulated Poisson process (MMPP-2).

    The process stays in the *on* state for an exponential time with mean ``mean_on_s`` (Poisson arrivals at
    ``on_rate_per_s``), then *off* for mean ``mean_off_s`` (rate ``off_rate_per_s``, often 0), and so on. It
    starts in the on state. With ``off_rate_per_s = 0`` this is an interrupted Poisson process, whose gaps are
    hyperexponential; ``workload fit`` proposes it for on/off traces such as Azure code. ``on_cv`` other than
    1 makes arrivals inside a burst a gamma renewal process with that CV (a generalisation: real bursts are
    often burstier than Poisson inside, too).
    """

    on_rate_per_s: float
    mean_on_s: float
    mean_off_s: float
    off_rate_per_s: float = 0.0
    on_cv: float = 1.0

    def __post_init__(self) -> None:
        check_positive("on_rate_per_s", self.on_rate_per_s)
        check_positive("mean_on_s", self.mean_on_s)
        check_positive("mean_off_s", self.mean_off_s)
        check_non_negative("off_rate_per_s", self.off_rate_per_s)
        check_positive("on_cv", self.on_cv)
        check_cv("on_cv", self.on_cv)
        # each sojourn's arrivals are drawn at once: keep the expected count per sojourn bounded
        for rate, mean, names in ((self.on_rate_per_s, self.mean_on_s, "on_rate_per_s x mean_on_s"),
                                  (self.off_rate_per_s, self.mean_off_s, "off_rate_per_s x mean_off_s")):
            if rate * mean > MAX_PER_SOJOURN:
                raise ValueError(f"{names} must be <= {MAX_PER_SOJOURN:.0e} requests per sojourn, got "
                                 f"{rate * mean:.3g}")

    @property
    def mean_rate_per_s(self) -> float:
        on, off = self.mean_on_s, self.mean_off_s
        return (self.on_rate_per_s * on + self.off_rate_per_s * off) / (on + off)

    def chunks(self, rng: np.random.Generator) -> Iterator[np.ndarray]:
        now, on, pending, count = 0.0, True, [], 0
        while True:
            period = rng.exponential(self.mean_on_s if on else self.mean_off_s)
            rate = self.on_rate_per_s if on else self.off_rate_per_s
            times = self._period_arrivals(rng, rate, period, gamma_cv=self.on_cv if on else 1.0)
            if len(times):
                pending.append(now + times)
                count += len(times)
            now, on = now + period, not on
            if count >= CHUNK:
                yield np.concatenate(pending)
                pending, count = [], 0

    @staticmethod
    def _period_arrivals(rng: np.random.Generator, rate: float, period: float, gamma_cv: float) -> np.ndarray:
        """Arrival offsets within one sojourn of length ``period``."""
        if rate <= 0:
            return np.empty(0)
        if gamma_cv == 1.0:
            # given the count, Poisson arrivals in an interval are uniform order statistics
            return np.sort(rng.uniform(0.0, period, rng.poisson(rate * period)))
        k = 1.0 / gamma_cv**2
        times = np.cumsum(rng.gamma(k, 1.0 / (rate * k), int(rate * period * 1.5) + 16))
        while times[-1] < period:  # rare: draw more gaps until the sojourn is covered
            more = np.cumsum(rng.gamma(k, 1.0 / (rate * k), int(rate * period) + 16))
            times = np.concatenate([times, times[-1] + more])
        return times[: np.searchsorted(times, period)]


@dataclass(frozen=True, slots=True)
class _Warped:
    """A unit-rate gamma renewal process mapped through the inverse cumulative rate (time rescaling).

    ``grid_s`` and ``cum`` tabulate Lambda(t) = integral of rate over one cycle; with ``repeat`` the cycle
    repeats forever, otherwise the stream ends at the end of the cycle. CV 1 gives an inhomogeneous Poisson
    process; other CVs keep the requested burstiness while following the rate curve.
    """

    grid_s: np.ndarray
    cum: np.ndarray
    repeat: bool
    cv: float

    def chunks(self, rng: np.random.Generator) -> Iterator[np.ndarray]:
        # cv 0: a fixed-interval schedule whose first request goes out at t = 0 (a constant-rate generator)
        unit = Constant(rate_per_s=1.0) if self.cv == 0 else Gamma(rate_per_s=1.0, cv=self.cv)
        cycle_s, total = float(self.grid_s[-1]), float(self.cum[-1])
        for ops in unit.chunks(rng):
            cycles = np.floor(ops / total)
            if not self.repeat:
                ops = ops[cycles == 0]
            times = cycles[: len(ops)] * cycle_s + np.interp(
                ops - cycles[: len(ops)] * total, self.cum, self.grid_s
            )
            if len(times):
                yield times
            if len(ops) < CHUNK:
                return


@dataclass(frozen=True, slots=True)
class Stage:
    """One piece of a piecewise-constant rate schedule."""

    rate_per_s: float
    duration_s: float


@ARRIVALS.register("stages")
@dataclass(frozen=True, slots=True)
class Stages:
    """Piecewise-constant rate, e.g. ``[{rate_per_s: 8, duration_s: 600}, {rate_per_s: 20, duration_s: 600}]``.

    The stream ends after the last stage unless ``repeat`` is true. ``cv`` sets burstiness within stages
    (0 = requests at a fixed interval of ``1 / rate_per_s``, a constant-rate load generator's schedule).
    """

    stages: tuple[Stage, ...] | list
    repeat: bool = False
    cv: float = 1.0
    _warped: _Warped = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.stages, (list, tuple)) or not self.stages:
            raise ValueError("'stages' must be a non-empty list of {rate_per_s, duration_s}")
        parsed = tuple(_parse_stage(i, s) for i, s in enumerate(self.stages))
        object.__setattr__(self, "stages", parsed)
        check_non_negative("cv", self.cv)  # 0: a fixed-interval schedule
        check_cv("cv", self.cv)
        rates = np.array([s.rate_per_s for s in parsed])
        if not rates.any():
            raise ValueError("'stages': at least one stage needs rate_per_s > 0")
        grid = np.concatenate([[0.0], np.cumsum([s.duration_s for s in parsed])])
        cum = np.concatenate([[0.0], np.cumsum(rates * np.diff(grid))])
        object.__setattr__(self, "_warped", _Warped(grid, cum, bool(self.repeat), float(self.cv)))

    @property
    def mean_rate_per_s(self) -> float:
        return float(self._warped.cum[-1] / self._warped.grid_s[-1])

    def chunks(self, rng: np.random.Generator) -> Iterator[np.ndarray]:
        return self._warped.chunks(rng)


def _parse_stage(i: int, raw: object) -> Stage:
    if isinstance(raw, Stage):
        return raw
    if not isinstance(raw, dict) or set(raw) != {"rate_per_s", "duration_s"}:
        raise ValueError(
            f"'stages[{i}]' must be a mapping with exactly rate_per_s and duration_s, got {raw!r}"
        )
    check_non_negative(f"stages[{i}].rate_per_s", raw["rate_per_s"])
    check_positive(f"stages[{i}].duration_s", raw["duration_s"])
    return Stage(float(raw["rate_per_s"]), float(raw["duration_s"]))


@ARRIVALS.register("diurnal")
@dataclass(frozen=True, slots=True)
class Diurnal:
    """Sinusoidal daily rate: ``mean_rate_per_s * (1 + amplitude * cos(2 pi (t - peak_s) / period_s))``."""

    mean_rate_per_s: float
    amplitude: float = 0.5
    period_s: float = 86_400.0
    peak_s: float = 50_400.0  # 14:00 when t = 0 is midnight
    cv: float = 1.0
    _warped: _Warped = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_positive("mean_rate_per_s", self.mean_rate_per_s)
        check_positive("period_s", self.period_s)
        check_positive("cv", self.cv)
        check_cv("cv", self.cv)
        check_non_negative("peak_s", self.peak_s)
        if not (0 <= self.amplitude <= 1):
            raise ValueError(f"'amplitude' must be in [0, 1], got {self.amplitude!r}")
        grid = np.linspace(0.0, self.period_s, 4097)
        # closed-form integral of the rate, so the tabulated inverse is exact at the grid points
        w = 2 * math.pi / self.period_s
        cum = self.mean_rate_per_s * (
            grid + self.amplitude / w * (np.sin(w * (grid - self.peak_s)) - math.sin(-w * self.peak_s))
        )
        object.__setattr__(self, "_warped", _Warped(grid, cum, True, float(self.cv)))

    def chunks(self, rng: np.random.Generator) -> Iterator[np.ndarray]:
        return self._warped.chunks(rng)
