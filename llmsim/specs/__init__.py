"""Specs: models, hardware, parallel layout, precision. Frozen dataclasses and their loaders."""

from llmsim.specs.catalog import hardware_names, load_hardware, load_model, model_names
from llmsim.specs.hardware import Efficiency, HardwareSpec, KernelTerms, Link, Overheads, hardware_from_dict
from llmsim.specs.hf_import import load_hf_config, spec_from_hf
from llmsim.specs.layout import ParallelLayout
from llmsim.specs.model import ModelSpec
from llmsim.specs.precision import DTYPE_BYTES, KV_DTYPES, PRECISIONS, Precision

__all__ = [
    "DTYPE_BYTES", "KV_DTYPES", "PRECISIONS", "Efficiency", "HardwareSpec", "KernelTerms", "Link", "ModelSpec",
    "Overheads",
    "ParallelLayout", "Precision", "hardware_from_dict", "hardware_names", "load_hardware", "load_hf_config",
    "load_model", "model_names", "spec_from_hf",
]
