"""Engine profiles as data: defaults, CUDA graphs, async scheduling, CPU and front-end costs per engine version.

``load_engine("vllm-0.15")`` reads a shipped profile (``profiles/*.yaml``); ``resolve_engine(profile,
hardware, scheduler=..., kv=...)`` turns it into the concrete runtime of one deployment.
"""

from llmsim.engines.catalog import DEFAULT_ENGINE, engine_names, load_engine, profile_from_dict
from llmsim.engines.profile import (
    BatchDefaults,
    CpuCosts,
    CudaGraphs,
    EngineProfile,
    FrontendCosts,
    capture_sizes,
)
from llmsim.engines.runtime import EngineRuntime, resolve_engine

__all__ = [
    "DEFAULT_ENGINE", "BatchDefaults", "CpuCosts", "CudaGraphs", "EngineProfile", "EngineRuntime", "FrontendCosts",
    "capture_sizes", "engine_names", "load_engine", "profile_from_dict", "resolve_engine",
]
