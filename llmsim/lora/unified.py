"""S-LoRA's unified paging (Sheng et al., MLSys'24, Sec. 4): adapter weights live in the KV cache's block pool.

An adapter of ``adapter_bytes`` takes ``ceil(adapter_bytes / block_bytes)`` blocks of the engine's KV manager
(S-LoRA pages adapter weights in the same pool, in rows of the hidden size). There is no limit on the
distinct adapters of a batch: a waiting request is admitted when its adapter is resident or its blocks can be
taken now (it is then copied over PCIe before the step, which waits for the copy); an adapter that no
running request uses is evicted (its blocks freed) at the start of the next step, so idle adapters never
hold memory that running requests need to grow (S-LoRA swaps adapters in and out as the batch changes; it
prefetches for the queue, which is not modelled). Blocks are held by a placeholder sequence per adapter, so
the KV manager's books (allocated = freed once everything ends) still balance.
"""

from __future__ import annotations

import math

from llmsim.lora.runtime import LoraRuntime
from llmsim.sched.seq import Seq
from llmsim.workload.request import Request

PLACEHOLDER_KEY = -(1 << 40)  # keys far below any request's


class UnifiedLoraRuntime(LoraRuntime):
    """``LoraRuntime`` whose adapters take KV blocks (``bind(sched)`` before use) instead of fixed slots."""

    def __init__(self, spec, table, kernel_s, load_s, adapter_bytes, block_bytes: float) -> None:
        super().__init__(spec, table, kernel_s, load_s)
        self.max_loras = 1 << 30  # no per-step limit
        self._adapter_bytes = adapter_bytes
        self.block_bytes = float(block_bytes)
        self.sched = None
        self._holders: dict[int, Seq] = {}  # resident adapter -> placeholder holding its blocks
        self._pending_s = 0.0
        self.num_evictions = 0

    def bind(self, sched) -> None:
        self.sched = sched

    def blocks_of(self, adapter: int) -> int:
        return max(1, math.ceil(self._adapter_bytes(adapter) / self.block_bytes))

    def admissible(self, seq, loras: set[int]) -> bool:
        a = self.adapter_of(seq)
        if a in self._holders:
            return True
        kv = self.sched.kv
        need = self.blocks_of(a)
        bs = kv.block_size
        # a one-token placeholder: a prefix cache neither registers nor looks up its blocks' content
        holder = Seq(Request(0, 0.0, 1, 1), key=PLACEHOLDER_KEY - a)
        if not kv.allocate(holder, need * bs):
            self._evict_idle(loras)  # adapters nobody runs give their blocks back, then try once more
            if not kv.allocate(holder, need * bs):
                return False
        if hasattr(kv, "num_query_tokens"):
            kv.num_query_tokens -= 1  # not a prompt lookup
        self._holders[a] = holder
        self._pending_s += self._load_s(a)
        self.num_loads += 1
        return True

    def _evict_idle(self, used: set[int]) -> None:
        running = {self.adapter_of(s) for s in self.sched.running} | used
        for a in [a for a in self._holders if a not in running]:
            holder = self._holders.pop(a)
            holder.status = "finished"
            self.sched.kv.free(holder)
            self.num_evictions += 1

    def step_s(self, plan) -> tuple[float, float]:
        tokens = self.batch(plan)
        self._evict_idle(set(tokens))
        load, self._pending_s = self._pending_s, 0.0
        kernel = self._kernel_s(tokens)
        self.load_s_total += load
        self.kernel_s_total += kernel
        self.num_steps += 1
        self.distinct_total += len(tokens)
        return kernel, load

    @property
    def resident(self) -> list[int]:
        return list(self._holders)

    @property
    def num_resident_blocks(self) -> int:
        return sum(self.sched.kv.held_blocks(h) for h in self._holders.values())

    def release_all(self) -> None:
        """Free every resident adapter (end of run: the KV books balance)."""
        self._evict_idle(set())
        for a in list(self._holders):
            holder = self._holders.pop(a)
            holder.status = "finished"
            self.sched.kv.free(holder)

    def stats(self) -> dict[str, float]:
        return {**super().stats(), "lora_evictions": self.num_evictions}
