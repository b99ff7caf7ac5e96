"""Structural kernel terms against hand calculations (TEST_HW: 1000 TFLOP/s bf16, 3 TB/s, efficiencies gemm
0.8 / attention 0.5 / memory 0.75, no sm_count given: 108 SMs; kernel constants at their defaults)."""

import math

import pytest

from llmsim.cost.collectives import AllReduceTerms, allreduce_algorithm, allreduce_s
from llmsim.cost.kernels import KernelModel, Physics, causal_tile_pairs, kernel_seconds, wave_utilisation
from llmsim.cost.layers import layer_operators
from llmsim.cost.operators import Operator, batch_features, elementwise, gemm
from llmsim.cost.roofline import RooflineTimer
from llmsim.specs import ParallelLayout, Precision, load_model

BF16 = Precision.parse("bf16")
NVLINK = {"gpus_per_node": 8, "intra_node": {"name": "nvlink4", "bytes_per_s": 400e9, "latency_s": 3e-6},
          "inter_node": {"bytes_per_s": 50e9, "latency_s": 1e-5}, "host": {"bytes_per_s": 50e9, "latency_s": 1e-5}}


def test_gemm_at_m1_is_memory_bound_at_the_weight_bytes(test_hw):
    op = gemm("x", 1, 4096, 4096, BF16)
    t = RooflineTimer(test_hw).time(op)
    weights_and_vectors = 2 * (4096 * 4096 + 4096 + 4096)
    assert t.bound == "memory"
    assert t.memory_s == pytest.approx(weights_and_vectors / (3e12 * 0.75))
    assert t.kernel_s == pytest.approx(2e-6 + weights_and_vectors / (3e12 * 0.75))  # + the kernel's fixed time


def test_wave_quantisation_by_hand():
    # 1152 x 1536 in 128 x 128 tiles: 9 x 12 = 108 tiles = exactly one wave on 108 SMs
    assert wave_utilisation(1152, 1536, 4096, 108, 128, 128) == 1.0
    # one more row: best is 64 x 128 tiles, 19 x 12 = 228 tiles in 3 waves (324 slots), rows padded 1153/1216
    assert wave_utilisation(1153, 1536, 4096, 108, 128, 128) == pytest.approx((1153 / 1216) * (228 / 324))


def test_split_k_fills_the_gpu_below_one_wave():
    # 128 x 128 output: 2 tiles of 64 x 128, K = 8192 split 32-way (one split per 256 of K): 64 of 108 SMs
    assert wave_utilisation(128, 128, 8192, 108, 128, 128) == pytest.approx(64 / 108)


def brute_force_pairs(s, c, tq, tk):
    nq = math.ceil(s / tq)
    return sum(math.ceil((c + min((i + 1) * tq, s)) / tk) for i in range(nq)), nq


@pytest.mark.parametrize(("s", "c"), [(1024, 0), (1000, 0), (1000, 256), (300, 77), (17, 0), (4096, 8192)])
def test_causal_tile_pairs_against_brute_force(s, c):
    assert causal_tile_pairs(s, c, 128, 128) == brute_force_pairs(s, c, 128, 128)


def test_prefill_tile_model_by_hand(test_hw):
    """One 1024-token MHA prompt, 32 heads of 128: 36 causal tile pairs and 8 query tiles per head, 4 tiles of
    prologue/epilogue per CTA (default): 32 x (36 + 4 x 8) = 2176 tile iterations over 108 SMs (more than the
    longest chain, 8 + 4), each 4 x 128 x 128 x 128 FLOPs, at 0.5 of 1000 TFLOP/s."""
    op = Operator("attn_prefill", "attn_prefill", 4.0 * 32 * 128 * 1024 * 1025 / 2, 1.0, "bf16",
                  shape=(1024, 32, 32, 128, 1024, 1), storage_dtype="bf16")
    fixed, compute, _ = KernelModel(test_hw).time(op)
    assert compute == pytest.approx(2176 * 4 * 128**3 / (1000e12 * 0.5))
    assert fixed == pytest.approx(2e-6)


def test_short_prompts_reach_a_small_fraction_of_peak(test_hw):
    """FlashAttention's inefficiency at short sequences: achieved FLOP/s of one 1k prompt is well below a 16k one."""
    model = load_model("llama-3.1-8b")
    timer = RooflineTimer(test_hw)

    def achieved(s):
        f = batch_features([s], [0])
        op = next(o for o in layer_operators(model, ParallelLayout(), BF16, f) if o.op_class == "attn_prefill")
        return op.flops / float(timer.time(op).kernel_s)

    assert achieved(1024) < 0.5 * achieved(16384)


def test_decode_per_cta_work_dominates_short_contexts(test_hw):
    p = Physics(0.5, 0.75, 2e-6, cta_s=3e-6)
    op = Operator("attn_decode", "attn_decode", 0.0, 2048 * 1024 * 4.0, "bf16", shape=(2048, 32, 8, 128, 2048.0))
    fixed, _, memory = KernelModel(test_hw).attn_decode(op, p)
    assert fixed == pytest.approx(2e-6 + 3e-6 * 2048 * 8 / 108)  # 16384 (sequence, KV head) CTAs on 108 SMs
    assert memory == pytest.approx(2048 * 1024 * 4.0 / (3e12 * 0.75))


