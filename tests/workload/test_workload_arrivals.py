import math

import numpy as np
import pytest

from llmsim.errors import ConfigError
from llmsim.workload.arrivals import ARRIVALS, CHUNK, ClosedLoop
from tests.helpers import cv


def first_times(block: dict, n: int = 50_000, seed: int = 0) -> np.ndarray:
    chunks = ARRIVALS.build(block).chunks(np.random.default_rng(seed))
    out = []
    while sum(len(c) for c in out) < n:
        out.append(next(chunks))
    return np.concatenate(out)[:n]


@pytest.mark.parametrize(
    ("block", "want_cv"),
    [
        ({"kind": "poisson", "rate_per_s": 5.0}, 1.0),
        ({"kind": "gamma", "rate_per_s": 5.0, "cv": 2.0}, 2.0),
        ({"kind": "gamma", "rate_per_s": 5.0, "cv": 0.5}, 0.5),
        ({"kind": "gamma", "rate_per_s": 5.0, "shape": 0.25}, 2.0),
        ({"kind": "weibull", "rate_per_s": 5.0, "shape": 1.0}, 1.0),
        ({"kind": "constant", "rate_per_s": 5.0}, 0.0),
    ],
)
def test_renewal_processes_have_requested_rate_and_cv(block, want_cv):
    t = first_times(block)
    gaps = np.diff(t)
    assert np.all(gaps >= 0)
    assert len(t) / t[-1] == pytest.approx(5.0, rel=0.03)
    assert cv(gaps) == pytest.approx(want_cv, abs=0.05)


def test_weibull_shape_below_one_is_bursty():
    # CV of Weibull(k=0.5) gaps is sqrt(Gamma(1+2/k)/Gamma(1+1/k)^2 - 1) = sqrt(5)
    gaps = np.diff(first_times({"kind": "weibull", "rate_per_s": 2.0, "shape": 0.5}, 200_000))
    assert cv(gaps) == pytest.approx(math.sqrt(5), rel=0.08)
    assert 1 / gaps.mean() == pytest.approx(2.0, rel=0.03)


def test_same_seed_same_times_other_seed_differs():
    block = {"kind": "gamma", "rate_per_s": 3.0, "cv": 1.5}
    assert np.array_equal(first_times(block, 1000, 7), first_times(block, 1000, 7))
    assert not np.array_equal(first_times(block, 1000, 7), first_times(block, 1000, 8))


def test_constant_spacing_is_exact_without_drift():
    t = first_times({"kind": "constant", "rate_per_s": 10.0}, 3 * CHUNK)
    assert t[0] == 0.0
    assert t[-1] == pytest.approx((3 * CHUNK - 1) / 10.0, abs=1e-9)


def test_batch_puts_everything_at_zero():
    assert not first_times({"kind": "batch"}, 1000).any()


def test_bursty_rate_and_silences():
    block = {"kind": "bursty", "on_rate_per_s": 20.0, "mean_on_s": 5.0, "mean_off_s": 15.0}
    t = first_times(block, 100_000)
    # long-run rate = on_rate * on / (on + off) = 5 req/s
    assert len(t) / t[-1] == pytest.approx(5.0, rel=0.05)
    gaps = np.diff(t)
    assert cv(gaps) > 2.5
    # one silence per burst of ~100 arrivals; an exponential silence (mean 15 s) exceeds 5 s w.p. exp(-1/3)
    assert np.mean(gaps > 5.0) == pytest.approx(math.exp(-5 / 15) / (20 * 5), rel=0.2)


def test_bursty_on_cv_shapes_in_burst_gaps():
    base = {"kind": "bursty", "on_rate_per_s": 50.0, "mean_on_s": 1000.0, "mean_off_s": 0.001}
    smooth = np.diff(first_times({**base, "on_cv": 0.3}, 50_000))
    assert cv(smooth) == pytest.approx(0.3, abs=0.05)


