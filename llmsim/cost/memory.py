"""GPU memory model: weights, activation peak and KV-cache capacity, derived the way vLLM derives them.

vLLM (``Worker.determine_num_available_blocks``) profiles a forward pass of ``max_num_batched_tokens`` tokens,
then sets KV blocks = (total memory x gpu_memory_utilization - weights - peak activations - non-torch memory)
/ bytes per block; every pipeline stage does this and the smallest count wins.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from llmsim.cost.operators import FP32_BYTES, ShardedShapes
from llmsim.cost.step import stage_layer_counts
from llmsim.errors import ConfigError, InfeasibleError
from llmsim.specs import HardwareSpec, ModelSpec, ParallelLayout, Precision

GIB = 1024.0**3
# CUDA context, cuBLAS/NCCL workspaces and CUDA-graph pools: vLLM's "non-torch memory" is typically
# 0.5-1.5 GiB per GPU; 1 GiB is a stated default, overridable per experiment.
DEFAULT_RESERVED_BYTES = 1.0 * GIB


@dataclass(frozen=True, slots=True)
class MemoryPlan:
    """Per-GPU memory budget of one replica and the KV capacity it leaves (per replica).

    ``weights_bytes``, ``activation_bytes`` and ``kv_bytes_per_token`` are for the most loaded GPU
    (the pipeline stage with the fewest free KV tokens)."""

    hbm_bytes: float
    usable_bytes: float
    weights_bytes: float
    activation_bytes: float
    reserved_bytes: float
    kv_bytes_per_token: float
    kv_capacity_tokens: int
    block_size: int
    num_blocks: int

    @property
    def kv_bytes(self) -> float:
        return self.kv_capacity_tokens * self.kv_bytes_per_token

    def blocks_for(self, tokens: int) -> int:
        return -(-tokens // self.block_size)

    def max_batch_size(self, tokens_per_seq: int) -> int:
        """Sequences of ``tokens_per_seq`` tokens whose whole KV fits at once (block-rounded)."""
        return self.num_blocks // max(1, self.blocks_for(tokens_per_seq))


def _attention_weights(model: ModelSpec, sh: ShardedShapes) -> float:
    """One layer's attention weights on one GPU (MLA: the down projections are replicated, the rest sharded
    over heads)."""
    h = model.hidden_size
    if not model.is_mla:
        bias = (sh.q + 2 * sh.kv if model.qkv_bias or model.linear_bias else 0) + (h if model.o_bias else 0)
        return h * sh.q + 2 * h * sh.kv + sh.q * h + bias + (sh.heads if model.attention_sinks else 0)
    q_lora, r = model.q_lora_rank, model.kv_lora_rank
    nope = model.head_dim - model.qk_rope_head_dim
    q = (h * q_lora + q_lora * sh.q) if q_lora else h * sh.q
    return q + h * model.kv_latent_size + r * sh.heads * (nope + model.value_head_dim) \
        + sh.heads * model.value_head_dim * h


def stage_weight_bytes(model: ModelSpec, layout: ParallelLayout, prec: Precision, layers: int,
                       first: bool, last: bool, moe_layers: int | None = None) -> float:
    """Weights held by one GPU of a stage: sharded linear layers in the weight dtype, replicated norms and
    (vocab-parallel) embeddings / LM head in 16 bit. An EP rank holds ``experts / ep`` experts, each sharded
    ``tp / ep`` ways, plus the shared experts sharded over all tp GPUs. ``moe_layers``: how many of the
    stage's layers are MoE (default: all of them for an MoE model)."""
    sh = ShardedShapes.of(model, layout)
    h, wb, eb = model.hidden_size, prec.weight_bytes, 2.0
    mats = 3 if model.gated_mlp else 2
    dense = mats * h * sh.ffn
    n_moe = (layers if model.is_moe else 0) if moe_layers is None else moe_layers
    total = layers * (_attention_weights(model, sh) * wb + model.norm_params_per_layer() * eb)
    total += (layers - n_moe) * dense * wb
    if n_moe:
        experts = model.num_experts // layout.ep * model.expert_params(sh.expert_ffn)
        shared = model.num_shared_experts * mats * h * sh.shared_ffn
        total += n_moe * (experts * model.expert_bytes(wb) + shared * wb
                         + (h + model.router_bias) * model.num_experts * eb)
    if first:
        total += (sh.vocab * h + model.learned_positions * h) * eb
    if last and (not model.tied_embeddings or not first):
        total += sh.vocab * h * eb
    if last:  # the final norm before the LM head
        total += h * (2 if model.norm == "layernorm" else 1) * eb
    return total


