"""Goodput from a rate sweep: exact only between two steady points; bounds where a rate is overloaded or
inconclusive; never a rate whose run was overloaded."""

from __future__ import annotations

import pandas as pd
import pytest

from llmsim.metrics.goodput import goodput

RATE = "sweep.rate"


def sweep(rows):
    """rows: (rate, attainment, verdict) per seed-run."""
    return pd.DataFrame([{RATE: r, "slo_attainment": a, "load_verdict": v, "slo_target_attainment": 0.9,
                          "slo_met": a >= 0.9, "num_gpus": 2} for r, a, v in rows])


def test_interpolates_between_two_stable_rates():
    g = goodput(sweep([(1, 1.0, "stable"), (2, 0.95, "stable"), (3, 0.85, "stable"), (4, 0.2, "stable")]), RATE)
    assert g.exact and g.goodput_rps == pytest.approx(2.5) and g.upper_rps == 3
    assert g.to_dict()["goodput_rps_per_gpu"] == pytest.approx(1.25)
    assert g.text() == "2.5 req/s"


def test_an_overloaded_rate_bounds_goodput_but_is_never_part_of_it():
    # the quickstart's trap: attainment still above target at 7 req/s over a short, overloaded run
    g = goodput(sweep([(5, 1.0, "stable"), (6, 0.99, "stable"), (7, 0.97, "overloaded")]), RATE)
    assert not g.exact and g.goodput_rps == 6 and g.upper_rps == 7
    assert g.lowest_overloaded_rps == 7 and g.highest_stable_rps == 6
    assert g.text() == ">= 6 req/s (7 overloaded)"


def test_one_overloaded_seed_makes_the_rate_overloaded():
    g = goodput(sweep([(6, 0.99, "stable"), (6, 0.98, "stable"), (7, 0.95, "stable"), (7, 0.7, "overloaded")]),
                RATE)
    assert g.goodput_rps == 6 and g.lowest_overloaded_rps == 7 and not g.exact


def test_inconclusive_rates_leave_a_bracket():
    g = goodput(sweep([(2, 1.0, "stable"), (4, 0.99, "inconclusive"), (6, 0.6, "stable")]), RATE)
    assert g.goodput_rps == 2 and not g.exact and g.upper_rps == 6 and g.inconclusive_rps == [4]
    assert "4 inconclusive" in g.text() and "6 misses the SLO" in g.text()
    # an inconclusive run that already misses its SLO misses it in steady state too
    g2 = goodput(sweep([(2, 1.0, "stable"), (4, 0.5, "inconclusive")]), RATE)
    assert g2.goodput_rps == 2 and g2.upper_rps == 4 and g2.inconclusive_rps == []


def test_no_rate_holds_and_every_rate_holds():
    none = goodput(sweep([(2, 0.5, "stable"), (4, 0.1, "overloaded")]), RATE)
    assert none.goodput_rps is None and none.upper_rps == 2 and none.text().startswith("< 2 req/s")
    every = goodput(sweep([(2, 1.0, "stable"), (4, 0.99, "stable")]), RATE)
    assert every.goodput_rps == 4 and every.upper_rps is None and not every.exact
    assert "every rate" in every.text()


def test_percentile_targets_count_and_are_not_interpolated():
    df = sweep([(2, 1.0, "stable"), (4, 0.99, "stable")]).assign(slo_percentiles_met=[True, False])
    g = goodput(df, RATE)
    assert g.goodput_rps == 2 and not g.exact and g.upper_rps == 4


def test_without_slo_only_capacity():
    df = pd.DataFrame({RATE: [1, 2, 3], "load_verdict": ["stable", "stable", "overloaded"]})
    g = goodput(df, RATE)
    assert g.goodput_rps is None and g.highest_stable_rps == 2 and g.lowest_overloaded_rps == 3


def test_goodput_per_dollar_from_the_configuration_price():
    rows = sweep([(1, 1.0, "stable"), (2, 0.95, "stable"), (3, 0.85, "stable")]).assign(price_per_hour_usd=6.0)
    d = goodput(rows, RATE).to_dict()
    assert d["goodput_requests_per_usd"] == pytest.approx(2.5 * 3600 / 6.0)  # 1500 requests per dollar
