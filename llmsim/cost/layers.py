"""Operator lists of one decoder layer and of the model's ends (embedding, final norm, LM head, sampling)."""

from __future__ import annotations

from dataclasses import replace

from llmsim.cost.mla import mla_operators
from llmsim.cost.operators import (
    FP32_BYTES,
    BatchFeatures,
    Operator,
    ShardedShapes,
    elementwise,
    gemm,
    moe_experts,
)
from llmsim.specs import ModelSpec, ParallelLayout, Precision
from llmsim.specs.precision import LOW_BIT_KV

DEQUANT_FLOPS = 4.0  # per KV element: unpack, convert, multiply by the scale, add the offset

# Dynamic per-tensor activation quantisation before a W8A8 GEMM (vLLM scaled_fp8_quant without a scale):
# an absmax pass reads the 16-bit input (2 B), the quantise pass reads it again and writes 8 bits (3 B).
QUANT_BYTES_PER_ELEMENT = 5.0
QUANT_KERNELS = 2


def linear(name: str, m: float, n: int, k: int, prec: Precision) -> list[Operator]:
    """A linear layer: the GEMM, preceded by its activation quantisation when it runs in 8 bits (fp8 or
    int8 W8A8: the GEMM reads 8-bit activations, so the 16-bit ones are quantised first, at m x k elements)."""
    ops = [gemm(name, m, n, k, prec)]
    if prec.compute in ("fp8", "int8"):
        ops.insert(0, elementwise(f"{name}_quant", m * k, QUANT_BYTES_PER_ELEMENT, 3.0, kernels=QUANT_KERNELS))
    return ops


def attention_ops(model: ModelSpec, sh: ShardedShapes, prec: Precision, f: BatchFeatures) -> list[Operator]:
    """Prefill (FlashAttention varlen) and decode (paged KV) attention, plus the KV-cache write."""
    # KV-cache write of every new token (reshape_and_cache): reads K,V activations, writes cache dtype.
    return [elementwise("kv_cache_write", f.num_tokens * 2 * sh.kv, prec.act_bytes + prec.kv_bytes, 0.0),
            *attention_kernels(model, sh, prec, f)]


def attention_kernels(model: ModelSpec, sh: ShardedShapes, prec: Precision, f: BatchFeatures) -> list[Operator]:
    """``attention_ops`` after the KV-cache write: the operators that depend on the batch's attention features
    (the prefill and decode attention, a low-bit cache's dequantisation), in that order."""
    act, kvb, hd = prec.act_bytes, prec.kv_bytes, model.head_dim
    ops: list[Operator] = []
    if f.prefill_seqs:
        # QK^T and PV: 2 x 2 FLOPs per (query, key) pair per head dimension (FlashAttention-2 paper, Sec. 3).
        flops = 4.0 * sh.heads * hd * f.prefill_attn_pairs
        hbm = f.prefill_tokens * sh.q * act * 2 + f.prefill_kv_tokens * 2 * sh.kv * kvb
        ops.append(Operator("attn_prefill", "attn_prefill", flops, hbm, prec.activations,
                            shape=(f.prefill_tokens, sh.heads, sh.kv_heads, hd, f.prefill_kv_tokens, f.prefill_seqs),
                            storage_dtype=prec.kv_dtype))
    if f.decode_seqs:
        # Decode reads each sequence's whole (windowed) KV cache once; FLOPs are small (memory-bound).
        kv_tokens = f.decode_kv_tokens
        flops = 4.0 * sh.heads * hd * kv_tokens
        hbm = kv_tokens * 2 * sh.kv * kvb + f.decode_seqs * sh.q * act * 2
        ops.append(Operator("attn_decode", "attn_decode", flops, hbm, prec.activations,
                            shape=(f.decode_seqs, sh.heads, sh.kv_heads, hd, kv_tokens), storage_dtype=prec.kv_dtype))
    if prec.kv_dtype in LOW_BIT_KV:
        ops.append(kv_dequant(f.prefill_kv_tokens + f.decode_kv_tokens, 2 * sh.kv))
    return ops


def kv_dequant(kv_tokens, width: int) -> Operator:
    """Dequantising a 2-4-bit KV cache inside the attention kernel (KIVI / QServe fuse it: no extra HBM traffic
    or launch): unpack, scale and offset each element read, taken as 4 fp32 operations on the CUDA cores, their
    time added to the attention's (not hidden under its memory traffic: an upper bound)."""
    return Operator("kv_dequant", "elementwise", DEQUANT_FLOPS * kv_tokens * width, 0.0, "fp32", kernels=0,
                    shape=(kv_tokens * width,))


def dense_mlp_ops(model: ModelSpec, sh: ShardedShapes, prec: Precision, f: BatchFeatures) -> list[Operator]:
    t, h, act = f.num_tokens, model.hidden_size, prec.act_bytes
    width = 2 * sh.ffn if model.gated_mlp else sh.ffn
    return [
        *linear("mlp_up" if not model.gated_mlp else "mlp_gate_up", t, width, h, prec),
        elementwise("mlp_act", t * sh.ffn, act * (3 if model.gated_mlp else 2), 5.0),
        *linear("mlp_down", t, h, sh.ffn, prec),
    ]


