"""Base profile chosen from the GPU name; device folder names."""

import pytest

from llmsim.calibration.environment import base_profile_for, device_folder_name
from llmsim.specs import load_hardware


@pytest.mark.parametrize(("gpu", "profile"), [
    ("NVIDIA H100 80GB HBM3", "h100-sxm"), ("NVIDIA H100 PCIe", "h100-pcie"), ("NVIDIA H200", "h200"),
    ("NVIDIA A100-SXM4-40GB", "a100-sxm-40gb"), ("NVIDIA A100-SXM4-80GB", "a100-sxm-80gb"),
    ("NVIDIA L40S", "l40s"), ("NVIDIA L4", "l4"), ("NVIDIA GeForce RTX 4090", "rtx-4090"),
    ("AMD Instinct MI300X", "mi300x"), ("NVIDIA B200", "b200"), ("Tesla T4", None),
])
def test_base_profile_for(gpu, profile):
    assert base_profile_for(gpu) == profile
    if profile:
        assert load_hardware(profile).name == profile


def test_device_folder_name():
    assert device_folder_name({"device": "cuda", "name": "NVIDIA H100 80GB HBM3"}) == "nvidia-h100-80gb-hbm3"
    assert device_folder_name({"device": "cpu", "name": "AMD EPYC 7R13 Processor"}) == "cpu-amd-epyc-7r13-processor"
