"""The search spec YAML (``llmsim search SPEC.yaml``): models and their traffic, SLOs, the GPUs on offer,
the objective and the knobs to explore. Validated like experiments: unknown keys are errors, and every
error names the file, the field and what was expected (exit 2).

```yaml
name: llama70b_chat
models:                       # one or more; several models share the GPUs (AlpaServe-style placement)
  - {name: chat, model: llama-3.1-70b, workload: chat, rate_per_s: 8}
slo: {ttft_s: 2.0, tpot_s: 0.1, percentiles: {itl_p99_s: 0.3}, attainment: 0.9}
gpus:                         # types on offer: how many (omit count: only the budget limits) and price
  h100-sxm-calibrated: {count: 16}
  a100-sxm-80gb-calibrated: {count: 16, price_per_gpu_hour_usd: 1.5}
budget_usd_per_hour: 40
objective: goodput_per_usd    # goodput_per_usd | goodput_per_gpu | goodput_per_watt | goodput | min_cost
knobs: {tp: [2, 4, 8], modes: [colocated, disaggregated], max_num_batched_tokens: [2048, 8192],
        max_num_seqs: [256], precision: [bf16], kv_dtype: [null], engine: [vllm-0.15]}
verify: {top_k: 3, num_requests: 600, warmup_requests: 60, seeds: [0], rel_tol: 0.1}
```

Every allocation must serve each model at its ``rate_per_s`` (per the capacity estimate); the ratio
objectives then rank the allocations that do, ``goodput`` maximises the common scale of all rates within
the GPUs and budget, ``min_cost`` minimises $/h.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from llmsim.errors import ConfigError
from llmsim.experiment.config import SLOConfig
from llmsim.yamlio import load_yaml

OBJECTIVES = ("goodput_per_usd", "goodput_per_gpu", "goodput_per_watt", "goodput", "min_cost")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ModelEntry(_Strict):
    """One served model: a label (``name``), the model spec, its workload (a name under workloads/ or an
    inline block) and the target request rate; ``slo`` overrides the spec's SLO for this model."""

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,30}$")
    model: str
    workload: str | dict[str, Any]
    rate_per_s: float = Field(gt=0)
    slo: SLOConfig | None = None


class GPUEntry(_Strict):
    count: int | None = Field(None, ge=0)
    price_per_gpu_hour_usd: float | None = Field(None, ge=0)


class KnobsConfig(_Strict):
    """The values each knob may take; the screen walks their product for every model and GPU type."""

    tp: list[int] = Field(default_factory=lambda: [1], min_length=1)
    pp: list[int] = Field(default_factory=lambda: [1], min_length=1)
    modes: list[Literal["colocated", "disaggregated"]] = Field(default_factory=lambda: ["colocated"], min_length=1)
    max_num_batched_tokens: list[int] = Field(default_factory=lambda: [8192], min_length=1)
    max_num_seqs: list[int] = Field(default_factory=lambda: [256], min_length=1)
    precision: list[str] = Field(default_factory=lambda: ["bf16"], min_length=1)
    kv_dtype: list[str | None] = Field(default_factory=lambda: [None], min_length=1)
    engine: list[str] = Field(default_factory=lambda: ["vllm-0.15"], min_length=1)

    @field_validator("tp", "pp", "max_num_batched_tokens", "max_num_seqs")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        bad = [x for x in v if isinstance(x, bool) or x < 1]
        if bad:
            raise ValueError(f"expected positive integers, got {bad}")
        return v


class VerifyConfig(_Strict):
    """DES check of the ``top_k`` allocations: goodput by bisection on the rate (``rel_tol``), each trial
    ``num_requests`` long but at least ``min_duration_s`` of arrivals (the same fraction of warm-up, the
    first ``warmup_requests`` of ``num_requests``, left out) over ``seeds``; a trial the load verdict cannot
    judge (inconclusive) is run again with twice the requests, and fails if it still cannot be judged.
    ``refine_rounds``: times the ILP is solved again with the capacities of the configurations verified so
    far scaled to what the DES measured (new allocations only), and its best allocations verified."""

    top_k: int = Field(3, ge=0)
    num_requests: int = Field(600, ge=20)
    warmup_requests: int = Field(60, ge=0)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    min_duration_s: float = Field(30.0, ge=0)
    rel_tol: float = Field(0.1, gt=0, lt=1)
    max_trials: int = Field(14, ge=2)
    refine_rounds: int = Field(1, ge=0)
    pd_link: dict[str, Any] = Field(default_factory=lambda: {"kind": "infiniband", "gbps": 400})

    @model_validator(mode="after")
    def _warmup(self) -> VerifyConfig:
        if self.warmup_requests >= self.num_requests:
            raise ValueError(f"warmup_requests: must be less than num_requests ({self.num_requests})")
        return self


class SearchSpec(_Strict):
    name: str = "search"
    description: str = ""
    models: list[ModelEntry] = Field(min_length=1)
    slo: SLOConfig = Field(default_factory=SLOConfig)
    gpus: dict[str, GPUEntry] = Field(min_length=1)
    budget_usd_per_hour: float | None = Field(None, gt=0)
    objective: Literal[OBJECTIVES] = "goodput_per_usd"
    knobs: KnobsConfig = Field(default_factory=KnobsConfig)
    verify: VerifyConfig = Field(default_factory=VerifyConfig)

    @model_validator(mode="after")
    def _names(self) -> SearchSpec:
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise ValueError(f"models: names must be unique, got {names}")
        if self.budget_usd_per_hour is None and all(g.count is None for g in self.gpus.values()):
            raise ValueError("gpus: give a count for at least one GPU type, or budget_usd_per_hour")
        return self

    def slo_for(self, entry: ModelEntry) -> SLOConfig:
        return entry.slo or self.slo


def parse_spec(data: Any, where: str) -> SearchSpec:
    """Validate a mapping; ConfigError naming ``where`` and the first bad fields' paths."""
    from llmsim.experiment.config import _located

    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a YAML mapping at the top level")
    try:
        return SearchSpec.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        raise ConfigError("; ".join(f"{where}: {_located(e)}" for e in errors[:5])) from None


def load_spec(path: str | Path) -> tuple[SearchSpec, Path]:
    """Read and validate a search spec; returns it and the file's folder (for workload references)."""
    path = Path(path)
    return parse_spec(load_yaml(path, "search spec"), str(path)), path.parent