def mlp_ops(model: ModelSpec, layout: ParallelLayout, sh: ShardedShapes, prec: Precision,
            f: BatchFeatures) -> list[Operator]:
    """The MLP of an average layer: a model with dense and MoE layers (DeepSeek's first dense layers, Llama 4
    Maverick's interleaving) gets both, each with the share of layers that run it."""
    if not model.is_moe:
        return dense_mlp_ops(model, sh, prec, f)
    moe_share = model.num_moe_layers / model.num_layers
    ops = moe_ops(model, layout, sh, prec, f)
    if moe_share < 1.0:
        ops = [replace(op, layer_share=moe_share) for op in ops]
        ops += [replace(op, layer_share=1.0 - moe_share) for op in dense_mlp_ops(model, sh, prec, f)]
    return ops


def moe_ops(model: ModelSpec, layout: ParallelLayout, sh: ShardedShapes, prec: Precision,
            f: BatchFeatures) -> list[Operator]:
    """Router GEMM, then the experts as grouped GEMMs over the tokens each expert receives (the busiest
    expert-parallel GPU's share of them, ``layout.moe``: ``llmsim.cost.operators.moe_experts``; timed by
    ``llmsim.cost.kernels``), then any shared experts (sharded over all tp GPUs, as vLLM's SharedFusedMoE)."""
    t, h = f.num_tokens, model.hidden_size
    e, k = model.num_experts, model.experts_per_token
    skew = layout.moe.busiest_share(e, layout.ep)
    kept = 1.0 - layout.moe.dropped_fraction(e, layout.ep) if layout.ep == 1 else 1.0
    ops = [
        gemm("moe_router", t, e, h, Precision.parse(prec.activations, prec.kv_dtype)),  # router kept in 16 bit
        moe_experts(t, h, sh.expert_ffn, e, k, layout.ep, model.gated_mlp, prec, skew=skew, kept=kept,
                    weight_bytes=model.expert_bytes(prec.weight_bytes)),
    ]
    if model.num_shared_experts:
        s = model.num_shared_experts
        ops += [*linear("shared_up", t, 2 * sh.shared_ffn * s, h, prec),
                *linear("shared_down", t, h, sh.shared_ffn * s, prec)]
    return ops


def _gqa_attention(model: ModelSpec, sh: ShardedShapes, prec: Precision, f: BatchFeatures) -> list[Operator]:
    """QKV projection, rotary, qk-norm and attention; a model whose sliding window spares every n-th layer
    (gpt-oss) gets both attentions, windowed (``f``) and full (``f.full``), each with its share of layers."""
    t = f.num_tokens
    ops = [*linear("qkv_proj", t, sh.q + 2 * sh.kv, model.hidden_size, prec)]
    if not model.learned_positions:
        ops.append(elementwise("rotary", t * (sh.q + sh.kv), 2 * prec.act_bytes, 6.0))
    if model.qk_norm:
        ops.append(elementwise("qk_norm", t * (sh.q + sh.kv), 2 * prec.act_bytes, 5.0))
    if f.full is None:
        return ops + attention_ops(model, sh, prec, f)
    share = model.num_window_layers / model.num_layers
    windowed = [replace(op, layer_share=share) if op.op_class.startswith("attn") else op
                for op in attention_ops(model, sh, prec, f)]
    full = [replace(op, layer_share=1.0 - share) for op in attention_ops(model, sh, prec, f.full)
            if op.op_class.startswith("attn")]
    return ops + windowed + full


def layer_operators(model: ModelSpec, layout: ParallelLayout, prec: Precision,
                    f: BatchFeatures) -> list[Operator]:
    """Compute operators of one decoder layer on one GPU (collectives are added by the step model)."""
    t, h, act = f.num_tokens, model.hidden_size, prec.act_bytes
    sh = ShardedShapes.of(model, layout)
    # fused residual add + norm (vLLM fused_add_rms_norm): reads x and residual, writes both.
    ops = [elementwise("attn_norm", t * h, 4 * act, 5.0)]
    if model.is_mla:
        ops += mla_operators(model, sh.heads, prec, f)
    else:
        ops += _gqa_attention(model, sh, prec, f)
        ops += linear("o_proj", t, h, sh.q, prec)
    ops.append(elementwise("mlp_norm", t * h, 4 * act, 5.0))
    ops += mlp_ops(model, layout, sh, prec, f)
    return ops


def first_stage_operators(model: ModelSpec, prec: Precision, f: BatchFeatures) -> list[Operator]:
    # Embedding gather: one row per token.
    return [elementwise("embedding", f.num_tokens * model.hidden_size, 2 * prec.act_bytes, 0.0)]


def last_stage_operators(model: ModelSpec, layout: ParallelLayout, prec: Precision,
                         f: BatchFeatures) -> list[Operator]:
    """Final norm, LM head and sampling over the sequences that emit a token this step."""
    sh = ShardedShapes.of(model, layout)
    n = f.num_emit
    if n == 0:
        return []
    lm_prec = prec if prec.weights in ("bf16", "fp16", "fp32") else Precision.parse(prec.activations)
    return [
        elementwise("final_norm", n * model.hidden_size, 2 * prec.act_bytes, 5.0),
        gemm("lm_head", n, sh.vocab, model.hidden_size, lm_prec),
        # Sampling: softmax / top-k over fp32 logits of the full vocabulary (gathered to one rank).
        elementwise("sampling", n * model.vocab_size, 2 * FP32_BYTES, 10.0, kernels=4),
    ]
