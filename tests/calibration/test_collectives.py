"""All-reduce for real across two processes (gloo on the CPU; NCCL on GPUs runs the same code), the ring-model
fit, and the fitted link written into a profile."""

import pytest

from llmsim.calibration.collectives import fit_allreduce, measure_allreduce
from llmsim.calibration.commands import METHOD
from llmsim.calibration.outputs import load_run, write_outputs
from llmsim.specs.hardware import load_hardware_file

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def gloo_allreduce():
    return measure_allreduce(torch, 2, [1 << 10, 1 << 16, 1 << 20, 1 << 22], backend="gloo", samples=3)


def test_measured_and_fitted(gloo_allreduce):
    assert [m.case["bytes"] for m in gloo_allreduce] == [1 << 10, 1 << 16, 1 << 20, 1 << 22]
    assert all(m.median_s > 0 and m.case["ranks"] == 2 for m in gloo_allreduce)
    fit = fit_allreduce(gloo_allreduce)
    assert fit["ranks"] == 2 and fit["latency_s"] >= 0 and fit["bytes_per_s"] > 0


def test_profile_gets_the_fitted_link(gloo_allreduce, cpu_run, tmp_path):
    _, _, data = cpu_run
    run = load_run(data)
    run.measurements += gloo_allreduce
    out = tmp_path / "with-comm.yaml"
    write_outputs(run, out, tmp_path / "data", METHOD)
    hw = load_hardware_file(out)
    fit = hw.calibration["allreduce"][0]
    assert fit["ranks"] == 2 and len(fit["bytes"]) == 4
    assert hw.intra_node.latency_s == pytest.approx(fit["latency_s"], rel=1e-3)
    assert 0 < hw.efficiency.comm <= 1
    assert (tmp_path / "data" / "allreduce.csv").is_file()
