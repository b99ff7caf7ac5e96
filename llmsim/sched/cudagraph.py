"""CUDA-graph capture sizes: a batch runs in a captured graph padded up to the next captured size."""

from __future__ import annotations

import bisect


def v0_capture_sizes(max_size: int = 256) -> list[int]:
    """vLLM v0 ``_BATCH_SIZES_TO_CAPTURE``: 1, 2, 4, then multiples of 8 (pure-decode batches only)."""
    return [s for s in [1, 2, 4] + list(range(8, 257, 8)) if s <= max_size]


def v1_capture_sizes(max_size: int = 512) -> list[int]:
    """vLLM v1 ``cudagraph_capture_sizes`` default: 1, 2, 4, multiples of 8 to 256, then of 16 to 512
    (padding the step's total token count, mixed batches included)."""
    sizes = [1, 2, 4] + list(range(8, 256, 8)) + list(range(256, 513, 16))
    return [s for s in sizes if s <= max_size]


def padded_size(n: int, sizes: list[int]) -> int:
    """The captured size ``n`` is padded to, or ``n`` itself when larger than every captured size."""
    i = bisect.bisect_left(sizes, n)
    return sizes[i] if i < len(sizes) else n
