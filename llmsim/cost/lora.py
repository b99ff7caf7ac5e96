"""Batched multi-LoRA kernels of one step (Punica SGMV / BGMV, S-LoRA): the cost a batch's adapters add.

vLLM (v0.15.1, vllm/lora/punica_wrapper/punica_gpu.py ``add_lora_linear``) runs, per LoRA-wrapped linear
layer, one ``lora_shrink`` kernel (x @ A for every token with its own adapter's A, into an fp32 buffer of
width r) and one ``lora_expand`` kernel (buffer @ B, added into the layer's output) over the whole batch: a
gather-GEMM whose weight traffic is one A and one B per *distinct* adapter in the batch, and whose FLOPs are
2 x tokens x r x (in + out). Sharding follows the base layer (vLLM ColumnParallelLinearWithLoRA /
RowParallelLinearWithLoRA): a column-parallel target (q, k, v, gate, up) keeps A whole and shards B's
outputs over tp, a row-parallel one (o, down) shards A's inputs and keeps B whole; the partial sums ride the
layer's own all-reduce. Each kernel is timed on the roofline (peak x gemm efficiency, HBM x memory
efficiency); they run inside the step's CUDA-graph pieces, so no launch gap is added.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from llmsim.lora.adapters import LoraSpec
from llmsim.specs import HardwareSpec, ModelSpec, ParallelLayout, Precision

ROW_PARALLEL = ("o_proj", "down_proj")
FP32 = 4.0


@dataclass(frozen=True, slots=True)
class LoraKernel:
    """One shrink or expand kernel of one layer on one GPU."""

    name: str
    flops: float
    hbm_bytes: float


def lora_kernels(spec: LoraSpec, model: ModelSpec, layout: ParallelLayout, prec: Precision,
                 tokens_per_adapter: Mapping[int, int]) -> list[LoraKernel]:
    """The shrink and expand kernels of one decoder layer for a batch with ``tokens_per_adapter`` tokens of
    each adapter it uses."""
    act, wb, tp = prec.act_bytes, prec.act_bytes, layout.tp  # adapters stay in the model's 16-bit dtype
    total = sum(tokens_per_adapter.values())
    out: list[LoraKernel] = []
    for target, d_in, d_out in spec.module_shapes(model):
        if target in ROW_PARALLEL:
            d_in = -(-d_in // tp)
        else:
            d_out = -(-d_out // tp)
        ranked = [(t, spec.ranks[a]) for a, t in tokens_per_adapter.items() if t > 0]
        tr = sum(t * r for t, r in ranked)  # token x rank products
        a_bytes = sum(d_in * r for _, r in ranked) * wb
        b_bytes = sum(r * d_out for _, r in ranked) * wb
        out.append(LoraKernel(f"{target}_lora_shrink", 2.0 * tr * d_in,
                              a_bytes + total * d_in * act + tr * FP32))
        out.append(LoraKernel(f"{target}_lora_expand", 2.0 * tr * d_out,
                              b_bytes + tr * FP32 + 2.0 * total * d_out * act))
    return out


def kernel_s(k: LoraKernel, hardware: HardwareSpec, prec: Precision) -> float:
    eff = hardware.efficiency
    return max(k.flops / (hardware.peak_flops(prec.activations) * eff.gemm),
               k.hbm_bytes / (hardware.hbm_bytes_per_s * eff.memory))


def lora_step_s(spec: LoraSpec, model: ModelSpec, layout: ParallelLayout, prec: Precision, hardware: HardwareSpec,
                tokens_per_adapter: Mapping[int, int]) -> float:
    """GPU seconds the batch's LoRA kernels add to one step (every layer of every pipeline stage: the
    slowest-stage split is left to the base model's cost)."""
    if not tokens_per_adapter:
        return 0.0
    per_layer = sum(kernel_s(k, hardware, prec) for k in lora_kernels(spec, model, layout, prec, tokens_per_adapter))
    return model.num_layers * per_layer


def adapter_bytes(spec: LoraSpec, model: ModelSpec, layout: ParallelLayout, prec: Precision, adapter: int) -> float:
    """Bytes of one adapter on one GPU (its A and B shards): what loading it into a GPU slot copies."""
    return float(model.num_layers * _rank_elements(spec, model, layout, spec.ranks[adapter]) * prec.act_bytes)


def slots_bytes(spec: LoraSpec, model: ModelSpec, layout: ParallelLayout, prec: Precision) -> float:
    """GPU memory vLLM preallocates for ``max_loras`` slots of ``max_lora_rank`` (per GPU): it comes out of
    the KV cache (the slots exist during the memory profiling run)."""
    per_gpu = _rank_elements(spec, model, layout, spec.max_lora_rank)
    return float(spec.max_loras * model.num_layers * per_gpu * prec.act_bytes)


def _rank_elements(spec: LoraSpec, model: ModelSpec, layout: ParallelLayout, rank: int) -> int:
    """Elements of one layer's A and B matrices of rank ``rank`` on one GPU, sharded as the base layers are
    (row-parallel targets split their input dimension, column-parallel ones their output)."""
    per_gpu = 0
    for target, d_in, d_out in spec.module_shapes(model):
        if target in ROW_PARALLEL:
            d_in = -(-d_in // layout.tp)
        else:
            d_out = -(-d_out // layout.tp)
        per_gpu += rank * (d_in + d_out)
    return per_gpu
