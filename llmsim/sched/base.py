"""Scheduler base: queues, admission checks, preemption and the commit of a step, shared by all policies.

A scheduler is pure decision logic: given its queues and the KV manager's verbs it returns a ``Plan``;
``commit(plan)`` applies the step's effect on sequence state. It never sees SimPy, the clock (except the
``now`` argument that time-windowed policies read) or randomness.
"""

from __future__ import annotations

import math
from collections import deque

from llmsim.errors import ConfigError
from llmsim.kv.base import KVManager, ceil_div
from llmsim.kv.swap import SwapSpace
from llmsim.registry import Registry
from llmsim.sched.plan import Plan
from llmsim.sched.seq import FINISHED, REJECTED, RUNNING, SWAPPED, WAITING, Seq

SCHEDULERS: Registry[Scheduler] = Registry("scheduler")
PREEMPTION_MODES = ("recompute", "swap")


def _positive_int(name: str, value: object, low: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        what = "a positive integer" if low == 1 else f"an integer >= {low}"
        raise ConfigError(f'"{name}" must be {what}, got {value!r}')
    return value


def _non_negative(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf:
        raise ConfigError(f'"{name}" must be a finite number >= 0, got {value!r}')
    return float(value)


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f'"{name}" must be true or false, got {value!r}')
    return value


class Scheduler:
    """Common state: ``waiting`` (deque, FCFS), ``running`` (admission order), ``swapped`` (deque)."""

    name = "base"
    chunked_prefill = True  # whether a prompt may be split over steps (else it must fit the token budget)
    tracks_steps = False  # whether _after_step / _after_run hooks run (MLFQ accounting)
    adoptable = True  # whether a running request may move in from another replica (P/D decode, migration)
    lora = None  # multi-LoRA runtime (llmsim.lora.runtime), set by the simulator: max_loras on admission

    def __init__(self, max_num_seqs: int = 256, max_num_batched_tokens: int = 8192,
                 preemption_mode: str = "recompute") -> None:
        self.max_num_seqs = _positive_int("max_num_seqs", max_num_seqs)
        self.max_num_batched_tokens = _positive_int("max_num_batched_tokens", max_num_batched_tokens)
        if preemption_mode not in PREEMPTION_MODES:
            raise ConfigError(f'"preemption_mode" must be one of {", ".join(PREEMPTION_MODES)}, '
                              f"got {preemption_mode!r}")
        self.preemption_mode = preemption_mode
        self.waiting: deque[Seq] = deque()
        self.running: list[Seq] = []
        self.swapped: deque[Seq] = deque()
        self.kv: KVManager | None = None
        self.swap: SwapSpace | None = None
        self.max_model_len = 1 << 30
        self.num_preemptions = 0
        self._admitted = 0

    def bind(self, kv: KVManager, swap: SwapSpace | None = None, max_model_len: int | None = None) -> None:
        """Attach the replica's KV manager (and swap space); called once by the simulator."""
        self.kv = kv
        self.swap = swap
        if max_model_len:
            self.max_model_len = max_model_len
        if self.preemption_mode == "swap" and swap is None:
            raise ConfigError('preemption_mode "swap" needs swap space (kv: swap_space_gb > 0)')

    # --- intake ------------------------------------------------------------------------------------
    def reject_reason(self, seq: Seq) -> str:
        """Why the engine would refuse this request outright ('' if it accepts it)."""
        if seq.max_tokens > self.max_model_len:
            return "exceeds_max_model_len"
        if not self.kv.fits_ever(seq):
            return "exceeds_kv_capacity"
        if not self.chunked_prefill and seq.max_tokens > self.max_num_batched_tokens:
            return "prompt_exceeds_max_num_batched_tokens"  # recompute of prompt + outputs must fit too
        return ""

    def add(self, seq: Seq) -> bool:
        """Queue a new request; False (with ``seq.reason`` set) if it is rejected."""
        reason = self.reject_reason(seq)
        if reason:
            seq.status, seq.reason = REJECTED, reason
            return False
        self._enqueue(seq)
        return True

    def _enqueue(self, seq: Seq) -> None:
        self.waiting.append(seq)

    @property
    def num_waiting(self) -> int:
        return len(self.waiting) + len(self.swapped)

    @property
    def num_unfinished(self) -> int:
        return len(self.waiting) + len(self.running) + len(self.swapped)

    def has_work(self) -> bool:
        return bool(self.waiting or self.running or self.swapped)

    # --- planning ----------------------------------------------------------------------------------
    def schedule(self, now: float = 0.0) -> Plan:
        raise NotImplementedError

    def _admit(self, seq: Seq, plan: Plan, tokens: int) -> None:
        seq.status = RUNNING
        self._admitted += 1
        seq.admit_order = self._admitted
        self.running.append(seq)
        plan.add(seq, tokens)

    def _preempt(self, seq: Seq, plan: Plan) -> None:
        """Evict ``seq`` from the GPU: by swap if asked and there is room, else by recompute."""
        self.num_preemptions += 1
        seq.num_preemptions += 1
        plan.preempted.append(seq)
        if self.preemption_mode == "swap" and self._swap_out(seq, plan):
            return
        self.kv.free(seq)
        seq.num_computed = 0
        seq.status = WAITING
        self.waiting.appendleft(seq)  # vLLM: a preempted request goes back to the head of the queue

    def _swap_out(self, seq: Seq, plan: Plan) -> bool:
        blocks = ceil_div(seq.num_computed, self.kv.block_size)
        if not self.swap.can_hold(blocks):
            return False
        self.kv.free(seq)
        self.swap.put(seq.key, blocks)
        plan.swap_out_blocks += blocks
        seq.status = SWAPPED
        self.swapped.append(seq)
        return True

    def _try_swap_in(self, seq: Seq, plan: Plan, tokens: int) -> bool:
        """Bring a swapped sequence back (its computed tokens plus ``tokens`` new ones) if blocks allow."""
        if not self.kv.can_allocate(seq, seq.num_computed + tokens, watermark=True):
            return False
        self.kv.allocate(seq, seq.num_computed + tokens)
        plan.swap_in_blocks += self.swap.take(seq.key)
        seq.status = RUNNING
        self.running.append(seq)
        plan.add(seq, tokens)
        return True

    def _pop_victim(self, scheduled: set[int] | None) -> Seq:
        """vLLM: the lowest-priority running sequence is the last admitted (``self.running.pop()``); one
        already in this step's plan (``scheduled``, when the pass is not in running order) is skipped."""
        if scheduled is None:
            return self.running.pop()
        for i in range(len(self.running) - 1, -1, -1):
            if self.running[i].key not in scheduled:
                return self.running.pop(i)
        return self.running.pop()

    def _grow_or_preempt(self, seq: Seq, num_tokens: int, plan: Plan, scheduled: set[int] | None) -> bool:
        """Allocate for ``seq`` or preempt victims until it fits; False if ``seq`` itself was preempted."""
        while not self.kv.allocate(seq, num_tokens):
            victim = self._pop_victim(scheduled)
            self._preempt(victim, plan)
            if victim is seq:
                return False
        return True

    # --- commit ------------------------------------------------------------------------------------
    def commit(self, plan: Plan) -> tuple[list[Seq], list[Seq]]:
        """Apply a finished step: returns (sequences that emitted a token, sequences that finished)."""
        emitted: list[Seq] = []
        finished: list[Seq] = []
        emit = emitted.append
        hook = self.tracks_steps
        for seq, n in zip(plan.seqs, plan.tokens):  # noqa: B905 (equal by construction; hot loop)
            c = seq.num_computed + n
            seq.num_computed = c
            seq.computed_total += n
            if c == seq.num_tokens:
                seq.num_tokens = c + 1
                seq.num_emitted += 1
                emit(seq)
                if seq.num_emitted >= seq.req.output_tokens:
                    finished.append(seq)
            if hook:
                self._after_step(seq, n)
        if finished:
            for seq in finished:
                seq.status = FINISHED
                self.release(seq)
            self.running = [s for s in self.running if s.status is RUNNING]
        return emitted, finished

    def release(self, seq: Seq) -> None:
        """Free a finished sequence's KV, unless the cluster keeps it to send elsewhere (``seq.hold_kv``:
        a prefill replica holds the cache until the transfer to the decode replica ends)."""
        if not seq.hold_kv:
            self.kv.free(seq)

    def adopt(self, seq: Seq) -> None:
        """Take in a request whose KV the cluster already allocated here (after a prefill/decode handoff or a
        live migration): it joins the running set and continues where it stopped."""
        seq.status = RUNNING
        seq.adopted = False
        self._admitted += 1
        seq.admit_order = self._admitted
        self.running.append(seq)

    def _after_step(self, seq: Seq, tokens: int) -> None:
        """Per-sequence hook after each step (MLFQ accounting)."""

    def _after_run(self, seq: Seq, steps: int) -> None:
        """Per-sequence hook after a collapsed run of ``steps`` decode steps."""

    # --- decode-run collapsing -----------------------------------------------------------------------
    def steady_steps(self, plan: Plan, k_max: int) -> int:
        """How many consecutive steps (this one included) will repeat ``plan`` as the same pure-decode batch
        if nothing arrives: until a sequence finishes or the KV cache would run short. 1 = no promise."""
        if k_max <= 1 or not plan.is_pure_decode or not self._admission_stays_blocked():
            return 1
        k = min(k_max, min(s.req.output_tokens - s.num_emitted for s in plan.seqs))
        return self._kv_run_limit(plan.seqs, k)

    def _admission_stays_blocked(self) -> bool:
        """True if whatever is queued could not be admitted this step and cannot be until something
        finishes (admission blocked on sequence slots or KV blocks, both monotone in a decode run)."""
        return True

    def _kv_run_limit(self, seqs: list[Seq], k: int) -> int:
        """Largest j <= k such that every sequence can grow j - 1 more tokens without running out."""
        kv = self.kv
        if getattr(kv, "reservation", None):  # contiguous: reserved up front
            return k
        bs = kv.block_size
        free = kv.num_free_blocks
        if len(seqs) * ceil_div(k, bs) <= free:
            return k
        lo, hi = 1, k
        while lo < hi:  # number of blocks needed is monotone in j
            mid = (lo + hi + 1) // 2
            need = sum(ceil_div(s.num_computed + mid, bs) - ceil_div(s.num_computed + 1, bs) for s in seqs)
            if need <= free:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def steady_chunks(self, plan: Plan, k_max: int) -> list[int] | None:
        """Prompt chunks of the consecutive steps (this one first) that will repeat ``plan``'s shape if
        nothing arrives: the same decodes and one prompt continuing chunk by chunk (``IterationScheduler``
        with ``collapses_chunks``). None: no such run of two or more steps."""
        return None

    def reserve_run(self, seqs: list[Seq], k: int) -> list[int]:
        """Allocate the blocks ``k`` steps of decoding ``seqs`` need (``steady_steps`` checked they fit).
        Returns ``r = h * bs - c - 1`` (``c`` tokens computed in ``h`` blocks at the run's start) of each
        sequence that takes a block within the run (``r < k - 1``): it holds ``ceil((s - r) / bs)`` more
        blocks at step ``s`` (none while ``s <= r``)."""
        kv = self.kv
        bs, held = kv.block_size, kv.held_blocks
        last = k - 1
        grow: list[Seq] = []
        rs: list[int] = []
        for seq in seqs:
            c = seq.num_computed
            if (c + last) // bs != c // bs:  # crosses into a later block
                grow.append(seq)
                r = held(seq) * bs - c - 1
                if r < last:
                    rs.append(r)
        if grow:
            failed = kv.grow_run(grow, k)
            if failed >= 0:
                raise RuntimeError(f"scheduler {self.name}: a collapsed decode run of {k} steps ran out of KV "
                                   f"blocks for sequence {grow[failed].id} (steady_steps promised they fit; a bug)")
        return rs

    def commit_run(self, plan: Plan, k: int) -> list[Seq]:
        """Apply ``k`` steps of a steady pure-decode plan at once (after ``reserve_run``); returns the
        sequences that finished."""
        finished = []
        for seq in plan.seqs:
            seq.num_computed += k
            seq.computed_total += k
            seq.num_tokens += k
            e = seq.num_emitted = seq.num_emitted + k
            if e >= seq.req.output_tokens:
                finished.append(seq)
        if self.tracks_steps:  # after every sequence's counts moved (the hook reads only its own)
            for seq in plan.seqs:
                self._after_run(seq, k)
        if finished:
            for seq in finished:
                seq.status = FINISHED
                self.release(seq)
            self.running = [s for s in self.running if s.status is RUNNING]
        return finished

    def commit_chunk_run(self, plan: Plan, prompt: Seq, tokens: int, k: int) -> list[Seq]:
        """Apply ``k`` steps of a ``steady_chunks`` plan at once (after ``reserve_run`` for its decodes):
        every other sequence decoded ``k`` tokens, ``prompt`` computed ``tokens`` (and sampled a token if
        that ends its prompt); returns the sequences that finished, in plan order as a step commits them."""
        finished = []
        for seq in plan.seqs:
            if seq is prompt:
                c = seq.num_computed + tokens
                seq.num_computed = c
                seq.computed_total += tokens
                if c == seq.num_tokens:
                    seq.num_tokens = c + 1
                    seq.num_emitted += 1
                    if seq.num_emitted >= seq.req.output_tokens:
                        finished.append(seq)
                continue
            seq.num_computed += k
            seq.computed_total += k
            seq.num_tokens += k
            e = seq.num_emitted = seq.num_emitted + k
            if e >= seq.req.output_tokens:
                finished.append(seq)
        if finished:
            for seq in finished:
                seq.status = FINISHED
                self.release(seq)
            self.running = [s for s in self.running if s.status is RUNNING]
        return finished

    def check(self) -> None:
        """Invariants of queues and KV (tests call this after every step)."""
        self.kv.check()
        for seq in self.running:
            assert seq.status is RUNNING, seq
        for seq in self.waiting:
            assert seq.status is WAITING, seq
