"""What a cluster is, resolved once from the validated config: pools of identical replicas (each pool one
``Deployment``: hardware, layout, precision, engine profile, scheduler and KV blocks), the links that carry
KV between pools, the router(s), the transfer mode and optional live migration.

``ClusterSpec.single(...)`` is the one-pool cluster that ``simulate(...)`` runs; ``pool_spec(...)`` builds a
pool from specs and config blocks. Plain data: no SimPy here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from llmsim.errors import ConfigError
from llmsim.sim.setup import Deployment, deployment
from llmsim.specs import ParallelLayout

ROLES = ("mixed", "prefill", "decode")
TRANSFER_MODES = ("whole", "layerwise")
FIRST_TOKEN = ("prefill", "decode")
LINK_KINDS = ("nvlink", "infiniband", "roce", "pcie", "interconnect")
PROFILE_LINKS = ("intra_node", "inter_node", "host")


@dataclass(frozen=True)
class PoolSpec:
    """``replicas`` identical replicas in one ``role``: ``mixed`` (prefill and decode, as one engine does),
    ``prefill`` (prompts only; the KV then moves to a decode replica) or ``decode``."""

    name: str
    role: str
    deployment: Deployment

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ConfigError(f"pool {self.name}: role: expected one of {', '.join(ROLES)}, got {self.role!r}")

    @property
    def replicas(self) -> int:
        return self.deployment.layout.dp

    @property
    def gpus_per_replica(self) -> int:
        return self.deployment.layout.tp * self.deployment.layout.pp


@dataclass(frozen=True)
class LinkSpec:
    """A path between two pools (the same pool twice for migration inside it): ``bytes_per_s`` per GPU and
    direction (a replica of g GPUs sends and receives at g times that, one NIC or NVLink port per GPU, as
    DGX boards have), ``latency_s`` per transfer. ``shared``: one port for the whole link instead (every
    transfer on it queues behind the others, e.g. one PCIe switch or uplink)."""

    name: str
    pools: tuple[str, str]
    bytes_per_s: float
    latency_s: float
    shared: bool = False

    def __post_init__(self) -> None:
        if not (self.bytes_per_s > 0 and self.bytes_per_s < float("inf")):
            raise ConfigError(f"links.{self.name}.bytes_per_s: must be a finite number > 0, got {self.bytes_per_s!r}")
        if not (self.latency_s >= 0 and self.latency_s < float("inf")):
            raise ConfigError(f"links.{self.name}.latency_s: must be a finite number >= 0, got {self.latency_s!r}")

    def joins(self, a: str, b: str) -> bool:
        return self.pools in ((a, b), (b, a))


@dataclass(frozen=True)
class ClusterSpec:
    """Pools, links, routing and migration. ``router`` picks the replica (mixed or prefill) for each arriving
    request; ``decode_router`` picks the decode replica after a prefill. ``transfer``: ``whole`` (the cache
    moves after the prefill ends) or ``layerwise`` (each layer's KV leaves as soon as it is computed,
    overlapping the prefill step: DistServe, Splitwise). ``first_token``: ``prefill`` (the prefill replica
    streams the first token, as DistServe and Splitwise do) or ``decode`` (the decode replica recomputes
    the last prompt token and samples the first output after the KV arrives, as vLLM's disaggregated
    prefill connectors do). ``migration``: ``{kind: llumnix, ...}`` or None."""

    pools: tuple[PoolSpec, ...]
    links: tuple[LinkSpec, ...] = ()
    router: Any = None
    decode_router: Any = None
    transfer: str = "whole"
    first_token: str = "prefill"
    migration: Mapping[str, Any] | None = None
    frontend_overhead_s: float = 0.0
    info: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_pools(self.pools)
        if self.transfer not in TRANSFER_MODES:
            raise ConfigError(f"transfer: expected one of {', '.join(TRANSFER_MODES)}, got {self.transfer!r}")
        if self.first_token not in FIRST_TOKEN:
            raise ConfigError(f"first_token: expected one of {', '.join(FIRST_TOKEN)}, got {self.first_token!r}")
        names = [p.name for p in self.pools]
        for link in self.links:
            for end in link.pools:
                if end not in names:
                    raise ConfigError(f"links.{link.name}.between: no pool named {end!r} (pools: {', '.join(names)})")

    @classmethod
    def single(cls, dep: Deployment, router: Any = None, frontend_overhead_s: float = 0.0) -> ClusterSpec:
        """The one-pool cluster of ``dep.layout.dp`` mixed replicas (what ``simulate(...)`` runs)."""
        return cls((PoolSpec("default", "mixed", dep),), router=router, frontend_overhead_s=frontend_overhead_s)

    @property
    def is_single(self) -> bool:
        return len(self.pools) == 1

    def pool(self, name: str) -> PoolSpec:
        for p in self.pools:
            if p.name == name:
                return p
        raise ConfigError(f"no pool named {name!r} (pools: {', '.join(p.name for p in self.pools)})")

    def link(self, a: str, b: str) -> LinkSpec:
        """The declared link between pools ``a`` and ``b``, else the sender's hardware default: its NVLink
        for a pool to itself on one node (tp x pp x replicas <= GPUs per node), else its inter-node
        network (a pool's replicas, or two pools, on different machines)."""
        for link in self.links:
            if link.joins(a, b):
                return link
        src = self.pool(a)
        hw = src.deployment.hardware
        same_node = a == b and src.gpus_per_replica * src.replicas <= hw.gpus_per_node
        base = hw.intra_node if same_node else hw.inter_node
        return LinkSpec(f"{a}-{b}", (a, b), base.bytes_per_s, base.latency_s)

    @property
    def num_gpus(self) -> int:
        return sum(p.replicas * p.gpus_per_replica for p in self.pools)


def _check_pools(pools: Sequence[PoolSpec]) -> None:
    if not pools:
        raise ConfigError("cluster.pools: expected at least one pool")
    names = [p.name for p in pools]
    if len(set(names)) != len(names):
        raise ConfigError(f"cluster.pools: pool names must be unique, got {names}")
    roles = {p.role for p in pools}
    if "decode" in roles and "prefill" not in roles:
        raise ConfigError("cluster.pools: a decode pool needs a prefill pool to send it work")
    if "prefill" in roles and "decode" not in roles:
        raise ConfigError("cluster.pools: a prefill pool needs a decode pool to hand its requests to")
    models = {p.deployment.model.name for p in pools}
    if len(models) > 1:
        raise ConfigError(f"cluster.pools: every pool serves the same model, got {sorted(models)}")


def pool_spec(name: str, role: str, replicas: int, *, model, hardware, tp: int = 1, pp: int = 1, precision=None,
              scheduler: Mapping[str, Any] | None = None, kv: Mapping[str, Any] | None = None,
              max_model_len: int | None = None, engine: Any = None, cost_model=None) -> PoolSpec:
    """A pool from specs (or names) and config blocks, resolved like ``simulate``'s single deployment."""
    layout = ParallelLayout(tp=tp, pp=pp, dp=replicas)
    dep = deployment(model, hardware, layout, precision, scheduler, kv, max_model_len, cost_model, engine)
    return PoolSpec(name, role, dep)


def named_link(name: str, pools: tuple[str, str], kind: str, hardware, *, gbps: float | None = None,
               bytes_per_s: float | None = None, latency_s: float | None = None,
               interconnect: str | None = None, shared: bool = False) -> LinkSpec:
    """A link by kind: ``nvlink`` (the hardware's intra-node link), ``pcie`` (its host link), ``infiniband``
    / ``roce`` (``gbps`` per GPU NIC, else the hardware's inter-node link), ``interconnect`` (a profile link
    named ``intra_node`` / ``inter_node`` / ``host`` or by its own name, e.g. ``nvlink4``). ``bytes_per_s``
    and ``latency_s`` override."""
    if kind not in LINK_KINDS:
        raise ConfigError(f"links.{name}.kind: expected one of {', '.join(LINK_KINDS)}, got {kind!r}")
    base = {"nvlink": hardware.intra_node, "pcie": hardware.host_link}.get(kind, hardware.inter_node)
    if kind == "interconnect":
        base = _profile_link(name, hardware, interconnect)
    elif interconnect is not None:
        raise ConfigError(f"links.{name}.interconnect: only with kind: interconnect")
    rate = base.bytes_per_s
    if gbps is not None:
        if kind not in ("infiniband", "roce"):
            raise ConfigError(f"links.{name}.gbps: only for kind infiniband or roce (use bytes_per_s)")
        rate = float(gbps) * 1e9 / 8
    if bytes_per_s is not None:
        rate = float(bytes_per_s)
    return LinkSpec(name, pools, rate, base.latency_s if latency_s is None else float(latency_s), shared)


def _profile_link(name: str, hardware, which: str | None):
    links = {"intra_node": hardware.intra_node, "inter_node": hardware.inter_node, "host": hardware.host_link}
    if which in links:
        return links[which]
    for link in links.values():
        if which and link.name == which:
            return link
    known = ", ".join([*links, *(f"{v.name}" for v in links.values() if v.name)])
    raise ConfigError(f"links.{name}.interconnect: hardware {hardware.name} has no link {which!r} (one of {known})")


def with_info(spec: ClusterSpec, **info: Any) -> ClusterSpec:
    return replace(spec, info={**spec.info, **info})
