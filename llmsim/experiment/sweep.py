"""Sweep expansion: an experiment with ``sweep:`` becomes a list of points, each a full config plus a seed.

Grid keys vary independently (cartesian product, in the order written); zip keys vary together. Each
point has a stable id: a hash of its resolved configuration and seed, so results can be found again and
re-runs can skip finished points.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmsim.errors import ConfigError
from llmsim.experiment.config import ExperimentConfig, parse_config
from llmsim.experiment.limits import check_sweep_size
from llmsim.yamlio import load_yaml


@dataclass(frozen=True)
class Point:
    """One simulation to run: the resolved config (no sweep), its sweep values, a seed and where it came from."""

    config: ExperimentConfig
    values: dict[str, Any]
    seed: int
    base_dir: Path
    workload_dir: Path
    id: str = field(default="")
    where: str = "<experiment>"  # file and sweep point, for error messages


def workload_search_dirs(base_dir: Path) -> list[Path]:
    from llmsim.specs.catalog import REPO_ROOT

    return [base_dir, base_dir.parent / "workloads", Path.cwd() / "workloads", REPO_ROOT / "workloads"]


def resolve_workload_ref(ref: str, base_dir: Path, where: str) -> Path:
    """``chat`` -> workloads/chat.yaml; a path is taken relative to the experiment file, then as given."""
    candidates = []
    if ref.endswith((".yaml", ".yml")) or "/" in ref:
        candidates = [base_dir / ref, Path(ref)]
    else:
        candidates = [d / f"{ref}.yaml" for d in workload_search_dirs(base_dir)]
    for c in candidates:
        if c.is_file():
            return c
    raise ConfigError(f"{where}: workload: no workload named {ref!r} (looked in "
                      f"{', '.join(str(c.parent) for c in candidates)})")


def set_path(data: dict, dotted: str, value: Any, where: str) -> None:
    """Set ``data[a][b][c] = value`` for ``dotted`` = ``a.b.c``, creating mappings on the way (but not a
    cluster pool: ``cluster.pools.NAME.FIELD`` needs pool NAME to exist)."""
    keys = dotted.split(".")
    pools = (data.get("cluster") or {}).get("pools") if isinstance(data.get("cluster"), dict) else None
    if len(keys) > 3 and keys[:2] == ["cluster", "pools"] and isinstance(pools, dict) and keys[2] not in pools:
        raise ConfigError(f"{where}: {dotted}: no pool named {keys[2]!r} (pools: {', '.join(map(str, pools))})")
    node = data
    for key in keys[:-1]:
        if not isinstance(node, dict):
            raise ConfigError(f"{where}: {dotted}: {key!r} is not a mapping")
        node = node.setdefault(key, {})
    if not isinstance(node, dict):
        raise ConfigError(f"{where}: {dotted}: {keys[-2]!r} is not a mapping, so {keys[-1]!r} cannot be set in it")
    node[keys[-1]] = value


def _combinations(cfg: ExperimentConfig) -> list[dict[str, Any]]:
    grid_keys = list(cfg.sweep.grid)
    grid = [dict(zip(grid_keys, combo, strict=True))
            for combo in itertools.product(*(cfg.sweep.grid[k] for k in grid_keys))] or [{}]
    zip_keys = list(cfg.sweep.zip)
    n = len(next(iter(cfg.sweep.zip.values()))) if zip_keys else 1
    zipped = [{k: cfg.sweep.zip[k][i] for k in zip_keys} for i in range(n)]
    return [{**g, **z} for g in grid for z in zipped]


def point_id(config: ExperimentConfig, seed: int) -> str:
    canonical = json.dumps({"config": config.model_dump(mode="json"), "seed": seed}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def expand(cfg: ExperimentConfig, base_dir: Path, where: str) -> list[Point]:
    """All (sweep point x seed) runs of an experiment, in a deterministic order."""
    seeds = cfg.sweep.grid.get("seeds") or cfg.sweep.zip.get("seeds")
    check_sweep_size(cfg.sweep.grid, cfg.sweep.zip, [0] if seeds else cfg.seeds, where)
    raw = cfg.model_dump(mode="python", exclude={"sweep"})
    workload_dir = base_dir
    if isinstance(raw["workload"], str):
        path = resolve_workload_ref(raw["workload"], base_dir, where)
        wants_inline = any(k.startswith("workload.") for k in {**cfg.sweep.grid, **cfg.sweep.zip})
        if wants_inline:  # a sweep reaches into the workload: inline it so the override has a place to go
            raw["workload"] = load_yaml(path, "workload")
            workload_dir = path.parent
    points = []
    for values in _combinations(cfg):
        data = copy.deepcopy(raw)
        for key, value in values.items():
            set_path(data, key, value, f"{where}: sweep key")
        label = ", ".join(f"{k}={v}" for k, v in values.items())
        point_where = f"{where} (sweep point {label})" if label else where
        point_cfg = parse_config(data, point_where)
        for seed in point_cfg.seeds:
            points.append(Point(point_cfg, values, seed, base_dir, workload_dir, point_id(point_cfg, seed),
                                point_where))
    return points


# --- short labels for tables, legends and file names --------------------------------------------------
RATE_SUFFIXES = ("rate_per_s", "rate")


def short_keys(keys: list[str]) -> dict[str, str]:
    """Each dotted sweep key -> its shortest unambiguous suffix (``layout.tp`` -> ``tp``;
    ``scheduler.chunk_size`` and ``kv.chunk_size`` keep their first part)."""
    out = {}
    for key in keys:
        parts = key.removeprefix("sweep.").split(".")
        for n in range(1, len(parts) + 1):
            tail = ".".join(parts[-n:])
            clash = [k for k in keys if k != key and k.removeprefix("sweep.").split(".")[-n:] == parts[-n:]]
            if not clash:
                break
        out[key] = tail
    return out


def value_label(value: Any) -> str:
    """A sweep value as a short text: ``{"kind": "sarathi", "chunk_size": 512}`` -> ``sarathi chunk_size=512``,
    ``[1, 2]`` -> ``1,2``, ``2.0`` -> ``2``. JSON text (as sweep values are stored in tables) is parsed first."""
    if isinstance(value, str) and value[:1] in "{[":
        try:
            value = json.loads(value)
        except ValueError:
            return value
    if isinstance(value, dict):
        block = dict(value)
        kind = block.pop("kind", None)
        return " ".join([*([str(kind)] if kind is not None else []),
                         *(f"{k}={value_label(v)}" for k, v in block.items())])
    if isinstance(value, list | tuple):
        return ",".join(value_label(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def values_label(values: dict[str, Any], names: dict[str, str] | None = None) -> str:
    """``{"layout.tp": 2, "scheduler": {...}}`` -> ``tp=2, sarathi chunk_size=512`` (a block with a kind
    reads as itself, without its key)."""
    names = names or short_keys(list(values))
    parts = []
    for key, value in values.items():
        text = value_label(value)
        block = _parse(value)
        parts.append(text if isinstance(block, dict) and "kind" in block else f"{names.get(key, key)}={text}")
    return ", ".join(parts)


def rate_key(keys: list[str]) -> str | None:
    """The swept key that is an arrival rate (``workload.arrival.rate_per_s``), if any."""
    for suffix in RATE_SUFFIXES:
        for key in keys:
            if key.split(".")[-1] == suffix:
                return key
    rates = [k for k in keys if "rate" in k.split(".")[-1]]
    return rates[0] if rates else None


def distinct_labels(rows: list[dict[str, Any]]) -> list[str]:
    """``values_label`` of each row, leaving out what is the same in every row: keys with one value, and
    the fields of block values (``{kind: ..., ...}``) that never change: ``vllm mode=v0 max_num_seqs=128`` /
    ``sarathi chunk_size=256 max_num_seqs=128`` read as ``vllm mode=v0`` / ``sarathi chunk_size=256``."""
    parsed = [{k: _parse(v) for k, v in row.items()} for row in rows]
    keys = list(dict.fromkeys(k for row in parsed for k in row))
    if len(parsed) > 1:
        keys = [k for k in keys if len({json.dumps(row.get(k), sort_keys=True, default=str) for row in parsed}) > 1]
        parsed = [{k: row[k] for k in keys if k in row} for row in parsed]
    names = short_keys(keys)
    common: dict[str, set[str]] = {}
    for key in keys:
        blocks = [row.get(key) for row in parsed]
        if blocks and all(isinstance(b, dict) for b in blocks):
            fields = set.intersection(*(set(b) for b in blocks)) - {"kind"}
            common[key] = {f for f in fields if len({json.dumps(b[f], sort_keys=True) for b in blocks}) == 1}
    out = []
    for row in parsed:
        trimmed = {k: ({f: x for f, x in v.items() if f not in common.get(k, ())} if isinstance(v, dict) else v)
                   for k, v in row.items()}
        out.append(values_label(trimmed, names))
    return out


def _parse(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value