def test_elementwise_kernels_have_a_minimum_duration(test_hw):
    timer = RooflineTimer(test_hw)
    tiny = timer.time(elementwise("attn_norm", 64 * 4096, 8.0, 5.0))
    assert tiny.kernel_s == pytest.approx(2e-6 + 64 * 4096 * 8 / (3e12 * 0.75))
    sampling = timer.time(elementwise("sampling", 1, 8.0, 10.0, kernels=4))
    assert sampling.kernel_s == pytest.approx(4 * 2e-6, rel=1e-3)  # four kernels, each at least 2 us


def test_mixtral_prefill_touches_all_experts_and_costs_their_flops(test_hw):
    """2,048 tokens x top-2 = 4,096 routed rows over 8 experts (all hit: 8 (1 - 0.75^2048) = 8), 512 rows each:
    8 full row blocks of 64, so the grouped GEMMs run at the GEMM's efficiency on their FLOPs."""
    model = load_model("mixtral-8x7b")
    f = batch_features([2048], [0])
    op = next(o for o in layer_operators(model, ParallelLayout(), BF16, f) if o.op_class == "moe")
    weights = 8 * 3 * 4096 * 14336 * 2
    flops = 2 * 4096 * 4096 * 14336 * 3
    assert op.flops == flops and op.hbm_bytes > weights
    t = RooflineTimer(test_hw).time(op)
    assert t.bound == "compute"
    assert t.compute_s == pytest.approx(flops / (1000e12 * 0.8), rel=0.01)  # waves: >= 0.99 of the SMs busy


def test_fp8_gemms_carry_their_activation_quantisation(test_hw):
    model = load_model("llama-3.1-8b")
    f = batch_features([512], [0])
    ops = {o.name: o for o in layer_operators(model, ParallelLayout(), Precision.parse("fp8"), f)}
    quant = ops["qkv_proj_quant"]
    assert quant.op_class == "elementwise" and quant.kernels == 2
    assert quant.hbm_bytes == 5.0 * 512 * 4096  # absmax pass reads bf16, quantise reads bf16 and writes fp8
    assert "qkv_proj_quant" not in {o.name for o in layer_operators(model, ParallelLayout(), BF16, f)}


def test_allreduce_algorithms_by_size_on_nvlink(make_hw):
    hw = make_hw(interconnect=NVLINK)  # efficiency.comm 0.5, kernels defaults: 5 / 10 / 3 + 1 per hop us
    assert allreduce_s(hw, 65536, 8) == pytest.approx(5e-6 + 7 * 65536 / (400e9 * 0.5))  # one-shot
    mib = 1 << 20
    assert allreduce_s(hw, mib, 8) == pytest.approx(10e-6 + 2 * 7 / 8 * mib / 200e9)  # two-shot
    assert allreduce_s(hw, 16 * mib, 8) == pytest.approx(3e-6 + 14e-6 + 2 * 7 / 8 * 16 * mib / 200e9)  # ring
    terms = AllReduceTerms.of(hw)
    assert allreduce_algorithm(hw, 300 * 1024, 4, terms) == "oneshot"  # <= 4 ranks: one-shot below 512 KiB
    assert allreduce_algorithm(hw, 300 * 1024, 8, terms) == "twoshot"  # 8 ranks: below 256 KiB only


def test_pcie_only_two_ranks_use_the_custom_kernel(test_hw):
    terms = AllReduceTerms.of(test_hw)
    assert allreduce_algorithm(test_hw, 4096, 2, terms) == "oneshot"
    assert allreduce_algorithm(test_hw, 4096, 4, terms) == "ring"


def test_kernel_seconds_is_fixed_plus_the_slower_side():
    assert kernel_seconds((1.0, 2.0, 3.0)) == 4.0


def test_moe_routing_skew_loads_the_busiest_expert_parallel_gpu():
    from llmsim.cost.operators import moe_experts

    uniform = moe_experts(4096, 4096, 14336, 8, 2, 4, True, BF16)
    skewed = moe_experts(4096, 4096, 14336, 8, 2, 4, True, BF16, skew=2.0)
    assert uniform.flops == 2 * (4096 * 2 / 4) * 4096 * 14336 * 3  # uniform: a quarter of the 8192 pairs
    assert skewed.flops == 2 * uniform.flops  # the busiest of 4 GPUs gets twice its share
    assert moe_experts(4096, 4096, 14336, 8, 2, 1, True, BF16, skew=3.0).flops == 2 * 8192 * 4096 * 14336 * 3
    with pytest.raises(ValueError, match="skew"):
        moe_experts(16, 4096, 14336, 8, 2, 4, True, BF16, skew=0.5)
