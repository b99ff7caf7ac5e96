"""Arrival processes: when requests arrive.

Every open-loop process yields an endless (or, for finite schedules, ending) stream of sorted chunks of
absolute arrival times in seconds, drawn only from the ``numpy.random.Generator`` passed in, so the same seed
gives the same times. ``generate_requests`` cuts the stream at a request count or a duration.

``closed_loop`` is registered here too but is not a stream: its arrivals depend on completions, so it
returns a :class:`ClosedLoop` description that the simulator drives (see its docstring). Processes whose rate
changes over time (bursty, stages, diurnal) live in ``modulated.py``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from llmsim.registry import Registry

CHUNK = 65_536  # arrivals drawn per numpy call: large enough to be fast, small enough to stream


class ArrivalProcess(Protocol):
    """Anything that streams sorted absolute arrival times (seconds)."""

    @property
    def mean_rate_per_s(self) -> float: ...

    def chunks(self, rng: np.random.Generator) -> Iterator[np.ndarray]: ...


ARRIVALS: Registry[object] = Registry("arrival process")


def check_positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name!r} must be a number > 0, got {value!r}")


def check_non_negative(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
        raise ValueError(f"{name!r} must be a number >= 0, got {value!r}")


MAX_CV = 100.0  # gamma shape 1/cv^2 below 1e-4: gaps all but zero, then astronomical; numpy overflows


def check_cv(name: str, value: float) -> None:
    if value > MAX_CV:
        raise ValueError(f"{name!r} must be <= {MAX_CV:g}, got {value!r}")


def _renewal_chunks(gaps_fn, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Cumulative sums of i.i.d. gaps, carried across chunks."""
    now = 0.0
    while True:
        times = now + np.cumsum(gaps_fn(rng, CHUNK))
        now = float(times[-1])
        yield times


@ARRIVALS.register("poisson")
@dataclass(frozen=True, slots=True)
class Poisson:
    """Poisson arrivals: exponential gaps with mean ``1 / rate_per_s``."""

    rate_per_s: float

    def __post_init__(self) -> None:
        check_positive("rate_per_s", self.rate_per_s)

    @property
    def mean_rate_per_s(self) -> float:
        return float(self.rate_per_s)

    def chunks(self, rng: np.random.Generator) -> Iterator[np.ndarray]:
        return _renewal_chunks(lambda g, n: g.exponential(1.0 / self.rate_per_s, n), rng)


@ARRIVALS.register("gamma")
@dataclass(frozen=True, slots=True)
class Gamma:
    """Gamma renewal arrivals: give ``cv`` (coefficient of variation of gaps) or ``shape`` (= 1 / cv**2).

    CV 1 is Poisson; CV > 1 is burstier, CV < 1 smoother; CV 0 is constant spacing. This is the burstiness
    knob used across the serving literature (e.g. DistServe, AlpaServe).
    """

    rate_per_s: float
    cv: float | None = None
    shape: float | None = None

    def __post_init__(self) -> None:
        check_positive("rate_per_s", self.rate_per_s)
        if (self.cv is None) == (self.shape is None):
            raise ValueError("give exactly one of 'cv' or 'shape'")
        if self.cv is not None:
            check_non_negative("cv", self.cv)
            check_cv("cv", self.cv)
        else:
            check_positive("shape", self.shape)
            if self.shape < 1e-4:
                raise ValueError(f"'shape' must be >= 1e-4 (a CV of 100), got {self.shape!r}")

    @property
    def mean_rate_per_s(self) -> float:
        return float(self.rate_per_s)

    @property
    def shape_k(self) -> float:
        """Gamma shape k; infinite for CV 0 (constant spacing)."""
        if self.shape is not None:
            return float(self.shape)
        return math.inf if self.cv == 0 else 1.0 / self.cv**2

    def chunks(self, rng: np.random.Generator) -> Iterator[np.ndarray]:
        k, mean = self.shape_k, 1.0 / self.rate_per_s
        if math.isinf(k):
            return _renewal_chunks(lambda g, n: np.full(n, mean), rng)
        return _renewal_chunks(lambda g, n: g.gamma(k, mean / k, n), rng)


