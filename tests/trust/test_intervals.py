"""Split-conformal intervals: exact order statistics by hand, coverage on synthetic residuals of known
distributions, pooling and monotonicity across grades, held-out coverage."""

import math

import numpy as np
import pytest

from llmsim.trust.intervals import (
    Quantile,
    Residual,
    ResidualTable,
    conformal_quantile,
    held_out_coverage,
    load_residuals,
    metric_interval,
    min_residuals,
    write_residual_set,
)


def test_quantile_is_the_ceil_n_plus_1_level_order_statistic():
    assert conformal_quantile([0.1 * i for i in range(1, 11)], 0.9) == pytest.approx(1.0)  # k = ceil(9.9) = 10
    assert conformal_quantile(list(range(1, 10)), 0.9) == 9  # k = ceil(9.0) = 9 of 9
    assert conformal_quantile(list(range(1, 9)), 0.9) == math.inf  # k = 9 > 8
    assert conformal_quantile([-3.0, 1.0, 2.0], 0.5) == 2.0  # absolute values, k = ceil(2) = 2
    assert min_residuals(0.9) == 9 and min_residuals(0.8) == 4
    with pytest.raises(ValueError, match="level"):
        conformal_quantile([1.0], 1.0)


@pytest.mark.parametrize("draw", [
    lambda g, n: g.standard_t(2.5, n),  # heavy tails
    lambda g, n: g.lognormal(0.0, 1.0, n) - 1.0,  # skewed, not centred
    lambda g, n: g.uniform(-0.2, 0.05, n),  # bounded, biased
])
@pytest.mark.parametrize("n", [19, 40])
def test_coverage_on_synthetic_residuals(draw, n):
    """Exchangeable residuals of any continuous distribution: P(|new| <= q) = ceil((n+1)0.9)/(n+1)."""
    g = np.random.default_rng(7)
    trials = 4000
    hits = 0
    for _ in range(trials):
        r = draw(g, n + 1)
        hits += abs(r[-1]) <= conformal_quantile(r[:-1], 0.9)
    expected = math.ceil((n + 1) * 0.9) / (n + 1)  # 0.90 for n = 19, 37/41 = 0.902 for n = 40
    sd = math.sqrt(expected * (1 - expected) / trials)
    assert abs(hits / trials - expected) < 4 * sd
    assert hits / trials > 0.9 - 4 * sd


def test_bounds_are_multiplicative():
    lo, hi = Quantile(math.log(2.0), 9, "A").bounds(10.0)
    assert (lo, hi) == pytest.approx((5.0, 20.0))
    assert Quantile(math.inf, 3, "A").bounds(10.0) is None


def _rows(grade, values, family="ttft_mean", prefix="r"):
    return [Residual(f"{prefix}{grade}{i}", "m", family, grade, v) for i, v in enumerate(values)]


def test_pooling_with_worse_grades_and_never_narrower_than_better():
    table = ResidualTable(tuple(_rows("A", [0.1] * 9) + _rows("B", [0.5] * 3) + _rows("C", [0.2] * 9)))
    assert table.quantile("ttft_mean", "A").q == pytest.approx(0.1)
    b = table.quantile("ttft_mean", "B")  # 3 of B < 9: pooled with C, 12 values, k = ceil(11.7) = 12 -> 0.5
    assert (b.q, b.n, b.pooled) == (pytest.approx(0.5), 12, "B+C")
    assert table.quantile("ttft_mean", "C").q == pytest.approx(0.5)  # own 0.2, but B's 0.5 is better-graded
    assert table.quantile("ttft_mean", "D").q == math.inf  # overloaded: no interval
    assert table.quantile("itl", "A").q == math.inf  # no residuals of that family


def test_too_few_residuals_gives_no_interval():
    table = ResidualTable(tuple(_rows("B", [0.3] * 5)))
    assert table.quantile("ttft_mean", "B").q == math.inf
    assert metric_interval(table, "ttft_mean_s", 1.0, "B") is None
    assert metric_interval(table, "not_a_metric", 1.0, "B") is None


def test_summary_metrics_use_their_family():
    table = ResidualTable(tuple(_rows("A", [math.log(1.5)] * 9, family="itl")))
    lo, hi = metric_interval(table, "tpot_p50_s", 0.03, "A")
    assert (lo, hi) == pytest.approx((0.02, 0.045))


def test_held_out_coverage_leaves_out_the_run():
    # ten runs, one residual each (0.1 ... 1.0): each is judged by the max of the other nine (k = 9 of 9);
    # only the largest is not covered
    rows = tuple(Residual(f"run{i}", f"model{i % 2}", "e2e_mean", "A", 0.1 * i) for i in range(1, 11))
    assert held_out_coverage(ResidualTable(rows), 0.9, "run") == {"e2e_mean": (9, 10)}
    # leaving a model out leaves 5 residuals: too few at 90 %, nothing is judged
    assert held_out_coverage(ResidualTable(rows), 0.9, "model") == {}


def test_residual_file_round_trip(tmp_path):
    path = tmp_path / "res.json"
    write_residual_set(path, "one", {"command": "x"}, _rows("A", [0.25, -0.5]))
    write_residual_set(path, "two", {"command": "y"}, _rows("C", [0.1], prefix="s"))
    table = load_residuals(path)
    assert sorted(r.log_ratio for r in table.rows) == [-0.5, 0.1, 0.25]
    assert set(table.provenance) == {"one", "two"}
    assert load_residuals(tmp_path / "absent.json").rows == ()


def test_shipped_residuals_have_provenance():
    table = load_residuals()
    if not table.rows:
        pytest.skip("no residuals shipped")
    for prov in table.provenance.values():
        assert "command" in prov and "data_sha256" in prov


def test_residuals_must_come_from_enough_runs():
    """Stages of one run share its errors: nine residuals of three runs are not nine exchangeable ones."""
    rows = tuple(Residual(f"run{i % 3}", "m", "itl", "A", 0.1 * (i + 1)) for i in range(12))
    assert ResidualTable(rows).quantile("itl", "A").q == math.inf
    rows += tuple(Residual(f"other{i}", "m", "itl", "A", 0.05) for i in range(6))  # 9 runs now
    assert math.isfinite(ResidualTable(rows).quantile("itl", "A").q)
