"""CalibratedTimer on a hand-written calibration block: the structural model with the block's fitted
constants, times the residual: exact at grid points, log-linear between, held constant outside, arrays for
vectorised decode, interpolation between shape families, and the source of every prediction."""

import math
import timeit

import numpy as np
import pytest

from llmsim.cost.calibrated import CalibratedTimer
from llmsim.cost.kernels import KernelModel, Physics, kernel_seconds
from llmsim.cost.operators import Operator, elementwise, gemm
from llmsim.cost.roofline import RooflineTimer
from llmsim.errors import ConfigError
from llmsim.specs import Precision

LAUNCH = 5e-6
PHYSICS = {
    "gemm": {"bf16": {"compute_eff": 0.8, "memory_eff": 0.9, "fixed_s": 2e-6}},
    "attn_decode": {"bf16": {"memory_eff": 0.85, "fixed_s": 8e-6, "cta_s": 3e-6}},
    "attn_prefill": {"bf16": {"compute_eff": 0.6, "fixed_s": 4e-6, "cta_tiles": 2.0}},
    "elementwise": {"all": {"memory_eff": 0.7, "fixed_s": 2e-6}},
}
BLOCK = {
    "format": 2,
    "physics": PHYSICS,
    "gemm": [{"dtype": "bf16", "n": 4096, "k": 4096, "m": [1, 16, 256], "ratio": [2.0, 4.0, 1.25]},
             {"dtype": "bf16", "n": 16384, "k": 4096, "m": [1, 16, 256], "ratio": [1.0, 1.0, 1.0]}],
    "attn_decode": [{"dtype": "bf16", "heads": 32, "kv_heads": 8, "head_dim": 128, "batch": [1, 4],
                     "context": [128, 1024], "ratio": [[2.0, 1.5], [4.0, 3.0]]}],
    "attn_prefill": [{"dtype": "bf16", "heads": 32, "kv_heads": 8, "head_dim": 128, "batch": [1],
                      "seq": [128, 4096], "ratio": [[3.0, 1.5]]}],
    "elementwise": [{"kind": "rms_norm", "bytes": [1000, 1000000], "ratio": [10.0, 1.25]},
                    {"kind": "copy", "bytes": [1000, 1000000], "ratio": [20.0, 1.25]}],
}
BF16 = Precision.parse("bf16")


@pytest.fixture
def timer(make_hw):
    return CalibratedTimer(make_hw(calibration=BLOCK))


@pytest.fixture
def model(make_hw):
    """The structural model with the block's constants (its terms are checked by hand in tests/cost)."""
    km = KernelModel(make_hw(), PHYSICS)
    return lambda op: float(kernel_seconds(km.time(op)))


def decode_op(seqs, kv_tokens):
    kv = np.asarray(kv_tokens, dtype=float) if isinstance(kv_tokens, list) else float(kv_tokens)
    return Operator("attn_decode", "attn_decode", 4.0 * 32 * 128 * kv, kv * 2 * 1024 * 2 + seqs * 4096 * 4,
                    "bf16", shape=(seqs, 32, 8, 128, kv), storage_dtype="bf16")


def test_gemm_exact_at_grid_points_and_log_linear_between(timer, model):
    for m, r in ((1, 2.0), (16, 4.0), (256, 1.25)):
        op = gemm("x", m, 4096, 4096, BF16)
        t = timer.time(op)
        assert t.kernel_s == pytest.approx(r * model(op)) and t.source == "interpolated"
        assert t.launch_s == LAUNCH
    op = gemm("x", 4, 4096, 4096, BF16)  # halfway between 1 and 16 in log space: sqrt(2 * 4)
    assert timer.time(op).kernel_s == pytest.approx(math.sqrt(8.0) * model(op))


def test_gemm_between_measured_families_is_interpolated(timer, model):
    op = gemm("x", 1, 8192, 4096, BF16)  # N halfway (in log) between 4096 (ratio 2) and 16384 (ratio 1)
    t = timer.time(op)
    assert t.source == "interpolated" and t.kernel_s == pytest.approx(math.sqrt(2.0) * model(op))


def test_outside_range_is_extrapolated_at_the_edge_ratio(timer, model):
    op = gemm("x", 8192, 4096, 4096, BF16)
    t = timer.time(op)
    assert t.source == "extrapolated" and t.kernel_s == pytest.approx(1.25 * model(op))


def test_family_outside_the_grid_uses_the_nearest_and_says_extrapolated(timer, model):
    op = gemm("x", 16, 4096, 3584, BF16)  # K below every measured K
    t = timer.time(op)
    assert t.source == "extrapolated" and t.kernel_s == pytest.approx(4.0 * model(op))


def test_dtype_without_data_falls_back_to_the_profiles_constants(timer, make_hw):
    op = gemm("x", 16, 4096, 4096, Precision.parse("fp8"))
    t = timer.time(op)
    assert t.source == "roofline"
    assert t.kernel_s == pytest.approx(RooflineTimer(make_hw()).time(op).kernel_s)


