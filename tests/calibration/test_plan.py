"""The sweep plan: exact GEMM shapes of a model's layers per TP degree, attention operators identical to the
simulator's, log grids, and a duration bound stated before measuring."""

import pytest

from llmsim.calibration.measurements import Case
from llmsim.calibration.plan import attention_layouts, build_cases, gemm_families, grids_for, log_grid, prune
from llmsim.cost.layers import attention_ops
from llmsim.cost.operators import ShardedShapes, batch_features
from llmsim.specs import ParallelLayout, Precision, load_hardware, load_model

BF16 = Precision.parse("bf16")


def test_log_grid():
    assert log_grid(1, 16, dense=False) == (1, 2, 4, 8, 16)
    assert log_grid(1, 16, dense=True) == (1, 2, 3, 4, 6, 8, 12, 16)


@pytest.mark.parametrize(("tp", "expected"), [
    (1, {(6144, 4096), (4096, 4096), (28672, 4096), (4096, 14336), (128256, 4096)}),
    (2, {(3072, 4096), (4096, 2048), (14336, 4096), (4096, 7168), (64128, 4096)}),
])
def test_llama_8b_gemm_families(tp, expected):
    fams = gemm_families(load_model("llama-3.1-8b"), tp, BF16)
    assert {(n, k) for _, n, k in fams} == expected
    assert {name for name, _, _ in fams} == {"qkv_proj", "o_proj", "mlp_gate_up", "mlp_down", "lm_head"}


def test_attention_layouts_include_gqa_and_mha():
    layouts = attention_layouts([load_model("llama-3.1-8b")], [1, 2])
    assert ("gqa", 32, 8, 128) in layouts and ("gqa", 16, 4, 128) in layouts and ("mha", 32, 32, 128) in layouts


@pytest.mark.parametrize("op_class", ["attn_prefill", "attn_decode"])
def test_case_operator_matches_the_simulators(op_class):
    model = load_model("llama-3.1-8b")
    sh = ShardedShapes.of(model, ParallelLayout())
    if op_class == "attn_prefill":
        case = Case.make(op_class, "gqa", "bf16", batch=3, seq=500, heads=32, kv_heads=8, head_dim=128)
        f = batch_features([500] * 3, [0] * 3)
    else:
        case = Case.make(op_class, "gqa", "bf16", batch=3, context=500, heads=32, kv_heads=8, head_dim=128)
        f = batch_features([1] * 3, [499] * 3)
    want = next(op for op in attention_ops(model, sh, BF16, f) if op.op_class == op_class)
    got = case.operator()
    assert (got.flops, got.hbm_bytes, got.shape) == (want.flops, want.hbm_bytes, want.shape)


def test_quick_gpu_plan_is_bounded():
    grids = grids_for("cuda", quick=True)
    cases = build_cases([load_model("llama-3.1-8b")], [1], ["bf16"], grids)
    kept, dropped, seconds = prune(cases, load_hardware("h100-sxm"), 5e-6, grids)
    assert len(kept) > 200 and seconds < 300  # --quick: under about 5 minutes on an H100
    assert {c.op_class for c in kept} == {"gemm", "attn_prefill", "attn_decode", "elementwise"}
    assert max(c["m"] for c in kept if c.op_class == "gemm") == 16384
