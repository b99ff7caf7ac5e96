"""Proposers: what drafts the k tokens a verification step checks, what that costs on the GPU, and what
memory (weights, KV) it takes next to the target. Registered by name; a YAML block ``{kind: NAME, ...}``
under ``speculative.proposer`` selects one.

- ``draft_model`` (Leviathan et al. 2023): any llmsim model spec, on the same GPUs with the target's
  tensor parallelism (vLLM v1 runs the draft inside the target's workers). Proposing k tokens is k draft
  forwards: the first over the tokens the target accepted since the last proposal (1 + accepted), the
  next k - 1 one token each (``vllm/v1/spec_decode/draft_model.py`` / ``eagle.py`` propose loop, v0.15.1).
  Its KV lives in the same block pool (a block holds the draft's layers too), its weights next to the
  target's.
- ``eagle`` / ``eagle3`` (Li et al. 2024, 2025): a one-decoder-layer head of the target's shape fed with
  the target's hidden states; same propose loop as a draft model; one layer of KV in the pool.
- ``medusa`` (Cai et al. 2024): k heads (a hidden x hidden residual block and an LM head each) applied once
  to the target's last hidden state; no KV.
- ``ngram`` (prompt lookup, vLLM ``ngram_proposer.py``): matches the last tokens against the prompt on the
  CPU; no GPU cost and no memory. Its acceptance is the workload's repetition, so it has no default.

``tree_width`` w > 1 turns the k-token chain into a token tree (SpecInfer, Medusa): w candidates per node,
``sum_{i=1..k} w^i`` nodes verified by the target in one forward (tree attention), the accepted path at
most k deep; drafting level i processes ``w^(i-1)`` nodes per sequence.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from llmsim.cost.operators import gemm
from llmsim.errors import ConfigError, InfeasibleError
from llmsim.registry import Registry
from llmsim.sched.base import _positive_int
from llmsim.specs import ModelSpec
from llmsim.specs.catalog import load_model
from llmsim.speculative.lines import UniformLines

PROPOSERS: Registry[Proposer] = Registry("proposer")


class Proposer:
    """Base: no GPU cost, no memory. ``bind(target_cost_model)`` is called once per deployment; the
    proposer then prices a step with ``cost_s(ctx, last_new, k)`` (per sequence: tokens in its KV, tokens
    the target accepted since the last proposal; all sequences propose ``k``)."""

    name = "base"
    acceptance_key = "base"

    def __init__(self, tree_width: int = 1) -> None:
        self.tree_width = _positive_int("tree_width", tree_width)
        self.cm = None

    def bind(self, target_cm) -> None:
        self.cm = target_cm

    def verify_positions(self, k: int) -> int:
        """Draft positions the target checks for a depth-k proposal (chain: k; tree: its node count)."""
        w = self.tree_width
        return k if w == 1 else sum(w**i for i in range(1, k + 1))

    def cost_s(self, ctx: np.ndarray, last_new: np.ndarray, k: int) -> float:
        return 0.0

    def kv_bytes_per_token(self, kv_bytes: float) -> float:
        """KV bytes per token (all layers, whole replica) the proposer adds to each block."""
        return 0.0

    def weight_bytes_per_gpu(self, precision, tp: int, k: int) -> float:
        """Proposer weights held on each GPU of the replica."""
        return 0.0


class _ForwardProposer(Proposer):
    """A proposer that runs a small transformer (a draft model or a one-layer head) k times per step."""

    def __init__(self, tree_width: int = 1) -> None:
        super().__init__(tree_width)
        self.spec: ModelSpec | None = None
        self.draft_cm = None

    def bind(self, target_cm) -> None:
        from llmsim.cost import CostModel  # noqa: PLC0415 (cost/ is optional in pure unit tests)

        super().bind(target_cm)
        try:
            self.draft_cm = CostModel(self.spec, target_cm.hardware, target_cm.layout, target_cm.precision,
                                      timer=target_cm.timer)
        except InfeasibleError as exc:
            raise ConfigError(f"model: {exc} (the draft runs with the target's tensor parallelism)") from None
        self.lines = UniformLines(self.draft_cm, self.spec.max_context)

    def cost_s(self, ctx: np.ndarray, last_new: np.ndarray, k: int) -> float:
        """k draft forwards (CUDA-graph replays): the first catches the draft up on the accepted tokens and
        samples the next draft, the others add one level each (``w^(i-1)`` nodes per sequence in a tree, every
        node sampled)."""
        if k <= 0 or ctx.size == 0:
            return 0.0
        b, lines = ctx.size, self.lines
        start = np.maximum(0, ctx + 1 - last_new)
        if (last_new == last_new[0]).all():
            total = lines.seconds(int(last_new[0]), b, float(start.sum()), 1, "full")
        else:
            total = float(sum(self.draft_cm.step_time(last_new, start, launch="full").stage_s))
        s = float(ctx.sum())
        for level in range(2, k + 1):
            n = self.tree_width ** (level - 1)
            total += lines.seconds(n, b, s + b * (level - 1), n, "full")
        return float(total)

    def kv_bytes_per_token(self, kv_bytes: float) -> float:
        return self.spec.kv_bytes_per_token(kv_bytes)


@PROPOSERS.register("draft_model")
class DraftModel(_ForwardProposer):
    """A separate small model (``model``: a shipped spec name or a config.json path) with the target's
    vocabulary: the target verifies the draft's token ids, so both must share a tokenizer."""

    name = acceptance_key = "draft_model"

    def __init__(self, model: str = "", tree_width: int = 1) -> None:
        super().__init__(tree_width)
        if not isinstance(model, str) or not model:
            raise ConfigError("model: a draft_model proposer needs the draft's model name")
        try:
            self.spec = load_model(model)
        except (ConfigError, OSError) as exc:
            raise ConfigError(f"model: {exc}") from None
        self.model_name = model

    def bind(self, target_cm) -> None:
        target = target_cm.model
        if self.spec.vocab_size != target.vocab_size:
            raise ConfigError(f"model: draft {self.spec.name} has a vocabulary of {self.spec.vocab_size} tokens, "
                              f"target {target.name} has {target.vocab_size}; draft and target must share "
                              "a tokenizer")
        super().bind(target_cm)

    def weight_bytes_per_gpu(self, precision, tp: int, k: int) -> float:
        return self.spec.weight_bytes(precision.weight_bytes) / tp


