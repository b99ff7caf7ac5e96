"""Multi-LoRA serving: adapter sets (rank, targets, popularity), GPU slots and loads, the scheduler's limit."""

from llmsim.lora.adapters import AdapterTable, LoraSpec, lora_from_dict
from llmsim.lora.runtime import LoraRuntime

__all__ = ["AdapterTable", "LoraRuntime", "LoraSpec", "lora_from_dict"]
