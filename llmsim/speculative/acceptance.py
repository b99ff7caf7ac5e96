"""Acceptance models: how many of k proposed tokens the target model accepts in one verification.

An ``AcceptanceModel`` is data: per-position conditional probabilities ``p_i`` (draft token i is accepted
given tokens 1..i-1 were; the last value repeats beyond the list) or one rate ``alpha`` for every position.
Verification stops at the first rejection, so with ``a`` accepted the step emits ``1 + a`` tokens (the
accepted drafts plus the target's own token at the first rejected position, or the bonus token after the
last draft). The expected tokens per verification step are ``1 + sum_i prod_{j<=i} p_j``; with a single
``alpha`` that is ``(1 - alpha^(k+1)) / (1 - alpha)`` (Leviathan et al., "Fast Inference from Transformers
via Speculative Decoding", ICML 2023, eq. 1).

A token tree of width ``w`` offers ``w`` candidates at each depth; the depth-i acceptance is then
``1 - (1 - p_i)^w`` (candidates taken as independent: SpecInfer's and Sequoia's first-order estimate).

Draws are made with the ``numpy.random.Generator`` the simulator passes down, one uniform per position
and row, so the same seed gives the same acceptances byte for byte.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from llmsim.errors import ConfigError


def _probability(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0 \
            or not math.isfinite(value):
        raise ConfigError(f"{name}: must be a probability in [0, 1], got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class AcceptanceModel:
    """Per-position conditional acceptance probabilities ``per_position`` (non-empty; the last repeats);
    ``AcceptanceModel.rate(alpha)`` for a single rate. ``source`` says where the numbers come from."""

    per_position: tuple[float, ...]
    source: str = ""

    def __post_init__(self) -> None:
        if not self.per_position:
            raise ConfigError("acceptance: needs at least one probability")
        for i, p in enumerate(self.per_position):
            _probability(f"acceptance[{i}]", p)

    @classmethod
    def rate(cls, alpha: float, source: str = "") -> AcceptanceModel:
        return cls((_probability("acceptance", alpha),), source)

    @classmethod
    def parse(cls, value: object, name: str = "acceptance", source: str = "") -> AcceptanceModel:
        """A number (``alpha``) or a list of per-position probabilities."""
        if isinstance(value, list | tuple):
            if not value:
                raise ConfigError(f"{name}: needs at least one probability")
            return cls(tuple(_probability(f"{name}[{i}]", p) for i, p in enumerate(value)), source)
        return cls((_probability(name, value),), source)

    def probs(self, k: int, width: int = 1) -> np.ndarray:
        """Probabilities of positions 1..k (a tree of ``width`` candidates per depth: 1 - (1 - p)^w)."""
        p = np.asarray(self.per_position, dtype=np.float64)
        if k > p.size:
            p = np.concatenate([p, np.full(k - p.size, p[-1])])
        p = p[:k]
        return p if width == 1 else 1.0 - (1.0 - p) ** width

    def expected_tokens(self, k: int, width: int = 1) -> float:
        """Expected tokens emitted by one verification of ``k`` drafted positions: 1 + sum of prefix products."""
        if k <= 0:
            return 1.0
        return 1.0 + float(np.cumprod(self.probs(k, width)).sum())

    @property
    def alpha(self) -> float:
        """Mean per-position rate over the listed positions (what a single-alpha summary quotes)."""
        return float(np.mean(self.per_position))


def draw_accepted(rng: np.random.Generator, probs: np.ndarray, ks: np.ndarray) -> np.ndarray:
    """Accepted count per row: row r verifies ``ks[r]`` positions with probabilities ``probs[r, :]`` (rows x
    max k); it accepts up to the first position whose uniform draw is not below its probability. One
    uniform per (row, position) of the matrix, drawn in one call."""
    rows, width = probs.shape
    if rows == 0 or width == 0:
        return np.zeros(rows, dtype=np.int64)
    u = rng.random((rows, width))
    ok = (u < probs) & (np.arange(width)[None, :] < ks[:, None])
    # leading run of accepted positions: index of the first False (width if none)
    first_reject = np.where(ok.all(axis=1), width, np.argmin(ok, axis=1))
    return np.minimum(first_reject, ks).astype(np.int64)
