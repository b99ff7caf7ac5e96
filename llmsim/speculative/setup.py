"""Attach a speculative configuration to a resolved deployment: bind the proposer to the target's cost
model (a draft whose vocabulary or layout cannot pair with the target is refused here), and take the
proposer's weights and KV out of the KV cache, as vLLM v1 sizes one block pool for every attention layer
of target and drafter together after loading both models' weights (``vllm/v1/core/kv_cache_utils.py``
``get_kv_cache_config``, v0.15.1)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from llmsim.errors import ConfigError, InfeasibleError
from llmsim.speculative.config import SpeculativeConfig, parse_speculative

ITERATION_SCHEDULERS = ("vllm", "sarathi", "orca", "sjf")  # the policies built on sched.iteration


def attach_speculative(dep, block: Mapping[str, Any] | SpeculativeConfig | None, user_num_blocks: bool = False):
    """``dep`` (a ``Deployment``) with ``speculative`` set and its KV blocks resized; ``user_num_blocks``:
    the user fixed ``kv.num_blocks``, which is then kept as given."""
    cfg = block if isinstance(block, SpeculativeConfig) or block is None else parse_speculative(block)
    if cfg is None:
        return dep
    if dep.layout.pp > 1:
        raise ConfigError("speculative: modelled with pp = 1 only (set layout.pp: 1)")
    kind = dep.scheduler_block.get("kind")
    if kind not in ITERATION_SCHEDULERS:
        raise ConfigError(f"speculative: needs an iteration-level scheduler ({', '.join(ITERATION_SCHEDULERS)}), "
                          f"got scheduler.kind {kind!r}")
    try:
        cfg.proposer.bind(dep.cost_model)
    except ConfigError as exc:
        raise ConfigError(f"speculative.proposer.{exc}") from None
    prec, tp = dep.precision, dep.layout.tp
    extra_bpt = cfg.proposer.kv_bytes_per_token(prec.kv_bytes)
    weights = cfg.proposer.weight_bytes_per_gpu(prec, tp, cfg.num_speculative_tokens) * tp
    info = dict(dep.info, spec_proposer=cfg.proposer.name, spec_num_speculative_tokens=cfg.num_speculative_tokens,
                spec_tree_width=cfg.proposer.tree_width, spec_adaptive=cfg.adaptive,
                spec_disable_by_batch_size=cfg.disable_by_batch_size,
                spec_acceptance_default=cfg.acceptance["default"].alpha,
                spec_acceptance_source=cfg.acceptance["default"].source,
                spec_proposer_weight_bytes=weights)
    kv_defaults = dict(dep.kv_defaults)
    if not user_num_blocks and (extra_bpt or weights):
        bs = int(dep.kv_block["block_size"])
        target_bpt = dep.kv_bytes_per_token_replica
        kv_bytes = kv_defaults["num_blocks"] * bs * target_bpt
        blocks = int((kv_bytes - weights) // (target_bpt + extra_bpt)) // bs
        if blocks < 1:
            raise InfeasibleError(f"speculative.proposer: the {cfg.proposer.name} proposer's weights "
                                  f"({weights / 1e9:.1f} GB) and KV leave no room for the KV cache")
        kv_defaults["num_blocks"] = blocks
        info.update(num_blocks_per_replica=blocks, kv_capacity_tokens_per_replica=blocks * bs)
    return replace(dep, speculative=cfg, kv_defaults=kv_defaults, info=info,
                   block_bytes=dep.block_bytes * (1 + extra_bpt / dep.kv_bytes_per_token_replica))
