"""The experiment YAML's ``cluster:`` block: pools (by name), links between them, routers, KV transfer mode and
live migration. Without it an experiment is one pool of ``layout.replicas`` mixed replicas.

```yaml
cluster:
  pools:
    prefill: {role: prefill, replicas: 2, hardware: h100-sxm, layout: {tp: 1}}
    decode:  {role: decode,  replicas: 2, hardware: a100-sxm-80gb, scheduler: {max_num_seqs: 512}}
  links:
    pd: {between: [prefill, decode], kind: infiniband, gbps: 400}
  router: {kind: least_outstanding}          # which prefill (or mixed) replica
  decode_router: {kind: least_kv}            # which decode replica after the prefill
  transfer: layerwise                        # or whole
  first_token: prefill                       # or decode (vLLM P/D: TTFT includes the transfer)
  migration: {kind: llumnix, threshold: 0.3} # mixed and decode pools
```

A pool's fields default to the experiment's top-level ones (``hardware``, ``layout``, ``precision``,
``kv_dtype``, ``engine``, ``max_model_len``, ``scheduler``, ``kv``, ``memory``); a pool's ``scheduler`` or
``kv`` block without a ``kind`` (or with the same kind) is merged over the top-level block, one with
another kind replaces it. Pools are a mapping so that sweeps reach into them:
``cluster.pools.decode.replicas: [1, 2, 3]``.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

POOL_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,39}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PoolLayoutConfig(_Strict):
    """GPUs of one replica of the pool (``replicas`` is the pool's own field); ``ep`` / ``ep_comm`` as the
    top-level ``layout``."""

    tp: int = Field(1, ge=1)
    pp: int = Field(1, ge=1)
    ep: int = Field(1, ge=1)
    ep_comm: Literal["allreduce", "alltoall"] = "allreduce"


class PoolMemoryConfig(_Strict):
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)


class PoolConfig(_Strict):
    """One pool: ``role`` (``mixed``, ``prefill``, ``decode``), ``replicas``, and what each replica runs."""

    role: Literal["mixed", "prefill", "decode"] = "mixed"
    replicas: int = Field(1, ge=1)
    hardware: str | None = None
    layout: PoolLayoutConfig | None = None
    precision: str | None = None
    kv_dtype: str | None = None
    engine: str | dict[str, Any] | None = None
    max_model_len: int | None = Field(None, ge=1)
    scheduler: dict[str, Any] | None = None
    kv: dict[str, Any] | None = None
    memory: PoolMemoryConfig | None = None

    @field_validator("engine")
    @classmethod
    def _engine_named(cls, v: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
        if isinstance(v, dict) and "name" not in v:
            raise ValueError("expected an engine name or a mapping with 'name' and overrides")
        return v


class LinkConfig(_Strict):
    """A link between two pools (the same pool twice: migration inside it). ``kind``: ``nvlink`` (the
    hardware's intra-node link), ``infiniband`` / ``roce`` (``gbps`` per GPU NIC; default the hardware's
    inter-node link), ``pcie`` (its host link), ``interconnect`` (a profile link: ``interconnect:
    inter_node``). ``bytes_per_s`` (per GPU, each way) and ``latency_s`` override; ``shared``: one port
    for all transfers on the link instead of one per replica."""

    between: tuple[str, str]
    kind: Literal["nvlink", "infiniband", "roce", "pcie", "interconnect"] = "infiniband"
    gbps: float | None = Field(None, gt=0, allow_inf_nan=False)
    bytes_per_s: float | None = Field(None, gt=0, allow_inf_nan=False)
    latency_s: float | None = Field(None, ge=0, allow_inf_nan=False)
    interconnect: str | None = None
    shared: bool = False

    @model_validator(mode="after")
    def _kind_fields(self) -> LinkConfig:
        if self.gbps is not None and self.kind not in ("infiniband", "roce"):
            raise ValueError(f"gbps: only for kind infiniband or roce, not {self.kind} (use bytes_per_s)")
        if (self.interconnect is None) != (self.kind != "interconnect"):
            raise ValueError("interconnect: give it with kind: interconnect (and only then), e.g. inter_node")
        return self


def _has_kind(name: str, v: dict[str, Any] | None) -> dict[str, Any] | None:
    if v is not None and "kind" not in v:
        raise ValueError(f"{name}: expected a mapping with a 'kind' key")
    return v


class ClusterConfig(_Strict):
    """Pools, links, routers, transfer mode and migration (see the module docstring)."""

    pools: dict[str, PoolConfig] = Field(min_length=1)
    links: dict[str, LinkConfig] = Field(default_factory=dict)
    router: dict[str, Any] | None = None
    decode_router: dict[str, Any] | None = None
    transfer: Literal["whole", "layerwise"] = "whole"
    first_token: Literal["prefill", "decode"] = "prefill"
    migration: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ClusterConfig:
        for name in self.pools:
            if not POOL_NAME.match(name):
                raise ValueError(f"pools: pool name {name!r} must start with a letter and hold only letters, "
                                 "digits, _ and - (at most 40)")
        for key, block in (("router", self.router), ("decode_router", self.decode_router),
                           ("migration", self.migration)):
            _has_kind(key, block)
        roles = {p.role for p in self.pools.values()}
        if "decode" in roles and "prefill" not in roles:
            raise ValueError("pools: a decode pool needs a prefill pool to send it requests")
        if "prefill" in roles and "decode" not in roles:
            raise ValueError("pools: a prefill pool needs a decode pool to hand its requests to")
        if self.decode_router is not None and "decode" not in roles:
            raise ValueError("decode_router: only with prefill and decode pools")
        for name, link in self.links.items():
            for end in link.between:
                if end not in self.pools:
                    raise ValueError(f"links.{name}.between: no pool named {end!r} (pools: "
                                     f"{', '.join(self.pools)})")
        return self
