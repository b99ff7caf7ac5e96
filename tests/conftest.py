import pytest

from llmsim.specs import hardware_from_dict

# A hand-written H100-like profile so cost tests do not depend on the shipped YAMLs' exact figures.
TEST_HW = {
    "name": "test-gpu",
    "peak_flops_per_s": {"fp32": 60e12, "bf16": 1000e12, "fp8": 2000e12},
    "hbm_bytes": 80e9,
    "hbm_bytes_per_s": 3.0e12,
    "interconnect": {
        "gpus_per_node": 8,
        "intra_node": {"bytes_per_s": 400e9, "latency_s": 5e-6},
        "inter_node": {"bytes_per_s": 50e9, "latency_s": 10e-6},
        "host": {"bytes_per_s": 50e9, "latency_s": 10e-6},
    },
    "efficiency": {"gemm": 0.8, "attention": 0.5, "memory": 0.75, "comm": 0.5},
    "overheads": {"kernel_launch_s": 5e-6, "step_s": 1e-3, "per_seq_s": 0.0},
}


@pytest.fixture
def test_hw():
    return hardware_from_dict(TEST_HW)


@pytest.fixture
def make_hw():
    def make(**overrides):
        data = {**TEST_HW, **overrides}
        return hardware_from_dict(data)

    return make
