"""Contiguous per-request reservation (Orca / FasterTransformer style): a slab sized for the longest the
request may grow is reserved at admission and held until it ends, so decodes never need new memory.

``reservation``: ``max`` reserves ``max_model_len`` tokens (Orca(Max) in the vLLM paper), ``pow2`` the
request's final length rounded up to a power of two (Orca(Pow2)), ``oracle`` exactly prompt + output
(Orca(Oracle)). Memory is counted in ``block_size``-token units only for uniform accounting; with
``block_size=1`` it is exact.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmsim.errors import ConfigError
from llmsim.kv.base import KV_MANAGERS, KVManager, ceil_div

if TYPE_CHECKING:
    from llmsim.sched.seq import Seq

RESERVATIONS = ("max", "pow2", "oracle")


@KV_MANAGERS.register("contiguous")
class ContiguousKV(KVManager):
    name = "contiguous"

    def __init__(self, num_blocks: int, block_size: int = 16, reservation: str = "max",
                 max_model_len: int = 4096) -> None:
        super().__init__(num_blocks, block_size, 0.0)
        if reservation not in RESERVATIONS:
            raise ConfigError(f'"reservation" must be one of {", ".join(RESERVATIONS)}, got {reservation!r}')
        if not isinstance(max_model_len, int) or max_model_len < 1:
            raise ConfigError(f'"max_model_len" must be a positive integer, got {max_model_len!r}')
        self.reservation = reservation
        self.max_model_len = max_model_len

    def reserved_tokens(self, seq: Seq) -> int:
        if self.reservation == "max":
            return max(self.max_model_len, seq.max_tokens)
        if self.reservation == "pow2":
            return 1 << (seq.max_tokens - 1).bit_length()
        return seq.max_tokens

    def _target_blocks(self, seq: Seq, num_tokens: int) -> int:
        return ceil_div(max(num_tokens, self.reserved_tokens(seq)), self.block_size)
