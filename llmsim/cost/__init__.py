"""Cost model: operators of a transformer step -> roofline time (calibrated when the profile has fits),
memory capacity, and closed-form serving estimates. Pure: no SimPy, no randomness, no I/O."""

from llmsim.cost.memory import MemoryPlan, plan_memory
from llmsim.cost.step import CostModel, OpCost, StepCost, check_layout, stage_layer_counts

__all__ = ["CostModel", "MemoryPlan", "OpCost", "StepCost", "check_layout", "plan_memory", "stage_layer_counts"]
