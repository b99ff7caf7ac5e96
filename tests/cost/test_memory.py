"""Memory model: weights per GPU and KV capacity worked by hand, against vLLM's logged KV block counts,
and infeasible configurations."""

import csv
from pathlib import Path

import pytest

from llmsim.cost import plan_memory
from llmsim.cost.memory import GIB
from llmsim.errors import InfeasibleError
from llmsim.specs import ParallelLayout, Precision, load_hardware, load_model

REAL_RUNS = Path(__file__).parents[2] / ".." / "shared" / "data" / "real_runs"


def test_weights_by_hand(test_hw):
    # Llama-3.1-8B: embeddings and LM head 2 x 128256 x 4096 = 1,050,673,152; per layer q and o 2 x 4096^2,
    # k and v 2 x 4096 x 1024, gated MLP 3 x 4096 x 14336, two norms 2 x 4096: 218,112,000, x 32 layers =
    # 6,979,584,000; final norm 4096. 8,030,261,248 parameters (the published count), x 2 bytes in bf16:
    # 16,060,522,496 bytes, the safetensors total_size of meta-llama/Llama-3.1-8B.
    assert plan_memory(load_model("llama-3.1-8b"), test_hw).weights_bytes == 16_060_522_496


def test_kv_capacity_by_hand(test_hw):
    plan = plan_memory(load_model("llama-3.1-8b"), test_hw, gpu_memory_utilization=0.9,
                       max_num_batched_tokens=2048, max_num_seqs=64, block_size=16, reserved_bytes=GIB)
    # profiling pass of 2048 tokens in bf16, widest intermediates per token: hidden in and out 2 x 4096, q 4096,
    # k and v 2 x 1024, MLP gate, up and product 3 x 14336 = 57,344 values: 2048 x 2 x 57,344 = 234,881,024
    # bytes; fp32 logits of 64 sequences x 128,256: 32,833,536 bytes; together 267,714,560
    assert plan.activation_bytes == 267_714_560
    # 80e9 x 0.9 = 72e9 usable - 16,060,522,496 weights - 267,714,560 - 1 GiB reserved = 54,598,021,120 bytes;
    # one token's K and V over 32 layers, 8 KV heads of 128 in bf16: 2 x 32 x 1024 x 2 = 131,072 bytes;
    # 54,598,021,120 / 131,072 = 416,549.8 tokens -> 26,034 whole blocks of 16 = 416,544 tokens
    assert plan.num_blocks == 26_034
    assert plan.kv_capacity_tokens == 416_544


def _logged_blocks() -> list[tuple[str, int, int, int]]:
    """(model, tp, max_num_batched_tokens, vLLM's logged GPU KV blocks) of the real vLLM 0.15.1 runs on H100."""
    path = REAL_RUNS / "vllm_0.15.1_runs.csv"
    if not path.is_file():
        return []
    names = {"meta-llama/Llama-2-7b-hf": "llama-2-7b", "meta-llama/Llama-3.1-70B-Instruct": "llama-3.1-70b",
             "Qwen/Qwen2.5-7B-Instruct": "qwen2.5-7b",
             "mistralai/Mistral-Nemo-Instruct-2407": str(REAL_RUNS / "models" / "mistral-nemo-instruct-2407.json"),
             "01-ai/Yi-34B": str(REAL_RUNS / "models" / "yi-34b.json")}
    seen = set()
    with path.open() as fh:
        for r in csv.DictReader(fh):
            if r["model"] in names and r["total_kv_blocks_gpu"] and r["gpu"] == "H100-SXM-80GB":
                seen.add((names[r["model"]], int(r["tp"]), int(r["max_num_batched_tokens"]),
                          int(float(r["total_kv_blocks_gpu"]))))
    return sorted(seen)


@pytest.mark.skipif(not _logged_blocks(), reason="../shared/data/real_runs is not here")
def test_kv_blocks_match_what_vllm_logged():
    """Nothing in the memory model was tuned on these runs; within 2 % of vLLM's own block count (the
    runs use gpu_memory_utilization 0.9, max_num_seqs 128, block size 16, bf16)."""
    h100 = load_hardware("h100-sxm")
    for model, tp, budget, logged in _logged_blocks():
        plan = plan_memory(load_model(model), h100, ParallelLayout(tp=tp), max_num_batched_tokens=budget,
                           max_num_seqs=128)
        assert plan.num_blocks == pytest.approx(logged, rel=0.02), (model, tp, budget, plan.num_blocks, logged)


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
