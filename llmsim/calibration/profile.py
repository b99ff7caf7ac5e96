"""Hardware profile YAML written by ``llmsim calibrate``: a base profile plus the measured ``calibration:`` block.

Numbers are written with a dot and a signed exponent (``1.25e+12``) because PyYAML reads ``1e12`` as a
string; lists of numbers are written on one line so the file stays short and diffable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from llmsim.errors import ConfigError
from llmsim.specs import HardwareSpec
from llmsim.yamlio import load_yaml


def profile_yaml_data(hw: HardwareSpec) -> dict[str, Any]:
    """The YAML mapping a shipped profile was loaded from (comments are not kept)."""
    try:
        data = load_yaml(Path(hw.source), "hardware profile")
    except ConfigError as exc:
        raise ConfigError(f"base profile {hw.name}: {exc}") from None
    data.pop("calibration", None)  # a recalibration replaces, never stacks, an earlier one
    return data


def cpu_base_dict(env: dict[str, Any], peaks: dict[str, float], copy_bytes_per_s: float) -> dict[str, Any]:
    """A profile for a CPU from its measured peaks; a single CPU has no interconnect, so the copy bandwidth
    stands in for every link (the simulator needs one) and all links say so in their name."""
    link = {"name": "none: measured memory copy bandwidth (single CPU)", "bytes_per_s": copy_bytes_per_s,
            "latency_s": 0.0}
    return {
        "name": "cpu",
        "description": f"CPU calibration run ({env.get('name', 'cpu')}, threads: {env.get('threads', '?')})",
        "peak_flops_per_s": {k: v for k, v in peaks.items()},
        "hbm_bytes": float(env.get("memory_bytes") or 1.0),
        "hbm_bytes_per_s": copy_bytes_per_s,
        "interconnect": {"gpus_per_node": 1, "intra_node": dict(link), "inter_node": dict(link),
                         "host": dict(link)},
    }


def build_profile(base: dict[str, Any], name: str, description: str, efficiency: dict[str, float],
                  launch_s: float, calibration: dict[str, Any]) -> dict[str, Any]:
    """The base profile with fitted efficiencies, the measured launch overhead and the calibration block."""
    out = {k: v for k, v in base.items() if k not in ("calibration",)}
    out["name"] = name
    out["description"] = description
    out["efficiency"] = {**(base.get("efficiency") or {}), **efficiency}
    out["overheads"] = {**(base.get("overheads") or {}), "kernel_launch_s": launch_s}
    out["calibration"] = calibration
    return out


class _Dumper(yaml.SafeDumper):
    pass


def _float(dumper: yaml.SafeDumper, value: float) -> yaml.ScalarNode:
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError("profile numbers must be finite")
    if value == 0 or 1e-3 <= abs(value) < 1e5:
        text = f"{value:.5g}"
        if "e" in text:  # pragma: no cover - the range above keeps 5 significant digits positional
            text = f"{value:.4e}"
        elif "." not in text:
            text += ".0"
    else:
        mantissa, exp = f"{value:.4e}".split("e")
        mantissa = mantissa.rstrip("0")
        mantissa = mantissa + "0" if mantissa.endswith(".") else mantissa
        text = f"{mantissa}e{exp[0]}{exp[1:].zfill(2)}"
    return dumper.represent_scalar("tag:yaml.org,2002:float", text)


def _list(dumper: yaml.SafeDumper, value: list) -> yaml.SequenceNode:
    flat = all(isinstance(v, int | float | str) for v in value)  # a table's rows stay one per line
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=flat)


_Dumper.add_representer(float, _float)
_Dumper.add_representer(list, _list)
_Dumper.add_representer(tuple, _list)


def dump_profile(profile: dict[str, Any], header: list[str]) -> str:
    """Readable YAML: header comment lines, keys in insertion order, one-line number lists."""
    body = yaml.dump(profile, Dumper=_Dumper, sort_keys=False, width=120, allow_unicode=True)
    return "".join(f"# {line}\n" if line else "#\n" for line in header) + body