def test_stages_follow_the_schedule_then_stop():
    block = {
        "kind": "stages",
        "stages": [{"rate_per_s": 8, "duration_s": 600}, {"rate_per_s": 20, "duration_s": 600}],
    }
    process = ARRIVALS.build(block)
    t = np.concatenate(list(process.chunks(np.random.default_rng(1))))
    assert t[-1] < 1200
    assert np.sum(t < 600) / 600 == pytest.approx(8, rel=0.1)
    assert np.sum(t >= 600) / 600 == pytest.approx(20, rel=0.1)
    assert process.mean_rate_per_s == pytest.approx(14)


def test_stages_repeat_and_zero_rate_stage():
    block = {
        "kind": "stages",
        "repeat": True,
        "stages": [{"rate_per_s": 10, "duration_s": 10}, {"rate_per_s": 0, "duration_s": 10}],
    }
    t = first_times(block, 5000)
    phase = t % 20
    assert np.all(phase <= 10 + 1e-9)
    assert len(t) / t[-1] == pytest.approx(5, rel=0.05)


def test_diurnal_peak_and_trough():
    block = {"kind": "diurnal", "mean_rate_per_s": 1.0, "amplitude": 0.8, "period_s": 1000.0, "peak_s": 250.0}
    t = first_times(block, 200_000)
    phase = t % 1000
    near_peak = np.sum(np.abs(phase - 250) < 50) / (t[-1] / 1000 * 100)
    near_trough = np.sum(np.abs(phase - 750) < 50) / (t[-1] / 1000 * 100)
    assert near_peak == pytest.approx(1.8, rel=0.06)  # 1 + 0.8 cos(small) ~ 1.79 on average over the window
    assert near_trough == pytest.approx(0.2, rel=0.15)
    assert len(t) / t[-1] == pytest.approx(1.0, rel=0.02)


def test_closed_loop_is_a_description():
    loop = ARRIVALS.build({"kind": "closed_loop", "users": 4, "think_time_s": 2.0, "ramp_up_s": 8.0})
    assert isinstance(loop, ClosedLoop)
    assert list(loop.start_times_s()) == [0.0, 2.0, 4.0, 6.0]
    rng = np.random.default_rng(0)
    thinks = np.array([loop.think_s(rng) for _ in range(20_000)])
    assert thinks.mean() == pytest.approx(2.0, rel=0.03)
    assert cv(thinks) == pytest.approx(1.0, abs=0.05)
    assert ClosedLoop(users=1, think_time_s=1.5, think_cv=0.0).think_s(rng) == 1.5


@pytest.mark.parametrize(
    ("block", "fragment"),
    [
        ({"kind": "poisson", "rate_per_s": -1}, "'rate_per_s' must be a number > 0"),
        ({"kind": "gamma", "rate_per_s": 1}, "exactly one of 'cv' or 'shape'"),
        ({"kind": "gamma", "rate_per_s": 1, "cv": 1, "burst": 2}, "unknown key(s) burst"),
        ({"kind": "poison", "rate_per_s": 1}, "unknown arrival process 'poison'"),
        ({"kind": "stages", "stages": [{"rate_per_s": 1}]}, "stages[0]"),
        ({"kind": "diurnal", "mean_rate_per_s": 1, "amplitude": 2}, "'amplitude' must be in [0, 1]"),
        ({"kind": "closed_loop", "users": 0}, "'users' must be an integer >= 1"),
        ({"kind": "diurnal", "mean_rate_per_s": 1, "peak_s": float("nan")}, "'peak_s' must be a number >= 0"),
        ({"kind": "gamma", "rate_per_s": 1, "cv": 1e308}, "'cv' must be <= 100, got 1e+308"),
        ({"kind": "gamma", "rate_per_s": 1, "shape": 1e-300}, "'shape' must be >= 1e-4"),
    ],
)
def test_bad_blocks_name_the_field(block, fragment):
    with pytest.raises(ConfigError) as err:
        ARRIVALS.build(block, where="w.yaml: arrival")
    assert fragment in str(err.value)
    assert "w.yaml: arrival" in str(err.value) or "unknown arrival process" in str(err.value)
