"""An engine profile resolved for one deployment: the concrete scheduler block, KV defaults, CUDA-graph sizes,
CPU and front-end costs, and the rule that turns GPU and CPU seconds into a step's period.

``resolve_engine(profile, hardware, scheduler=..., kv=..., max_model_len=...)`` applies the profile's defaults
where the experiment sets nothing (vLLM's ``EngineArgs.get_batch_defaults`` by GPU memory and usage
context, ``VllmConfig._set_cudagraph_sizes``), and rejects a scheduler the engine does not run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from llmsim.engines.profile import LAUNCH_NONE, CpuCosts, EngineProfile, FrontendCosts, capture_sizes
from llmsim.errors import ConfigError

# Scheduler-block keys an engine profile fills in for the vllm family (the rest come from the experiment).
VLLM_KEYS = ("max_num_seqs", "max_num_batched_tokens", "long_prefill_token_threshold", "enable_chunked_prefill")


@dataclass(frozen=True)
class EngineRuntime:
    """What the simulator needs of an engine: ``scheduler_block`` and ``kv_kind``/``block_size`` to build the
    policy and KV manager, ``max_capture_size``/``capture_sizes`` for graph padding, ``cpu``/``frontend``
    costs, ``async_scheduling``."""

    profile: EngineProfile
    scheduler_block: Mapping[str, Any]
    kv_kind: str
    block_size: int
    gpu_memory_utilization: float
    max_model_len: int | None
    max_capture_size: int
    capture_sizes: tuple[int, ...]
    cpu: CpuCosts
    frontend: FrontendCosts
    async_scheduling: bool

    @property
    def name(self) -> str:
        return self.profile.name

    def launch_mode(self, num_tokens: int, pure_decode: bool) -> str:
        """``full``, ``piecewise`` or ``eager`` for a step of ``num_tokens`` (after padding)."""
        if not self.capture_sizes:
            return LAUNCH_NONE
        return self.profile.launch_mode(num_tokens, pure_decode, self.max_capture_size)

    def period_s(self, gpu_s: float, cpu_s: float, after_idle: bool = False) -> float:
        """Seconds from one step's start to the next: with async scheduling the CPU prepares step N+1 while
        the GPU runs step N (``max``), except the first step after idle, whose CPU work nothing hides."""
        if self.async_scheduling and not after_idle:
            return max(gpu_s, cpu_s)
        return gpu_s + cpu_s


def _int_option(block: Mapping[str, Any], key: str, default: int) -> int:
    value = block.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key}: must be a positive integer, got {value!r}")
    return value


def _vllm_scheduler(profile: EngineProfile, hardware, user: Mapping[str, Any]) -> dict[str, Any]:
    block = dict(profile.scheduler)
    opts = profile.options
    if profile.batch_defaults is not None:
        tokens, seqs = profile.batch_defaults.pick(hardware.hbm_bytes, hardware.name, profile.usage_context)
        block.setdefault("max_num_batched_tokens", tokens)
        block.setdefault("max_num_seqs", seqs)
    for key in ("long_prefill_token_threshold", "enable_chunked_prefill"):
        if key in opts:
            block.setdefault(key, opts[key])
    block.update(user)
    return block


def _graph_limit(profile: EngineProfile, block: Mapping[str, Any]) -> int:
    """Largest captured size: the profile's, or vLLM's rule (v1: ``min(2 * max_num_seqs, 512)``, then at most
    ``max_num_batched_tokens``; v0: the smallest v0 size >= ``max_num_seqs``, at most 256)."""
    graphs = profile.cuda_graphs
    if graphs.mode == "none":
        return 0
    seqs = _int_option(block, "max_num_seqs", 256)
    if graphs.max_capture_size:
        limit = graphs.max_capture_size
    elif graphs.sizes == "v0":
        limit = next((s for s in capture_sizes("v0", 256) if s >= seqs), 256)
    else:
        limit = min(2 * seqs, 512)
    tokens = block.get("max_num_batched_tokens")
    if graphs.sizes == "v1" and isinstance(tokens, int) and not isinstance(tokens, bool):
        limit = min(limit, tokens)
    return limit


def resolve_engine(profile: EngineProfile, hardware, scheduler: Mapping[str, Any] | None = None,
                   kv: Mapping[str, Any] | None = None, max_model_len: int | None = None) -> EngineRuntime:
    """Resolve ``profile`` on ``hardware`` with the experiment's ``scheduler`` and ``kv`` blocks (either may be
    None) and ``max_model_len``. The generic engine passes the blocks through unchanged."""
    user = dict(scheduler or {})
    family_kind = profile.scheduler.get("kind")
    if profile.family == "generic":
        block = user or dict(profile.scheduler)
    else:
        kind = user.pop("kind", family_kind)
        if kind != family_kind:
            raise ConfigError(f"scheduler.kind: engine {profile.name} runs the {family_kind!r} scheduler, not "
                              f"{kind!r} (drop `engine:` to run another policy on the generic engine)")
        mode = user.get("mode", profile.scheduler.get("mode"))
        if mode != profile.scheduler.get("mode"):
            raise ConfigError(f"scheduler.mode: engine {profile.name} runs mode {profile.scheduler.get('mode')!r}, "
                              f"not {mode!r}")
        block = _vllm_scheduler(profile, hardware, user) if family_kind == "vllm" else {**profile.scheduler, **user}
    limit = _graph_limit(profile, block)
    if family_kind == "vllm" and profile.family != "generic":
        block["cuda_graph"] = limit > 0
        if limit:
            block["max_capture_size"] = limit
            if block.get("mode", "v1") == "v1":
                block["capture_rule"] = profile.cuda_graphs.sizes
    kv_block = dict(kv or {})
    opts = profile.options
    prefix = bool(opts.get("enable_prefix_caching", False))
    kv_kind = str(kv_block.get("kind") or ("prefix" if prefix else ""))
    cpu = profile.cpu or CpuCosts(hardware.overheads.step_s, hardware.overheads.per_seq_s)
    return EngineRuntime(
        profile=profile, scheduler_block=block, kv_kind=kv_kind,
        block_size=int(kv_block.get("block_size", opts.get("block_size", 16))),
        gpu_memory_utilization=float(opts.get("gpu_memory_utilization", 0.9)),
        max_model_len=max_model_len or opts.get("max_model_len"),
        max_capture_size=limit, capture_sizes=tuple(capture_sizes(profile.cuda_graphs.sizes, limit)),
        cpu=cpu, frontend=profile.frontend, async_scheduling=profile.async_scheduling,
    )
