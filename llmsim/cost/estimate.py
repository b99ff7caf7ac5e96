"""Closed-form serving estimate of one static batch: prefill, decode steps, TTFT/TPOT/E2E, memory.

The batch of ``batch_size`` prompts of ``input_len`` tokens is prefilled in one step (as a static-batch
engine does), then decoded for ``output_len - 1`` steps (the first token comes from the prefill).
Each decode step's time is exact (vectorised over steps), not an average guess.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from llmsim.cost.evidence import evidence_fractions, weighted_fractions
from llmsim.cost.memory import MemoryPlan, plan_memory
from llmsim.cost.step import CostModel, OpCost
from llmsim.errors import ConfigError
from llmsim.specs import HardwareSpec, ModelSpec, ParallelLayout, Precision


@dataclass(frozen=True, slots=True)
class MemoryReport:
    weights_bytes: float
    activation_bytes: float
    reserved_bytes: float
    usable_bytes: float
    kv_bytes_per_token: float
    kv_bytes_per_token_per_gpu: float
    kv_capacity_tokens: int
    block_size: int
    num_blocks: int
    fits: bool
    max_batch_size: int


@dataclass(frozen=True, slots=True)
class Estimate:
    """All times in seconds; throughput in tokens per second for the whole replica."""

    model: str
    hardware: str
    tp: int
    pp: int
    precision: str
    kv_dtype: str
    batch_size: int
    input_len: int
    output_len: int
    prefill_s: float
    ttft_s: float
    decode_step_s: float
    decode_step_first_s: float
    decode_step_mid_s: float
    decode_step_last_s: float
    tpot_s: float
    e2e_s: float
    output_tokens_per_s: float
    output_tokens_per_s_per_gpu: float
    prefill_mfu: float
    decode_mbu: float
    memory: MemoryReport
    evidence: dict[str, float] | None = None  # share of kernel time by source (llmsim.cost.evidence)
    ep: int = 1
    moe_busiest_share: float = 1.0  # the busiest EP GPU's expert load over its uniform share
    moe_dropped_fraction: float = 0.0  # routed pairs dropped by an expert capacity limit

    def to_dict(self) -> dict:
        return asdict(self)


def _memory_report(model: ModelSpec, plan: MemoryPlan, prec: Precision, batch: int, seq_len: int) -> MemoryReport:
    max_batch = plan.max_batch_size(seq_len)
    return MemoryReport(
        weights_bytes=plan.weights_bytes,
        activation_bytes=plan.activation_bytes,
        reserved_bytes=plan.reserved_bytes,
        usable_bytes=plan.usable_bytes,
        kv_bytes_per_token=model.kv_bytes_per_token(prec.kv_bytes),
        kv_bytes_per_token_per_gpu=plan.kv_bytes_per_token,
        kv_capacity_tokens=plan.kv_capacity_tokens,
        block_size=plan.block_size,
        num_blocks=plan.num_blocks,
        fits=batch <= max_batch,
        max_batch_size=max_batch,
    )


def check_lengths(batch_size: int, input_len: int, output_len: int, model: ModelSpec,
                  enforce_max_context: bool = True) -> None:
    for name, value in (("batch_size", batch_size), ("input_len", input_len), ("output_len", output_len)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name}: must be a positive integer, got {value!r}")
    if enforce_max_context and input_len + output_len > model.max_context:
        raise ConfigError(f"input_len + output_len = {input_len + output_len} exceeds the max context "
                          f"{model.max_context} of {model.name}")


def estimate(model: ModelSpec, hardware: HardwareSpec, layout: ParallelLayout | None = None,
             precision: Precision | None = None, *, batch_size: int, input_len: int, output_len: int,
             enforce_max_context: bool = True, **memory_kwargs) -> Estimate:
    """Estimate one static batch. ``enforce_max_context=False`` allows prompts past the model's trained
    context (engines run them; benchmarks do)."""
    layout = layout or ParallelLayout()
    prec = precision or Precision.parse("bf16")
    check_lengths(batch_size, input_len, output_len, model, enforce_max_context)
    cm = CostModel(model, hardware, layout, prec)
    plan = plan_memory(model, hardware, layout, prec, **memory_kwargs)
    prefill = cm.step_time([input_len] * batch_size, [0] * batch_size)
    steps = cm.decode_run_s(np.full(batch_size, input_len), output_len - 1) if output_len > 1 else np.zeros(0)
    decode_total = float(steps.sum())
    e2e = prefill.total_s + decode_total
    gpus = layout.tp * layout.pp
    first = cm.step_time([1] * batch_size, [input_len] * batch_size)
    peak = hardware.peak_flops(prec.compute) * gpus
    mid = float(steps[len(steps) // 2]) if len(steps) else 0.0
    mid_ctx = [input_len + max(0, output_len - 1) // 2] * batch_size
    evidence = weighted_fractions([
        (evidence_fractions(cm.operator_costs([input_len] * batch_size, [0] * batch_size)), prefill.total_s),
        (evidence_fractions(cm.operator_costs([1] * batch_size, mid_ctx)), decode_total)])
    return Estimate(
        model=model.name, hardware=hardware.name, tp=layout.tp, pp=layout.pp, precision=prec.name,
        kv_dtype=prec.kv_dtype, batch_size=batch_size, input_len=input_len, output_len=output_len,
        prefill_s=prefill.total_s,
        ttft_s=prefill.total_s,
        decode_step_s=decode_total / len(steps) if len(steps) else 0.0,
        decode_step_first_s=float(steps[0]) if len(steps) else 0.0,
        decode_step_mid_s=mid,
        decode_step_last_s=float(steps[-1]) if len(steps) else 0.0,
        tpot_s=decode_total / (output_len - 1) if output_len > 1 else 0.0,
        e2e_s=e2e,
        output_tokens_per_s=batch_size * output_len / e2e,
        output_tokens_per_s_per_gpu=batch_size * output_len / e2e / gpus,
        prefill_mfu=prefill.flops / (prefill.total_s * peak),
        decode_mbu=first.hbm_bytes / (first.total_s * hardware.hbm_bytes_per_s * gpus),
        memory=_memory_report(model, plan, prec, batch_size, input_len + output_len),
        evidence=evidence,
        ep=layout.ep,
        moe_busiest_share=layout.moe.busiest_share(model.num_experts, layout.ep) if model.is_moe else 1.0,
        moe_dropped_fraction=layout.moe.dropped_fraction(model.num_experts, layout.ep) if model.is_moe else 0.0,
    )


def breakdown(model: ModelSpec, hardware: HardwareSpec, layout: ParallelLayout, precision: Precision, *,
              batch_size: int, input_len: int, output_len: int) -> dict[str, list[OpCost]]:
    """Per-operator tables of the prefill step and of the middle decode step."""
    cm = CostModel(model, hardware, layout, precision)
    mid_ctx = input_len + max(0, output_len - 1) // 2
    return {
        "prefill": cm.operator_costs([input_len] * batch_size, [0] * batch_size),
        "decode": cm.operator_costs([1] * batch_size, [mid_ctx] * batch_size),
    }
