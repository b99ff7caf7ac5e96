"""CPU swap space: host memory that holds the KV blocks of preempted sequences, and the PCIe time to move
them (vLLM's ``swap_space`` / ``CacheEngine.swap_in/out``, FastServe's proactive offload)."""

from __future__ import annotations

from llmsim.errors import ConfigError


class SwapSpace:
    """``num_blocks`` host blocks of ``block_bytes`` each (per GPU of the replica, all GPUs copy their shard
    in parallel); a copy of n blocks takes ``latency_s + n * block_bytes / link_bytes_per_s``."""

    def __init__(self, num_blocks: int, block_bytes: float, link_bytes_per_s: float, latency_s: float = 0.0):
        if num_blocks < 0:
            raise ConfigError(f'"swap_blocks" must be >= 0, got {num_blocks}')
        if block_bytes <= 0 or link_bytes_per_s <= 0:
            raise ConfigError('"block_bytes" and "link_bytes_per_s" must be > 0')
        self.num_blocks = int(num_blocks)
        self.block_bytes = float(block_bytes)
        self.link_bytes_per_s = float(link_bytes_per_s)
        self.latency_s = float(latency_s)
        self.num_free_blocks = self.num_blocks
        self._held: dict[int, int] = {}
        self.num_swapped_out = 0  # cumulative blocks
        self.num_swapped_in = 0

    def can_hold(self, num_blocks: int) -> bool:
        return num_blocks <= self.num_free_blocks

    def held(self, seq_id: int) -> int:
        return self._held.get(seq_id, 0)

    def put(self, seq_id: int, num_blocks: int) -> None:
        if num_blocks > self.num_free_blocks:
            raise RuntimeError("swap space exhausted; check can_hold first")
        self._held[seq_id] = self._held.get(seq_id, 0) + num_blocks
        self.num_free_blocks -= num_blocks
        self.num_swapped_out += num_blocks

    def take(self, seq_id: int) -> int:
        blocks = self._held.pop(seq_id, 0)
        self.num_free_blocks += blocks
        self.num_swapped_in += blocks
        return blocks

    def transfer_s(self, num_blocks: int) -> float:
        if num_blocks <= 0:
            return 0.0
        return self.latency_s + num_blocks * self.block_bytes / self.link_bytes_per_s
