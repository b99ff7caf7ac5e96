"""Workload specs: the validated form of a workload YAML.

Schema (every key but ``description`` optional; unknown keys are errors naming their field path)::

    description: "one line: what this traffic is and where its numbers come from"
    arrival: {kind: poisson|gamma|weibull|constant|bursty|stages|diurnal|batch|closed_loop, ...}
    input_len: {kind: fixed|uniform|normal|lognormal|gamma|exponential|pareto|zipf|empirical, ..., min, max}
    output_len: {kind: ..., ...}          # exact output length per request (as with EOS ignored)
    correlation: 0.3                      # input/output normal-score correlation (Gaussian copula)
    lengths: {kind: trace, path: F, format: auto, ...}   # instead of input_len/output_len: resample pairs
    prefix: {kind: shared_system_prompt|multi_turn|prompt_pool, ...}
    prefix_chunk_tokens: 16            # tokens per prefix id (16 = vLLM's block: exact block identity)
    classes: [{name: interactive, share: 0.7, priority: 0, input_len: ..., output_len: ...}, ...]
    trace: {path: F, format: auto, start_s, end_s, speed, sample, max_requests, spread_s, strict, seed}
    max_context: 8192                     # clip prompt to max_context - 1, then output to the rest
    num_requests: 1000                    # defaults for generate_requests
    duration_s: 600

``trace`` replays a real trace as is (then only description / max_context / num_requests / duration_s may
accompany it). Relative paths are relative to the YAML file.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llmsim.errors import ConfigError
from llmsim.workload.arrivals import ARRIVALS, ArrivalProcess, ClosedLoop
from llmsim.workload.lengths import LENGTHS, LengthDist
from llmsim.workload.modulated import Bursty  # noqa: F401  (registers bursty, stages, diurnal)
from llmsim.workload.prefix import PREFIXES
from llmsim.workload.traces import TraceData, load_trace
from llmsim.yamlio import load_yaml

_TOP_KEYS = {
    "description", "arrival", "input_len", "output_len", "correlation", "lengths", "prefix",
    "prefix_chunk_tokens", "classes", "trace", "max_context", "num_requests", "duration_s",
}  # fmt: skip
_TRACE_COMPANIONS = {"description", "trace", "max_context", "num_requests", "duration_s"}
_CLASS_KEYS = {"name", "share", "priority", "input_len", "output_len"}


@dataclass(frozen=True, slots=True)
class TrafficClass:
    """A share of the traffic with its own priority / SLO class name and, optionally, its own lengths."""

    name: str
    share: float
    priority: int = 0
    input_len: LengthDist | None = None
    output_len: LengthDist | None = None


@dataclass(frozen=True, slots=True, eq=False)
class WorkloadSpec:
    """A validated workload. Exactly one of ``arrival``, ``closed_loop`` or ``trace`` is set.

    ``closed_loop`` (users + think time) is driven by the simulator, not pre-generated; see ``ClosedLoop``.
    ``pairs`` holds (input, output) token pairs to resample jointly when ``lengths: {kind: trace}`` is used.
    """

    description: str
    arrival: ArrivalProcess | None = None
    closed_loop: ClosedLoop | None = None
    trace: TraceData | None = None
    input_len: LengthDist | None = None
    output_len: LengthDist | None = None
    pairs: tuple[np.ndarray, np.ndarray] | None = None
    correlation: float = 0.0
    prefix: Any = None
    prefix_chunk_tokens: int = 16
    classes: tuple[TrafficClass, ...] = ()
    max_context: int | None = None
    num_requests: int | None = None
    duration_s: float | None = None
    source: str = "<workload>"


def _at(where: str, path: str) -> str:
    """'file.yaml' + 'arrival' -> 'file.yaml: arrival'; 'x.yaml: workload' + 'arrival' -> '...workload.arrival'."""
    return f"{where}.{path}" if ": " in where else f"{where}: {path}"


def load_workload(source: str | Path | Mapping, where: str | None = None, base_dir: str | Path | None = None):
    """Build a :class:`WorkloadSpec` from a YAML file path or an already-parsed mapping.

    ``where`` names the origin in error messages (default: the file path); ``base_dir`` resolves relative
    paths in a mapping (default: the YAML's folder, or the current directory).
    """
    if isinstance(source, Mapping):
        data, where = source, where or "<workload>"
        base = Path(base_dir or ".")
    else:
        path = Path(source)
        where = where or str(path)
        data = _read(path, where)
        base = Path(base_dir) if base_dir else path.parent
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping of workload keys, got {type(data).__name__}")
    return _build(data, where, base)


def _read(path: Path, where: str) -> Any:
    """The YAML of ``path``; a caller that names it differently (``x.yaml: workload``) keeps both names."""
    try:
        return load_yaml(path, "workload")
    except ConfigError as exc:
        if where == str(path):
            raise
        raise ConfigError(f"{where}: {exc}") from None


def _check_keys(data: Mapping, where: str) -> None:
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(map(str, unknown))}; expected {', '.join(sorted(_TOP_KEYS))}"
        )
    if "trace" in data:
        extra = sorted(set(data) - _TRACE_COMPANIONS)
        if extra:
            raise ConfigError(
                f"{_at(where, 'trace')}: a replayed trace brings its own arrivals and lengths; remove {', '.join(extra)}"
            )
    elif "arrival" not in data:
        raise ConfigError(f"{where}: expected an 'arrival' block (or a 'trace' block to replay a trace)")
    if "lengths" in data and ({"input_len", "output_len", "correlation"} & set(data)):
        raise ConfigError(
            f"{_at(where, 'lengths')}: give either 'lengths' or 'input_len'/'output_len'/'correlation', not both"
        )


def _build(data: Mapping, where: str, base: Path) -> WorkloadSpec:
    _check_keys(data, where)
    fields: dict[str, Any] = {"description": _description(data, where), "source": where}
    for key in ("max_context", "num_requests", "prefix_chunk_tokens"):
        if key in data:
            fields[key] = _int(data[key], _at(where, key), 1)
    if "duration_s" in data:
        fields["duration_s"] = _float(
            data["duration_s"], _at(where, "duration_s"), 0.0, math.inf, open_low=True
        )
    if "trace" in data:
        fields["trace"] = _trace(data["trace"], _at(where, "trace"), base)
        return WorkloadSpec(**fields)
    arrival = ARRIVALS.build(data["arrival"], where=_at(where, "arrival"))
    fields["closed_loop" if isinstance(arrival, ClosedLoop) else "arrival"] = arrival
    for key in ("input_len", "output_len"):
        if key in data:
            fields[key] = build_length(data[key], _at(where, key), base)
    if "correlation" in data:
        fields["correlation"] = _float(data["correlation"], _at(where, "correlation"), -1.0, 1.0)
    if "lengths" in data:
        fields["pairs"] = _pairs(data["lengths"], _at(where, "lengths"), base)
    if "prefix" in data:
        fields["prefix"] = PREFIXES.build(data["prefix"], where=_at(where, "prefix"))
    if "classes" in data:
        fields["classes"] = _classes(data["classes"], _at(where, "classes"), base)
    _check_lengths_given(fields, where)
    return WorkloadSpec(**fields)


def _description(data: Mapping, where: str) -> str:
    text = data.get("description", "")
    if not isinstance(text, str):
        raise ConfigError(f"{_at(where, 'description')}: expected a string")
    return text


def _check_lengths_given(fields: dict, where: str) -> None:
    """Every class must end up with both an input and an output length source."""
    if fields.get("pairs") is not None:
        return
    classes = fields.get("classes") or (TrafficClass("default", 1.0),)
    for key in ("input_len", "output_len"):
        for c in classes:
            if getattr(c, key) is None and fields.get(key) is None:
                raise ConfigError(
                    f"{where}: expected '{key}' (top level or in every class; class {c.name!r} has none)"
                )


def build_length(block: object, where: str, base: Path) -> LengthDist:
    """A length distribution from its YAML block; empirical paths resolve against ``base``."""
    extra = {}
    if isinstance(block, Mapping) and block.get("kind") == "empirical" and "base_dir" not in block:
        extra["base_dir"] = str(base)
    return LENGTHS.build(block, where=where, **extra)


def _trace_options(block: object, where: str, base: Path) -> tuple[Path, dict]:
    if not isinstance(block, Mapping) or "path" not in block:
        raise ConfigError(
            f"{where}: expected a mapping with 'path' (and optional format, start_s, end_s, ...)"
        )
    options = {k: v for k, v in block.items() if k not in ("path", "kind")}
    return base / str(block["path"]), options


def _trace(block: object, where: str, base: Path) -> TraceData:
    path, options = _trace_options(block, where, base)
    try:
        trace = load_trace(path, **options)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if trace.arrival_s is None:
        raise ConfigError(
            f"{where}: {path} has no timestamps; use it as 'lengths: {{kind: trace, path: ...}}' with an arrival process"
        )
    return trace


def _pairs(block: object, where: str, base: Path) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(block, Mapping) and block.get("kind", "trace") != "trace":
        raise ConfigError(f"{where}: kind must be 'trace' (resample (input, output) pairs from a trace file)")
    path, options = _trace_options(block, where, base)
    try:
        trace = load_trace(path, **options)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return trace.input_tokens, trace.output_tokens


def _classes(raw: object, where: str, base: Path) -> tuple[TrafficClass, ...]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{where}: expected a non-empty list of classes")
    classes = []
    for i, item in enumerate(raw):
        at = f"{where}[{i}]"
        if not isinstance(item, Mapping) or "name" not in item or "share" not in item:
            raise ConfigError(f"{at}: expected a mapping with at least 'name' and 'share'")
        unknown = sorted(set(item) - _CLASS_KEYS)
        if unknown:
            raise ConfigError(
                f"{at}: unknown key(s) {', '.join(unknown)}; expected {', '.join(sorted(_CLASS_KEYS))}"
            )
        lengths = {
            k: build_length(item[k], f"{at}.{k}", base) for k in ("input_len", "output_len") if k in item
        }
        classes.append(
            TrafficClass(
                name=str(item["name"]),
                share=_float(item["share"], f"{at}.share", 0.0, math.inf, open_low=True),
                priority=_int(item.get("priority", 0), f"{at}.priority", -(10**9)),
                **lengths,
            )
        )
    if len({c.name for c in classes}) != len(classes):
        raise ConfigError(f"{where}: class names must be unique")
    return tuple(classes)


def _int(value: object, where: str, low: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(f"{where}: expected an integer >= {low}, got {value!r}")
    return value


def _float(value: object, where: str, low: float, high: float, open_low: bool = False) -> float:
    ok = (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
          and low <= value <= high)
    if not ok or (open_low and value == low):
        bound = f"> {low}" if open_low else f">= {low}"
        raise ConfigError(f"{where}: expected a number {bound} and <= {high}, got {value!r}")
    return float(value)
