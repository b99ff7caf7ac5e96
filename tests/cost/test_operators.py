"""FLOPs and bytes per operator against hand calculation; attention pair counting against brute force."""

import numpy as np
import pytest

from llmsim.cost.layers import last_stage_operators, layer_operators
from llmsim.cost.operators import _causal_pairs, batch_features, gemm
from llmsim.specs import ParallelLayout, Precision, load_model

BF16 = Precision.parse("bf16")


def ops_by_name(model, new, ctx, layout=None, prec=BF16, window=None):
    f = batch_features(new, ctx, window=window)
    return {op.name: op for op in layer_operators(model, layout or ParallelLayout(), prec, f)}


def test_qkv_gemm_llama2_7b_by_hand():
    m = load_model("llama-2-7b")
    t = 512
    op = ops_by_name(m, [t], [0])["qkv_proj"]
    n, k = 3 * 4096, 4096
    assert op.flops == 2 * t * n * k
    assert op.hbm_bytes == n * k * 2 + t * k * 2 + t * n * 2


def test_gqa_tp_shards_heads_and_replicates_kv():
    m = load_model("llama-3.1-70b")  # 64 heads, 8 KV heads, head_dim 128
    op = ops_by_name(m, [1], [10], ParallelLayout(tp=8))["qkv_proj"]
    assert op.shape[1] == (64 // 8 + 2 * 1) * 128
    # tp=16 > 8 KV heads: each GPU keeps one whole KV head (replicated), 4 query heads
    from llmsim.cost.operators import ShardedShapes

    sh = ShardedShapes.of(m, ParallelLayout(tp=16))
    assert (sh.heads, sh.kv_heads) == (4, 1)


def test_decode_attention_reads_whole_kv_cache():
    m = load_model("llama-3.1-8b")  # 8 KV heads x 128 = 1024 wide
    ctx = [100, 300]
    op = ops_by_name(m, [1, 1], ctx)["attn_decode"]
    kv_tokens = (100 + 1) + (300 + 1)
    assert op.hbm_bytes == kv_tokens * 2 * 1024 * 2 + 2 * 4096 * 2 * 2
    assert op.flops == 4 * 32 * 128 * kv_tokens


def test_prefill_attention_causal_flops_no_quadratic_bytes():
    m = load_model("llama-3.1-8b")
    n = 4096
    op = ops_by_name(m, [n], [0])["attn_prefill"]
    pairs = n * (n + 1) / 2
    assert op.flops == 4 * 32 * 128 * pairs
    # FlashAttention IO: Q in, O out, K and V once -- linear in n
    assert op.hbm_bytes == n * 4096 * 2 * 2 + n * 2 * 1024 * 2


def test_kv_dtype_changes_kv_bytes_only():
    m = load_model("llama-3.1-8b")
    bf = ops_by_name(m, [1], [1000])["attn_decode"]
    f8 = ops_by_name(m, [1], [1000], prec=Precision.parse("bf16", "fp8"))["attn_decode"]
    assert f8.hbm_bytes == pytest.approx(1001 * 2 * 1024 * 1 + 4096 * 2 * 2)
    assert f8.hbm_bytes < bf.hbm_bytes


@pytest.mark.parametrize(("name", "wbytes", "dtype"), [("fp8", 1.0, "fp8"), ("int8", 1.0, "bf16"),
                                                      ("int4", 0.5 + 2 / 128, "bf16")])
def test_precision_changes_weight_bytes_and_peak(name, wbytes, dtype):
    op = gemm("x", 4, 1024, 1024, Precision.parse(name))
    assert op.hbm_bytes == pytest.approx(1024 * 1024 * wbytes + 4 * 1024 * 2 * 2)
    assert op.compute_dtype == dtype


@pytest.mark.parametrize("window", [None, 1, 7, 50])
def test_causal_pairs_match_brute_force(window):
    rng = np.random.default_rng(0)
    new = rng.integers(1, 40, size=12)
    ctx = rng.integers(0, 60, size=12)
    brute = 0
    for n, c in zip(new, ctx, strict=True):
        for j in range(1, n + 1):
            keys = c + j
            brute += min(keys, window) if window else keys
    assert _causal_pairs(new, ctx, window) == brute


def test_mixed_batch_splits_prefill_and_decode():
    f = batch_features([512, 1, 1, 64], [0, 100, 200, 512])
    assert (f.num_tokens, f.prefill_seqs, f.decode_seqs, f.prefill_tokens) == (578, 2, 2, 576)
    assert f.decode_kv_tokens == 101 + 201


def test_lm_head_only_for_emitting_sequences():
    m = load_model("llama-3.1-8b")
    f = batch_features([512, 1, 1], [0, 10, 10], emits=[False, True, True])
    lm = {op.name: op for op in last_stage_operators(m, ParallelLayout(), BF16, f)}["lm_head"]
    assert lm.shape[0] == 2 and lm.flops == 2 * 2 * 128256 * 4096


def test_moe_touches_only_hit_experts():
    m = load_model("mixtral-8x7b")  # 8 experts, top-2, hidden 4096, expert FFN 14336 (gated: 3 matrices)
    one = ops_by_name(m, [1], [10])["moe_experts"]
    many = ops_by_name(m, [4096], [0])["moe_experts"]
    # one token hits exactly its 2 experts: their gate, up and down weights once, plus 2 routed rows'
    # activations (gather 3h... per pair: 3 x 4096 + 6 x 14336 elements) and the token's output (4096)
    weights = 2 * 3 * 4096 * 14336 * 2
    acts = 2 * (2 * (3 * 4096 + 6 * 14336) + 4096)
    assert one.hbm_bytes == pytest.approx(weights + acts)
    assert one.flops == 2 * 2 * 4096 * 14336 * 3
    # thousands of tokens hit all 8 experts (4x the weights) and compute all 8192 routed rows
    assert many.hbm_bytes > 4 * weights
    assert many.flops == 2 * 8192 * 4096 * 14336 * 3
