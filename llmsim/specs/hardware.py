"""Accelerator profiles: datasheet peaks plus default (or calibrated) efficiencies, loaded from YAML."""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from llmsim.errors import ConfigError
from llmsim.yamlio import load_yaml

COMPUTE_DTYPES = ("fp32", "tf32", "bf16", "fp16", "fp8", "int8", "int4")


@dataclass(frozen=True, slots=True)
class Num:
    """A numeric profile field: finite, ``>= low`` (``> low`` when ``open``), ``<= high``."""

    low: float = 0.0
    open: bool = False
    high: float = math.inf

    def check(self, value: float, where: str) -> None:
        if not (math.isfinite(value) and (value > self.low if self.open else value >= self.low)
                and value <= self.high):
            raise ConfigError(f"{where}: expected a finite number {self}, got {value!r}")

    def __str__(self) -> str:
        low = f"{'>' if self.open else '>='} {self.low:g}"
        return low if self.high == math.inf else f"{low} and <= {self.high:g}"


POSITIVE, NON_NEGATIVE, FRACTION = Num(0.0, open=True), Num(0.0), Num(0.0, open=True, high=1.0)
TEXT, FREE = "text", "a mapping checked elsewhere"
LINK_KEYS = {"name": TEXT, "bytes_per_s": POSITIVE, "latency_s": NON_NEGATIVE}
# Every key a profile YAML may hold: a nested dict is a block whose keys are checked in turn; a leaf says
# what the value must be. Unknown or misspelled keys are errors naming the file and the key. To give
# profiles a new field or block, add it here (and to HardwareSpec / hardware_from_dict).
PROFILE_KEYS: dict[str, Any] = {
    "name": TEXT,
    "description": TEXT,
    "peak_flops_per_s": {dtype: POSITIVE for dtype in COMPUTE_DTYPES},  # dense tensor-core FLOP/s per dtype
    "hbm_bytes": POSITIVE,
    "hbm_bytes_per_s": POSITIVE,
    "l2_bytes": NON_NEGATIVE,
    "sm_count": NON_NEGATIVE,
    "tdp_w": NON_NEGATIVE,
    "price_per_hour_usd": NON_NEGATIVE,
    # power figures of llmsim.cost.energy (0 or absent: its stated fallback fractions of the TDP)
    "idle_w": NON_NEGATIVE,
    "memory_bound_w": NON_NEGATIVE,
    "full_power_mfu": FRACTION,
    "power_cap_w": NON_NEGATIVE,  # a board power limit below the TDP (nvidia-smi -pl); 0 or absent: none
    "host_memory_bytes": NON_NEGATIVE,
    "interconnect": {"gpus_per_node": Num(1.0), "intra_node": LINK_KEYS, "inter_node": LINK_KEYS,
                     "host": LINK_KEYS},
    "efficiency": {"gemm": FRACTION, "attention": FRACTION, "memory": FRACTION, "comm": FRACTION},
    "overheads": {"kernel_launch_s": NON_NEGATIVE, "step_s": NON_NEGATIVE, "per_seq_s": NON_NEGATIVE},
    "calibration": FREE,  # measured ratio grids: checked by llmsim.cost.calibrated
}
REQUIRED_KEYS = ("peak_flops_per_s", "hbm_bytes", "hbm_bytes_per_s",
                 *(f"interconnect.{link}.{k}" for link in ("intra_node", "inter_node", "host")
                   for k in ("bytes_per_s", "latency_s")))


def _finite(value: float, low_open: bool = False) -> bool:
    return math.isfinite(value) and (value > 0 if low_open else value >= 0)


@dataclass(frozen=True, slots=True)
class Link:
    """A transfer path: unidirectional bandwidth per GPU and a per-message (per-hop) latency."""

    bytes_per_s: float
    latency_s: float
    name: str = ""

    def __post_init__(self) -> None:
        if not (_finite(self.bytes_per_s, low_open=True) and _finite(self.latency_s)):
            raise ConfigError(f"link {self.name!r}: bytes_per_s must be > 0 and latency_s >= 0")


