"""The narrow interface a scheduler sees of KV memory: allocator verbs and counters (nano-vllm style).

Managers hold block ids / counts per sequence id and nothing else. ``allocate(seq, n)`` grows a sequence's
allocation so that it covers its first ``n`` tokens; ``free(seq)`` releases all of it. Counters
``num_allocated`` / ``num_freed`` are cumulative block counts, so ``num_allocated - num_freed ==
num_used_blocks`` always, and both are equal once every request has ended.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmsim.errors import ConfigError
from llmsim.registry import Registry

if TYPE_CHECKING:
    from llmsim.sched.seq import Seq

KV_MANAGERS: Registry[KVManager] = Registry("KV manager")


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


class KVManager:
    """Base class: block accounting common to every manager. Subclasses decide how many blocks a
    sequence needs (``_target_blocks``) and may add prefix sharing."""

    name = "base"
    supports_prefix = False
    # True if ``allocate(seq, c + 1)`` of a running sequence with ``c = seq.num_computed`` not a multiple of
    # the block size never changes anything (its blocks already cover the token; no other state kept), so a
    # scheduler may skip the call. A subclass whose ``allocate`` does more (prefix registration) says False.
    in_block_decode_free = True

    def __init__(self, num_blocks: int, block_size: int = 16, watermark: float = 0.0) -> None:
        if not isinstance(num_blocks, int) or num_blocks < 1:
            raise ConfigError(f'"num_blocks" must be a positive integer, got {num_blocks!r}')
        if not isinstance(block_size, int) or block_size < 1:
            raise ConfigError(f'"block_size" must be a positive integer, got {block_size!r}')
        if not 0.0 <= watermark < 1.0:
            raise ConfigError(f'"watermark" must be in [0, 1), got {watermark!r}')
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.watermark_blocks = int(watermark * num_blocks)
        self.num_free_blocks = num_blocks
        self.num_allocated = 0
        self.num_freed = 0
        self._held: dict[int, int] = {}  # seq key -> blocks held privately

    # --- queries ---------------------------------------------------------------------------------
    @property
    def capacity_tokens(self) -> int:
        return self.num_blocks * self.block_size

    @property
    def num_used_blocks(self) -> int:
        return self.num_blocks - self.num_free_blocks

    @property
    def usage(self) -> float:
        return self.num_used_blocks / self.num_blocks

    def held_blocks(self, seq: Seq) -> int:
        return self._held.get(seq.key, 0)

    def _target_blocks(self, seq: Seq, num_tokens: int) -> int:
        return ceil_div(num_tokens, self.block_size)

    def blocks_needed(self, seq: Seq, num_tokens: int) -> int:
        """New blocks that ``allocate(seq, num_tokens)`` would take from the free pool."""
        return max(0, self._target_blocks(seq, num_tokens) - self._held.get(seq.key, 0))

    def fits_ever(self, seq: Seq) -> bool:
        """Whether the sequence at its longest could fit in an empty cache."""
        return self._target_blocks(seq, seq.max_tokens) <= self.num_blocks - self.watermark_blocks

    def can_allocate(self, seq: Seq, num_tokens: int, watermark: bool = False) -> bool:
        """Enough free blocks to grow ``seq`` to ``num_tokens`` (keeping the watermark free if asked:
        vLLM v0 admits a prompt only if ``free - needed >= watermark_blocks``)."""
        reserve = self.watermark_blocks if watermark else 0
        return self.blocks_needed(seq, num_tokens) <= self.num_free_blocks - reserve

    # --- verbs -----------------------------------------------------------------------------------
    def cached_tokens(self, req) -> int:
        """Leading prompt tokens of a new request this cache already holds (0 without a prefix cache)."""
        return 0

    def match_prefix(self, seq: Seq) -> int:
        """Prompt tokens already cached for this sequence (0 without a prefix cache)."""
        return 0

    def allocate(self, seq: Seq, num_tokens: int) -> bool:
        """Grow ``seq`` to cover ``num_tokens`` tokens; False (and no change) if blocks are short."""
        need = self.blocks_needed(seq, num_tokens)
        if need > self.num_free_blocks:
            return False
        if need:
            self._held[seq.key] = self._held.get(seq.key, 0) + need
            self.num_free_blocks -= need
            self.num_allocated += need
        return True

    def grow_run(self, seqs: list[Seq], k: int) -> int:
        """``allocate(seq, seq.num_computed + k)`` for each of ``seqs`` (running sequences, in order: the growth
        of a collapsed decode run of ``k`` steps); returns the index of the first that does not fit (those
        before it stay grown), or -1."""
        for i, seq in enumerate(seqs):
            if not self.allocate(seq, seq.num_computed + k):
                return i
        return -1

    def free(self, seq: Seq) -> int:
        """Release everything ``seq`` holds; returns the blocks released."""
        held = self._held.pop(seq.key, 0)
        self.num_free_blocks += held
        self.num_freed += held
        return held

    def check(self) -> None:
        """Invariants; raises AssertionError on a bookkeeping bug."""
        assert 0 <= self.num_free_blocks <= self.num_blocks, (self.num_free_blocks, self.num_blocks)
        assert self.num_allocated - self.num_freed == self.num_used_blocks, (self.num_allocated, self.num_freed)
