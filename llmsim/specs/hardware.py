"""Accelerator profiles: datasheet peaks plus default (or calibrated) efficiencies, loaded from YAML."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from llmsim.errors import ConfigError

COMPUTE_DTYPES = ("fp32", "tf32", "bf16", "fp16", "fp8", "int8", "int4")


@dataclass(frozen=True, slots=True)
class Link:
    """A transfer path: unidirectional bandwidth per GPU and a per-message (per-hop) latency."""

    bytes_per_s: float
    latency_s: float
    name: str = ""

    def __post_init__(self) -> None:
        if self.bytes_per_s <= 0 or self.latency_s < 0:
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
            if getattr(self, name) < 0:
                raise ConfigError(f"overheads.{name}: must be >= 0")


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
            if dtype not in COMPUTE_DTYPES or not value > 0:
                raise ConfigError(f"hardware {self.name}: peak_flops_per_s.{dtype}: expected a dtype in "
                                  f"{COMPUTE_DTYPES} with a positive value")
        if self.hbm_bytes <= 0 or self.hbm_bytes_per_s <= 0:
            raise ConfigError(f"hardware {self.name}: hbm_bytes and hbm_bytes_per_s must be positive")

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


def _link(data: Any, where: str) -> Link:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping with bytes_per_s and latency_s")
    try:
        return Link(bytes_per_s=_as_float(data["bytes_per_s"], f"{where}.bytes_per_s"),
                    latency_s=_as_float(data["latency_s"], f"{where}.latency_s"), name=str(data.get("name", "")))
    except KeyError as exc:
        raise ConfigError(f"{where}: missing {exc.args[0]}") from None


def _number(data: Mapping[str, Any], key: str, where: str, default: float | None = None) -> float:
    if key not in data:
        if default is None:
            raise ConfigError(f"{where}: missing field {key!r}")
        return default
    return _as_float(data[key], f"{where}: field {key!r}")


def _as_float(value: Any, where: str) -> float:
    """Numbers, and numeric strings such as ``1e12`` (YAML 1.1 reads an exponent without a dot as a string)."""
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: expected a number, got {value!r}") from None


def _sub(factory: type, data: Any, where: str) -> Any:
    if data is None:
        return factory()
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping")
    try:
        return factory(**{k: _as_float(v, f"{where}.{k}") for k, v in data.items()})
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    except ConfigError as exc:
        raise ConfigError(f"{where.rsplit(':', 1)[0]}: {exc}") from None


def hardware_from_dict(data: Mapping[str, Any], source: str = "") -> HardwareSpec:
    where = source or data.get("name", "hardware")
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a YAML mapping")
    peaks = data.get("peak_flops_per_s")
    if not isinstance(peaks, Mapping):
        raise ConfigError(f"{where}: peak_flops_per_s: expected a mapping of dtype to FLOP/s")
    interconnect = data.get("interconnect") or {}
    return HardwareSpec(
        name=str(data.get("name") or Path(source).stem),
        description=str(data.get("description", "")),
        peak_flops_per_s=MappingProxyType({str(k): _as_float(v, f"{where}: peak_flops_per_s.{k}")
                                           for k, v in peaks.items()}),
        hbm_bytes=_number(data, "hbm_bytes", where),
        hbm_bytes_per_s=_number(data, "hbm_bytes_per_s", where),
        l2_bytes=_number(data, "l2_bytes", where, 0.0),
        sm_count=int(_number(data, "sm_count", where, 0)),
        tdp_w=_number(data, "tdp_w", where, 0.0),
        price_per_hour_usd=_number(data, "price_per_hour_usd", where, 0.0),
        host_memory_bytes=_number(data, "host_memory_bytes", where, 0.0),
        gpus_per_node=int(_number(interconnect, "gpus_per_node", f"{where}: interconnect", 8)),
        intra_node=_link(interconnect.get("intra_node"), f"{where}: interconnect.intra_node"),
        inter_node=_link(interconnect.get("inter_node"), f"{where}: interconnect.inter_node"),
        host_link=_link(interconnect.get("host"), f"{where}: interconnect.host"),
        efficiency=_sub(Efficiency, data.get("efficiency"), f"{where}: efficiency"),
        overheads=_sub(Overheads, data.get("overheads"), f"{where}: overheads"),
        kernels=_sub(KernelTerms, data.get("kernels"), f"{where}: kernels"),
        calibration=data.get("calibration"),
        source=source,
    )


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
        _LOADED[key] = _parse_hardware_file(path)
    hw = _LOADED[key]
    return hw if hw.source == str(path) else replace(hw, source=str(path))


def _parse_hardware_file(path: Path) -> HardwareSpec:
    try:
        # libyaml's loader when present; the same YAML rules as yaml.safe_load.
        data = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected a YAML mapping at the top level")
    return hardware_from_dict(data, source=str(path))
