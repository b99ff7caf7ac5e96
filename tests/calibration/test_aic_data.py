"""The shipped h100-sxm-calibrated profile against the AIC rows it was fitted on (skipped without the data):
a measured kernel comes back as measured, to the 4 digits the profile stores."""

import csv
from pathlib import Path

import pytest

from llmsim.calibration.measurements import Case, Measurement
from llmsim.calibration.physics_fit import companion_s
from llmsim.cost.calibrated import CalibratedTimer
from llmsim.specs import load_hardware

AIC = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "kernels" / "aic" / "h100_sxm" / "vllm-0.14.0"
pytestmark = pytest.mark.skipif(not AIC.is_dir(), reason="../shared/data/kernels/aic not present")


def rows(name, **match):
    with (AIC / name).open(newline="") as fh:
        return [r for r in csv.DictReader(fh) if all(r[k] == v for k, v in match.items())]


@pytest.fixture(scope="module")
def timer():
    return CalibratedTimer(load_hardware("h100-sxm-calibrated"))


def test_gemm_rows_come_back_as_measured(timer):
    found = rows("gemm.csv", n="4096", k="16384", gemm_dtype="bfloat16")
    assert len(found) == 21
    for r in found:
        m = Measurement(Case.make("gemm", "aic", "bf16", m=int(r["m"]), n=4096, k=16384), float(r["latency_ms"]) * 1e-3,
                        0.0, 0, 0)
        t = timer.time(m.operator)
        assert t.source == "interpolated" and float(t.kernel_s) == pytest.approx(m.median_s, rel=2e-3), r["m"]


def test_decode_rows_come_back_as_measured_with_their_cache_write(timer):
    found = rows("generation_attention.csv", num_heads="32", num_kv_heads="8", kv_cache_dtype="bfloat16",
                 batch_size="8")
    assert found
    for r in found:
        case = Case.make("attn_decode", "aic", "bf16", batch=8, context=int(r["kv_len_tokens"]), heads=32, kv_heads=8,
                         head_dim=128)
        m = Measurement(case, float(r["latency_ms"]) * 1e-3, 0.0, 0, 0, includes=("kv_cache_write",))
        t = timer.time(m.operator)
        assert float(t.kernel_s) + companion_s(m, timer.model) == pytest.approx(m.median_s, rel=2e-3)
