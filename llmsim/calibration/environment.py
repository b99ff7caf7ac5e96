"""The machine a calibration ran on: device name, clocks, driver, CUDA and torch versions, memory, caches."""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

# GPU name (as torch reports it) -> shipped base profile; first match wins, so specific names come first.
BASE_PROFILES = (
    ("H100 PCIe", "h100-pcie"), ("H100", "h100-sxm"), ("H200", "h200"), ("B200", "b200"),
    ("A100-SXM4-40GB", "a100-sxm-40gb"), ("A100", "a100-sxm-80gb"), ("L40", "l40s"), ("L4", "l4"),
    ("A10G", "a10g"), ("4090", "rtx-4090"), ("MI300X", "mi300x"),
)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def base_profile_for(gpu_name: str) -> str | None:
    for needle, profile in BASE_PROFILES:
        if needle.lower() in gpu_name.lower():
            return profile
    return None


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def physical_memory_bytes() -> float:
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0.0


def cpu_cache_bytes() -> float:
    """Last-level cache size from sysfs (32 MiB if unknown)."""
    best = 0.0
    for path in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        text = path.read_text().strip()
        m = re.fullmatch(r"(\d+)([KMG]?)", text)
        if m:
            best = max(best, float(m.group(1)) * {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}[m.group(2)])
    return best or 32 * 1024**2


def _nvidia_smi(fields: str) -> list[str]:
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader,nounits", "-i", "0"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [v.strip() for v in out.strip().split(",")]


def describe(torch: Any, device: str, argv: list[str] | None = None) -> dict[str, Any]:
    """Everything needed to tell two calibrations apart, as plain YAML-able values."""
    env: dict[str, Any] = {
        "device": device,
        "date": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
        "command": shlex.join(["llmsim", *(argv if argv is not None else sys.argv[1:])]),
        "torch": str(torch.__version__),
        "python": platform.python_version(),
        "host": platform.node(),
    }
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        env.update(name=torch.cuda.get_device_name(0), cuda=str(torch.version.cuda or ""),
                   cudnn=str(torch.backends.cudnn.version() or ""),
                   memory_bytes=float(props.total_memory), sm_count=int(props.multi_processor_count),
                   compute_capability=f"{props.major}.{props.minor}", gpus_visible=torch.cuda.device_count())
        l2 = getattr(props, "L2_cache_size", 0)
        if l2:
            env["l2_bytes"] = float(l2)
        smi = _nvidia_smi("driver_version,clocks.sm,clocks.max.sm,clocks.mem,power.limit")
        if len(smi) == 5:
            env.update(driver=smi[0], sm_clock_mhz=smi[1], max_sm_clock_mhz=smi[2], mem_clock_mhz=smi[3],
                       power_limit_w=smi[4])
    else:
        env.update(name=cpu_name(), threads=torch.get_num_threads(), memory_bytes=physical_memory_bytes(),
                   llc_bytes=cpu_cache_bytes())
    return env


def device_folder_name(env: dict[str, Any]) -> str:
    """``nvidia-h100-80gb-hbm3`` for a GPU, ``cpu-amd-epyc`` for a CPU."""
    name = slug(str(env.get("name", "device")))
    return name if env["device"] == "cuda" else f"cpu-{name}"
