"""Grades on hand cases: shares computed by hand from the docstring's definitions."""

import pytest

from llmsim.trust.grades import Evidence, grade, worst


def test_all_interpolated_kernels_no_engine_time_is_a():
    g = grade(Evidence(interpolated=1.0, extrapolated=0.0, roofline=0.0))
    assert g.letter == "A"
    assert g.measured_share == pytest.approx(1.0)


def test_fitted_engine_time_counts_as_measured():
    # kernel 60 % of the time, half of it interpolated: 0.6 * 0.5 = 0.3 measured; engine 40 % fitted -> 0.7
    ev = Evidence(interpolated=0.5, extrapolated=0.5, roofline=0.0, engine_share=0.4, engine_fitted=True)
    assert ev.shares() == pytest.approx((0.7, 0.3, 0.0))
    assert grade(ev).letter == "B"  # 0.7 < 0.8 measured, but 0.7 + 0.3 >= 0.8 supported


def test_unfitted_engine_time_is_unsupported():
    # 0.5 * 1.0 measured kernels, 0.5 engine unfitted: measured 0.5, nothing extrapolated -> C
    ev = Evidence(interpolated=1.0, extrapolated=0.0, roofline=0.0, engine_share=0.5, engine_fitted=False)
    assert ev.shares() == pytest.approx((0.5, 0.0, 0.5))
    assert grade(ev).letter == "C"


def test_roofline_only_is_c_and_fractions_need_not_be_normalised():
    ev = Evidence(interpolated=0.0, extrapolated=0.0, roofline=2.0)
    assert grade(ev).letter == "C"
    # unnormalised 1:3 -> 25 % interpolated
    assert Evidence(interpolated=1.0, extrapolated=0.0, roofline=3.0).shares()[0] == pytest.approx(0.25)


def test_near_capacity_drops_one_letter_and_overload_is_d():
    base = dict(interpolated=0.9, extrapolated=0.1, roofline=0.0)
    assert grade(Evidence(**base, pressure=0.84)).letter == "A"
    assert grade(Evidence(**base, pressure=0.85)).letter == "B"
    assert grade(Evidence(interpolated=0.5, extrapolated=0.5, roofline=0.0, pressure=0.9)).letter == "C"
    assert grade(Evidence(**base, verdict="overloaded")).letter == "D"


def test_thresholds_at_the_boundary():
    assert grade(Evidence(interpolated=0.8, extrapolated=0.0, roofline=0.2)).letter == "A"
    assert grade(Evidence(interpolated=0.79, extrapolated=0.0, roofline=0.21)).letter == "C"
    assert grade(Evidence(interpolated=0.79, extrapolated=0.01, roofline=0.2)).letter == "B"


def test_bad_evidence_names_the_field():
    with pytest.raises(ValueError, match="engine_share"):
        Evidence(engine_share=1.5)
    with pytest.raises(ValueError, match="pressure"):
        Evidence(pressure=-0.1)


def test_worst():
    assert worst(["A", "C", "B"]) == "C"
    assert worst(["A", None]) == "A"
    assert worst([]) is None
