"""Engine profiles: what a serving engine version does around the kernels, as data.

The cost model times kernels; an engine profile times the rest and fixes the engine's defaults:

- **defaults**: scheduler limits the engine picks when the user sets none (by GPU class and usage context),
  block size, memory utilisation, chunked prefill and prefix caching switches;
- **CUDA graphs**: which steps replay a captured graph (no per-kernel CPU launch cost), which run piecewise
  (attention eager, the rest captured) and which run eagerly, and the capture sizes a step is padded to;
- **async scheduling**: whether the CPU schedules step N+1 while the GPU runs step N (the step period is then
  max(GPU, CPU) and a new request joins one step later) or serially (period = GPU + CPU);
- **CPU cost per step** as a function of what the step holds, and **front-end costs** per request
  (arrival to engine: tokenise, validate, IPC) and per token (engine to client: detokenise, stream).

Every value has a source (``sources``: dotted field -> where it came from). Profiles are YAML files in
``llmsim/engines/profiles/`` loaded by name (``load_engine``); an experiment may override any field.
Pure: no SimPy, no I/O here (loading lives in ``llmsim.engines.catalog``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from llmsim.errors import ConfigError

GRAPH_MODES = ("none", "piecewise", "full_and_piecewise", "full_decode_only")
CAPTURE_RULES = ("v1", "v1_step8", "v0")
USAGE_CONTEXTS = ("server", "offline")
LAUNCH_NONE, LAUNCH_PIECEWISE, LAUNCH_FULL = "eager", "piecewise", "full"


def _non_negative(where: str, value: float) -> float:
    if isinstance(value, str):  # YAML 1.1 reads 1e-05 (no dot) as a string: accept numeric strings
        with contextlib.suppress(ValueError):
            value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or value == float("inf"):
        raise ConfigError(f"{where}: must be a finite number >= 0, got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class CpuCosts:
    """Host-side seconds per engine step: scheduling, input preparation, sampling bookkeeping and output
    processing, ``step_s + per_seq_s * sequences + per_token_s * tokens``."""

    step_s: float = 0.0
    per_seq_s: float = 0.0
    per_token_s: float = 0.0

    def __post_init__(self) -> None:
        for name in ("step_s", "per_seq_s", "per_token_s"):
            object.__setattr__(self, name, _non_negative(f"cpu.{name}", getattr(self, name)))

    def seconds(self, num_seqs: int, num_tokens: int) -> float:
        return self.step_s + self.per_seq_s * num_seqs + self.per_token_s * num_tokens


@dataclass(frozen=True, slots=True)
class FrontendCosts:
    """Client-side latency outside the engine loop: ``request_s`` from the client sending a request to the
    engine seeing it (HTTP, tokenisation, validation, IPC to the engine core); ``token_s`` from the engine
    emitting a token to the client receiving it (IPC back, detokenisation, server-sent event). TTFT and E2E
    include both; inter-token gaps do not change."""

    request_s: float = 0.0
    token_s: float = 0.0

    def __post_init__(self) -> None:
        for name in ("request_s", "token_s"):
            object.__setattr__(self, name, _non_negative(f"frontend.{name}", getattr(self, name)))


@dataclass(frozen=True, slots=True)
class CudaGraphs:
    """CUDA-graph use. ``mode``: ``none`` (every step eager), ``piecewise`` (steps up to the largest capture
    size replay the graph pieces between attention calls; attention runs eagerly), ``full_and_piecewise``
    (pure-decode steps replay one full graph, other steps piecewise), ``full_decode_only`` (full graphs for
    pure decode, other steps eager). ``max_capture_size``: the largest captured size (0 = the engine's rule,
    ``min(2 * max_num_seqs, 512, max_num_batched_tokens)`` for v1); ``sizes``: the engine's size list
    (``v1``: 1, 2, 4, 8..248 by 8, 256.. by 16 (vLLM 0.12+); ``v1_step8``: 1, 2, 4, then by 8 (vLLM
    0.9-0.11); ``v0``: 1, 2, 4, 8..256 by 8, pure decode only)."""

    mode: str = "none"
    max_capture_size: int = 0
    sizes: str = "v1"

    def __post_init__(self) -> None:
        if self.mode not in GRAPH_MODES:
            raise ConfigError(f"cuda_graphs.mode: must be one of {', '.join(GRAPH_MODES)}, got {self.mode!r}")
        if self.sizes not in CAPTURE_RULES:
            raise ConfigError(f"cuda_graphs.sizes: must be one of {', '.join(CAPTURE_RULES)}, got {self.sizes!r}")
        if isinstance(self.max_capture_size, bool) or not isinstance(self.max_capture_size, int) \
                or self.max_capture_size < 0:
            raise ConfigError(f"cuda_graphs.max_capture_size: must be an integer >= 0, got {self.max_capture_size!r}")


@dataclass(frozen=True, slots=True)
class BatchDefaults:
    """The engine's scheduler limits when the user sets none: ``large`` applies to GPUs with at least
    ``large_gpu_min_hbm_gib`` of memory whose name contains none of ``large_gpu_excludes``, ``other`` to the
    rest; each maps a usage context (``server`` = the OpenAI-compatible server, ``offline`` = the Python
    ``LLM`` class) to ``(max_num_batched_tokens, max_num_seqs)``."""

    large: Mapping[str, tuple[int, int]]
    other: Mapping[str, tuple[int, int]]
    large_gpu_min_hbm_gib: float = 70.0
    large_gpu_excludes: tuple[str, ...] = ()

    def pick(self, hbm_bytes: float, gpu_name: str, usage_context: str) -> tuple[int, int]:
        large = hbm_bytes >= self.large_gpu_min_hbm_gib * (1 << 30) and not any(
            x in gpu_name.lower() for x in self.large_gpu_excludes)
        table = self.large if large else self.other
        if usage_context not in table:
            raise ConfigError(f"usage_context: must be one of {', '.join(sorted(table))}, got {usage_context!r}")
        return table[usage_context]


@dataclass(frozen=True, slots=True)
class EngineProfile:
    """One engine version. ``scheduler`` is the policy block it runs (``{kind: vllm, mode: v1}``);
    ``options`` are scheduler and cache options it sets by default (block size, chunked prefill, prefix
    caching, ``gpu_memory_utilization``, ``long_prefill_token_threshold``); ``batch_defaults`` (or None: the
    scheduler's own defaults) gives ``max_num_batched_tokens`` / ``max_num_seqs`` by GPU."""

    name: str
    description: str
    family: str
    version: str
    scheduler: Mapping[str, Any]
    usage_context: str = "server"
    batch_defaults: BatchDefaults | None = None
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    async_scheduling: bool = False
    cuda_graphs: CudaGraphs = field(default_factory=CudaGraphs)
    cpu: CpuCosts | None = None  # None: the hardware profile's legacy ``overheads`` (generic engine)
    frontend: FrontendCosts = field(default_factory=FrontendCosts)
    sources: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    fitted_on: str = ""

    def __post_init__(self) -> None:
        if self.usage_context not in USAGE_CONTEXTS:
            raise ConfigError(f"{self.name}: usage_context: must be one of {', '.join(USAGE_CONTEXTS)}, "
                              f"got {self.usage_context!r}")
        if not isinstance(self.async_scheduling, bool):
            raise ConfigError(f"{self.name}: async_scheduling: must be true or false")

    def launch_mode(self, num_tokens: int, pure_decode: bool, max_capture: int) -> str:
        """How a step of ``num_tokens`` (padded) tokens runs: ``full`` graph replay, ``piecewise``
        (attention eager) or ``eager`` (vLLM ``CudagraphDispatcher.dispatch``, v0.15.1)."""
        mode = self.cuda_graphs.mode
        if mode == "none" or num_tokens > max_capture:
            return LAUNCH_NONE
        if pure_decode and mode in ("full_and_piecewise", "full_decode_only"):
            return LAUNCH_FULL
        if mode in ("piecewise", "full_and_piecewise"):
            return LAUNCH_PIECEWISE
        return LAUNCH_NONE


def capture_sizes(rule: str, max_size: int) -> list[int]:
    """The captured sizes up to ``max_size``: v1 ``VllmConfig._set_cudagraph_sizes`` (vllm/config/vllm.py,
    v0.15.1): 1, 2, 4, multiples of 8 below 256, multiples of 16 from 256; v1_step8 (vllm/config/__init__.py
    ``_set_cudagraph_sizes``, v0.10.2 and v0.11.0): 1, 2, 4, multiples of 8; v0 ``_BATCH_SIZES_TO_CAPTURE``
    (vllm/worker/model_runner.py, v0.6): 1, 2, 4, multiples of 8 to 256."""
    if max_size < 1:
        return []
    if rule == "v0":
        return [s for s in [1, 2, 4, *range(8, 257, 8)] if s <= max_size]
    if rule == "v1_step8":
        return [s for s in [1, 2, 4, *range(8, max_size + 1, 8)] if s <= max_size]
    sizes = [s for s in (1, 2, 4) if s <= max_size]
    if max_size >= 8:
        sizes += list(range(8, min(max_size + 1, 256), 8))
    if max_size >= 256:
        sizes += list(range(256, max_size + 1, 16))
    return sizes
