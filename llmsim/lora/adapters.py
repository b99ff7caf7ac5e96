"""A set of LoRA adapters on one base model (S-LoRA, Punica): rank, target modules, popularity per request.

Each request uses one adapter, drawn by popularity (``zipf`` with exponent ``alpha``, ``uniform``, or an
explicit list of fractions). Draws are made per request key from one generator in key order, so a request's
adapter depends only on the seed and its key, whichever replica asks first.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from llmsim.errors import ConfigError
from llmsim.specs import ModelSpec

TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
MODES = ("slots", "unified")


@dataclass(frozen=True, slots=True)
class LoraSpec:
    """``num_adapters`` adapters of rank ``ranks[i]`` on the ``targets`` of every decoder layer; request
    popularity ``popularity[i]`` (sums to 1); ``max_loras``: adapters a batch may use and GPU slots that hold
    them (vLLM ``--max-loras``; its LRU slot cache, vllm/lora/worker_manager.py LRUCacheWorkerLoRAManager,
    v0.15.1); ``max_lora_rank``: the rank the slots are sized for (vLLM ``--max-lora-rank``). ``mode``:
    ``slots`` (vLLM) or ``unified`` (S-LoRA: adapters paged in the KV pool, no per-step limit;
    ``llmsim.lora.unified``)."""

    num_adapters: int
    ranks: tuple[int, ...]
    targets: tuple[str, ...]
    popularity: tuple[float, ...]
    max_loras: int = 1
    max_lora_rank: int = 16
    mode: str = "slots"

    def __post_init__(self) -> None:
        if len(self.ranks) != self.num_adapters or len(self.popularity) != self.num_adapters:
            raise ConfigError("lora: ranks and popularity need one entry per adapter")
        if any(isinstance(r, bool) or not isinstance(r, int) or r < 1 for r in self.ranks):
            raise ConfigError(f"lora.rank: must be a positive integer, got {min(self.ranks)!r}")
        if max(self.ranks) > self.max_lora_rank:
            raise ConfigError(f"lora.rank: {max(self.ranks)} exceeds max_lora_rank {self.max_lora_rank}")
        if abs(sum(self.popularity) - 1.0) > 1e-6:
            raise ConfigError(f"lora.popularity: the fractions must sum to 1, they sum to {sum(self.popularity):.6g}")
        bad = sorted(set(self.targets) - set(TARGETS))
        if bad or not self.targets:
            raise ConfigError(f"lora.targets: {bad[0] if bad else '(none)'} is not a target; expected some of "
                              f"{', '.join(TARGETS)}")
        if self.mode not in MODES:
            raise ConfigError(f"lora.mode: must be one of {', '.join(MODES)}, got {self.mode!r}")

    def module_shapes(self, model: ModelSpec) -> list[tuple[str, int, int]]:
        """(target, input width, output width) of each targeted linear layer (whole, before TP)."""
        if model.is_moe and {"gate_proj", "up_proj", "down_proj"} & set(self.targets):
            raise ConfigError(f"lora.targets: MLP targets on the MoE model {model.name} (expert LoRA) are not "
                              "supported; target the attention projections")
        h, q, kv, f = model.hidden_size, model.q_size, model.kv_size, model.ffn_size
        dims = {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
                "gate_proj": (h, f), "up_proj": (h, f), "down_proj": (f, h)}
        return [(t, *dims[t]) for t in self.targets]

    def adapter_params(self, model: ModelSpec, adapter: int) -> int:
        """Parameters of one adapter: A (in x r) and B (r x out) per target per layer."""
        r = self.ranks[adapter]
        return model.num_layers * sum(r * (i + o) for _, i, o in self.module_shapes(model))

    def slot_params(self, model: ModelSpec) -> int:
        """Parameters of one GPU slot, sized for ``max_lora_rank`` (vLLM preallocates max_loras of them)."""
        r = self.max_lora_rank
        return model.num_layers * sum(r * (i + o) for _, i, o in self.module_shapes(model))


def _popularity(value: Any, n: int) -> tuple[float, ...]:
    if value is None or value == "uniform":
        return (1.0 / n,) * n
    if isinstance(value, Mapping):
        if value.get("kind") != "zipf":
            raise ConfigError("lora.popularity: expected 'uniform', {kind: zipf, alpha: A} or a list of fractions")
        alpha = value.get("alpha", 1.0)
        if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 <= alpha < math.inf:
            raise ConfigError(f"lora.popularity.alpha: must be a finite number >= 0, got {alpha!r}")
        w = np.arange(1, n + 1, dtype=np.float64) ** -float(alpha)
        return tuple(float(x) for x in w / w.sum())
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != n or any(isinstance(p, bool) or not isinstance(p, int | float) or p < 0 for p in value):
            raise ConfigError(f"lora.popularity: expected {n} non-negative fractions, one per adapter")
        return tuple(float(p) for p in value)
    raise ConfigError("lora.popularity: expected 'uniform', {kind: zipf, alpha: A} or a list of fractions")


LORA_KEYS = ("adapters", "rank", "targets", "popularity", "max_loras", "max_lora_rank", "mode")


def lora_from_dict(data: Mapping[str, Any], where: str = "lora") -> LoraSpec:
    """A ``lora:`` block; errors name ``where`` and the field."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping with adapters, rank, targets, popularity, max_loras")
    unknown = sorted(set(data) - set(LORA_KEYS))
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key (expected {', '.join(LORA_KEYS)})")
    n = data.get("adapters", 1)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"{where}.adapters: must be a positive integer, got {n!r}")
    rank = data.get("rank", 16)
    ranks = tuple(rank) if isinstance(rank, list | tuple) else (rank,) * n
    max_loras = data.get("max_loras", 1)
    if isinstance(max_loras, bool) or not isinstance(max_loras, int) or max_loras < 1:
        raise ConfigError(f"{where}.max_loras: must be a positive integer, got {max_loras!r}")
    try:
        ranks_ok = all(isinstance(r, int) and not isinstance(r, bool) for r in ranks)
        max_rank = data.get("max_lora_rank", max(ranks) if ranks_ok and ranks else 16)
        return LoraSpec(n, ranks, tuple(data.get("targets", ("q_proj", "k_proj", "v_proj", "o_proj"))),
                        _popularity(data.get("popularity"), n), max_loras, max_rank, data.get("mode", "slots"))
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("lora", where, 1)) from None


class AdapterTable:
    """The adapter of each request, drawn by popularity from one generator the first time a request is seen
    (in simulated arrival order, so deterministic for a given seed and configuration)."""

    def __init__(self, spec: LoraSpec, rng: np.random.Generator, chunk: int = 4096) -> None:
        self.spec = spec
        self.rng = rng
        self.chunk = chunk
        self._cdf = np.cumsum(np.asarray(spec.popularity, dtype=np.float64))
        self._buf = np.zeros(0, dtype=np.int64)
        self._next = 0
        self._of: dict[int, int] = {}

    def adapter_of(self, key: int) -> int:
        a = self._of.get(key)
        if a is None:
            if self._next >= self._buf.size:
                u = self.rng.random(self.chunk) * self._cdf[-1]
                self._buf = np.minimum(np.searchsorted(self._cdf, u, side="right"), self.spec.num_adapters - 1)
                self._next = 0
            a = int(self._buf[self._next])
            self._next += 1
            self._of[key] = a
        return a
