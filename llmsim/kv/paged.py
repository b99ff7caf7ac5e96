"""Paged KV cache (vLLM's PagedAttention block manager): fixed-size blocks allocated on demand.

Capacity comes from the memory model (``plan_memory(...).num_blocks``), as the engine derives it.
"""

from __future__ import annotations

from llmsim.kv.base import KV_MANAGERS, KVManager


@KV_MANAGERS.register("paged")
class PagedKV(KVManager):
    """Blocks of ``block_size`` tokens handed out as a sequence grows; ``watermark`` (fraction of blocks,
    vLLM v0 default 0.01) is kept free when admitting new prompts to avoid immediate preemption."""

    name = "paged"

    def __init__(self, num_blocks: int, block_size: int = 16, watermark: float = 0.01) -> None:
        super().__init__(num_blocks, block_size, watermark)
