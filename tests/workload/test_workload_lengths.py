import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmsim.errors import ConfigError
from llmsim.workload.lengths import LENGTHS, correlated_uniforms, normal_score_correlation


def sample(block: dict, n: int = 200_000, seed: int = 0) -> np.ndarray:
    return LENGTHS.build(block).sample(np.random.default_rng(seed), n)


def test_fixed_is_exact():
    assert set(sample({"kind": "fixed", "value": 128}, 1000)) == {128}


def test_uniform_is_inclusive_and_flat():
    x = sample({"kind": "uniform", "low": 10, "high": 14})
    assert set(x) == {10, 11, 12, 13, 14}
    assert np.bincount(x)[10:].min() / len(x) == pytest.approx(0.2, abs=0.01)


@pytest.mark.parametrize(
    ("block", "mean", "std"),
    [
        ({"kind": "normal", "mean": 500, "std": 50}, 500, 50),
        ({"kind": "exponential", "mean": 300}, 300, 300),
        ({"kind": "gamma", "mean": 400, "cv": 0.5}, 400, 200),
        # log-normal: mean given directly; std = mean * sqrt(exp(sigma^2) - 1)
        ({"kind": "lognormal", "mean": 1000, "sigma": 0.5}, 1000, 1000 * math.sqrt(math.exp(0.25) - 1)),
    ],
)
def test_moments(block, mean, std):
    x = sample(block)
    assert x.mean() == pytest.approx(mean, rel=0.02)
    assert x.std() == pytest.approx(std, rel=0.04)


def test_lognormal_median_parameterisation():
    x = sample({"kind": "lognormal", "median": 200, "sigma": 1.2})
    assert np.median(x) == pytest.approx(200, rel=0.02)


def test_pareto_tail_and_cap():
    x = sample({"kind": "pareto", "alpha": 1.5, "scale": 1000, "max": 32768})
    assert x.min() == 1000 and x.max() == 32768
    # P(X > 4000) = (1000 / 4000) ** 1.5 = 0.125
    assert np.mean(x > 4000) == pytest.approx(0.125, rel=0.05)


def test_zipf_rank_probabilities():
    x = sample({"kind": "zipf", "a": 1.2, "n": 50, "scale": 16})
    weights = np.arange(1, 51) ** -1.2
    assert np.mean(x == 16) == pytest.approx(weights[0] / weights.sum(), rel=0.03)
    assert set(np.unique(x) % 16) == {0} and x.max() <= 800


def test_clipping_min_max():
    x = sample({"kind": "exponential", "mean": 1000, "min": 100, "max": 2000})
    assert x.min() == 100 and x.max() == 2000


def test_never_below_one_token():
    assert sample({"kind": "normal", "mean": 2, "std": 10, "min": 0}).min() == 1


def test_empirical_values_resample_exactly():
    x = sample({"kind": "empirical", "values": [5, 7, 7, 100]})
    assert set(x) == {5, 7, 100}
    assert np.mean(x == 7) == pytest.approx(0.5, abs=0.01)


def test_empirical_quantiles_interpolate():
    x = sample({"kind": "empirical", "quantiles": [10, 20, 30]})
    assert x.min() == 10 and x.max() == 30
    assert np.median(x) == pytest.approx(20, abs=1)


def test_empirical_from_trace_file(fixture_path):
    dist = LENGTHS.build(
        {"kind": "empirical", "path": "lengths.csv", "column": "output", "base_dir": str(fixture_path(""))}
    )
    assert set(dist.sample(np.random.default_rng(0), 2000)) == {918, 905, 300, 12, 40}


@pytest.mark.parametrize("rho", [-0.6, 0.0, 0.3, 0.9])
def test_copula_correlation_is_recovered(rho):
    u, v = correlated_uniforms(np.random.default_rng(1), 100_000, rho)
    inp = LENGTHS.build({"kind": "lognormal", "mean": 1000, "sigma": 1.0}).ppf(u)
    out = LENGTHS.build({"kind": "exponential", "mean": 200}).ppf(v)
    assert normal_score_correlation(inp, out) == pytest.approx(rho, abs=0.02)


@settings(max_examples=40, deadline=None)
@given(
    kind=st.sampled_from(["lognormal", "exponential", "gamma", "pareto"]),
    lo=st.integers(1, 50),
    span=st.integers(0, 5000),
    u=st.lists(st.floats(0, 1, exclude_max=True), min_size=2, max_size=50),
)
def test_ppf_is_monotone_and_within_bounds(kind, lo, span, u):
    params = {
        "lognormal": {"mean": 300, "sigma": 1.5},
        "exponential": {"mean": 300},
        "gamma": {"mean": 300, "cv": 2.0},
        "pareto": {"alpha": 1.1, "scale": 50},
    }[kind]
    dist = LENGTHS.build({"kind": kind, **params, "min": lo, "max": lo + span})
    values = dist.ppf(np.sort(np.array(u)))
    assert np.all(np.diff(values) >= 0)
    assert values.min() >= lo and values.max() <= lo + span


@pytest.mark.parametrize(
    ("block", "fragment"),
    [
        ({"kind": "lognormal", "sigma": 1}, "exactly one of 'mean' or 'median'"),
        ({"kind": "fixed", "value": 0}, "'value' must be an integer >= 1"),
        ({"kind": "uniform", "low": 5, "high": 2}, "low <= high"),
        (
            {"kind": "exponential", "mean": 10, "min": 50, "max": 20},
            "'max' must be an integer >= max(min, 1)",
        ),
        ({"kind": "empirical"}, "exactly one of 'values', 'quantiles' or 'path'"),
        ({"kind": "empirical", "quantiles": [3, 2, 1]}, "non-decreasing"),
        ({"kind": "normal", "mean": 10, "stdev": 1}, "unknown key(s) stdev"),
    ],
)
def test_bad_blocks_name_the_field(block, fragment):
    with pytest.raises(ConfigError) as err:
        LENGTHS.build(block, where="w.yaml: input_len")
    assert fragment in str(err.value)


@pytest.mark.parametrize(("block", "message"), [
    ({"kind": "gamma", "mean": 100, "cv": 1e308}, r"'cv' must be <= 100, got 1e\+308"),
    ({"kind": "lognormal", "mean": 100, "sigma": 1e308}, r"'sigma' must be <= 10, got 1e\+308"),
])
def test_spreads_too_large_to_sample_are_refused(block, message):
    with pytest.raises(ConfigError, match=rf"^w: input_len: {message}"):
        LENGTHS.build(block, where="w: input_len")
