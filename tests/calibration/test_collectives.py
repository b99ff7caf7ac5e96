"""All-reduce for real across two processes (gloo on the CPU; NCCL on GPUs runs the same code), the ring fit,
and the measured curve and fitted terms written into a profile and used by the cost model."""

import pytest

from llmsim.calibration.collectives import measure_allreduce
from llmsim.calibration.commands import METHOD
from llmsim.calibration.outputs import load_run, write_outputs
from llmsim.calibration.physics_fit import fit_allreduce_terms
from llmsim.cost.calibrated import CalibratedTimer
from llmsim.cost.operators import Operator
from llmsim.specs.hardware import load_hardware_file

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def gloo_allreduce():
    return measure_allreduce(torch, 2, [1 << 10, 1 << 16, 1 << 20, 1 << 22], backend="gloo", samples=3)


def test_measured_and_fitted(gloo_allreduce, test_hw):
    assert [m.case["bytes"] for m in gloo_allreduce] == [1 << 10, 1 << 16, 1 << 20, 1 << 22]
    assert all(m.median_s > 0 and m.case["ranks"] == 2 for m in gloo_allreduce)
    fit = fit_allreduce_terms(gloo_allreduce, test_hw)
    assert set(fit) == {"ring_latency_s", "ring_hop_s", "ring_eff"}  # torch.distributed is a ring, no custom kernel
    assert all(v > 0 for v in fit.values())


def test_profile_gets_the_fitted_link(gloo_allreduce, cpu_run, tmp_path):
    _, _, data = cpu_run
    run = load_run(data)
    run.measurements += gloo_allreduce
    out = tmp_path / "with-comm.yaml"
    write_outputs(run, out, tmp_path / "data", METHOD)
    hw = load_hardware_file(out)
    curve = hw.calibration["allreduce"][0]
    assert curve["ranks"] == 2 and len(curve["bytes"]) == 4 and "ring_eff" in hw.calibration["physics"]["allreduce"]
    assert (tmp_path / "data" / "allreduce.csv").is_file()
    timer = CalibratedTimer(hw)
    for m in gloo_allreduce:  # measured sizes come back as measured
        t = timer.time(Operator("allreduce", "allreduce", 0.0, 0.0, comm_bytes=m.case["bytes"], comm_ranks=2))
        assert t.source == "interpolated" and t.comm_s == pytest.approx(m.median_s, rel=1e-4)
    far = timer.time(Operator("allreduce", "allreduce", 0.0, 0.0, comm_bytes=1 << 28, comm_ranks=2))
    assert far.source == "extrapolated" and far.comm_s > 0
