"""Memory model: weights per GPU and KV capacity by hand, infeasible configurations."""

import pytest

from llmsim.cost import plan_memory
from llmsim.cost.memory import GIB
from llmsim.errors import InfeasibleError
from llmsim.specs import ParallelLayout, Precision, load_model


def test_weights_equal_params_times_bytes(test_hw):
    m = load_model("llama-3.1-8b")
    plan = plan_memory(m, test_hw)
    assert plan.weights_bytes == pytest.approx(m.param_count() * 2, rel=1e-6)


def test_kv_capacity_by_hand(test_hw):
    m = load_model("llama-3.1-8b")
    plan = plan_memory(m, test_hw, gpu_memory_utilization=0.9, max_num_batched_tokens=2048, max_num_seqs=64,
                       block_size=16, reserved_bytes=GIB)
    act = 2048 * 2 * (2 * 4096 + 4096 + 2 * 1024 + 3 * 14336) + 64 * 128256 * 4
    free = 80e9 * 0.9 - m.param_count() * 2 - act - GIB
    tokens = int(free // (128 * 1024))
    assert plan.activation_bytes == act
    assert plan.num_blocks == tokens // 16
    assert plan.kv_capacity_tokens == plan.num_blocks * 16


def test_tp_shards_weights_and_kv(test_hw):
    m = load_model("llama-2-70b")
    p2 = plan_memory(m, test_hw, ParallelLayout(tp=2))
    p4 = plan_memory(m, test_hw, ParallelLayout(tp=4))
    assert p4.weights_bytes == pytest.approx(p2.weights_bytes / 2, rel=0.01)
    assert p4.kv_bytes_per_token == p2.kv_bytes_per_token / 2
    assert p4.kv_capacity_tokens > 2 * p2.kv_capacity_tokens


def test_fp8_kv_doubles_capacity_tokens(test_hw):
    m = load_model("llama-3.1-8b")
    a = plan_memory(m, test_hw).kv_capacity_tokens
    b = plan_memory(m, test_hw, precision=Precision.parse("bf16", "fp8")).kv_capacity_tokens
    assert b == pytest.approx(2 * a, rel=0.001)


def test_model_that_does_not_fit(test_hw):
    with pytest.raises(InfeasibleError, match="does not fit"):
        plan_memory(load_model("llama-3.1-70b"), test_hw)


def test_int4_weights_make_70b_fit_on_one_gpu(test_hw):
    plan = plan_memory(load_model("llama-3.1-70b"), test_hw, precision=Precision.parse("int4"))
    assert plan.weights_bytes < 45e9 and plan.num_blocks > 0


def test_max_batch_size(test_hw):
    plan = plan_memory(load_model("llama-3.1-8b"), test_hw)
    b = plan.max_batch_size(2000)
    assert b == plan.num_blocks // 125
    assert b * 2000 <= plan.kv_capacity_tokens
