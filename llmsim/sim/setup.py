"""Resolve a deployment from specs and config blocks: engine runtime (profile defaults applied), cost
model, KV capacity (from the memory plan, as the engine derives it), swap space, policy blocks with
defaults, and the analytical capacity bound."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from llmsim.errors import ConfigError
from llmsim.specs import HardwareSpec, Link, ModelSpec, ParallelLayout, Precision, load_hardware, load_model

SIM_KV_KEYS = ("gpu_memory_utilization", "swap_space_gb", "num_blocks", "reserved_bytes")
GIB = float(1 << 30)


@dataclass(frozen=True)
class Deployment:
    model: ModelSpec
    hardware: HardwareSpec
    layout: ParallelLayout
    precision: Precision
    cost_model: Any
    scheduler_block: Mapping[str, Any]
    kv_block: Mapping[str, Any]
    kv_defaults: Mapping[str, Any]
    swap_blocks: int
    block_bytes: float
    host_link: Link
    max_model_len: int
    kv_bytes_per_token_replica: float
    info: Mapping[str, Any]
    runtime: Any = None
    lora: Any = None  # llmsim.lora.LoraSpec: adapters served on this deployment
    speculative: Any = None  # a SpeculativeConfig (llmsim.speculative.attach_speculative), or None


def default_kv_kind(scheduler: Mapping[str, Any]) -> str:
    kind = scheduler.get("kind")
    if kind in ("static", "orca"):
        return "contiguous"
    if kind == "sjf" or (kind == "vllm" and scheduler.get("mode", "v1") == "v1"):
        return "prefix"
    return "paged"


def _specs(model, hardware, layout, precision):
    model = load_model(model) if isinstance(model, str) else model
    hardware = load_hardware(hardware) if isinstance(hardware, str) else hardware
    layout = layout or ParallelLayout()
    if isinstance(precision, str):
        precision = Precision.parse(precision)
    return model, hardware, layout, precision or Precision.parse("bf16")


def deployment(model, hardware, layout, precision, scheduler, kv, max_model_len, cost_model,
               engine=None, lora=None) -> Deployment:
    from llmsim.cost import CostModel, plan_memory  # imported late: the cost package is optional in tests
    from llmsim.engines import EngineProfile, load_engine, resolve_engine

    model, hardware, layout, precision = _specs(model, hardware, layout, precision)
    profile = engine if isinstance(engine, EngineProfile) else load_engine(engine)
    kv_in = dict(kv or {})
    sim_kv = {k: kv_in.pop(k) for k in SIM_KV_KEYS if k in kv_in}
    runtime = resolve_engine(profile, hardware, scheduler, kv_in, max_model_len)
    sched_block = dict(runtime.scheduler_block)
    kv_block = dict(kv_in)
    kv_block["kind"] = kv_block.get("kind") or runtime.kv_kind or default_kv_kind(sched_block)
    block_size = int(kv_block.get("block_size", runtime.block_size))
    kv_block["block_size"] = block_size
    budget = sched_block.get("max_num_batched_tokens") or sched_block.get("chunk_size") or 8192
    seqs = sched_block.get("max_num_seqs") or sched_block.get("max_batch_size") or 256
    util = float(sim_kv.get("gpu_memory_utilization", runtime.gpu_memory_utilization))
    reserved = {"reserved_bytes": float(sim_kv["reserved_bytes"])} if sim_kv.get("reserved_bytes") is not None else {}
    if lora is not None and lora.mode == "slots":  # vLLM preallocates max_loras slots before sizing the KV
        from llmsim.cost.lora import slots_bytes
        from llmsim.cost.memory import DEFAULT_RESERVED_BYTES

        base = reserved.get("reserved_bytes", DEFAULT_RESERVED_BYTES)
        reserved = {"reserved_bytes": base + slots_bytes(lora, model, layout, precision)}
    plan = plan_memory(model, hardware, layout, precision, gpu_memory_utilization=util,
                       max_num_batched_tokens=int(budget), max_num_seqs=int(seqs), block_size=block_size,
                       **reserved)
    num_blocks = int(sim_kv.get("num_blocks", plan.num_blocks))
    if num_blocks < 1:
        raise ConfigError(f"kv.num_blocks: must be >= 1, got {num_blocks}")
    max_len = int(runtime.max_model_len or model.max_context)
    kv_defaults: dict[str, Any] = {"num_blocks": max(1, num_blocks // layout.pp)}
    if kv_block["kind"] == "contiguous":
        kv_defaults["max_model_len"] = max_len
    block_bytes = plan.kv_bytes_per_token * block_size
    if kv_block["kind"] == "tiered":  # llmsim.kv.tiers: block size and link of one GPU, its share of host memory
        kv_defaults.update(block_bytes=block_bytes, link_bytes_per_s=hardware.host_link.bytes_per_s,
                           link_latency_s=hardware.host_link.latency_s,
                           host_memory_bytes=hardware.host_memory_bytes, num_layers=model.num_layers)
    swap_gb = float(sim_kv.get("swap_space_gb", 4.0))  # vLLM's default swap_space, GiB per GPU
    cm = cost_model or CostModel(model, hardware, layout, precision)
    info = {
        "model": model.name, "hardware": hardware.name, "tp": layout.tp, "pp": layout.pp, "dp": layout.dp,
        "precision": precision.name, "kv_dtype": precision.kv_dtype, "engine": profile.name,
        "scheduler": sched_block.get("kind"), "max_num_seqs": sched_block.get("max_num_seqs"),
        "max_num_batched_tokens": sched_block.get("max_num_batched_tokens"),
        "async_scheduling": runtime.async_scheduling, "cuda_graph_max_capture": runtime.max_capture_size,
        "kv_manager": kv_block["kind"], "num_blocks_per_replica": num_blocks, "block_size": block_size,
        "kv_capacity_tokens_per_replica": num_blocks * block_size, "max_model_len": max_len,
        "peak_flops_per_s": hardware.peak_flops(precision.compute) * layout.num_gpus,
        "peak_hbm_bytes_per_s": hardware.hbm_bytes_per_s * layout.num_gpus,
        "capacity_tokens_per_s": capacity_tokens_per_s(cm, int(budget)) * layout.dp,
    }
    return Deployment(model, hardware, layout, precision, cm, sched_block, kv_block, kv_defaults,
                      int(swap_gb * GIB / block_bytes), block_bytes, hardware.host_link, max_len,
                      model.kv_bytes_per_token(precision.kv_bytes), info, runtime, lora)


def capacity_tokens_per_s(cost_model, budget: int) -> float:
    """Upper bound on tokens computed per second by one replica: the cheapest tokens there are, a full
    budget of fresh 512-token prompt chunks (compute-bound GEMMs, short attention), through the slowest
    pipeline stage only (stages overlap across micro-batches) and without the per-step CPU overhead. Every
    real step computes tokens at least this expensive."""
    n = max(8192, budget)
    chunks = [512] * (n // 512)
    cost = cost_model.step_time(chunks, [0] * len(chunks))
    kernel_s = max(cost.stage_s)
    return len(chunks) * 512 / kernel_s if kernel_s > 0 else float("inf")
