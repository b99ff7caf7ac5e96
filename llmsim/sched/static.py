"""Request-level (static) batching: FasterTransformer behind Triton's dynamic batcher.

A batch forms when ``max_batch_size`` requests wait or the oldest has waited ``max_wait_s`` (Triton's
``max_queue_delay``); it then runs as one unit: one prefill step over prompts padded to the longest, then
decode steps over every row until the longest output is done. Rows whose request already finished keep
computing (padding waste, costed), and every response is returned when the batch ends (non-streaming FT
backend), so E2E is the batch's end for all its requests; token times are still recorded as generated.
KV is reserved per request at admission (use ``kv: {kind: contiguous}``).
"""

from __future__ import annotations

from llmsim.sched.base import SCHEDULERS, Scheduler, _non_negative
from llmsim.sched.plan import Plan
from llmsim.sched.seq import FINISHED, RUNNING, Seq


@SCHEDULERS.register("static")
class StaticScheduler(Scheduler):
    name = "static"
    adoptable = False  # a static batch runs start to end together; nothing joins it midway
    chunked_prefill = False

    def __init__(self, max_batch_size: int = 8, max_wait_s: float = 0.1) -> None:
        super().__init__(max_batch_size, 1 << 40, "recompute")
        self.max_wait_s = _non_negative("max_wait_s", max_wait_s)
        self._max_prompt = 0
        self._step = 0  # decode steps done by the current batch

    def schedule(self, now: float = 0.0) -> Plan:
        if not self.running:
            return self._form_batch(now)
        plan = Plan()
        ctx = self._max_prompt + self._step
        for seq in self.running:
            if seq.num_emitted < seq.req.output_tokens:
                plan.add(seq, 1, cost_ctx=ctx)
            else:
                plan.pad(1, 1, ctx, grows=True)
        return plan

    def _form_batch(self, now: float) -> Plan:
        plan = Plan()
        if not self.waiting:
            return plan
        due = self.waiting[0].arrival_s + self.max_wait_s
        if len(self.waiting) < self.max_num_seqs and now < due:
            plan.wake_at_s = due
            return plan
        while self.waiting and len(self.running) < self.max_num_seqs:
            seq = self.waiting[0]
            if not self.kv.allocate(seq, seq.max_tokens):
                break
            self.waiting.popleft()
            seq.status = RUNNING
            self._admitted += 1
            seq.admit_order = self._admitted
            self.running.append(seq)
        self._max_prompt = max(s.num_tokens for s in self.running)
        self._step = 0
        for seq in self.running:
            plan.add(seq, seq.num_tokens, cost_new=self._max_prompt, cost_ctx=0)
        return plan

    def commit(self, plan: Plan) -> tuple[list[Seq], list[Seq]]:
        emitted = []
        for seq, n in zip(plan.seqs, plan.tokens, strict=True):
            seq.num_computed += n
            seq.computed_total += n
            seq.num_emitted += 1
            seq.num_tokens += 1
            emitted.append(seq)
        if plan.num_decode:
            self._step += 1
        return emitted, self._end_if_done()

    def _end_if_done(self) -> list[Seq]:
        if any(s.num_emitted < s.req.output_tokens for s in self.running):
            return []
        done, self.running = self.running, []
        for seq in done:
            seq.status = FINISHED
            self.release(seq)
        return done

    def steady_steps(self, plan: Plan, k_max: int) -> int:
        if plan.prefill or k_max <= 1:
            return 1
        return min(k_max, min(s.req.output_tokens - s.num_emitted for s in plan.seqs))

    def commit_run(self, plan: Plan, k: int) -> list[Seq]:
        for seq in plan.seqs:
            seq.num_computed += k
            seq.computed_total += k
            seq.num_tokens += k
            seq.num_emitted += k
        self._step += k
        return self._end_if_done()
