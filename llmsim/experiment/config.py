"""Experiment YAML schema and validation.

An experiment names a model, hardware, layout, precision, engine policy, KV manager, workload, SLOs, a
stopping rule and seeds; ``sweep:`` varies any field. Unknown keys are errors. Every error names the file,
the field path and what was expected: ``experiments/x.yaml: scheduler.max_num_seqs: must be a positive
integer, got -4``. Pluggable blocks (``scheduler``, ``kv``, workload parts) are checked by their registries
when the point is built, with the same message format.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from llmsim.errors import ConfigError
from llmsim.experiment.cluster_config import ClusterConfig
from llmsim.yamlio import load_yaml


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class LayoutConfig(_Strict):
    """``tp`` x ``pp`` GPUs per replica, ``replicas`` independent replicas (data parallelism); ``ep``: MoE
    experts spread over ``ep`` groups of the tp GPUs (``ep`` divides tp and the expert count), with tokens
    reaching them by the TP all-reduce (``ep_comm: allreduce``, vLLM with one DP rank) or by all-to-all
    dispatch and combine (``alltoall``, DeepEP); see ``llmsim.specs.layout``."""

    tp: int = Field(1, ge=1)
    pp: int = Field(1, ge=1)
    replicas: int = Field(1, ge=1)
    ep: int = Field(1, ge=1)
    ep_comm: Literal["allreduce", "alltoall"] = "allreduce"

    @model_validator(mode="after")
    def _ep_divides_tp(self) -> LayoutConfig:
        if self.ep > 1 and self.tp % self.ep:
            raise ValueError(f"ep: must divide tp={self.tp} (experts spread over groups of the tp GPUs), "
                             f"got {self.ep}")
        return self


class MoEConfig(_Strict):
    """Expert load: ``skew`` (the busiest EP GPU's load over its uniform share, >= 1) or ``popularity`` (the
    measured fraction of routed pairs per expert, summing to 1), and an optional ``capacity_factor``
    (tokens above it are dropped, as GShard). See ``llmsim.specs.moe``."""

    skew: float = 1.0
    popularity: list[float] | None = None
    capacity_factor: float | None = None

    @model_validator(mode="after")
    def _routing(self) -> MoEConfig:
        self.routing()
        return self

    def routing(self):
        from llmsim.specs.moe import MoERouting

        try:
            return MoERouting(self.skew, None if self.popularity is None else tuple(self.popularity),
                              self.capacity_factor)
        except ConfigError as exc:
            raise ValueError(str(exc).removeprefix("moe.")) from None


class MemoryConfig(_Strict):
    """How the engine sizes its KV cache (vLLM's ``gpu_memory_utilization``)."""

    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    reserved_bytes: float | None = Field(None, ge=0)


class SLOConfig(_Strict):
    """Per-request latency targets (seconds; null = no target) and the fraction of requests that must meet
    them all (``attainment``); ``percentiles``: targets on percentiles of the run, keyed
    ``<ttft|tpot|itl|e2e>_p<q>_s`` (``itl_p99_s: 0.1``: p99 inter-token latency at most 100 ms). Goodput
    is the highest request rate at which all of them hold."""

    ttft_s: float | None = Field(None, gt=0)
    tpot_s: float | None = Field(None, gt=0)
    e2e_s: float | None = Field(None, gt=0)
    attainment: float = Field(0.9, gt=0, le=1)
    percentiles: dict[str, float] = Field(default_factory=dict)

    @field_validator("percentiles")
    @classmethod
    def _percentile_keys(cls, v: dict[str, float]) -> dict[str, float]:
        from llmsim.metrics.slo import percentile_key

        for key, target in v.items():
            if percentile_key(key) is None:
                raise ValueError(f"{key}: expected <ttft|tpot|itl|e2e>_p<percentile>_s, e.g. itl_p99_s")
            if not isinstance(target, int | float) or isinstance(target, bool) or not target > 0:
                raise ValueError(f"{key}: must be a positive number of seconds, got {target!r}")
        return v


class StopConfig(_Strict):
    """Run until ``num_requests`` have arrived or ``duration_s`` of simulated time, whichever first;
    the first ``warmup_requests`` arrivals and those before ``warmup_s``, and the last ``cooldown_requests``
    arrivals and those within ``cooldown_s`` of the last one, are marked in the requests table and left
    out of summaries (all in arrival order)."""

    num_requests: int | None = Field(1000, ge=1)
    duration_s: float | None = Field(None, gt=0)
    warmup_requests: int = Field(0, ge=0)
    warmup_s: float = Field(0.0, ge=0)
    cooldown_requests: int = Field(0, ge=0)
    cooldown_s: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _bounded(self) -> StopConfig:
        if self.num_requests is None and self.duration_s is None:
            raise ValueError("give num_requests or duration_s")
        trimmed = self.warmup_requests + self.cooldown_requests
        if self.num_requests is not None and trimmed >= self.num_requests and not self.cooldown_requests:
            raise ValueError(f"warmup_requests: {self.warmup_requests} leaves none of the {self.num_requests} "
                             "requests to summarise; it must be less than num_requests")
        if self.num_requests is not None and trimmed >= self.num_requests:
            raise ValueError(f"warmup_requests + cooldown_requests ({trimmed}) must be less than num_requests "
                             f"({self.num_requests}): none would be left to summarise")
        if self.duration_s is not None and self.warmup_s >= self.duration_s:
            raise ValueError(f"warmup_s: {self.warmup_s} leaves none of the {self.duration_s} s run to "
                             "summarise; it must be less than duration_s")
        return self


class SweepConfig(_Strict):
    """``grid``: every combination of the listed values; ``zip``: lists walked together (equal lengths).
    Keys are dotted field paths (``workload.arrival.rate_per_s``, ``scheduler.kind``, ``layout.tp``)."""

    grid: dict[str, list[Any]] = Field(default_factory=dict)
    zip: dict[str, list[Any]] = Field(default_factory=dict)

    @field_validator("grid", "zip")
    @classmethod
    def _non_empty(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in v.items():
            if not values:
                raise ValueError(f"{key}: needs at least one value")
        return v

    @model_validator(mode="after")
    def _zip_lengths(self) -> SweepConfig:
        lengths = {len(v) for v in self.zip.values()}
        if len(lengths) > 1:
            raise ValueError(f"zip lists must have equal lengths, got {sorted(lengths)}")
        overlap = set(self.grid) & set(self.zip)
        if overlap:
            raise ValueError(f"{', '.join(sorted(overlap))}: in both grid and zip")
        return self


class SamplingConfig(_Strict):
    """Parallel sampling: every request asks for ``n`` outputs (vLLM ``SamplingParams.n``), decoded as ``n``
    sequences that share the prompt's KV blocks (``share_prompt``; false: naive copies, each computing and
    holding its own prompt) and finish when all have. ``beam_width`` w > 1: beam search as vLLM v1 runs it,
    one single-token request per beam and step (``llmsim.workload.beam``)."""

    n: int = Field(1, ge=1)
    share_prompt: bool = True
    beam_width: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _one_kind(self) -> SamplingConfig:
        if self.n > 1 and self.beam_width > 1:
            raise ValueError("beam_width: give n (parallel sampling) or beam_width (beam search), not both")
        return self


class CostConfig(_Strict):
    """Overrides of the hardware profiles' cost and power figures (``llmsim.cost.energy``):
    ``price_per_gpu_hour_usd`` and ``power_cap_w`` (a board power limit per GPU, as ``nvidia-smi -pl``),
    each one number for every pool or a mapping from hardware name to number."""

    price_per_gpu_hour_usd: float | dict[str, float] | None = None
    power_cap_w: float | dict[str, float] | None = None

    @field_validator("price_per_gpu_hour_usd", "power_cap_w")
    @classmethod
    def _non_negative(cls, v: float | dict[str, float] | None) -> float | dict[str, float] | None:
        for key, value in (v.items() if isinstance(v, dict) else [("", v)] if v is not None else []):
            if isinstance(value, bool) or not value >= 0:
                raise ValueError(f"{key + ': ' if key else ''}must be a number >= 0, got {value!r}")
        return v

    def for_hardware(self, field: str, name: str) -> float | None:
        v = getattr(self, field)
        return v.get(name) if isinstance(v, dict) else v


class OutputConfig(_Strict):
    """What each point writes to the results directory besides its ``summary.json``: ``requests`` (one row
    per request) is always written; ``steps: false`` leaves out the table of one row per simulated step (a
    million-request run has some six million), and the timeline plot with it. The summary is the same
    either way: its step figures (KV use, MFU, energy, ...) come from the run's own step records, dropped
    once the summary is made."""

    steps: bool = True


class ExperimentConfig(_Strict):
    """One experiment: a base configuration plus an optional sweep. See ``llmsim schema``."""

    name: str = "experiment"
    description: str = ""
    model: str
    hardware: str
    layout: LayoutConfig = Field(default_factory=LayoutConfig)
    moe: MoEConfig = Field(default_factory=MoEConfig)
    lora: dict[str, Any] | None = None  # multi-LoRA adapters (llmsim.lora.adapters.lora_from_dict)
    precision: str = "bf16"
    kv_dtype: str | None = None
    engine: str | dict[str, Any] | None = None
    max_model_len: int | None = Field(None, ge=1)
    scheduler: dict[str, Any] = Field(default_factory=lambda: {"kind": "vllm"})
    kv: dict[str, Any] | None = None
    memory: MemoryConfig = Field(default_factory=MemoryConfig)
    workload: str | dict[str, Any]
    slo: SLOConfig = Field(default_factory=SLOConfig)
    stop: StopConfig = Field(default_factory=StopConfig)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    frontend_overhead_s: float = Field(0.0, ge=0)
    router: dict[str, Any] | None = None
    cluster: ClusterConfig | None = None
    speculative: dict[str, Any] | None = None
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    cost: CostConfig = Field(default_factory=CostConfig)
    sweep: SweepConfig = Field(default_factory=SweepConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)

    @field_validator("scheduler", "kv", "router")
    @classmethod
    def _has_kind(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is not None and "kind" not in v:
            raise ValueError("expected a mapping with a 'kind' key")
        return v

    @model_validator(mode="after")
    def _cluster_or_replicas(self) -> ExperimentConfig:
        if self.cluster is None:
            return self
        if self.layout.replicas != 1:
            raise ValueError("layout.replicas: with cluster:, give replicas per pool (cluster.pools.NAME.replicas)")
        if self.router is not None and self.cluster.router is not None:
            raise ValueError("router: give it once, at the top level or as cluster.router")
        return self

    @field_validator("engine")
    @classmethod
    def _engine_named(cls, v: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
        if isinstance(v, dict) and "name" not in v:
            raise ValueError("expected an engine name or a mapping with 'name' and overrides")
        return v


def _format_loc(loc: tuple) -> str:
    parts = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item not in ("function-after", "function-before") and not str(item).startswith(("str", "dict[")):
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "(top level)"


def _explain(err: dict) -> str:
    kind, got = err["type"], err.get("input")
    msg = err["msg"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required field is missing"
    if kind in ("greater_than_equal", "greater_than") and err.get("ctx", {}).get("ge") == 1:
        msg = "must be a positive integer"
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    msg = msg[0].lower() + msg[1:]
    return f"{msg}, got {got!r}" if got is not None and not isinstance(got, Mapping) else msg


def _located(err: dict) -> str:
    """``loc: message``; a model check's message that starts with its field (``warmup_requests: ...``) moves
    the field into the path (``stop.warmup_requests: ...``)."""
    loc, text = _format_loc(err["loc"]), _explain(err)
    head = re.match(r"([a-z_]+(?:\.[\w-]+)*): ", text)
    if err["type"] == "value_error" and head:
        loc = head[1] if loc == "(top level)" else f"{loc}.{head[1]}"
        text = text[head.end():]
    return f"{loc}: {text}"


def parse_config(data: Any, where: str) -> ExperimentConfig:
    """Validate a mapping; raise ConfigError naming ``where`` and the first bad field's path."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a YAML mapping at the top level")
    try:
        return ExperimentConfig.model_validate(dict(data))
    except ValidationError as exc:
        errors = exc.errors()
        lines = [f"{where}: {_located(e)}" for e in errors[:5]]
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        raise ConfigError("; ".join(lines) + more) from None


def load_config(path: str | Path, overrides: tuple[str, ...] = ()) -> tuple[ExperimentConfig, Path]:
    """Read and validate an experiment YAML, with ``--set KEY=VALUE`` ``overrides`` applied (see
    ``llmsim.experiment.overrides``); returns the config and the file's folder (for relative paths)."""
    path = Path(path)
    data = load_yaml(path, "experiment")
    if overrides:
        from llmsim.experiment.overrides import apply_overrides

        data = apply_overrides(data, overrides, str(path))
    return parse_config(data, str(path)), path.parent


def json_schema() -> dict:
    """JSON schema of the experiment YAML (for editors)."""
    return ExperimentConfig.model_json_schema()
