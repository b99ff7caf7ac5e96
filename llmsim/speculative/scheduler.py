"""Speculative decoding on top of any iteration-level scheduler, with vLLM v1 semantics.

Read in ``vllm/v1/core/sched/scheduler.py`` (v0.15.1):
- a running request's tokens to schedule are ``num_tokens_with_spec - num_computed_tokens``, i.e. its last
  token plus its draft tokens, so drafts count against ``max_num_batched_tokens`` and get KV slots like any
  token (a request short of blocks preempts as usual); a step that can schedule only part of them trims the
  drafts (``spec_token_ids[:num_scheduled_spec_tokens]``);
- the target verifies the k drafts in one forward over k + 1 positions;
- ``update_from_output``: ``num_accepted = len(generated) - 1``, ``num_computed_tokens -= num_rejected``,
  so the rejected positions are given back and overwritten by the next step (their slots stay in the
  request's block table; vLLM does not shrink it, nor does this model), and the step emits 1 + accepted
  tokens; ``_update_request_with_output`` stops at ``max_tokens``, dropping any overshoot.

Here the drafts are added to a decoding sequence's ``num_tokens`` while the wrapped policy plans, so its
own budget, KV and preemption rules apply unchanged; the plan then carries the verification rows
(``SpecPlan.verify``) for the timer and the commit. Drafts are capped at ``remaining outputs - 1`` (a draft
past ``max_tokens`` could never be emitted). Collapsed decode runs stay exact: a plan with verification
rows is not pure decode, so it is never collapsed, and ``adaptive`` k turns collapsing off.
"""

from __future__ import annotations

import numpy as np

from llmsim.sched.base import Scheduler
from llmsim.sched.iteration import IterationScheduler
from llmsim.sched.plan import Plan
from llmsim.sched.seq import Seq
from llmsim.speculative.speculator import Speculator


class SpecPlan(Plan):
    """A plan with verification rows: ``verify`` lists (index in ``seqs``, depth, positions) per row that
    verifies drafts; ``spec`` is the engine's speculator (the timer adds the proposer's time to it)."""

    __slots__ = ("verify", "spec")

    @classmethod
    def of(cls, plan: Plan, verify: list[tuple[int, int, int]], spec: Speculator) -> SpecPlan:
        out = cls.__new__(cls)
        for name in Plan.__slots__:
            setattr(out, name, getattr(plan, name))
        out.verify = verify
        out.spec = spec
        return out


class SpeculativeMixin:
    """Overrides ``schedule``, ``commit``, ``steady_steps`` and ``steady_chunks`` of the scheduler class it is
    mixed into."""

    spec: Speculator

    def schedule(self, now: float = 0.0) -> Plan:
        sp = self.spec
        running = self.running
        cands = [s for s in running if s.num_emitted and s.num_computed == s.num_tokens - 1]
        mean_ctx = sum(s.num_computed for s in cands) / len(cands) if cands else 0.0
        k = sp.choose_k(len(running), len(cands), mean_ctx)
        bumped: dict[int, tuple[Seq, int, int]] = {}
        if k:
            for seq in cands:
                depth = min(k, seq.req.output_tokens - seq.num_emitted - 1)
                positions = sp.proposer.verify_positions(depth) if depth > 0 else 0
                positions = min(positions, self.max_model_len - 2 - seq.num_computed)
                if positions > 0:
                    seq.num_tokens += positions
                    bumped[seq.key] = (seq, depth, positions)
        try:
            plan = super().schedule(now)
        finally:
            for seq, _, positions in bumped.values():
                seq.num_tokens -= positions
        if not bumped:
            sp.num_plain_steps += 1
            return plan
        return self._verification_plan(plan, bumped)

    def _verification_plan(self, plan: Plan, bumped: dict[int, tuple[Seq, int, int]]) -> Plan:
        verify = []
        width = self.spec.proposer.tree_width
        for i, (seq, n) in enumerate(zip(plan.seqs, plan.tokens, strict=True)):
            entry = bumped.get(seq.key)
            if entry is None or seq.num_computed != seq.num_tokens - 1:
                continue
            _, depth, positions = entry
            if n < positions + 1:  # the budget cut the drafts: keep the scheduled prefix
                plan.num_emit += 1  # Plan.add did not count it (it did not reach the inflated length)
                positions = n - 1
                depth = min(depth, _depth_within(positions, width))
            if n > 1:  # a verification (a tree cut below its first full level verifies depth 0, emits 1)
                plan.num_prefill_tokens -= n  # Plan.add counted the row as a prompt chunk
                verify.append((i, depth, n - 1))
        if not verify:
            self.spec.num_plain_steps += 1
            return plan
        return SpecPlan.of(plan, verify, self.spec)

    def commit(self, plan: Plan) -> tuple[list[Seq], list[Seq]]:
        verify = getattr(plan, "verify", None)
        if not verify:
            return super().commit(plan)
        sp = self.spec
        seqs, tokens = plan.seqs, plan.tokens
        rows = [seqs[i] for i, _, _ in verify]
        depths = np.fromiter((d for _, d, _ in verify), dtype=np.int64, count=len(verify))
        positions = np.fromiter((p for _, _, p in verify), dtype=np.int64, count=len(verify))
        accepted = sp.accept([s.req.slo_class for s in rows], depths)
        remaining = np.fromiter((s.req.output_tokens - s.num_emitted for s in rows), dtype=np.int64,
                                count=len(rows))
        emitted = np.minimum(1 + accepted, remaining)
        sp.record(depths, positions, accepted, emitted)
        saved = []
        for (i, _, p), seq, e in zip(verify, rows, emitted.tolist(), strict=True):
            # advance by the e - 1 extra tokens; the base commit then computes and emits the last one
            seq.num_computed += e - 1
            seq.num_tokens += e - 1
            seq.num_emitted += e - 1
            seq.computed_total += p  # 1 + p positions computed in all, the base commit adds the 1
            saved.append((i, tokens[i]))
            tokens[i] = 1
            sp.last_new[seq.key] = e
        try:
            emitted_seqs, finished = super().commit(plan)
        finally:
            for i, n in saved:
                tokens[i] = n
        for seq in finished:
            sp.last_new.pop(seq.key, None)
        return emitted_seqs, finished

    def steady_steps(self, plan: Plan, k_max: int) -> int:
        if self.spec.config.adaptive:
            return 1
        return super().steady_steps(plan, k_max)

    def steady_chunks(self, plan: Plan, k_max: int) -> list[int] | None:
        return None  # every step chooses its drafts (``schedule``): no run of plain prompt-chunk steps


def _depth_within(positions: int, width: int) -> int:
    """Deepest full tree level reachable with ``positions`` nodes (chain: the positions themselves)."""
    if width == 1:
        return positions
    depth, nodes = 0, 0
    while nodes + width ** (depth + 1) <= positions:
        depth += 1
        nodes += width**depth
    return depth


_CLASSES: dict[type, type] = {}


def speculative_scheduler(sched: Scheduler, spec: Speculator) -> Scheduler:
    """Turn ``sched`` (an iteration-level scheduler) into its speculating variant in place, and return it."""
    if not isinstance(sched, IterationScheduler):
        raise TypeError(f"speculative decoding needs an iteration-level scheduler, not {type(sched).__name__}")
    base = type(sched)
    cls = _CLASSES.get(base)
    if cls is None:
        cls = _CLASSES[base] = type(f"Speculative{base.__name__}", (SpeculativeMixin, base), {})
    sched.__class__ = cls
    sched.spec = spec
    return sched
