"""From a validated experiment config to the ``ClusterSpec`` the simulator runs, built once per point; with
``check=True`` (the preflight) every block is also built as the simulator will build it, so each mistake is
one line naming the file and the field (``cluster.pools.decode.layout.tp: ...``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from llmsim.errors import ConfigError, LlmsimError
from llmsim.specs import ParallelLayout, Precision, load_hardware

POOL_KEYS = ("hardware", "precision", "kv_dtype", "engine", "max_model_len")


@dataclass(frozen=True)
class PoolSettings:
    """One pool's fields with the experiment's top-level defaults filled in; ``prefix`` starts the field
    paths of its errors (empty for the single-pool form)."""

    name: str
    role: str
    replicas: int
    prefix: str
    hardware: str
    tp: int
    pp: int
    precision: str
    kv_dtype: str | None
    engine: Any
    max_model_len: int | None
    scheduler: dict[str, Any]
    kv: dict[str, Any] | None
    gpu_memory_utilization: float
    reserved_bytes: float | None = None
    ep: int = 1
    ep_comm: str = "allreduce"
    moe: Any = None  # llmsim.specs.moe.MoERouting (None: uniform routing)
    lora: Any = None  # the experiment's lora: block (a mapping) or None
    cost: Any = None  # the experiment's CostConfig: price and power-cap overrides


def _with_cost(hardware, cost, where: str):
    """The profile with the experiment's ``cost:`` overrides (price per GPU-hour, power cap) applied."""
    from dataclasses import replace

    if cost is None:
        return hardware
    price = cost.for_hardware("price_per_gpu_hour_usd", hardware.name)
    cap = cost.for_hardware("power_cap_w", hardware.name)
    changes = {k: float(v) for k, v in (("price_per_hour_usd", price), ("power_cap_w", cap)) if v is not None}
    if not changes:
        return hardware
    hardware = replace(hardware, **changes)
    if cap is not None:
        from llmsim.cost.energy import power_profile

        at(where, "cost.power_cap_w", power_profile, hardware, hardware.power_cap_w or None)
    return hardware


