"""Share of predicted kernel time by evidence (interpolated / extrapolated / roofline), by hand and end to end."""

from types import SimpleNamespace

import pytest

from llmsim.cost.estimate import estimate
from llmsim.cost.evidence import evidence_fractions, weighted_fractions
from llmsim.specs import load_model


def row(source, time_s, launch_s=0.0):
    return SimpleNamespace(source=source, time_s=time_s, launch_s=launch_s)


def test_fractions_of_kernel_time_without_launch_gaps():
    rows = [row("interpolated", 3.0, launch_s=1.0), row("extrapolated", 1.0), row("roofline", 1.0)]
    # kernel time: 2 interpolated, 1 extrapolated, 1 roofline
    assert evidence_fractions(rows) == {"interpolated": 0.5, "extrapolated": 0.25, "roofline": 0.25}
    assert evidence_fractions([]) == {"interpolated": 0.0, "extrapolated": 0.0, "roofline": 0.0}


def test_steps_weighted_by_their_seconds():
    a = {"interpolated": 1.0, "extrapolated": 0.0, "roofline": 0.0}
    b = {"interpolated": 0.0, "extrapolated": 0.0, "roofline": 1.0}
    assert weighted_fractions([(a, 3.0), (b, 1.0)]) == {"interpolated": 0.75, "extrapolated": 0.0, "roofline": 0.25}


def test_uncalibrated_estimate_is_all_roofline(test_hw):
    e = estimate(load_model("llama-3.1-8b"), test_hw, batch_size=2, input_len=128, output_len=8)
    assert e.evidence == {"interpolated": 0.0, "extrapolated": 0.0, "roofline": 1.0}


def test_calibrated_estimate_rests_mostly_on_measured_kernels():
    from llmsim.specs import load_hardware

    try:
        hw = load_hardware("h100-sxm-calibrated")
    except Exception:  # noqa: BLE001 - the shipped profile may be absent in a trimmed checkout
        pytest.skip("h100-sxm-calibrated not shipped here")
    e = estimate(load_model("llama-3.1-8b"), hw, batch_size=8, input_len=1024, output_len=64)
    assert sum(e.evidence.values()) == pytest.approx(1.0)
    assert e.evidence["interpolated"] > 0.8  # GEMMs and attention of Llama-3.1-8B lie inside the AIC grids
