"""Multi-head latent attention (DeepSeek-V2/V3) as operators of one GPU.

vLLM runs MLA two ways (module docstring of its MLA common components, vllm/v1/attention/backends/mla/
common.py, later vllm/model_executor/layers/attention/mla_attention.py; DeepSeek-V2 paper, Sec. 2.1):
prefill tokens take the *compute-friendly* path (K and V decompressed from the cached latent by kv_b_proj,
then ordinary multi-head attention with QK head dim nope + rope and V head dim v), decode tokens take the
*data-movement-friendly* path (W_UK absorbed into the query, attention over the latent as MQA with QK dim
kv_lora + rope and V dim kv_lora, then W_UV). The latent cache is replicated on every TP rank, so decode reads
the whole latent whatever the TP degree. The down projections (q_a, kv_a) are replicated linears; q_b,
kv_b and o_proj are sharded over heads.
"""

from __future__ import annotations

from llmsim.cost.operators import BatchFeatures, Operator, elementwise, gemm
from llmsim.specs import ModelSpec, Precision


def _linear(name: str, m: float, n: int, k: int, prec: Precision) -> list[Operator]:
    from llmsim.cost.layers import linear  # noqa: PLC0415 (layers imports this module)

    return linear(name, m, n, k, prec)


def mla_operators(model: ModelSpec, heads: int, prec: Precision, f: BatchFeatures) -> list[Operator]:
    """Projections, KV write and attention of one MLA layer for ``heads`` query heads on this GPU; the
    o_proj is included (it is sharded over heads like the rest)."""
    t, h, act, kvb = f.num_tokens, model.hidden_size, prec.act_bytes, prec.kv_bytes
    r, rope, qk, v = model.kv_lora_rank, model.qk_rope_head_dim, model.head_dim, model.value_head_dim
    nope, latent = qk - rope, model.kv_latent_size
    ops: list[Operator] = []
    if model.q_lora_rank:
        ops += _linear("q_a_proj", t, model.q_lora_rank, h, prec)
        ops.append(elementwise("q_a_norm", t * model.q_lora_rank, 2 * act, 5.0))
        ops += _linear("q_b_proj", t, heads * qk, model.q_lora_rank, prec)
    else:
        ops += _linear("q_proj", t, heads * qk, h, prec)
    ops += _linear("kv_a_proj", t, latent, h, prec)
    ops.append(elementwise("kv_a_norm", t * r, 2 * act, 5.0))
    ops.append(elementwise("rotary", t * (heads + 1) * rope, 2 * act, 6.0))
    ops.append(elementwise("kv_cache_write", t * latent, act + kvb, 0.0))
    if f.prefill_seqs:
        # decompress every key the prefill attends to (cached context and new tokens): kv_b over the latent
        ops += _linear("kv_b_proj", f.prefill_kv_tokens, heads * (nope + v), r, prec)
        flops = 2.0 * heads * (qk + v) * f.prefill_attn_pairs  # QK^T at qk dims, PV at v dims
        hbm = (f.prefill_tokens * heads * (qk + v) * act + f.prefill_kv_tokens * heads * (qk + v) * act)
        ops.append(Operator("attn_prefill", "attn_prefill", flops, hbm, prec.activations,
                            shape=(f.prefill_tokens, heads, heads, qk, f.prefill_kv_tokens, f.prefill_seqs),
                            storage_dtype=prec.activations))
    if f.decode_seqs:
        n = f.decode_seqs
        ops.append(gemm("mla_absorb_uk", n, heads * r, nope, prec))  # q_nope @ W_UK, per head (a batched GEMM)
        kv = f.decode_kv_tokens
        flops = 2.0 * heads * (latent + r) * kv  # MQA over the latent: QK at kv_lora + rope, PV at kv_lora
        hbm = kv * latent * kvb + n * heads * (latent + r) * act
        ops.append(Operator("attn_decode", "attn_decode", flops, hbm, prec.activations,
                            shape=(n, heads, 1, latent, kv), storage_dtype=prec.kv_dtype))
        ops.append(gemm("mla_absorb_uv", n, heads * v, r, prec))  # latent output @ W_UV
    ops += _linear("o_proj", t, h, heads * v, prec)
    return ops
