"""Evidence grade of a predicted metric: how much of its time rests on measurements.

A metric's predicted time has three kinds of parts (shares of the metric's time, summing to 1):

- **measured**: kernel time interpolated between measured kernels of the same shape family
  (``llmsim.cost.evidence``), and engine time (CPU per step, front end) from a profile whose values were
  fitted on real runs (``EngineProfile.fitted_on``);
- **extrapolated**: kernel time extrapolated beyond the measured kernels;
- **unsupported**: roofline-only kernel time (datasheet constants) and engine time from an unfitted profile.

Grades (letters, best first):

- ``A``: at least ``MEASURED_A`` of the time measured;
- ``B``: at least ``SUPPORTED_B`` measured or extrapolated;
- ``C``: less (mostly roofline or an unfitted engine);
- ``D``: the run is overloaded: the latencies are a transient of a growing queue, no interval applies.

A run near capacity (``pressure`` >= ``NEAR_CAPACITY``: the share of its throughput capacity the engine uses at
its busiest, ``llmsim.trust.annotate.capacity_use``) drops one letter (A -> B, B -> C): there a small error in
step time moves the queueing delay a lot. Pure: no I/O, no simulation.
"""

from __future__ import annotations

from dataclasses import dataclass

GRADES = ("A", "B", "C", "D")
MEASURED_A = 0.8
SUPPORTED_B = 0.8
NEAR_CAPACITY = 0.85


@dataclass(frozen=True, slots=True)
class Evidence:
    """Where a metric's time came from. ``interpolated``/``extrapolated``/``roofline``: fractions of its
    kernel time (summing to 1, or all 0); ``engine_share``: share of the metric's time that is the engine
    profile's (CPU per step, front end); ``pressure``: share of the throughput capacity used (0-1);
    ``verdict``: the load verdict (``llmsim.metrics.overload``)."""

    interpolated: float = 0.0
    extrapolated: float = 0.0
    roofline: float = 1.0
    engine_share: float = 0.0
    engine_fitted: bool = False
    pressure: float = 0.0
    verdict: str = "stable"

    def __post_init__(self) -> None:
        for name in ("interpolated", "extrapolated", "roofline", "engine_share", "pressure"):
            v = getattr(self, name)
            if not v >= 0:
                raise ValueError(f'"{name}" must be >= 0, got {v!r}')
        if self.engine_share > 1:
            raise ValueError(f'"engine_share" must be <= 1, got {self.engine_share!r}')

    def shares(self) -> tuple[float, float, float]:
        """(measured, extrapolated, unsupported) shares of the metric's time."""
        kernel = 1.0 - self.engine_share
        total = self.interpolated + self.extrapolated + self.roofline
        if total <= 0:  # no kernel time known: all of it counts as roofline
            interp, extrap, roof = 0.0, 0.0, 1.0
        else:
            interp, extrap, roof = (x / total for x in (self.interpolated, self.extrapolated, self.roofline))
        engine_measured = self.engine_share if self.engine_fitted else 0.0
        measured = kernel * interp + engine_measured
        extrapolated = kernel * extrap
        return measured, extrapolated, max(0.0, 1.0 - measured - extrapolated)


@dataclass(frozen=True, slots=True)
class Grade:
    letter: str
    measured_share: float
    extrapolated_share: float
    near_capacity: bool
    reason: str


def grade(ev: Evidence) -> Grade:
    """The grade of one metric (see the module docstring)."""
    measured, extrapolated, unsupported = ev.shares()
    near = ev.pressure >= NEAR_CAPACITY
    if ev.verdict == "overloaded":
        return Grade("D", measured, extrapolated, near, "overloaded: latencies are a transient")
    if measured >= MEASURED_A:
        idx, why = 0, f"{measured:.0%} measured"
    elif measured + extrapolated >= SUPPORTED_B:
        idx, why = 1, f"{measured:.0%} measured, {extrapolated:.0%} extrapolated"
    else:
        idx, why = 2, f"{unsupported:.0%} roofline or unfitted engine"
    if near and idx < 2:
        idx += 1
        why += f"; near capacity ({ev.pressure:.0%} of its throughput)"
    return Grade(GRADES[idx], measured, extrapolated, near, why)


def worst(letters) -> str | None:
    """The worst of several grade letters (None when there are none)."""
    found = [g for g in letters if g in GRADES]
    return max(found, key=GRADES.index) if found else None
