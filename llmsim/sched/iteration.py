"""Iteration-level scheduling skeleton shared by the vLLM v1, Sarathi-Serve, Orca and SJF policies.

One step = the running sequences first (each continues its prompt chunk or decodes one token, growing its
KV or preempting the last admitted), then, if nothing was preempted, swapped sequences and then waiting
ones are admitted while the token budget, ``max_num_seqs`` and KV blocks allow. The policies differ in
knobs (chunking, what is reserved on admission, watermark, order of the running pass, queue order).
"""

from __future__ import annotations

from llmsim.kv.base import KVManager
from llmsim.sched.base import Scheduler, _positive_int
from llmsim.sched.cudagraph import padded_size
from llmsim.sched.plan import Plan
from llmsim.sched.seq import RUNNING, Seq

UNLIMITED = 1 << 40


class IterationScheduler(Scheduler):
    """Knobs: ``chunked`` (prompts split by the budget), ``long_prefill_token_threshold`` (cap per prompt
    chunk, 0 = none), ``reserve_prompt`` (admission allocates the whole prompt, vLLM-v0 block manager) vs
    only the scheduled chunk (v1), ``admission_watermark`` (keep the watermark free on admission),
    ``decodes_first`` (running decodes before running prefills), ``capture_sizes`` (pad the step's token
    count up to a CUDA-graph size)."""

    chunked = True
    reserve_prompt = False
    admission_watermark = False
    decodes_first = False
    collapses_chunks = False  # steady_chunks: runs of prompt-chunk steps (needs reserve_prompt, decodes_first)

    def __init__(self, max_num_seqs: int = 256, max_num_batched_tokens: int | None = 8192,
                 preemption_mode: str = "recompute", long_prefill_token_threshold: int = 0,
                 capture_sizes: list[int] | None = None) -> None:
        if max_num_batched_tokens is not None:  # None: no budget; 0 is a mistake, not "unlimited"
            _positive_int("max_num_batched_tokens", max_num_batched_tokens)
        super().__init__(max_num_seqs, max_num_batched_tokens or UNLIMITED, preemption_mode)
        self.long_prefill_token_threshold = _positive_int("long_prefill_token_threshold",
                                                          long_prefill_token_threshold, low=0)
        self.capture_sizes = capture_sizes or []
        self.chunked_prefill = self.chunked

    def schedule(self, now: float = 0.0) -> Plan:
        plan = Plan()
        scheduled: set[int] = set()
        budget = self._schedule_running(plan, self.max_num_batched_tokens, scheduled)
        if not plan.preempted:
            budget = self._schedule_swapped(plan, budget)
            self._schedule_waiting(plan, budget)
        self._pad(plan)
        return plan

    def steady_chunks(self, plan: Plan, k_max: int) -> list[int] | None:
        """``Scheduler.steady_chunks`` for a policy that reserves whole prompts at admission and schedules
        decodes first (Sarathi-Serve): every running sequence in this step, all but one decoding one token and
        one prompt chunk taking the rest of the budget. The next steps then repeat it (the decodes, then the
        prompt's next chunk of what the budget leaves) until the prompt's last chunk, a decode's last token, a
        one-token chunk (costed as a decode) or the KV cache running short. With requests queued, only while
        the chunks fill the budget: a step with budget left would admit (or swap in) one of them. The prompt
        took its blocks (and a prefix cache registered its full blocks) at admission, so its chunks allocate
        nothing."""
        queued = bool(self.waiting or self.swapped)
        if (not self.collapses_chunks or k_max <= 1 or plan.preempted
                or plan.swap_in_blocks or plan.swap_out_blocks or plan.num_pad or self.capture_sizes
                or len(plan.prefill) != 1 or len(plan.seqs) != len(self.running) or self.tracks_steps):
            return None
        d = len(plan.seqs) - 1
        i = next(j for j, t in enumerate(plan.tokens) if t > 1)
        prompt, first = plan.seqs[i], plan.tokens[i]
        if plan.num_decode != d or plan.num_emit != d or plan.num_prefill_tokens != first:
            return None  # a one-token row that is not a decode, or the prompt ends in this step
        room = self.max_num_batched_tokens - d
        left = prompt.num_tokens - prompt.num_computed
        if first != min(self._chunk(prompt, room), left) or first >= left or (queued and first != room):
            return None
        decoders = [s for s in plan.seqs if s is not prompt]
        k = min(k_max, min((s.req.output_tokens - s.num_emitted for s in decoders), default=k_max))
        chunks = [first]
        left -= first
        while left > 0 and len(chunks) < k:
            c = min(left, room, self.long_prefill_token_threshold or left)
            if c < 2 or (queued and c != room):
                break
            chunks.append(c)
            left -= c
        n = self._kv_run_limit(decoders, len(chunks)) if decoders else len(chunks)
        if n < 2 or self.kv.blocks_needed(prompt, prompt.num_computed + sum(chunks[:n])):
            return None
        return chunks[:n]

    # --- running -----------------------------------------------------------------------------------
    def _running_order(self) -> list[Seq]:
        if not self.decodes_first:
            return list(self.running)
        decodes: list[Seq] = []
        others: list[Seq] = []
        for s in self.running:  # Seq.is_decoding, inlined (hot loop)
            (decodes if s.num_computed == s.num_tokens - 1 and s.num_emitted > 0 else others).append(s)
        return decodes + others

    def _chunk(self, seq: Seq, budget: int) -> int:
        n = seq.num_tokens - seq.num_computed
        if self.long_prefill_token_threshold and n > self.long_prefill_token_threshold:
            n = self.long_prefill_token_threshold
        return min(n, budget)

    def _schedule_running(self, plan: Plan, budget: int, scheduled: set[int]) -> int:
        if self.decodes_first:
            return self._schedule_reordered(plan, budget, scheduled)
        if self._all_decode(plan, budget):
            return budget - len(self.running)
        # vLLM order: walk ``self.running``; victims are popped from its tail, never behind the cursor.
        running, bs = self.running, self.kv.block_size
        seqs, tokens = plan.seqs, plan.tokens
        n_fast = ctx_fast = 0
        i = 0
        while i < len(running) and budget > 0:
            seq = running[i]
            c = seq.num_computed
            if seq.num_tokens - c == 1 and c % bs and seq.num_emitted:  # decode inside its last block
                seqs.append(seq)
                tokens.append(1)
                n_fast += 1
                ctx_fast += c
                budget -= 1
                i += 1
                continue
            n = self._chunk(seq, budget)
            if self._grow_or_preempt(seq, c + n, plan, None):
                plan.add(seq, n)
                budget -= n
                i += 1
        plan.num_decode += n_fast
        plan.decode_ctx_sum += ctx_fast
        plan.num_emit += n_fast
        return budget

    def _all_decode(self, plan: Plan, budget: int) -> bool:
        """Fast path, same outcome as the walk below: every running sequence decodes one token and every
        block it needs is free, so nothing is preempted and order does not matter."""
        running, kv = self.running, self.kv
        if len(running) > budget or any(s.num_tokens - s.num_computed != 1 or not s.num_emitted for s in running):
            return False
        bs = kv.block_size
        for seq in [s for s in running if not s.num_computed % bs]:
            if not kv.allocate(seq, seq.num_computed + 1):
                return False  # the walk redoes this in order (allocations already made stay valid)
        plan.seqs.extend(running)
        plan.tokens.extend([1] * len(running))
        plan.num_decode += len(running)
        plan.decode_ctx_sum += sum([s.num_computed for s in running])
        plan.num_emit += len(running)
        return True

    def _schedule_reordered(self, plan: Plan, budget: int, scheduled: set[int]) -> int:
        kv = self.kv
        bs = kv.block_size
        # a decode inside its last block takes no block: allocate() would change nothing (KVManager docstring)
        in_place = kv.in_block_decode_free and type(kv).allocate is KVManager.allocate
        for seq in self._running_order():
            if budget <= 0:
                break
            if seq.status is not RUNNING:  # preempted earlier in this step
                continue
            c = seq.num_computed
            if in_place and c % bs and seq.num_tokens - c == 1 and seq.num_emitted:
                plan.add_decode(seq)
                scheduled.add(seq.key)
                budget -= 1
                continue
            n = self._chunk(seq, budget)
            if not self._grow_or_preempt(seq, seq.num_computed + n, plan, scheduled):
                continue
            plan.add(seq, n)
            scheduled.add(seq.key)
            budget -= n
        return budget

    # --- admissions ----------------------------------------------------------------------------------
    def _schedule_swapped(self, plan: Plan, budget: int) -> int:
        while self.swapped and budget > 0 and len(self.running) < self.max_num_seqs:
            seq = self.swapped[0]
            n = self._chunk(seq, budget)
            if not self._try_swap_in(seq, plan, n):
                break
            self.swapped.popleft()
            budget -= n
        return budget

    def _schedule_waiting(self, plan: Plan, budget: int) -> int:
        if self.lora is not None:
            return self._schedule_waiting_lora(plan, budget)
        kv = self.kv
        while self.waiting and budget > 0 and len(self.running) < self.max_num_seqs:
            seq = self.waiting[0]
            hit = kv.match_prefix(seq) if kv.supports_prefix and seq.num_computed == 0 else 0
            n = seq.num_tokens - hit
            if not self.chunked and n > budget:
                break
            chunk = min(n, budget)
            if self.long_prefill_token_threshold:
                chunk = min(chunk, self.long_prefill_token_threshold)
            alloc = seq.num_tokens if self.reserve_prompt else hit + chunk
            if not kv.can_allocate(seq, alloc, watermark=self.admission_watermark) or not kv.allocate(seq, alloc):
                break
            self.waiting.popleft()
            seq.num_computed = hit
            seq.prefix_hit_tokens += hit
            self._admit(seq, plan, chunk)
            budget -= chunk
        return budget

    def _schedule_waiting_lora(self, plan: Plan, budget: int) -> int:
        """vLLM v0.15.1 (v1 scheduler) with LoRA: a waiting request whose adapter would make the step's
        distinct adapters exceed ``max_loras`` is skipped; the skipped ones go back to the head of the queue
        in order once the step's admissions are done."""
        lora, waiting = self.lora, self.waiting
        loras = {lora.adapter_of(s) for s in plan.seqs}
        skipped: list[Seq] = []
        while waiting and budget > 0 and len(self.running) < self.max_num_seqs:
            seq = waiting[0]
            if not lora.admissible(seq, loras):
                skipped.append(waiting.popleft())
                continue
            before = len(plan.seqs)
            budget = self._admit_one(plan, budget)
            if len(plan.seqs) == before:
                break
            loras.add(lora.adapter_of(seq))
        restore = getattr(waiting, "appendleft", None)
        for seq in reversed(skipped) if restore else skipped:
            (restore or waiting.append)(seq)
        return budget

    def _admit_one(self, plan: Plan, budget: int) -> int:
        """Admit the head of the queue if the budget and KV allow (the body of ``_schedule_waiting``)."""
        kv, seq = self.kv, self.waiting[0]
        hit = kv.match_prefix(seq) if kv.supports_prefix and seq.num_computed == 0 else 0
        n = seq.num_tokens - hit
        if not self.chunked and n > budget:
            return budget
        chunk = min(n, budget)
        if self.long_prefill_token_threshold:
            chunk = min(chunk, self.long_prefill_token_threshold)
        alloc = seq.num_tokens if self.reserve_prompt else hit + chunk
        if not kv.can_allocate(seq, alloc, watermark=self.admission_watermark) or not kv.allocate(seq, alloc):
            return budget
        self.waiting.popleft()
        seq.num_computed = hit
        seq.prefix_hit_tokens += hit
        self._admit(seq, plan, chunk)
        return budget - chunk

    def _pad(self, plan: Plan) -> None:
        if self.capture_sizes and plan.seqs:
            total = plan.num_tokens
            plan.pad(padded_size(total, self.capture_sizes) - total)
