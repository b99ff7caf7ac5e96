"""A tiny real sweep on an NVIDIA GPU (skipped where none is visible)."""

import pytest

from llmsim.cli import main
from llmsim.cost.calibrated import CalibratedTimer
from llmsim.specs.hardware import load_hardware_file

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.gpu


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible")
def test_tiny_cuda_sweep(tmp_path, tiny_model_path):
    out = tmp_path / "gpu-test.yaml"
    from llmsim.calibration.environment import base_profile_for

    base = [] if base_profile_for(torch.cuda.get_device_name(0)) else ["--base", "h100-sxm"]
    code = main(["calibrate", "--device", "cuda", "--models", str(tiny_model_path), "--max-m", "256",
                 "--repeats", "3", "--out", str(out), "--data-dir", str(tmp_path / "data"), "--no-progress",
                 "--dtypes", "bf16,fp8", *base])
    assert code == 0
    hw = load_hardware_file(out)
    assert hw.calibration["environment"]["device"] == "cuda"
    CalibratedTimer(hw)
    assert (tmp_path / "data" / "gemm.csv").is_file()
