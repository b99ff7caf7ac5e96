"""Held-out split, outlier re-timing and ratio fitting on small hand-made series (the pipeline tests run the
same code on real measurements)."""

import pytest

from llmsim.calibration.fit import fit_blocks, ratio, split_heldout
from llmsim.calibration.measurements import Case, Measurement
from llmsim.calibration.runner import retime_outliers


def gemm_series(times, n=256, k=256):
    return [Measurement(Case.make("gemm", "g", "bf16", m=m, n=n, k=k), t, 0.0, 3, 1)
            for m, t in zip([1, 2, 4, 8, 16, 32], times, strict=False)]


def test_split_holds_out_every_other_point_and_keeps_the_ends():
    ms = gemm_series([1e-5] * 6)
    fit, held = split_heldout(ms)
    assert [m.case["m"] for m in held] == [2, 8]
    assert [m.case["m"] for m in fit] == [1, 4, 16, 32]


def test_outlier_is_retimed_and_the_faster_median_kept():
    ms = gemm_series([1e-5, 1.1e-5, 5e-5, 1.3e-5, 1.4e-5, 1.5e-5])
    retimed = []

    def measure(case):
        retimed.append(case["m"])
        return Measurement(case, 1.2e-5, 0.0, 3, 1)

    notes = []
    out = retime_outliers(ms, measure, notes)
    assert retimed == [4] and out[2].median_s == 1.2e-5 and notes


def test_fit_reproduces_ratios(test_hw):
    ms = gemm_series([1e-5, 2e-5, 3e-5])
    block = fit_blocks(ms, test_hw, launch_s=0.0)
    fam = block["gemm"][0]
    assert (fam["n"], fam["k"], fam["m"]) == (256, 256, [1, 2, 4])
    for r, m in zip(fam["ratio"], ms, strict=True):
        assert r == pytest.approx(ratio(m, test_hw, 0.0), rel=1e-3)


def test_launch_is_subtracted_with_a_floor(test_hw):
    m = gemm_series([1e-5])[0]
    assert ratio(m, test_hw, 4e-6) == pytest.approx(ratio(m, test_hw, 0.0) * 0.6)
    assert ratio(m, test_hw, 1.0) == pytest.approx(ratio(m, test_hw, 0.0) * 0.02)