@PROPOSERS.register("eagle")
class Eagle(_ForwardProposer):
    """EAGLE-style head: one decoder layer of the target's shape sharing its embedding and LM head
    (``variant: eagle3`` selects the EAGLE-3 acceptance defaults; the cost is the same layer). The head's
    feature-fusion linear layer (2 or 3 hidden -> hidden) and EAGLE-3's smaller draft vocabulary are not
    modelled: the first adds 15-23 % to the layer's weights on Llama-3.1-8B (2 or 3 x 4096^2 on 218 M), the
    second would shrink the LM-head pass."""

    name = "eagle"

    def __init__(self, variant: str = "eagle", tree_width: int = 1) -> None:
        super().__init__(tree_width)
        if variant not in ("eagle", "eagle3"):
            raise ConfigError(f'variant: must be "eagle" or "eagle3", got {variant!r}')
        self.acceptance_key = variant

    def bind(self, target_cm) -> None:
        t = target_cm.model
        self.spec = replace(t, name=f"{t.name}-{self.acceptance_key}-head", num_layers=1)
        super().bind(target_cm)

    def weight_bytes_per_gpu(self, precision, tp: int, k: int) -> float:
        # the layer only: embedding and LM head are the target's
        return self.spec.num_layers * self.spec.layer_params() * precision.weight_bytes / tp


@PROPOSERS.register("medusa")
class Medusa(Proposer):
    """k Medusa heads on the target's last hidden state, one pass per step: per head a residual block
    (hidden x hidden) and an LM head (hidden x vocab, sharded over tp like the target's)."""

    name = acceptance_key = "medusa"

    def cost_s(self, ctx: np.ndarray, last_new: np.ndarray, k: int) -> float:
        if k <= 0 or ctx.size == 0:
            return 0.0
        m, cm = self.cm.model, self.cm
        b, tp = float(ctx.size), cm.layout.tp
        ops = [gemm("medusa_resblock", b, m.hidden_size, m.hidden_size, cm.precision),
               gemm("medusa_lm_head", b, -(-m.vocab_size // tp), m.hidden_size, cm.precision)]
        return float(k * sum(cm.timer.time(op).kernel_s for op in ops))

    def weight_bytes_per_gpu(self, precision, tp: int, k: int) -> float:
        m = self.cm.model
        return k * 2.0 * (m.hidden_size**2 + m.hidden_size * m.vocab_size / tp)  # 16-bit heads


@PROPOSERS.register("ngram")
class Ngram(Proposer):
    """Prompt lookup (vLLM ``ngram``): ``prompt_lookup_min`` / ``prompt_lookup_max`` are accepted for
    fidelity of the config but only the acceptance model decides what is accepted."""

    name = acceptance_key = "ngram"

    def __init__(self, prompt_lookup_min: int = 1, prompt_lookup_max: int = 4, tree_width: int = 1) -> None:
        super().__init__(tree_width)
        lo = _positive_int("prompt_lookup_min", prompt_lookup_min)
        hi = _positive_int("prompt_lookup_max", prompt_lookup_max)
        if lo > hi:
            raise ConfigError(f"prompt_lookup_min: {lo} exceeds prompt_lookup_max {hi}")
        if tree_width != 1:
            raise ConfigError("tree_width: prompt lookup proposes one chain")
