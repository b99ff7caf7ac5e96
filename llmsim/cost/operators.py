"""The operators of one transformer step, as FLOPs and HBM bytes per GPU.

A step is a batch of sequences, each with (new tokens this step, tokens already in its KV cache); prefill,
chunked prefill, decode and mixtures are all the same call. Operators are built from a few aggregate
features of the batch (``BatchFeatures``), so building them costs the same for 1 or 1,000 sequences.
Attention follows FlashAttention's IO (Dao et al. 2022): Q, K, V read once, O written once, no N^2 HBM traffic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from llmsim.specs import ModelSpec, ParallelLayout, Precision

FP32_BYTES = 4.0


@dataclass(frozen=True, slots=True)
class Operator:
    """One kernel (or fused group) per GPU. ``flops``/``hbm_bytes`` may be numpy arrays (vectorised decode runs).

    ``op_class`` selects efficiency and calibration: gemm, attn_prefill, attn_decode, elementwise, moe,
    allreduce, p2p, alltoall. ``shape`` carries (M, N, K) for GEMMs, (tokens, heads, kv_heads, head_dim,
    kv_tokens) for attention, (tokens, hidden, ffn, experts, topk, ep, up) for MoE experts, so calibrated fits
    can look the shape up. ``comm_bytes`` is the payload of a collective. ``storage_dtype`` is the format of
    the operand the kernel streams from HBM: a GEMM's or MoE's weights (weight-only quantised GEMMs compute in
    16 bit), attention's KV cache. ``layer_share`` is the fraction of decoder layers that run this operator
    (a model with dense and MoE layers, or with windowed and global attention layers); 1 for most.
    """

    name: str
    op_class: str
    flops: float | np.ndarray
    hbm_bytes: float | np.ndarray
    compute_dtype: str = "bf16"
    kernels: int = 1
    shape: tuple = ()
    comm_bytes: float = 0.0
    comm_ranks: int = 1
    storage_dtype: str = ""
    layer_share: float = 1.0


@dataclass(frozen=True, slots=True)
class BatchFeatures:
    """Aggregates of a batch that fix the cost of every operator.

    ``prefill_*``: sequences with more than one new token (FlashAttention varlen prefill);
    ``decode_*``: sequences with exactly one new token (paged decode attention).
    ``*_attn_pairs``: sum over sequences of (query, key) pairs, causal and windowed;
    ``*_kv_tokens``: sum over sequences of KV tokens the kernel reads (cached + new).
    ``full``: the same batch without the sliding window, for a model whose global layers ignore it (gpt-oss).
    """

    num_tokens: int
    num_seqs: int
    num_emit: int
    prefill_tokens: int
    prefill_seqs: int
    prefill_attn_pairs: float
    prefill_kv_tokens: float
    decode_seqs: int
    decode_kv_tokens: float | np.ndarray
    full: BatchFeatures | None = None


def _causal_pairs(new: np.ndarray, ctx: np.ndarray, window: int | None) -> float:
    """Sum over queries j=1..n of the keys they attend to: min(ctx + j, window)."""
    full = new * ctx + new * (new + 1) / 2.0
    if window is None:
        return float(full.sum())
    first = np.minimum(ctx + 1, window)
    last = np.minimum(ctx + new, window)
    # keys grow by one per query until the window caps them: arithmetic run then a plateau.
    ramp = np.clip(window - ctx, 0, new)
    ramp_sum = ramp * (first + np.minimum(ctx + ramp, window)) / 2.0
    return float((ramp_sum + (new - ramp) * last).sum())


def _chunk_keys(n: np.ndarray, chunk: int) -> np.ndarray:
    """Sum over positions p = 0..n-1 of (p mod chunk) + 1: keys a query at p attends to with chunked local
    attention (Llama 4: attention within aligned chunks of ``chunk`` tokens)."""
    q, r = np.divmod(n, chunk)
    return q * (chunk * (chunk + 1) / 2.0) + r * (r + 1) / 2.0


def chunked_features(new_tokens, context_tokens, emits, chunk: int) -> BatchFeatures:
    """``batch_features`` for chunked local attention: a query at position p sees the keys of its own chunk,
    ``(p mod chunk) + 1`` of them; a prefill reads its keys from the start of its first query's chunk."""
    f = batch_features(new_tokens, context_tokens, emits)
    new = np.asarray(new_tokens, dtype=np.int64)
    ctx = np.asarray(context_tokens, dtype=np.int64)
    pre = new > 1
    pairs = float((_chunk_keys(ctx[pre] + new[pre], chunk) - _chunk_keys(ctx[pre], chunk)).sum())
    kv = float((ctx[pre] + new[pre] - (ctx[pre] // chunk) * chunk).sum())
    dec = float((ctx[~pre] % chunk + 1).sum())
    return BatchFeatures(f.num_tokens, f.num_seqs, f.num_emit, f.prefill_tokens, f.prefill_seqs, pairs, kv,
                         f.decode_seqs, dec)


def batch_features(new_tokens, context_tokens, emits=None, window: int | None = None) -> BatchFeatures:
    new = np.asarray(new_tokens, dtype=np.int64)
    ctx = np.asarray(context_tokens, dtype=np.int64)
    if new.shape != ctx.shape or new.ndim != 1:
        raise ValueError("new_tokens and context_tokens must be 1-D sequences of equal length")
    if new.size and (new.min() < 1 or ctx.min() < 0):
        raise ValueError("new_tokens must be >= 1 and context_tokens >= 0 for every sequence")
    pre = new > 1
    dec_ctx = ctx[~pre] + 1
    if window is not None:
        dec_ctx = np.minimum(dec_ctx, window)
    pre_kv = ctx[pre] + new[pre]
    if window is not None:
        pre_kv = np.minimum(pre_kv, window + new[pre])
    num_emit = int(new.size if emits is None else _emit_count(emits))
    return BatchFeatures(
        num_tokens=int(new.sum()),
        num_seqs=int(new.size),
        num_emit=num_emit,
        prefill_tokens=int(new[pre].sum()),
        prefill_seqs=int(pre.sum()),
        prefill_attn_pairs=_causal_pairs(new[pre], ctx[pre], window),
        prefill_kv_tokens=float(pre_kv.sum()),
        decode_seqs=int((~pre).sum()),
        decode_kv_tokens=float(dec_ctx.sum()),
    )


def _emit_count(emits) -> int:
    """Rows that run the LM head and sampler: ``emits`` marks each sequence (booleans) or counts its sampled
    positions (integers: a speculative verification samples all of its 1 + k positions)."""
    arr = np.asarray(emits)
    return int(arr.sum()) if arr.dtype.kind in "iu" else int(np.count_nonzero(arr))


@dataclass(frozen=True, slots=True)
class ShardedShapes:
    """Per-GPU widths after tensor parallelism (heads and FFN sharded; KV heads replicated if tp > kv heads)."""

    q: int
    kv: int
    heads: int
    kv_heads: int
    ffn: int
    expert_ffn: int
    shared_ffn: int
    vocab: int

    @classmethod
    def of(cls, model: ModelSpec, layout: ParallelLayout) -> ShardedShapes:
        tp = layout.tp
        heads = model.num_heads // tp
        kv_heads = max(1, model.num_kv_heads // tp)
        expert_tp = layout.expert_tp  # EP: each expert sharded over tp / ep GPUs (whole when ep == tp)
        return cls(
            q=heads * model.head_dim,
            kv=kv_heads * model.head_dim,
            heads=heads,
            kv_heads=kv_heads,
            ffn=-(-model.ffn_size // tp),
            expert_ffn=-(-model.expert_ffn_size // expert_tp) if model.is_moe else 0,
            shared_ffn=-(-(model.shared_expert_ffn_size or model.expert_ffn_size) // tp) if model.is_moe else 0,
            vocab=-(-model.vocab_size // tp),
        )


def gemm(name: str, m: float, n: int, k: int, prec: Precision, weight_copies: float = 1.0,
         kernels: int = 1) -> Operator:
    """C[M,N] = A[M,K] @ W[K,N]: 2MNK FLOPs; reads W (in the weight dtype) and A, writes C."""
    act = prec.act_bytes
    hbm = weight_copies * n * k * prec.weight_bytes + m * k * act + m * n * act
    return Operator(name, "gemm", 2.0 * m * n * k, hbm, prec.compute, kernels, shape=(m, n, k),
                    storage_dtype=prec.weights)


def elementwise(name: str, elements: float, bytes_per_element: float, flops_per_element: float,
                kernels: int = 1) -> Operator:
    return Operator(name, "elementwise", flops_per_element * elements, bytes_per_element * elements,
                    "fp32", kernels, shape=(elements,))


def experts_hit(tokens: float, experts: int, topk: int) -> float:
    """Expected distinct experts chosen by ``tokens`` tokens each picking ``topk`` of ``experts`` uniformly."""
    return experts * (1.0 - (1.0 - topk / experts) ** tokens)


def moe_experts(tokens: float, hidden: int, ffn: int, experts: int, topk: int, ep: int, gated: bool,
                prec: Precision, skew: float = 1.0, kept: float = 1.0, weight_bytes: float = 0.0) -> Operator:
    """One MoE layer's expert computation on one GPU (vLLM fused_moe): a grouped gate/up GEMM, the activation
    and a grouped down GEMM over the token-expert pairs routed to this GPU's ``experts / ep`` experts, then the
    top-k weighted sum. ``ffn`` is one expert's intermediate width on this GPU. Reads the weights of every
    expert hit once; the grouped-GEMM timing is in ``llmsim.cost.kernels``.

    Routing is uniform by default. ``skew`` >= 1 is the busiest expert-parallel GPU's load relative to its
    uniform share (the GPU whose time the layer waits for; AIC's power-law rows measure that rank): it gets
    ``skew`` times the routed pairs (at most all of them) and its experts are picked ``skew`` times as often.
    With ``ep`` 1 every expert is local and the total work does not depend on the skew; ``kept`` is then the
    fraction of pairs a capacity limit leaves (``llmsim.specs.moe``)."""
    if skew < 1:
        raise ValueError("skew: must be >= 1 (1 = uniform routing)")
    up = 2 if gated else 1
    share = min(skew, float(ep)) if ep > 1 else kept
    routed = tokens * topk / ep * share
    pick = min(1.0, share * topk / experts)  # chance that a token picks a given local expert
    hit = experts / ep * (1.0 - (1.0 - pick) ** tokens)
    act = prec.act_bytes
    weights = hit * (up + 1) * hidden * ffn * (weight_bytes or prec.weight_bytes)  # MXFP4 experts: their own
    # per pair: gather x (h), write up (up*f), activation reads up*f writes f, down reads f writes h; sum reads h
    activations = act * (routed * (3 * hidden + (2 * up + 2) * ffn) + tokens * hidden)
    flops = 2.0 * routed * hidden * ffn * (up + 1)
    return Operator("moe_experts", "moe", flops, weights + activations, prec.compute, kernels=5,
                    shape=(tokens, hidden, ffn, experts, topk, ep, up), storage_dtype=prec.weights)


def useful_flops(op: Operator) -> float | np.ndarray:
    """FLOPs of ``op`` that count towards MFU: an MoE layer's busiest GPU does ``skew`` times its share, but
    the replica's useful work is the uniform share on each GPU."""
    if op.op_class != "moe":
        return op.flops
    tokens, hidden, ffn, _, topk, ep, up = op.shape
    return min(float(op.flops), 2.0 * float(tokens) * topk / ep * hidden * ffn * (up + 1))