def test_weight_only_gemm_uses_the_16_bit_physics_without_its_residual(timer, make_hw):
    op = gemm("x", 16, 4096, 4096, Precision.parse("int4"))
    t = timer.time(op)
    p = Physics(**PHYSICS["gemm"]["bf16"])
    assert t.source == "extrapolated"
    assert t.kernel_s == pytest.approx(float(kernel_seconds(KernelModel(make_hw()).time(op, p))))


def test_decode_accepts_arrays(timer, model):
    kv = [4 * 128, 4 * 362, 4 * 1024, 4 * 4096]
    op = decode_op(4, kv)
    t = timer.time(op)
    assert isinstance(t.compute_s, np.ndarray) and isinstance(t.memory_s, np.ndarray)
    assert np.isscalar(t.launch_s)
    assert t.source == "extrapolated"  # the last context is beyond the grid
    for i, r in enumerate([4.0, None, 3.0, 3.0]):
        scalar = timer.time(decode_op(4, kv[i]))
        assert t.kernel_s[i] == pytest.approx(scalar.kernel_s)
        if r is not None:
            assert scalar.kernel_s == pytest.approx(r * model(decode_op(4, kv[i])))
    assert timer.time(decode_op(4, [4 * 128, 4 * 1024])).source == "interpolated"


def test_decode_bilinear_between_batches(timer, model):
    op = decode_op(2, 2 * 128)  # batch 2 is halfway between 1 and 4 in log space
    assert timer.time(op).kernel_s == pytest.approx(math.sqrt(2.0 * 4.0) * model(op))


def prefill_op(s, ctx=0):
    pairs = s * ctx + s * (s + 1) / 2
    hbm = s * 4096 * 2 * 2 + (s + ctx) * 2 * 1024 * 2  # Q and O, then K and V (llmsim.cost.layers)
    return Operator("attn_prefill", "attn_prefill", 4.0 * 32 * 128 * pairs, hbm, "bf16",
                    shape=(s, 32, 8, 128, s + ctx, 1), storage_dtype="bf16")


def test_prefill_of_a_whole_prompt_is_interpolated_and_a_chunk_extrapolated(timer, model):
    t = timer.time(prefill_op(4096))
    assert t.source == "interpolated" and t.kernel_s == pytest.approx(1.5 * model(prefill_op(4096)))
    assert timer.time(prefill_op(512, ctx=2048)).source == "extrapolated"


def test_elementwise_kind_by_operator_name_and_pooled_otherwise(timer, model):
    norm = elementwise("attn_norm", 500, 2.0, 5.0)  # 1000 bytes
    assert timer.time(norm).kernel_s == pytest.approx(10.0 * model(norm))
    assert timer.time(norm).source == "interpolated"
    rotary = elementwise("rotary", 500, 2.0, 6.0)  # no rotary curve: median (in log space) of the kinds
    t = timer.time(rotary)
    assert t.source == "extrapolated" and t.kernel_s == pytest.approx(math.sqrt(200.0) * model(rotary))


def test_bad_block_is_a_config_error(make_hw):
    bad = {"format": 2, "gemm": [{"dtype": "bf16", "n": 1, "k": 1, "m": [4, 2], "ratio": [1.0, 1.0]}]}
    with pytest.raises(ConfigError, match="strictly increasing"):
        CalibratedTimer(make_hw(calibration=bad))
    with pytest.raises(ConfigError, match="calibration.physics.gemm.bf16: unknown key"):
        CalibratedTimer(make_hw(calibration={"physics": {"gemm": {"bf16": {"speed": 2}}}}))
    with pytest.raises(ConfigError, match="format 1 is not read"):
        CalibratedTimer(make_hw(calibration={"format": 1}))


def test_fast_enough_per_call(timer):
    op = gemm("x", 37, 4096, 4096, BF16)
    per_call = timeit.timeit(lambda: timer.time(op), number=2000) / 2000
    assert per_call < 50e-6  # budget ~10 us; generous bound for slow CI machines


def test_fp16_uses_bf16_data(timer):
    bf16 = timer.time(gemm("x", 16, 4096, 4096, BF16))
    fp16 = timer.time(gemm("x", 16, 4096, 4096, Precision.parse("fp16")))
    assert fp16.source == "interpolated" and fp16.kernel_s == pytest.approx(bf16.kernel_s)


def test_quantised_kv_cache_is_extrapolated(make_hw):
    from llmsim.cost.layers import attention_ops
    from llmsim.cost.operators import ShardedShapes, batch_features
    from llmsim.specs import ParallelLayout, load_model

    timer = CalibratedTimer(make_hw(calibration=BLOCK))
    model = load_model("llama-3.1-8b")
    sh = ShardedShapes.of(model, ParallelLayout())
    f = batch_features([1] * 4, [200] * 4)
    for kv, source in (("bf16", "interpolated"), ("fp8", "extrapolated")):
        op = next(o for o in attention_ops(model, sh, Precision.parse("bf16", kv), f) if o.op_class == "attn_decode")
        assert timer.time(op).source == source