@ARRIVALS.register("weibull")
@dataclass(frozen=True, slots=True)
class Weibull:
    """Weibull renewal arrivals with the given mean rate; ``shape`` < 1 is bursty, 1 is Poisson."""

    rate_per_s: float
    shape: float

    def __post_init__(self) -> None:
        check_positive("rate_per_s", self.rate_per_s)
        check_positive("shape", self.shape)

    @property
    def mean_rate_per_s(self) -> float:
        return float(self.rate_per_s)

    @property
    def scale_s(self) -> float:
        # mean of Weibull(k, lambda) is lambda * Gamma(1 + 1/k)
        return 1.0 / (self.rate_per_s * math.gamma(1.0 + 1.0 / self.shape))

    def chunks(self, rng: np.random.Generator) -> Iterator[np.ndarray]:
        return _renewal_chunks(lambda g, n: self.scale_s * g.weibull(self.shape, n), rng)


@ARRIVALS.register("constant")
@dataclass(frozen=True, slots=True)
class Constant:
    """Deterministic spacing of ``1 / rate_per_s``; the first request arrives at ``start_s``."""

    rate_per_s: float
    start_s: float = 0.0

    def __post_init__(self) -> None:
        check_positive("rate_per_s", self.rate_per_s)
        check_non_negative("start_s", self.start_s)

    @property
    def mean_rate_per_s(self) -> float:
        return float(self.rate_per_s)

    def chunks(self, rng: np.random.Generator) -> Iterator[np.ndarray]:
        gap, i = 1.0 / self.rate_per_s, 0
        while True:
            # computed from the index, not summed, so there is no drift over a million requests
            yield self.start_s + gap * np.arange(i, i + CHUNK, dtype=np.float64)
            i += CHUNK


@ARRIVALS.register("batch")
@dataclass(frozen=True, slots=True)
class Batch:
    """Everything at t = 0: the offline throughput benchmark. Needs a request count."""

    @property
    def mean_rate_per_s(self) -> float:
        return math.inf

    def chunks(self, rng: np.random.Generator) -> Iterator[np.ndarray]:
        while True:
            yield np.zeros(CHUNK)


@ARRIVALS.register("closed_loop")
@dataclass(frozen=True, slots=True)
class ClosedLoop:
    """N concurrent users; each sends its next request ``think`` seconds after its previous one completes.

    Arrival times cannot be generated in advance because they depend on completions, so this is a
    description for the simulator to drive, exposed as ``WorkloadSpec.closed_loop``. ``generate_requests``
    still yields the request contents (lengths, prefixes, classes) in order, with ``arrival_s = 0.0`` as a
    placeholder; the simulator issues them one by one and sets the arrival time with
    ``dataclasses.replace(request, arrival_s=now)``. User ``i`` sends its first request at
    ``start_times_s()[i]`` (spread over ``ramp_up_s``); think times come from :meth:`think_s`
    (exponential for ``think_cv`` 1, constant for 0, gamma otherwise).
    """

    users: int
    think_time_s: float = 0.0
    think_cv: float = 1.0
    ramp_up_s: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.users, int) or isinstance(self.users, bool) or self.users < 1:
            raise ValueError(f"'users' must be an integer >= 1, got {self.users!r}")
        check_non_negative("think_time_s", self.think_time_s)
        check_non_negative("think_cv", self.think_cv)
        check_cv("think_cv", self.think_cv)
        check_non_negative("ramp_up_s", self.ramp_up_s)

    def start_times_s(self) -> np.ndarray:
        """When each user sends its first request."""
        return np.arange(self.users) * (self.ramp_up_s / self.users)

    def think_s(self, rng: np.random.Generator) -> float:
        """One think time (seconds) between a completion and the same user's next request."""
        if self.think_time_s == 0 or self.think_cv == 0:
            return float(self.think_time_s)
        k = 1.0 / self.think_cv**2
        return float(rng.gamma(k, self.think_time_s / k))