def activation_peak_bytes(model: ModelSpec, layout: ParallelLayout, prec: Precision,
                          max_num_batched_tokens: int, max_num_seqs: int) -> float:
    """Peak transient activations of a profiling forward pass: one layer's widest intermediates for every
    token of the budget, plus fp32 logits of up to ``max_num_seqs`` sampled sequences."""
    sh = ShardedShapes.of(model, layout)
    t, a = max_num_batched_tokens, prec.act_bytes
    if model.is_moe:
        share = layout.moe.busiest_share(model.num_experts, layout.ep)
        mlp = max(model.experts_per_token * 3 * sh.expert_ffn / layout.ep * share,
                  3 * sh.ffn if model.num_moe_layers < model.num_layers else 0.0)
    else:
        mlp = 3 * sh.ffn
    per_token = 2 * model.hidden_size + sh.q + 2 * sh.kv + mlp
    return t * a * per_token + min(max_num_seqs, t) * sh.vocab * FP32_BYTES


def plan_memory(model: ModelSpec, hardware: HardwareSpec, layout: ParallelLayout | None = None,
                precision: Precision | None = None, *, gpu_memory_utilization: float = 0.9,
                max_num_batched_tokens: int = 8192, max_num_seqs: int = 256, block_size: int = 16,
                reserved_bytes: float = DEFAULT_RESERVED_BYTES) -> MemoryPlan:
    """KV capacity of one replica; raises InfeasibleError if the weights and activations leave no KV room."""
    layout = layout or ParallelLayout()
    prec = precision or Precision.parse("bf16")
    if not 0 < gpu_memory_utilization <= 1:
        raise ConfigError(f"gpu_memory_utilization: must be in (0, 1], got {gpu_memory_utilization}")
    if block_size < 1 or max_num_batched_tokens < 1 or max_num_seqs < 1:
        raise ConfigError("block_size, max_num_batched_tokens and max_num_seqs must be positive")
    usable = hardware.hbm_bytes * gpu_memory_utilization
    act = activation_peak_bytes(model, layout, prec, max_num_batched_tokens, max_num_seqs)
    best = None
    counts = stage_layer_counts(model.num_layers, layout.pp)
    start = 0
    for i, layers in enumerate(counts):
        moe = sum(model.is_moe_layer(j) for j in range(start, start + layers))
        start += layers
        weights = stage_weight_bytes(model, layout, prec, layers, i == 0, i == len(counts) - 1, moe)
        per_token = float(layers * model.kv_elements_per_token_per_layer(layout.tp) * prec.kv_bytes)
        free = usable - weights - act - reserved_bytes
        tokens = math.floor(free / per_token) if free > 0 else 0
        if best is None or tokens < best[0]:
            best = (tokens, weights, per_token, free)
    tokens, weights, per_token, free = best
    num_blocks = tokens // block_size
    if num_blocks < 1:
        need = (weights + act + reserved_bytes) / 1e9
        raise InfeasibleError(
            f"{model.name} does not fit on {hardware.name} with tp={layout.tp} pp={layout.pp} "
            f"({prec.name} weights): needs {need:.1f} GB per GPU for weights ({weights / 1e9:.1f} GB), "
            f"activations and reserved memory, but only {usable / 1e9:.1f} GB is usable "
            f"({hardware.hbm_bytes / 1e9:.1f} GB x {gpu_memory_utilization}); use more GPUs or a smaller precision")
    return MemoryPlan(hardware.hbm_bytes, usable, weights, act, reserved_bytes, per_token,
                      num_blocks * block_size, block_size, num_blocks)
