"""CUDA-graph capture sizes: a batch runs in a captured graph padded up to the next captured size.

The size lists themselves are engine data (``llmsim.engines.profile.capture_sizes``); these helpers name the
two lists the vLLM scheduler modes use by default.
"""

from __future__ import annotations

import bisect

from llmsim.engines.profile import capture_sizes


def v0_capture_sizes(max_size: int = 256) -> list[int]:
    """vLLM v0 ``_BATCH_SIZES_TO_CAPTURE``: 1, 2, 4, then multiples of 8 (pure-decode batches only)."""
    return capture_sizes("v0", max_size)


def v1_capture_sizes(max_size: int = 512, rule: str = "v1") -> list[int]:
    """vLLM v1 ``cudagraph_capture_sizes`` default (``rule`` v1: 1, 2, 4, multiples of 8 below 256, then of
    16; v1_step8: multiples of 8 throughout), padding the step's total token count, mixed batches included."""
    return capture_sizes(rule, max_size)


def padded_size(n: int, sizes: list[int]) -> int:
    """The captured size ``n`` is padded to, or ``n`` itself when larger than every captured size."""
    i = bisect.bisect_left(sizes, n)
    return sizes[i] if i < len(sizes) else n
