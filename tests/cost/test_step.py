"""Step times: roofline regimes, breakdown consistency, TP/PP costs, vectorised decode runs."""

import numpy as np
import pytest

from llmsim.cost import CostModel
from llmsim.cost.collectives import allreduce_s
from llmsim.errors import InfeasibleError
from llmsim.specs import ParallelLayout, Precision, load_model


def test_decode_batch1_is_memory_bound(test_hw):
    cm = CostModel(load_model("llama-3.1-8b"), test_hw)
    c = cm.step_time([1], [512])
    assert c.memory_s > 10 * c.compute_s
    # weights dominate: the step takes at least weight bytes / effective bandwidth
    weights = load_model("llama-3.1-8b").param_count() * 2
    assert c.total_s > weights / (3.0e12 * 0.75)


def test_long_prefill_is_compute_bound(test_hw):
    cm = CostModel(load_model("llama-3.1-8b"), test_hw)
    c = cm.step_time([8192], [0])
    assert c.compute_s > 5 * c.memory_s
    # ~2 FLOPs per parameter per token plus attention: within 15% of 2 * N * T / (peak * eff)
    m = load_model("llama-3.1-8b")
    lower = 2 * m.param_count() * 8192 / (1000e12 * 0.8)
    assert lower < c.compute_s < 1.3 * lower


def test_crossover_batch_near_ridge_point(test_hw):
    """A GEMM's intensity is ~M FLOPs/byte for bf16 weights, so it turns compute-bound near the ridge."""
    cm = CostModel(load_model("llama-3.1-8b"), test_hw)
    ridge = (1000e12 * 0.8) / (3.0e12 * 0.75)  # 355.6 FLOP/byte at the stated efficiencies
    crossover = next(b for b in range(1, 2048)
                     if {r.name: r for r in cm.operator_costs([1] * b, [100] * b)}["mlp_gate_up"].bound == "compute")
    assert crossover == pytest.approx(ridge, rel=0.15)


def test_breakdown_adds_up(test_hw):
    cm = CostModel(load_model("llama-2-70b"), test_hw, ParallelLayout(tp=4, pp=2))
    c = cm.step_time([300, 1, 1], [0, 50, 700])
    assert c.total_s == pytest.approx(sum(c.stage_s) + c.overhead_s)
    assert c.total_s == pytest.approx(c.compute_s + c.memory_s + c.comm_s + c.launch_s + c.overhead_s)
    assert len(c.stage_s) == 2 and c.comm_s > 0


def test_allreduce_ring_by_hand(test_hw):
    # 8 ranks, 16 MB (above vLLM's 8 MiB custom limit): NCCL ring, 3 us + 14 hops x 1 us (kernels: defaults)
    # + 2*7/8 * 16e6 / (400e9 * 0.5)
    assert allreduce_s(test_hw, 16e6, 8) == pytest.approx(3e-6 + 14 * 1e-6 + 2 * 7 / 8 * 16e6 / 200e9)
    assert allreduce_s(test_hw, 16e6, 1) == 0.0
    # 16 ranks span two nodes: the network bounds it
    assert allreduce_s(test_hw, 16e6, 16) > 5 * allreduce_s(test_hw, 16e6, 8)


def test_tp_halves_gemm_time_and_adds_allreduce(test_hw):
    m = load_model("llama-2-70b")
    one = {r.name: r for r in CostModel(m, test_hw, ParallelLayout(tp=2)).operator_costs([4096], [0])}
    two = {r.name: r for r in CostModel(m, test_hw, ParallelLayout(tp=4)).operator_costs([4096], [0])}
    assert two["mlp_gate_up"].time_s == pytest.approx(one["mlp_gate_up"].time_s / 2, rel=0.02)
    assert "attn_allreduce" in two and "mlp_allreduce" in two


def test_pipeline_stages_split_layers(test_hw):
    m = load_model("llama-2-7b")
    cm = CostModel(m, test_hw, ParallelLayout(pp=4))
    c = cm.step_time([1] * 8, [100] * 8)
    single = CostModel(m, test_hw).step_time([1] * 8, [100] * 8)
    # same total work plus three hidden-state sends
    assert sum(c.stage_s) > sum(single.stage_s)
    assert sum(c.stage_s) == pytest.approx(sum(single.stage_s), rel=0.05)
    assert max(c.stage_s) < 0.35 * sum(c.stage_s)


@pytest.mark.parametrize("name", ["llama-3.1-8b", "mistral-7b"])  # mistral: sliding window 4096
def test_decode_run_equals_step_by_step(test_hw, name):
    cm = CostModel(load_model(name), test_hw, ParallelLayout(pp=2))
    ctx = np.array([10, 4000, 4090, 123])
    run = cm.decode_run_s(ctx, 20)
    loop = [cm.step_time([1] * 4, ctx + k).total_s for k in range(20)]
    np.testing.assert_allclose(run, loop, rtol=1e-12)


def test_sliding_window_caps_decode_cost(test_hw):
    cm = CostModel(load_model("mistral-7b"), test_hw)
    assert cm.step_time([1], [5000]).total_s == pytest.approx(cm.step_time([1], [9000]).total_s)
    assert cm.step_time([1], [1000]).total_s < cm.step_time([1], [3000]).total_s


def test_fp8_halves_decode_weight_traffic(test_hw):
    m = load_model("llama-3.1-8b")
    bf = CostModel(m, test_hw).step_time([1], [10])
    f8 = CostModel(m, test_hw, precision=Precision.parse("fp8")).step_time([1], [10])
    assert f8.hbm_bytes == pytest.approx(bf.hbm_bytes * 0.55, rel=0.1)  # embeddings/LM head stay 16 bit


@pytest.mark.parametrize(("model", "layout", "msg"), [
    ("llama-3.1-8b", ParallelLayout(tp=3), "does not divide"),
    ("llama-2-7b", ParallelLayout(pp=64), "exceeds"),
    ("llama-3.1-8b", ParallelLayout(tp=2, ep=2), "MoE"),
])
def test_impossible_layouts(test_hw, model, layout, msg):
    with pytest.raises(InfeasibleError, match=msg):
        CostModel(load_model(model), test_hw, layout)


def test_precision_needs_hardware_support(make_hw):
    hw = make_hw(peak_flops_per_s={"bf16": 312e12, "fp32": 19.5e12})
    with pytest.raises(InfeasibleError, match="fp8"):
        CostModel(load_model("llama-3.1-8b"), hw, precision=Precision.parse("fp8"))


def test_same_inputs_same_output(test_hw):
    cm = CostModel(load_model("mixtral-8x7b"), test_hw, ParallelLayout(tp=2))
    assert cm.step_time([7, 1, 1], [0, 5, 9]) == cm.step_time([7, 1, 1], [0, 5, 9])
