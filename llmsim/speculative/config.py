"""The ``speculative:`` block of an experiment, validated into a ``SpeculativeConfig``.

```yaml
speculative:
  proposer: {kind: eagle}          # or draft_model (model: llama-3.2-1b), medusa, ngram; tree_width: w
  num_speculative_tokens: 3        # k (vLLM --speculative-config num_speculative_tokens)
  acceptance: 0.7                  # alpha, a per-position list, or {default: ..., CLASS: ...} per slo_class
  disable_by_batch_size: 32        # no speculation while this many requests run (vLLM v0 knob)
  adaptive: false                  # SmartSpec-style k per step from the batch and predicted goodput
```

Every error names the field: ``speculative.num_speculative_tokens: must be a positive integer, got 0``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from llmsim.errors import ConfigError
from llmsim.speculative.acceptance import AcceptanceModel
from llmsim.speculative.defaults import DEFAULT_ACCEPTANCE
from llmsim.speculative.proposers import PROPOSERS, Proposer

KEYS = ("proposer", "num_speculative_tokens", "acceptance", "disable_by_batch_size", "adaptive")


@dataclass(frozen=True)
class SpeculativeConfig:
    """``acceptance`` maps a workload class (``Request.slo_class``) to its model; ``default`` covers the
    rest. ``num_speculative_tokens`` is the depth k (the maximum with ``adaptive``)."""

    proposer: Proposer
    num_speculative_tokens: int
    acceptance: Mapping[str, AcceptanceModel]
    disable_by_batch_size: int | None = None
    adaptive: bool = False

    def model_for(self, slo_class: str) -> AcceptanceModel:
        return self.acceptance.get(slo_class) or self.acceptance["default"]


def _int(field: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"speculative.{field}: must be a positive integer, got {value!r}")
    return value


def _acceptance(value: object, proposer: Proposer) -> dict[str, AcceptanceModel]:
    if value is None:
        default = DEFAULT_ACCEPTANCE.get(proposer.acceptance_key)
        if default is None:
            raise ConfigError(f"speculative.acceptance: proposer {proposer.name} has no published default "
                              "(its acceptance depends on the workload); give a rate in [0, 1]")
        return {"default": default}
    if isinstance(value, Mapping):
        if "default" not in value:
            raise ConfigError("speculative.acceptance: a per-class mapping needs a 'default' entry")
        return {str(c): AcceptanceModel.parse(v, f"speculative.acceptance.{c}", "user")
                for c, v in value.items()}
    return {"default": AcceptanceModel.parse(value, "speculative.acceptance", "user")}


def _proposer(value: object) -> Proposer:
    block = {"kind": value} if isinstance(value, str) else value
    if not isinstance(block, Mapping) or "kind" not in block:
        raise ConfigError(f"speculative.proposer: expected a name or {{kind: NAME, ...}} "
                          f"(one of {', '.join(PROPOSERS.names())}), got {value!r}")
    return PROPOSERS.build(block, where="speculative.proposer")


def parse_speculative(block: Mapping[str, Any] | None) -> SpeculativeConfig | None:
    """Validate the block (None: speculation off). Errors start with ``speculative.FIELD``."""
    if block is None:
        return None
    if not isinstance(block, Mapping):
        raise ConfigError(f"speculative: expected a mapping, got {block!r}")
    unknown = sorted(set(block) - set(KEYS))
    if unknown:
        raise ConfigError(f"speculative: unknown key(s) {', '.join(unknown)}; accepted: {', '.join(KEYS)}")
    if "proposer" not in block:
        raise ConfigError("speculative.proposer: required (one of " + ", ".join(PROPOSERS.names()) + ")")
    proposer = _proposer(block["proposer"])
    k = _int("num_speculative_tokens", block.get("num_speculative_tokens", 3))
    limit = block.get("disable_by_batch_size")
    if limit is not None:
        limit = _int("disable_by_batch_size", limit)
    adaptive = block.get("adaptive", False)
    if not isinstance(adaptive, bool):
        raise ConfigError(f"speculative.adaptive: must be true or false, got {adaptive!r}")
    return SpeculativeConfig(proposer, k, _acceptance(block.get("acceptance"), proposer), limit, adaptive)