@dataclass(frozen=True, slots=True)
class Efficiency:
    """Fraction of peak reached by each operator class when no calibration data covers it."""

    gemm: float = 0.70
    attention: float = 0.55
    memory: float = 0.80
    comm: float = 0.70

    def __post_init__(self) -> None:
        for name in ("gemm", "attention", "memory", "comm"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise ConfigError(f"efficiency.{name}: must be in (0, 1], got {value!r}")


@dataclass(frozen=True, slots=True)
class Overheads:
    """Fixed costs: per kernel launch (GPU-side gap between kernels) and per step (CPU-side scheduling,
    sampling, detokenisation, input preparation). ``step_s`` is per replica step; ``per_seq_s`` adds a
    per-sequence CPU cost (input preparation, sampling bookkeeping)."""

    kernel_launch_s: float = 4e-6
    step_s: float = 2e-3
    per_seq_s: float = 0.0

    def __post_init__(self) -> None:
        for name in ("kernel_launch_s", "step_s", "per_seq_s"):
            if not _finite(getattr(self, name)):
                raise ConfigError(f"overheads.{name}: must be a finite number >= 0, got {getattr(self, name)!r}")


@dataclass(frozen=True, slots=True)
class KernelTerms:
    """Constants of the structural kernel terms (``llmsim.cost.kernels``), for timing without fitted physics.

    ``fixed_s``: GPU duration of the smallest kernel, launch excluded (prologue, one tile, epilogue; AIC's
    smallest CUDA-graph kernels take 1.8-2.5 us on B200/H100). Tiles: the output tile of a cuBLAS/CUTLASS
    GEMM (128 x 128 on Ampere/Hopper/Blackwell), FlashAttention's query x key tile (FA2/FA3 forward, head
    dim 128: 128 x 128), vLLM fused-MoE's row block (BLOCK_SIZE_M 64). ``attn_cta_tiles``: prologue and
    epilogue of one attention CTA (load Q, write O) in tile iterations (4: AIC H100 vLLM 0.14 FlashAttention
    fit, 3.8); ``prefill_per_seq_s``: per-sequence work of varlen prefill; ``decode_cta_s``: fixed work of one
    (sequence, KV head) CTA of paged decode (page table, Q load, O write; 3.5 us: AIC H100 fit, 3.6 us). Collectives: vLLM's custom all-reduce up to
    ``custom_allreduce_max_bytes`` (8 MiB, vllm custom_all_reduce.py), one-shot / two-shot latency floors, and
    NCCL ring = ``ring_latency_s + 2(p-1) ring_hop_s`` + bytes over the link."""

    fixed_s: float = 2.0e-6
    gemm_tile_m: float = 128
    gemm_tile_n: float = 128
    attn_tile_q: float = 128
    attn_tile_k: float = 128
    attn_cta_tiles: float = 4.0
    moe_tile_m: float = 64
    prefill_per_seq_s: float = 0.0
    decode_cta_s: float = 3.5e-6
    custom_allreduce_max_bytes: float = 8 * 1024 * 1024
    oneshot_latency_s: float = 5.0e-6
    twoshot_latency_s: float = 1.0e-5
    ring_latency_s: float = 3.0e-6
    ring_hop_s: float = 1.0e-6

    def __post_init__(self) -> None:
        for name in self.__slots__:
            value = getattr(self, name)
            if not value >= 0 or (name.endswith(("_tile_m", "_tile_n", "_tile_q", "_tile_k")) and value < 1):
                raise ConfigError(f"kernels.{name}: must be >= 0 (tiles >= 1), got {value!r}")


PROFILE_KEYS["kernels"] = {name: NON_NEGATIVE for name in KernelTerms.__slots__}  # cost/kernels.py terms


@dataclass(frozen=True, slots=True)
class HardwareSpec:
    """One accelerator as the cost model sees it. All figures per GPU, SI units."""

    name: str
    peak_flops_per_s: Mapping[str, float]
    hbm_bytes: float
    hbm_bytes_per_s: float
    intra_node: Link
    inter_node: Link
    host_link: Link
    gpus_per_node: int = 8
    l2_bytes: float = 0.0
    sm_count: int = 0
    tdp_w: float = 0.0
    price_per_hour_usd: float = 0.0
    idle_w: float = 0.0
    memory_bound_w: float = 0.0
    full_power_mfu: float = 0.0
    power_cap_w: float = 0.0
    host_memory_bytes: float = 0.0
    description: str = ""
    efficiency: Efficiency = field(default_factory=Efficiency)
    overheads: Overheads = field(default_factory=Overheads)
    kernels: KernelTerms = field(default_factory=KernelTerms)
    calibration: Mapping[str, Any] | None = None
    source: str = ""

    def __post_init__(self) -> None:
        if not self.peak_flops_per_s:
            raise ConfigError(f"hardware {self.name}: peak_flops_per_s is empty")
        for dtype, value in self.peak_flops_per_s.items():
            if dtype not in COMPUTE_DTYPES or not _finite(value, low_open=True):
                raise ConfigError(f"hardware {self.name}: peak_flops_per_s.{dtype}: expected a dtype in "
                                  f"{COMPUTE_DTYPES} with a positive value")
        for name in ("hbm_bytes", "hbm_bytes_per_s"):
            if not _finite(getattr(self, name), low_open=True):
                raise ConfigError(f"hardware {self.name}: {name}: must be a finite number > 0, got "
                                  f"{getattr(self, name)!r}")

    def peak_flops(self, dtype: str) -> float:
        """Dense tensor-core peak for ``dtype``; fp16 and bf16 stand in for each other."""
        peaks = self.peak_flops_per_s
        if dtype in peaks:
            return peaks[dtype]
        if dtype in ("bf16", "fp16"):
            other = "fp16" if dtype == "bf16" else "bf16"
            if other in peaks:
                return peaks[other]
        raise ConfigError(f"hardware {self.name} has no {dtype} peak (it supports "
                          f"{', '.join(sorted(peaks))}); choose another precision")

    def supports(self, dtype: str) -> bool:
        try:
            self.peak_flops(dtype)
        except ConfigError:
            return False
        return True


def hardware_from_dict(data: Mapping[str, Any], source: str = "") -> HardwareSpec:
    """A HardwareSpec from a profile mapping, checked against ``PROFILE_KEYS``; errors name ``source``
    (the file) and the field: ``h100.yaml: interconnect.host.bytes_per_s: expected a finite number > 0``."""
    name = data.get("name") if isinstance(data, Mapping) else None
    where = source or str(name or "hardware")
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a YAML mapping of profile fields")
    _check_block(data, PROFILE_KEYS, where, "")
    for path in REQUIRED_KEYS:
        node: Any = data
        for key in path.split("."):
            node = node.get(key) if isinstance(node, Mapping) else None
        if node is None:
            raise ConfigError(f"{where}: {path}: required field is missing")
    if not data["peak_flops_per_s"]:
        raise ConfigError(f"{where}: peak_flops_per_s: expected at least one dtype ({', '.join(COMPUTE_DTYPES)})")
    net = data["interconnect"]
    num = {k: _as_float(v, "") for k, v in data.items() if isinstance(PROFILE_KEYS[k], Num)}
    return HardwareSpec(
        name=str(name or Path(source).stem),
        description=str(data.get("description", "")),
        peak_flops_per_s=MappingProxyType({str(k): _as_float(v, "") for k, v in data["peak_flops_per_s"].items()}),
        hbm_bytes=num["hbm_bytes"],
        hbm_bytes_per_s=num["hbm_bytes_per_s"],
        l2_bytes=num.get("l2_bytes", 0.0),
        sm_count=int(num.get("sm_count", 0)),
        tdp_w=num.get("tdp_w", 0.0),
        price_per_hour_usd=num.get("price_per_hour_usd", 0.0),
        idle_w=num.get("idle_w", 0.0),
        memory_bound_w=num.get("memory_bound_w", 0.0),
        full_power_mfu=num.get("full_power_mfu", 0.0),
        power_cap_w=num.get("power_cap_w", 0.0),
        host_memory_bytes=num.get("host_memory_bytes", 0.0),
        gpus_per_node=int(_as_float(net.get("gpus_per_node", 8), "")),
        intra_node=_link(net["intra_node"]),
        inter_node=_link(net["inter_node"]),
        host_link=_link(net["host"]),
        efficiency=Efficiency(**{k: _as_float(v, "") for k, v in (data.get("efficiency") or {}).items()}),
        overheads=Overheads(**{k: _as_float(v, "") for k, v in (data.get("overheads") or {}).items()}),
        kernels=KernelTerms(**{k: _as_float(v, "") for k, v in (data.get("kernels") or {}).items()}),
        calibration=data.get("calibration"),
        source=source,
    )


def _check_block(data: Any, schema: Mapping[str, Any], where: str, path: str) -> None:
    """Unknown keys and out-of-range values, each named by its dotted path."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: {path}: expected a mapping with keys {', '.join(schema)}")
    for key, value in data.items():
        at = f"{path}.{key}" if path else str(key)
        rule = schema.get(key) if isinstance(key, str) else None
        if rule is None:
            close = difflib.get_close_matches(str(key), list(schema), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{where}: {at}: unknown key{hint}; expected one of {', '.join(schema)}")
        if isinstance(rule, Mapping):
            if value is not None:
                _check_block(value, rule, where, at)
        elif isinstance(rule, Num):
            rule.check(_as_float(value, f"{where}: {at}"), f"{where}: {at}")
        elif rule is TEXT and not isinstance(value, str | int | float):
            raise ConfigError(f"{where}: {at}: expected text, got {type(value).__name__}")
        elif rule is FREE and value is not None and not isinstance(value, Mapping):
            raise ConfigError(f"{where}: {at}: expected a mapping")


def _link(data: Mapping[str, Any]) -> Link:
    return Link(bytes_per_s=_as_float(data.get("bytes_per_s"), ""), latency_s=_as_float(data.get("latency_s"), ""),
                name=str(data.get("name", "")))


def _as_float(value: Any, where: str) -> float:
    """Numbers, and numeric strings such as ``1e12`` (YAML 1.1 reads an exponent without a dot as a string)."""
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: expected a number, got {value!r}") from None


_LOADED: dict[tuple[str, int, int], HardwareSpec] = {}


def load_hardware_file(path: str | Path) -> HardwareSpec:
    """A profile from its YAML file. Parsed once per file version (path, mtime, size): a calibrated profile
    holds thousands of numbers, and experiments load the same profile for every point."""
    path = Path(path)
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc})") from None
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if key not in _LOADED:
        data = load_yaml(path, "hardware profile")
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path}: expected a YAML mapping at the top level")
        _LOADED[key] = hardware_from_dict(data, source=str(path))
    hw = _LOADED[key]
    return hw if hw.source == str(path) else replace(hw, source=str(path))
