"""Find engine profiles by name (``vllm-0.15``) or path, parse them, and apply an experiment's overrides.

A profile file is YAML (see ``profiles/*.yaml``); overrides are a mapping of the same shape
(``{cpu: {step_s: 0.002}, cuda_graphs: {mode: none}}``) merged over it. Unknown fields are errors that name
the field and list the accepted ones.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from llmsim.engines.profile import BatchDefaults, CpuCosts, CudaGraphs, EngineProfile, FrontendCosts
from llmsim.errors import ConfigError, UnknownNameError
from llmsim.yamlio import load_yaml

PROFILES_DIR = Path(__file__).parent / "profiles"
TOP_FIELDS = ("name", "description", "family", "version", "scheduler", "usage_context", "batch_defaults",
              "options", "async_scheduling", "cuda_graphs", "cpu", "frontend", "sources", "fitted_on")
OPTION_FIELDS = ("block_size", "gpu_memory_utilization", "enable_chunked_prefill", "enable_prefix_caching",
                 "long_prefill_token_threshold", "max_model_len")
OVERRIDABLE = ("usage_context", "async_scheduling", "cuda_graphs", "cpu", "frontend", "options", "batch_defaults")
DEFAULT_ENGINE = "generic"


def engine_names() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


def _read(path: Path, where: str) -> Mapping[str, Any]:
    data = load_yaml(path, "engine profile")
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a YAML mapping at the top level")
    return data


def _raw(name: str) -> tuple[Mapping[str, Any], str]:
    if os.sep in name or name.endswith((".yaml", ".yml")):
        return _read(Path(name), name), name
    path = PROFILES_DIR / f"{name}.yaml"
    if not path.is_file():
        raise UnknownNameError(f"unknown engine {name!r}; valid: {', '.join(engine_names())} "
                               "(or a path to an engine profile YAML)")
    return _read(path, str(path)), str(path)


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def _check_keys(data: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    unknown = sorted(str(k) for k in data if k not in allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}; accepted: {', '.join(allowed)}")


def _block(cls: type, data: Any, where: str):
    if data is None:
        return cls()
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping")
    _check_keys(data, tuple(cls.__dataclass_fields__), where)
    try:
        return cls(**data)
    except ConfigError as exc:
        raise ConfigError(f"{where.rsplit('.', 1)[0]}.{exc}" if "." in where else f"{where}: {exc}") from None
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _pairs(data: Any, where: str) -> Mapping[str, tuple[int, int]]:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping of usage context to [max_num_batched_tokens, max_num_seqs]")
    out = {}
    for ctx, pair in data.items():
        ok = isinstance(pair, (list, tuple)) and len(pair) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in pair)
        if not ok:
            raise ConfigError(f"{where}.{ctx}: expected [max_num_batched_tokens, max_num_seqs] (positive integers)")
        out[str(ctx)] = (int(pair[0]), int(pair[1]))
    return MappingProxyType(out)


def _batch_defaults(data: Any, where: str) -> BatchDefaults | None:
    if data is None:
        return None
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping")
    _check_keys(data, ("large", "other", "large_gpu_min_hbm_gib", "large_gpu_excludes"), where)
    excludes = data.get("large_gpu_excludes") or ()
    return BatchDefaults(large=_pairs(data.get("large"), f"{where}.large"),
                         other=_pairs(data.get("other"), f"{where}.other"),
                         large_gpu_min_hbm_gib=float(data.get("large_gpu_min_hbm_gib", 70.0)),
                         large_gpu_excludes=tuple(str(x).lower() for x in excludes))


def profile_from_dict(data: Mapping[str, Any], where: str) -> EngineProfile:
    """Validate one profile mapping (a file's contents, overrides already merged)."""
    _check_keys(data, TOP_FIELDS, where)
    for key in ("name", "family", "scheduler"):
        if key not in data:
            raise ConfigError(f"{where}: missing field {key!r}")
    sched = data["scheduler"]
    if not isinstance(sched, Mapping) or "kind" not in sched:
        raise ConfigError(f"{where}: scheduler: expected a mapping with a 'kind' key")
    options = data.get("options") or {}
    if not isinstance(options, Mapping):
        raise ConfigError(f"{where}: options: expected a mapping")
    _check_keys(options, OPTION_FIELDS, f"{where}: options")
    cpu = data.get("cpu")
    try:
        return EngineProfile(
            name=str(data["name"]), description=str(data.get("description", "")), family=str(data["family"]),
            version=str(data.get("version", "")), scheduler=MappingProxyType(dict(sched)),
            usage_context=str(data.get("usage_context", "server")),
            batch_defaults=_batch_defaults(data.get("batch_defaults"), f"{where}: batch_defaults"),
            options=MappingProxyType(dict(options)), async_scheduling=data.get("async_scheduling", False),
            cuda_graphs=_block(CudaGraphs, data.get("cuda_graphs"), f"{where}: cuda_graphs"),
            cpu=None if cpu is None else _block(CpuCosts, cpu, f"{where}: cpu"),
            frontend=_block(FrontendCosts, data.get("frontend"), f"{where}: frontend"),
            sources=MappingProxyType({str(k): str(v) for k, v in (data.get("sources") or {}).items()}),
            fitted_on=str(data.get("fitted_on", "")),
        )
    except ConfigError as exc:
        msg = str(exc)
        raise ConfigError(msg if msg.startswith(where) else f"{where}: {msg}") from None


def load_engine(spec: str | Mapping[str, Any] | None = None, where: str = "engine") -> EngineProfile:
    """An engine profile: a name or path, or ``{name: NAME, **overrides}``; None = the generic engine."""
    if spec is None:
        spec = DEFAULT_ENGINE
    if isinstance(spec, str):
        data, src = _raw(spec)
        return profile_from_dict(data, src)
    if not isinstance(spec, Mapping) or "name" not in spec:
        raise ConfigError(f"{where}: expected an engine name or a mapping with 'name' and overrides "
                          f"({', '.join(OVERRIDABLE)})")
    overrides = {k: v for k, v in spec.items() if k != "name"}
    _check_keys(overrides, OVERRIDABLE, where)
    try:
        data, src = _raw(str(spec["name"]))
    except UnknownNameError as exc:
        raise UnknownNameError(f"{where}.name: {exc}") from None
    return profile_from_dict(_merge(data, overrides), f"{where} ({src} with overrides)")
