"""Per-engine speculation state: the k of each step, the acceptance draws and the counters summaries read.

Choosing k (``choose_k``):
- ``disable_by_batch_size``: no speculation while at least that many requests run, as vLLM v0's
  ``speculative_disable_by_batch_size`` (``spec_decode_worker.py``, ``running_queue_size >=
  disable_by_batch_size``); vLLM v1 (v0.15.1) has no such switch, so leave it unset to model v1.
- ``adaptive`` (SmartSpec: Liu et al., "Optimizing Speculative Decoding for Serving Large Language Models
  Using Goodput", 2024): the k in 0..K that maximises predicted goodput, ``B * E[tokens | k] / T(B, k)``,
  with ``T`` the cost model's verification step plus the proposer (``estimate_s``, set by the simulator)
  and ``E`` from the configured default acceptance (SmartSpec tracks the acceptance rate online instead;
  here it is known), one k for the whole batch;
- else the configured K.

Randomness: one ``numpy.random.Generator`` per engine, given by the simulator from the run's seed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from llmsim.speculative.acceptance import draw_accepted
from llmsim.speculative.config import SpeculativeConfig


class Speculator:
    """Counters: ``num_verify_rows`` (sequence-steps that verified drafts), ``num_draft_tokens`` (depth
    positions proposed, the accepted path's maximum), ``num_verified_positions`` (positions the target
    computed for drafts: tree nodes included), ``num_accepted``, ``num_emitted`` (tokens those rows
    emitted), ``proposer_s`` (GPU seconds of proposing), ``num_spec_steps`` / ``num_plain_steps``."""

    def __init__(self, config: SpeculativeConfig, rng: np.random.Generator | None = None) -> None:
        self.config = config
        self.proposer = config.proposer
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.estimate_s: Callable[[int, int, float], float] | None = None
        self.last_new: dict[int, int] = {}  # seq key -> tokens emitted by its last step (the draft catches up)
        self.num_verify_rows = self.num_draft_tokens = self.num_verified_positions = 0
        self.num_accepted = self.num_emitted = 0
        self.num_spec_steps = self.num_plain_steps = 0
        self.proposer_s = 0.0
        self._k_cache: dict[tuple[int, int], int] = {}

    # --- choosing k ----------------------------------------------------------------------------------
    def choose_k(self, num_running: int, num_decoding: int, mean_ctx: float) -> int:
        cfg = self.config
        if num_decoding == 0:
            return 0
        if cfg.disable_by_batch_size is not None and num_running >= cfg.disable_by_batch_size:
            return 0
        if not cfg.adaptive or self.estimate_s is None:
            return cfg.num_speculative_tokens
        key = (num_decoding, int(mean_ctx).bit_length())  # contexts bucketed by powers of two
        k = self._k_cache.get(key)
        if k is None:
            k = self._best_k(num_decoding, float(1 << max(0, key[1] - 1)))
            self._k_cache[key] = k
        return k

    def _best_k(self, batch: int, ctx: float) -> int:
        """argmax_k of B * E[tokens | k] / T(B, k) (SmartSpec's goodput), default acceptance, k = 0 included."""
        model = self.config.acceptance["default"]
        w = self.proposer.tree_width
        best, best_rate = 0, batch / self.estimate_s(batch, 0, ctx)
        for k in range(1, self.config.num_speculative_tokens + 1):
            rate = batch * model.expected_tokens(k, w) / self.estimate_s(batch, k, ctx)
            if rate > best_rate * (1 + 1e-12):
                best, best_rate = k, rate
        return best

    # --- verification --------------------------------------------------------------------------------
    def accept(self, classes: list[str], depths: np.ndarray) -> np.ndarray:
        """Accepted depth per verifying row (``classes``: each row's workload class)."""
        kmax = int(depths.max()) if depths.size else 0
        w = self.proposer.tree_width
        probs = np.empty((len(classes), kmax), dtype=np.float64)
        cache: dict[str, np.ndarray] = {}
        for r, c in enumerate(classes):
            p = cache.get(c)
            if p is None:
                p = cache[c] = self.config.model_for(c).probs(kmax, w)
            probs[r] = p
        return draw_accepted(self.rng, probs, depths)

    def record(self, depths: np.ndarray, positions: np.ndarray, accepted: np.ndarray, emitted: np.ndarray) -> None:
        self.num_spec_steps += 1
        self.num_verify_rows += int(depths.size)
        self.num_draft_tokens += int(depths.sum())
        self.num_verified_positions += int(positions.sum())
        self.num_accepted += int(accepted.sum())
        self.num_emitted += int(emitted.sum())

    def stats(self) -> dict[str, float | int]:
        rows = self.num_verify_rows
        return {
            "spec_verify_rows": rows, "spec_draft_tokens": self.num_draft_tokens,
            "spec_verified_positions": self.num_verified_positions, "spec_accepted_tokens": self.num_accepted,
            "spec_emitted_tokens": self.num_emitted, "spec_steps": self.num_spec_steps,
            "spec_plain_steps": self.num_plain_steps, "spec_proposer_s": self.proposer_s,
        }
