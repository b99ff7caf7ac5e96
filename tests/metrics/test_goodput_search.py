"""Goodput by bisection against a monotone synthetic attainment curve with a known crossing."""

from __future__ import annotations

import pytest

from llmsim.metrics.goodput_search import bisect_goodput


def attainment(rate: float) -> float:
    return 1.0 / (1.0 + (rate / 5.0) ** 4)


# attainment(r) = 0.9  <=>  (r/5)^4 = 1/9  <=>  r = 5 / 3^0.5
CROSSING = 5.0 / 3.0**0.5


@pytest.mark.parametrize("start", [0.1, 1.0, 2.9, 40.0])
def test_bisection_brackets_the_crossing_from_any_start(start):
    g = bisect_goodput(lambda r: attainment(r) >= 0.9, start, rel_tol=0.01)
    assert g.goodput_rps <= CROSSING < g.upper_rps
    assert g.upper_rps - g.goodput_rps <= 0.01 * g.upper_rps
    assert all(t.holds == (attainment(t.rate_rps) >= 0.9) for t in g.trials)
    assert len(g.trials) <= 20


def test_per_gpu_and_per_dollar():
    g = bisect_goodput(lambda r: r <= 6.0, 6.0, rel_tol=0.001, num_gpus=4, usd_per_hour=12.0)
    assert g.goodput_rps == 6.0 and g.goodput_rps_per_gpu == 1.5
    assert g.requests_per_usd == pytest.approx(6.0 * 3600 / 12.0)  # 1800 requests per dollar


def test_fails_everywhere_and_holds_everywhere():
    never = bisect_goodput(lambda r: (False, "overloaded"), 1.0, min_rate_rps=0.25)
    assert never.goodput_rps is None and never.upper_rps == 0.25 and never.trials[-1].detail == "overloaded"
    always = bisect_goodput(lambda r: True, 1.0, max_rate_rps=16.0)
    assert always.goodput_rps == 16.0 and always.upper_rps is None


def test_bad_arguments():
    with pytest.raises(ValueError, match="start_rps"):
        bisect_goodput(lambda r: True, 0.0)
