"""Token-length distributions for prompts and outputs.

Each distribution is defined by its quantile function ``ppf(u)`` (u uniform in [0, 1)); sampling is
``ppf(rng.random(n))``. Working through quantiles makes input/output correlation a Gaussian copula
(see ``correlated_uniforms``) that works for every distribution, empirical ones included. Results are
rounded to integers and clipped to ``[min, max]`` (and never below 1 token).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from llmsim.registry import Registry

LENGTHS: Registry[object] = Registry("length distribution")
_HARD_MAX = 2**31 - 1  # tokens; no model context comes near


class LengthDist:
    """Base: subclasses define ``_raw_ppf`` (float quantiles) and have ``min`` / ``max`` fields."""

    __slots__ = ()
    min: int
    max: int | None

    def _raw_ppf(self, u: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def ppf(self, u: np.ndarray) -> np.ndarray:
        """Integer token counts at quantiles ``u``, clipped to [max(min, 1), max]."""
        raw = np.rint(self._raw_ppf(np.asarray(u, dtype=np.float64)))
        # unbounded heavy tails can reach astronomic values; cap where int64 sums stay safe
        hi = _HARD_MAX if self.max is None else self.max
        return np.clip(raw, max(self.min, 1), hi).astype(np.int64)

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """``size`` independent draws."""
        return self.ppf(rng.random(size))


def _check_bounds(dist: LengthDist) -> None:
    if not isinstance(dist.min, int) or dist.min < 0:
        raise ValueError(f"'min' must be an integer >= 0, got {dist.min!r}")
    if dist.max is not None and (not isinstance(dist.max, int) or dist.max < max(dist.min, 1)):
        raise ValueError(f"'max' must be an integer >= max(min, 1), got {dist.max!r}")


def _positive(name: str, value: object) -> None:
    if (
        not isinstance(value, (int, float))
        or isinstance(value, bool)
        or not (value > 0 and math.isfinite(value))
    ):
        raise ValueError(f"{name!r} must be a number > 0, got {value!r}")


@LENGTHS.register("fixed")
@dataclass(frozen=True, slots=True)
class Fixed(LengthDist):
    """Always ``value`` tokens (an exact output length, as with EOS ignored)."""

    value: int
    min: int = 1
    max: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.value, int) or self.value < 1:
            raise ValueError(f"'value' must be an integer >= 1, got {self.value!r}")
        _check_bounds(self)

    def _raw_ppf(self, u: np.ndarray) -> np.ndarray:
        return np.full(u.shape, float(self.value))


@LENGTHS.register("uniform")
@dataclass(frozen=True, slots=True)
class Uniform(LengthDist):
    """Integers uniform on ``[low, high]`` inclusive."""

    low: int
    high: int
    min: int = 1
    max: int | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.low, int) and isinstance(self.high, int) and 1 <= self.low <= self.high):
            raise ValueError(
                f"'low' and 'high' must be integers with 1 <= low <= high, got {self.low!r}, {self.high!r}"
            )
        _check_bounds(self)

    def _raw_ppf(self, u: np.ndarray) -> np.ndarray:
        return self.low + np.floor(u * (self.high - self.low + 1))


@LENGTHS.register("normal")
@dataclass(frozen=True, slots=True)
class Normal(LengthDist):
    """Normal with ``mean`` and ``std`` tokens (clipped; fine for narrow distributions)."""

    mean: float
    std: float
    min: int = 1
    max: int | None = None

    def __post_init__(self) -> None:
        _positive("mean", self.mean)
        _positive("std", self.std)
        _check_bounds(self)

    def _raw_ppf(self, u: np.ndarray) -> np.ndarray:
        from scipy import special

        return self.mean + self.std * special.ndtri(u)


@LENGTHS.register("lognormal")
@dataclass(frozen=True, slots=True)
class LogNormal(LengthDist):
    """Log-normal: give ``mean`` (tokens, before clipping) or ``median``, and ``sigma`` (std of log)."""

    sigma: float
    mean: float | None = None
    median: float | None = None
    min: int = 1
    max: int | None = None

    def __post_init__(self) -> None:
        _positive("sigma", self.sigma)
        if self.sigma > 10:  # a CV of 5e21: exp() of it overflows
            raise ValueError(f"'sigma' must be <= 10, got {self.sigma!r}")
        if (self.mean is None) == (self.median is None):
            raise ValueError("give exactly one of 'mean' or 'median'")
        _positive("mean" if self.mean is not None else "median", self.mean or self.median)
        _check_bounds(self)

    @property
    def mu(self) -> float:
        """Mean of log(length)."""
        if self.median is not None:
            return math.log(self.median)
        return math.log(self.mean) - self.sigma**2 / 2

    def _raw_ppf(self, u: np.ndarray) -> np.ndarray:
        from scipy import special

        return np.exp(self.mu + self.sigma * special.ndtri(u))


@LENGTHS.register("exponential")
@dataclass(frozen=True, slots=True)
class Exponential(LengthDist):
    """Exponential with the given ``mean`` tokens."""

    mean: float
    min: int = 1
    max: int | None = None

    def __post_init__(self) -> None:
        _positive("mean", self.mean)
        _check_bounds(self)

    def _raw_ppf(self, u: np.ndarray) -> np.ndarray:
        return -self.mean * np.log1p(-u)


@LENGTHS.register("gamma")
@dataclass(frozen=True, slots=True)
class GammaLength(LengthDist):
    """Gamma with the given ``mean`` tokens and coefficient of variation ``cv`` (1 = exponential)."""

    mean: float
    cv: float
    min: int = 1
    max: int | None = None

    def __post_init__(self) -> None:
        _positive("mean", self.mean)
        _positive("cv", self.cv)
        if self.cv > 100:  # shape 1/cv^2 below 1e-4: the quantile function underflows
            raise ValueError(f"'cv' must be <= 100, got {self.cv!r}")
        _check_bounds(self)

    def _raw_ppf(self, u: np.ndarray) -> np.ndarray:
        k = 1.0 / self.cv**2
        from scipy import special

        return special.gammaincinv(k, u) * (self.mean / k)


@LENGTHS.register("pareto")
@dataclass(frozen=True, slots=True)
class Pareto(LengthDist):
    """Pareto (power-law tail) from ``scale`` tokens up: P(X > x) = (scale / x) ** alpha.

    Heavy-tailed "reasoning" outputs: most answers are moderate, a few think for a very long time. Set
    ``max`` (e.g. the model's output limit); alpha <= 1 has no finite mean before clipping.
    """

    alpha: float
    scale: float
    min: int = 1
    max: int | None = None

    def __post_init__(self) -> None:
        _positive("alpha", self.alpha)
        _positive("scale", self.scale)
        _check_bounds(self)

    def _raw_ppf(self, u: np.ndarray) -> np.ndarray:
        return self.scale * (1.0 - u) ** (-1.0 / self.alpha)


@LENGTHS.register("zipf")
@dataclass(frozen=True, slots=True)
class Zipf(LengthDist):
    """Bounded Zipf: length ``scale * k`` with P(k) proportional to k ** -a for k = 1..n."""

    a: float
    n: int
    scale: int = 1
    min: int = 1
    max: int | None = None
    _cdf: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _positive("a", self.a)
        if not isinstance(self.n, int) or not (1 <= self.n <= 10_000_000):
            raise ValueError(f"'n' must be an integer in [1, 1e7], got {self.n!r}")
        if not isinstance(self.scale, int) or self.scale < 1:
            raise ValueError(f"'scale' must be an integer >= 1, got {self.scale!r}")
        _check_bounds(self)
        weights = np.arange(1, self.n + 1, dtype=np.float64) ** -self.a
        object.__setattr__(self, "_cdf", np.cumsum(weights) / weights.sum())

    def _raw_ppf(self, u: np.ndarray) -> np.ndarray:
        k = np.searchsorted(self._cdf, u, side="right") + 1
        return self.scale * np.minimum(k, self.n).astype(np.float64)


@LENGTHS.register("empirical")
@dataclass(frozen=True, slots=True)
class Empirical(LengthDist):
    """Resampled from data: exactly one of ``values`` (a list), ``quantiles`` (values at evenly spaced
    probabilities 0..1, interpolated; what ``workload fit`` writes) or ``path`` + ``column`` (``input`` or
    ``output`` of a trace file read with ``load_trace``; relative paths are relative to the workload YAML).
    """

    values: list | None = None
    quantiles: list | None = None
    path: str | None = None
    column: str = "input"
    format: str = "auto"
    base_dir: str = "."
    min: int = 1
    max: int | None = None
    _table: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        given = [k for k in ("values", "quantiles", "path") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of 'values', 'quantiles' or 'path'")
        _check_bounds(self)
        object.__setattr__(self, "_table", self._load_table(given[0]))

    def _load_table(self, which: str) -> np.ndarray:
        if which == "path":
            from llmsim.workload.traces import load_trace  # traces imports this module

            if self.column not in ("input", "output"):
                raise ValueError(f"'column' must be 'input' or 'output', got {self.column!r}")
            trace = load_trace(Path(self.base_dir) / self.path, format=self.format)
            data = trace.input_tokens if self.column == "input" else trace.output_tokens
            return np.sort(data.astype(np.float64))
        raw = getattr(self, which)
        try:
            table = np.asarray(raw, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{which!r} must be a list of numbers") from None
        if table.ndim != 1 or len(table) < (2 if which == "quantiles" else 1) or not np.all(table >= 0):
            raise ValueError(f"{which!r} must be a non-empty list of numbers >= 0")
        if which == "quantiles" and np.any(np.diff(table) < 0):
            raise ValueError("'quantiles' must be non-decreasing")
        return np.sort(table)

    def _raw_ppf(self, u: np.ndarray) -> np.ndarray:
        table = self._table
        if self.quantiles is not None:
            return np.interp(u * (len(table) - 1), np.arange(len(table)), table)
        # floor(u * n) picks each observed value with probability 1/n: plain resampling
        return table[np.minimum((u * len(table)).astype(np.int64), len(table) - 1)]


def correlated_uniforms(rng: np.random.Generator, size: int, rho: float) -> tuple[np.ndarray, np.ndarray]:
    """Two uniform vectors joined by a Gaussian copula with normal-score correlation ``rho``.

    Feeding them to two ``ppf``s gives lengths with the requested rank dependence whatever the marginals.
    """
    if rho == 0:
        return rng.random(size), rng.random(size)
    z1 = rng.standard_normal(size)
    z2 = rho * z1 + math.sqrt(1.0 - rho * rho) * rng.standard_normal(size)
    from scipy import special

    return special.ndtr(z1), special.ndtr(z2)


def normal_score_correlation(x: np.ndarray, y: np.ndarray) -> float:
    """The copula parameter estimated from data: Pearson correlation of the normal scores of the ranks."""
    from scipy import special, stats

    n = len(x)
    if n < 3:
        return 0.0
    zx = special.ndtri(stats.rankdata(x) / (n + 1))
    zy = special.ndtri(stats.rankdata(y) / (n + 1))
    if zx.std() == 0 or zy.std() == 0:
        return 0.0
    return float(np.corrcoef(zx, zy)[0, 1])
