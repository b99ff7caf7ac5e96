"""A step plan: ``{sequence: tokens to compute}`` plus preemptions, swaps and padding, and the aggregates
the cost model needs (kept as the plan is built, so no second pass over the batch)."""

from __future__ import annotations

from llmsim.sched.seq import Seq


class Plan:
    """What one engine step does. ``seqs[i]`` computes ``tokens[i]`` new tokens. Cost aggregates:
    ``prefill`` lists (new, context) of every entry with more than one new token, decodes are counted in
    ``num_decode`` / ``decode_ctx_sum``; padding rows (CUDA-graph padding, static-batching padding) add
    cost but compute nothing real. ``wake_at_s`` (empty plans only) asks to be re-planned at that time
    even if nothing arrives (a batching window closing)."""

    __slots__ = ("seqs", "tokens", "preempted", "swap_in_blocks", "swap_out_blocks", "prefill", "num_decode",
                 "decode_ctx_sum", "num_emit", "num_pad", "num_growing_pad", "wake_at_s", "num_prefill_tokens")

    def __init__(self) -> None:
        self.seqs: list[Seq] = []
        self.tokens: list[int] = []
        self.preempted: list[Seq] = []
        self.swap_in_blocks = 0
        self.swap_out_blocks = 0
        self.prefill: list[tuple[int, int]] = []
        self.num_decode = 0
        self.decode_ctx_sum = 0
        self.num_emit = 0
        self.num_pad = 0
        self.num_growing_pad = 0
        self.wake_at_s: float | None = None
        self.num_prefill_tokens = 0

    def add(self, seq: Seq, tokens: int, cost_new: int | None = None, cost_ctx: int | None = None) -> None:
        """Schedule ``tokens`` new tokens of ``seq``; ``cost_new``/``cost_ctx`` override what the GPU computes
        (padded prompts in static batching)."""
        self.seqs.append(seq)
        self.tokens.append(tokens)
        new = tokens if cost_new is None else cost_new
        ctx = seq.num_computed if cost_ctx is None else cost_ctx
        self._cost_row(new, ctx)
        if seq.num_computed + tokens == seq.num_tokens:
            self.num_emit += 1
        if tokens > 1 or not seq.num_emitted:
            self.num_prefill_tokens += tokens

    def remove(self, seq: Seq) -> int:
        """Take back ``seq``'s entry (added with ``add``, before the step commits); returns its tokens."""
        i = self.seqs.index(seq)
        tokens = self.tokens.pop(i)
        del self.seqs[i]
        if tokens > 1:
            self.prefill.remove((tokens, seq.num_computed))
        else:
            self.num_decode -= 1
            self.decode_ctx_sum -= seq.num_computed
        if seq.num_computed + tokens == seq.num_tokens:
            self.num_emit -= 1
        if tokens > 1 or not seq.num_emitted:
            self.num_prefill_tokens -= tokens
        return tokens

    def add_decode(self, seq: Seq) -> None:
        """``add(seq, 1)`` for a sequence that has emitted and computed all but its last token (hot path)."""
        self.seqs.append(seq)
        self.tokens.append(1)
        self.num_decode += 1
        self.decode_ctx_sum += seq.num_computed
        self.num_emit += 1

    def _cost_row(self, new: int, ctx: int) -> None:
        if new > 1:
            self.prefill.append((new, ctx))
        else:
            self.num_decode += 1
            self.decode_ctx_sum += ctx

    def pad(self, count: int, new: int = 1, ctx: int = 0, grows: bool = False) -> None:
        """``count`` padding rows that cost like real ones but emit nothing; ``grows``: their context grows
        by one per decode step like a real row's (static batching's finished rows)."""
        for _ in range(count):
            self._cost_row(new, ctx)
        self.num_pad += count
        if grows:
            self.num_growing_pad += count

    @property
    def num_tokens(self) -> int:
        """Real tokens computed this step."""
        return sum(self.tokens)

    @property
    def batch_size(self) -> int:
        return len(self.seqs)

    @property
    def is_empty(self) -> bool:
        return not self.seqs

    @property
    def is_pure_decode(self) -> bool:
        """Every scheduled sequence decodes one token and nothing is preempted or swapped."""
        return (not self.prefill and not self.preempted and not self.swap_in_blocks and not self.swap_out_blocks
                and self.num_prefill_tokens == 0 and self.num_emit == len(self.seqs) > 0)

    @property
    def num_growing_rows(self) -> int:
        """Rows whose context grows by one per decode step."""
        return len(self.seqs) + self.num_growing_pad

    def cost_batch(self) -> tuple[list[int], list[int]]:
        """(new_tokens, context_tokens) lists equivalent, for the cost model, to this plan."""
        new = [n for n, _ in self.prefill]
        ctx = [c for _, c in self.prefill]
        d = self.num_decode
        if d:
            base, extra = divmod(self.decode_ctx_sum, d)
            new += [1] * d
            ctx += [base + 1] * extra + [base] * (d - extra)
        return new, ctx
