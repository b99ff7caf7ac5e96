"""``llmsim run EXPERIMENT --set KEY=VALUE``: change a field without editing the file (as Hydra's
``key=value`` overrides and AISimulate's ``--set``).

``KEY`` is a dotted field path (``scheduler.max_num_seqs``, ``stop.num_requests``); ``VALUE`` is read as
YAML (``7``, ``[2, 4]``, ``{kind: sarathi, chunk_size: 512}``, ``null``). Setting a key the sweep varies
replaces its list by the one value, so ``--set workload.arrival.rate_per_s=7`` runs just that point of
the sweep; ``sweep.grid.KEY=[...]`` (or ``sweep.zip.KEY``) sets a sweep list itself, ``sweep={}`` drops the
sweep. A key inside a workload given by name becomes a one-value sweep, which inlines the workload as a
sweep into it does.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import yaml

from llmsim.errors import ConfigError


def parse_override(item: str) -> tuple[str, Any]:
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set: expected KEY=VALUE (e.g. stop.num_requests=2000), got {item!r}")
    try:
        return key, yaml.safe_load(text)
    except yaml.YAMLError:
        raise ConfigError(f"--set {key}: {text!r} is not a YAML value") from None


def apply_overrides(data: Any, overrides: Sequence[str], where: str) -> Any:
    """A copy of the experiment mapping ``data`` with ``overrides`` (``KEY=VALUE`` strings) applied."""
    if not overrides or not isinstance(data, dict):
        return data
    data = copy.deepcopy(data)
    for item in overrides:
        key, value = parse_override(item)
        _apply(data, key, value, f"{where}: --set {key}")
    return data


def _apply(data: dict, key: str, value: Any, where: str) -> None:
    from llmsim.experiment.sweep import set_path

    sweep = data.get("sweep")
    sweep = sweep if isinstance(sweep, dict) else {}
    for part in ("grid", "zip"):
        prefix = f"sweep.{part}."
        if key.startswith(prefix):
            table = sweep.setdefault(part, {})
            if not isinstance(table, dict):
                raise ConfigError(f"{where}: sweep.{part} is not a mapping")
            table[key[len(prefix):]] = value
            data["sweep"] = sweep
            return
    swept = [part for part in ("grid", "zip") if isinstance(sweep.get(part), dict) and key in sweep[part]]
    inside_named_workload = key.startswith("workload.") and isinstance(data.get("workload"), str)
    if not swept and not inside_named_workload:
        set_path(data, key, value, where)
        return
    for part in swept:
        del sweep[part][key]  # a zipped key set alone leaves the zip's other lists as they are
    sweep.setdefault("grid", {})[key] = [value]
    data["sweep"] = sweep
