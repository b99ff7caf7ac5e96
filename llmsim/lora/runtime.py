"""Multi-LoRA serving state of one engine: GPU adapter slots, adapter loads over PCIe, the batch's kernel cost.

vLLM v0.15.1 semantics: the scheduler admits a waiting request only if the step's distinct adapters stay
within ``max_loras`` (``vllm/v1/core/sched/scheduler.py``: a request whose adapter would be one too many is
skipped, and put back at the head of the queue after the step's admissions); the worker keeps ``max_loras``
GPU slots as an LRU cache (``LRUCacheWorkerLoRAManager``) and, before the forward pass, copies any adapter
of the batch that is not in a slot from host memory into one (``set_active_adapters`` -> ``activate_adapter``),
so the step waits for the copy. Adapters are all in host memory (S-LoRA's setting: ``max_cpu_loras`` large
enough); the copy takes ``latency + bytes / host link bandwidth``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from llmsim.lora.adapters import AdapterTable, LoraSpec


class LoraRuntime:
    """One engine's adapter slots and counters. ``kernel_s(tokens_per_adapter)``: the batch's LoRA kernel
    seconds (``llmsim.cost.lora.lora_step_s``); ``load_s(adapter)``: seconds to copy it into a slot."""

    def __init__(self, spec: LoraSpec, table: AdapterTable, kernel_s: Callable[[dict[int, int]], float],
                 load_s: Callable[[int], float]) -> None:
        self.spec = spec
        self.table = table
        self.max_loras = spec.max_loras
        self._kernel_s = kernel_s
        self._load_s = load_s
        self._slots: OrderedDict[int, None] = OrderedDict()  # resident adapters, least recently used first
        self.num_loads = 0
        self.load_s_total = 0.0
        self.kernel_s_total = 0.0
        self.num_steps = 0
        self.distinct_total = 0

    def adapter_of(self, seq) -> int:
        return self.table.adapter_of(seq.key)

    def admissible(self, seq, loras: set[int]) -> bool:
        """vLLM's max_loras rule for admitting ``seq`` into a step whose adapters so far are ``loras``."""
        return len(loras) < self.max_loras or self.adapter_of(seq) in loras

    def batch(self, plan) -> dict[int, int]:
        """Tokens of each adapter in the step."""
        out: dict[int, int] = {}
        for seq, n in zip(plan.seqs, plan.tokens, strict=True):
            a = self.adapter_of(seq)
            out[a] = out.get(a, 0) + n
        return out

    def step_s(self, plan) -> tuple[float, float]:
        """(kernel seconds, load seconds) the step adds: loads of adapters not in a slot (LRU eviction of the
        least recently used ones the step does not use), then the batched kernels."""
        tokens = self.batch(plan)
        load = 0.0
        for a in tokens:
            if a in self._slots:
                self._slots.move_to_end(a)
                continue
            if len(self._slots) >= self.max_loras:
                victim = next((v for v in self._slots if v not in tokens), None)
                if victim is None:
                    raise RuntimeError("a step uses more adapters than max_loras (scheduler bug)")
                del self._slots[victim]
            self._slots[a] = None
            load += self._load_s(a)
            self.num_loads += 1
        kernel = self._kernel_s(tokens)
        self.load_s_total += load
        self.kernel_s_total += kernel
        self.num_steps += 1
        self.distinct_total += len(tokens)
        return kernel, load

    def run_s(self, plan, steps: int) -> tuple[float, float]:
        """(kernel seconds per step, load seconds before the first) of a collapsed run of ``steps`` identical
        decode steps (its adapters ran the step before, so nothing loads unless a slot was lost)."""
        kernel, load = self.step_s(plan)
        extra = steps - 1
        self.kernel_s_total += kernel * extra
        self.num_steps += extra
        self.distinct_total += len(self.batch(plan)) * extra
        return kernel, load

    @property
    def resident(self) -> list[int]:
        return list(self._slots)

    def stats(self) -> dict[str, float]:
        return {"lora_loads": self.num_loads, "lora_load_s": self.load_s_total,
                "lora_kernel_s": self.kernel_s_total, "lora_steps": self.num_steps,
                "lora_distinct_per_step": self.distinct_total / self.num_steps if self.num_steps else 0.0}
