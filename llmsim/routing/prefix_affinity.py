"""Prefix (cache) affinity, as SGLang's cache-aware router does it (sgl-router / SMG ``cache_aware``,
defaults ``cache_threshold 0.3``, ``balance_abs_threshold 64``, ``balance_rel_threshold 1.5``):

- if the candidates are imbalanced (``max_load - min_load > balance_abs_threshold`` and ``max_load >
  min_load * balance_rel_threshold``, load = unfinished requests), go to the least loaded one;
- else, if some replica caches more than ``cache_threshold`` of the prompt, go to the one caching the
  longest prefix (ties: least loaded);
- else go to the replica with the most free KV cache (SGLang: the smallest radix tree).

SGLang's router keeps an approximate radix tree of the prompts it routed; llm-d's precise prefix scorer
reads the engines' KV events. This router reads each replica's actual prefix cache (the precise variant),
so a hit it counts on is one the replica will serve unless the block is evicted before admission.
"""

from __future__ import annotations

from collections.abc import Sequence

from llmsim.errors import ConfigError
from llmsim.routing.base import ROUTERS, ReplicaView, Router, check_fraction, least
from llmsim.workload.request import Request


@ROUTERS.register("prefix_affinity")
class PrefixAffinityRouter(Router):
    """Longest cached prefix unless the replicas are imbalanced (see the module docstring)."""

    name = "prefix_affinity"

    def __init__(self, cache_threshold: float = 0.3, balance_abs_threshold: int = 64,
                 balance_rel_threshold: float = 1.5) -> None:
        self.cache_threshold = check_fraction("cache_threshold", cache_threshold)
        if isinstance(balance_abs_threshold, bool) or not isinstance(balance_abs_threshold, int) \
                or balance_abs_threshold < 0:
            raise ConfigError(f'"balance_abs_threshold" must be an integer >= 0, got {balance_abs_threshold!r}')
        self.balance_abs_threshold = balance_abs_threshold
        self.balance_rel_threshold = check_fraction("balance_rel_threshold", balance_rel_threshold, 1.0, 1e9)
        self.num_affinity = 0  # requests routed to their longest cached prefix
        self.num_balanced = 0  # requests routed by load because the replicas were imbalanced

    def pick(self, request: Request, replicas: Sequence[ReplicaView]) -> int:
        loads = [r.num_unfinished for r in replicas]
        lo, hi = min(loads), max(loads)
        if hi - lo > self.balance_abs_threshold and hi > lo * self.balance_rel_threshold:
            self.num_balanced += 1
            return least(replicas, lambda r: r.num_unfinished)
        cached = [r.cached_prefix_tokens(request) for r in replicas]
        best = max(cached)
        if best > self.cache_threshold * request.input_tokens:
            self.num_affinity += 1
            return min((i for i in range(len(replicas)) if cached[i] == best), key=lambda i: (loads[i], i))
        return least(replicas, lambda r: (r.kv_usage, r.num_unfinished))
