"""Long-context KV policies that keep a bounded part of each sequence's cache: StreamingLLM windows with
attention sinks, and an H2O heavy-hitter budget.

``streaming`` (Xiao et al., ICLR'24): the first ``sinks`` tokens plus the last ``window`` tokens are kept;
``h2o`` (Zhang et al., NeurIPS'23): ``budget`` tokens are kept (half recent, half the heavy hitters by
accumulated attention score). Either way a sequence holds at most ``cap`` = sinks + window (or budget) tokens
of KV, in ``ceil(cap / block_size) + 1`` blocks (one more for the block being filled while the oldest is
released), and attention reads at most ``cap`` keys per query: the simulator gives the cost model that cap as
the model's attention window (``kv_token_cap``). Prefill attention is capped the same way: exact for
StreamingLLM, which runs windowed attention over the prompt too; optimistic for H2O, which attends to the
whole prompt once to score it. The score bookkeeping of H2O is not costed.
"""

from __future__ import annotations

from llmsim.errors import ConfigError
from llmsim.kv.base import KV_MANAGERS, ceil_div
from llmsim.kv.paged import PagedKV

POLICIES = ("streaming", "h2o")


def _count(name: str, value: object, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f'"{name}" must be an integer >= {low}, got {value!r}')
    return value


def kv_token_cap(block: dict) -> int | None:
    """The KV tokens a ``windowed`` KV block keeps per sequence (None for any other kind)."""
    if block.get("kind") != "windowed":
        return None
    policy = block.get("policy", "streaming")
    if policy == "h2o":
        return _count("budget", block.get("budget", 2048))
    return _count("sinks", block.get("sinks", 4), 0) + _count("window", block.get("window", 4092))


@KV_MANAGERS.register("windowed")
class WindowedKV(PagedKV):
    """Paged blocks, at most ``ceil(cap / block_size) + 1`` per sequence (see the module docstring)."""

    name = "windowed"

    def __init__(self, num_blocks: int, block_size: int = 16, watermark: float = 0.01, *,
                 policy: str = "streaming", window: int = 4092, sinks: int = 4, budget: int = 2048) -> None:
        super().__init__(num_blocks, block_size, watermark)
        if policy not in POLICIES:
            raise ConfigError(f'"policy" must be one of {", ".join(POLICIES)}, got {policy!r}')
        self.policy = policy
        self.cap = kv_token_cap({"kind": "windowed", "policy": policy, "window": window, "sinks": sinks,
                                 "budget": budget})

    def _target_blocks(self, seq, num_tokens: int) -> int:
        if num_tokens <= self.cap:
            return ceil_div(num_tokens, self.block_size)
        return ceil_div(self.cap, self.block_size) + 1