def _merge(top: Mapping[str, Any] | None, pool: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A pool's block over the top-level one: merged unless it names another kind."""
    if pool is None:
        return None if top is None else dict(top)
    if top is None or ("kind" in pool and pool["kind"] != top.get("kind")):
        return dict(pool)
    return {**top, **pool}


def pool_settings(cfg) -> list[PoolSettings]:
    """The pools of an experiment: its ``cluster.pools``, or the single pool of ``layout.replicas``."""
    util = cfg.memory.gpu_memory_utilization
    if cfg.cluster is None:
        return [PoolSettings("default", "mixed", cfg.layout.replicas, "", cfg.hardware, cfg.layout.tp, cfg.layout.pp,
                             cfg.precision, cfg.kv_dtype, cfg.engine, cfg.max_model_len, dict(cfg.scheduler),
                             None if cfg.kv is None else dict(cfg.kv), util, cfg.memory.reserved_bytes,
                             cfg.layout.ep, cfg.layout.ep_comm, cfg.moe.routing(), cfg.lora, cfg.cost)]
    out = []
    for name, p in cfg.cluster.pools.items():
        values = {k: getattr(cfg, k) if getattr(p, k) is None else getattr(p, k) for k in POOL_KEYS}
        layout = p.layout or cfg.layout
        out.append(PoolSettings(
            name, p.role, p.replicas, f"cluster.pools.{name}.", values["hardware"], layout.tp, layout.pp,
            values["precision"], values["kv_dtype"], values["engine"], values["max_model_len"],
            _merge(cfg.scheduler, p.scheduler), _merge(cfg.kv, p.kv),
            util if p.memory is None else p.memory.gpu_memory_utilization,
            cfg.memory.reserved_bytes if p.memory is None else p.memory.reserved_bytes,
            layout.ep, layout.ep_comm, cfg.moe.routing(), cfg.lora, cfg.cost))
    return out


def at(where: str, field: str, build, *args, **kwargs):
    """``build(*args)``, its user-facing errors prefixed with the file and the field they concern."""
    try:
        return build(*args, **kwargs)
    except LlmsimError as exc:
        text = str(exc)
        if text.startswith(f"{where}: "):
            raise ConfigError(text) from None
        if text.startswith("moe."):  # "moe.popularity: 4 entries for a model with 8 experts"
            raise ConfigError(f"{where}: {text}") from None
        if field.endswith("layout") and text[:3] in ("tp=", "pp=", "ep="):  # "tp=3 does not divide the 32 heads"
            field = f"{field}.{text[:2]}"
        raise ConfigError(f"{where}: {field}: {text}") from None


def _attended(model, kv, where: str, px: str):
    """The model as the cost model sees it: a windowed KV policy (``llmsim.kv.window``) caps the keys each
    query attends to, as a sliding window does."""
    from dataclasses import replace

    from llmsim.kv.window import kv_token_cap

    try:
        cap = kv_token_cap(dict(kv or {}))
    except ConfigError as exc:
        raise ConfigError(f"{where}: {px}kv: {exc}") from None
    if cap is None or (model.sliding_window and model.sliding_window <= cap):
        return model
    return replace(model, sliding_window=cap, global_attention_every=0, attention_chunk=None)


def _lora(block, model, where: str):
    from llmsim.lora import lora_from_dict

    try:
        spec = lora_from_dict(block)
        spec.module_shapes(model)  # targets the model has
        return spec
    except LlmsimError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _layout(s: PoolSettings) -> ParallelLayout:
    from llmsim.specs.moe import MoERouting

    return ParallelLayout(tp=s.tp, pp=s.pp, dp=s.replicas, ep=s.ep, ep_comm=s.ep_comm, moe=s.moe or MoERouting())


def check_sim_kv(kv: Mapping[str, Any], where: str, prefix: str = "") -> None:
    """The KV keys the simulator reads itself (the rest go to the KV manager, which checks its own)."""
    for key, integer in (("block_size", True), ("num_blocks", True), ("swap_space_gb", False)):
        if key not in kv:
            continue
        v = kv[key]
        ok = not isinstance(v, bool) and (isinstance(v, int) and v >= 1 if integer else
                                          isinstance(v, int | float) and 0 <= v < math.inf)
        if not ok:
            what = "a positive integer" if integer else "a finite number >= 0"
            raise ConfigError(f"{where}: {prefix}kv.{key}: expected {what}, got {v!r}")


def build_pool(s: PoolSettings, model, where: str, check: bool = False):
    """A ``PoolSpec`` from its settings; ``check`` also builds its scheduler and KV manager (preflight)."""
    from llmsim.cost import CostModel
    from llmsim.engines import load_engine
    from llmsim.sim.setup import deployment
    from llmsim.sim.spec import PoolSpec

    px = s.prefix
    hardware = _with_cost(at(where, f"{px}hardware", load_hardware, s.hardware), s.cost, where)
    precision = at(where, f"{px}precision", Precision.parse, s.precision, s.kv_dtype)
    at(where, f"{px}precision", hardware.peak_flops, precision.compute)
    layout = at(where, f"{px}layout", _layout, s)
    cost_model = at(where, f"{px}layout", CostModel, _attended(model, s.kv, where, px), hardware, layout,
                    precision)
    engine = at(where, f"{px}engine", load_engine, s.engine)
    if check:
        _check_blocks(s, engine, hardware, where)
    kv = {**(s.kv or {}), "gpu_memory_utilization": s.gpu_memory_utilization, "reserved_bytes": s.reserved_bytes}
    lora = None if s.lora is None else _lora(s.lora, model, where)
    dep = at(where, f"{px}layout", deployment, model, hardware, layout, precision, dict(s.scheduler), kv,
             s.max_model_len, cost_model, engine, lora)
    if check:
        from llmsim.kv import KV_MANAGERS

        KV_MANAGERS.build(dep.kv_block, where=f"{where}: {px}kv",
                          **{k: v for k, v in dep.kv_defaults.items() if k not in dep.kv_block})
    return PoolSpec(s.name, s.role, dep)


def _check_blocks(s: PoolSettings, engine, hardware, where: str) -> None:
    from llmsim.engines import resolve_engine
    from llmsim.sched import SCHEDULERS
    from llmsim.sim.setup import default_kv_kind

    px = s.prefix
    runtime = at(where, f"{px}scheduler", resolve_engine, engine, hardware, dict(s.scheduler), s.kv,
                 s.max_model_len)
    sched = SCHEDULERS.build(dict(runtime.scheduler_block), where=f"{where}: {px}scheduler")
    if s.role == "decode" and not sched.adoptable:
        raise ConfigError(f"{where}: {px}scheduler: a decode pool needs a scheduler that takes in running "
                          f"requests (vllm, sarathi, orca, sjf, fastserve); {sched.name} does not")
    check_sim_kv({"kind": runtime.kv_kind or default_kv_kind(runtime.scheduler_block), **(s.kv or {})}, where, px)


def build_cluster(cfg, model, where: str, check: bool = False):
    """The point's ``ClusterSpec`` (``check``: preflight, see ``build_pool``); also returns the pool settings."""
    from llmsim.sim.spec import ClusterSpec

    settings = pool_settings(cfg)
    pools = tuple(build_pool(s, model, where, check) for s in settings)
    if cfg.speculative is not None:
        pools = tuple(_speculating(p, s, cfg.speculative, where) for p, s in zip(pools, settings, strict=True))
    cl = cfg.cluster
    router = cfg.router if cl is None or cl.router is None else cl.router
    if check:
        _check_policies(cfg, where, router)
    links = tuple(_link(name, link, pools, where) for name, link in (cl.links.items() if cl else ()))
    extra = {} if cl is None else {"decode_router": cl.decode_router, "transfer": cl.transfer,
                                   "first_token": cl.first_token, "migration": cl.migration}
    try:
        spec = ClusterSpec(pools, links, router=router, frontend_overhead_s=cfg.frontend_overhead_s, **extra)
    except ConfigError as exc:
        raise ConfigError(f"{where}: cluster: {exc}") from None
    return spec, settings


def _speculating(pool, s: PoolSettings, block, where: str):
    """``pool`` with speculative decoding attached (``llmsim.speculative``); errors name ``speculative.*``."""
    from dataclasses import replace

    from llmsim.speculative import attach_speculative

    try:
        dep = attach_speculative(pool.deployment, block, user_num_blocks="num_blocks" in (s.kv or {}))
    except LlmsimError as exc:
        text = str(exc)
        raise ConfigError(f"{where}: {text if text.startswith('speculative') else 'speculative: ' + text}") from None
    return replace(pool, deployment=dep)


def _link(name: str, link, pools, where: str):
    from llmsim.sim.spec import named_link

    hardware = next(p.deployment.hardware for p in pools if p.name == link.between[0])
    try:
        return named_link(name, tuple(link.between), link.kind, hardware, gbps=link.gbps,
                          bytes_per_s=link.bytes_per_s, latency_s=link.latency_s,
                          interconnect=link.interconnect, shared=link.shared)
    except ConfigError as exc:  # its messages start with links.NAME.FIELD
        raise ConfigError(f"{where}: cluster.{exc}") from None


def _check_policies(cfg, where: str, router) -> None:
    from llmsim.routing import MIGRATIONS, ROUTERS

    field = "router" if cfg.cluster is None or cfg.cluster.router is None else "cluster.router"
    if router is not None:
        ROUTERS.build(router, where=f"{where}: {field}")
    cl = cfg.cluster
    if cl is not None and cl.decode_router is not None:
        ROUTERS.build(cl.decode_router, where=f"{where}: cluster.decode_router")
    if cl is not None and cl.migration is not None:
        MIGRATIONS.build(cl.migration, where=f"{where}: cluster.migration")
