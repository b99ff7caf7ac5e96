"""The unit of traffic: one request as a client sends it. Immutable; simulator state lives elsewhere."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Request:
    """One inference request.

    ``prefix_hashes`` describes prompt content for prefix caching: one id per consecutive chunk of
    ``prefix_chunk_tokens`` prompt tokens (as the Mooncake trace's ``hash_ids``, 512 tokens each); equal ids
    at equal positions mean identical content (and identical preceding content). Empty = no sharing info.
    ``output_tokens`` is exact (as with EOS ignored). ``priority``: lower is more urgent.
    """

    id: int
    arrival_s: float
    input_tokens: int
    output_tokens: int
    prefix_hashes: tuple[int, ...] = ()
    prefix_chunk_tokens: int = 512
    session_id: int | None = None
    priority: int = 0
    slo_class: str = "default"

    def __post_init__(self) -> None:
        if self.input_tokens < 1:
            raise ValueError(f"request {self.id}: input_tokens must be >= 1, got {self.input_tokens}")
        if self.output_tokens < 1:
            raise ValueError(f"request {self.id}: output_tokens must be >= 1, got {self.output_tokens}")
        if self.arrival_s < 0:
            raise ValueError(f"request {self.id}: arrival_s must be >= 0, got {self.arrival_s}")
        if self.prefix_chunk_tokens < 1:
            raise ValueError(f"request {self.id}: prefix_chunk_tokens must be >= 1")

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens
