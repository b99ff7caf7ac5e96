"""FastServe (Wu et al., 2023, "Fast Distributed Inference Serving for LLMs"): skip-join multi-level
feedback queue, preemptive at iteration granularity, with proactive KV swapping.

Level ``i`` has a quantum of ``base_quantum * 2**i`` iterations. A new job skips the levels whose quantum
is shorter than its prefill (``ceil(prompt / prefill_tokens_per_iteration)`` iterations) and joins the
first that fits. Every step runs the highest-priority jobs (level, then arrival) up to ``max_batch_size``;
a job that has used its quantum is demoted one level; one not run for ``starvation_steps`` steps is
promoted to level 0. When a job chosen to run needs KV blocks, lower-priority resident jobs that are not
running are swapped out to host memory (recomputed if the swap space is full), and swapped jobs are
swapped back in when chosen. Prefills run whole (no chunking), as in the paper's prototype.
"""

from __future__ import annotations

from llmsim.kv.base import ceil_div
from llmsim.sched.base import SCHEDULERS, Scheduler, _positive_int
from llmsim.sched.plan import Plan
from llmsim.sched.seq import RUNNING, SWAPPED, WAITING, Seq


@SCHEDULERS.register("fastserve")
class FastServeScheduler(Scheduler):
    name = "fastserve"
    chunked_prefill = False
    tracks_steps = True

    def __init__(self, max_batch_size: int = 256, num_levels: int = 6, base_quantum: int = 1,
                 prefill_tokens_per_iteration: int = 512, starvation_steps: int = 2000,
                 max_num_batched_tokens: int = 16384, preemption_mode: str = "swap") -> None:
        super().__init__(max_batch_size, max_num_batched_tokens, preemption_mode)
        for name, value in (("num_levels", num_levels), ("base_quantum", base_quantum),
                            ("prefill_tokens_per_iteration", prefill_tokens_per_iteration),
                            ("starvation_steps", starvation_steps)):
            _positive_int(name, value)
        self.num_levels = num_levels
        self.base_quantum = base_quantum
        self.prefill_tokens_per_iteration = prefill_tokens_per_iteration
        self.starvation_steps = starvation_steps
        self._step = 0

    def quantum(self, level: int) -> int:
        return self.base_quantum << level

    def _enqueue(self, seq: Seq) -> None:
        iters = ceil_div(seq.prompt_tokens, self.prefill_tokens_per_iteration)
        seq.level = next((i for i in range(self.num_levels) if self.quantum(i) >= iters), self.num_levels - 1)
        seq.last_step = self._step
        self.waiting.append(seq)

    @staticmethod
    def _priority(seq: Seq) -> tuple[int, float, int]:
        return (seq.level, seq.arrival_s, seq.key)

    def schedule(self, now: float = 0.0) -> Plan:
        self._step += 1
        plan, scheduled = Plan(), set()
        budget = self.max_num_batched_tokens
        for seq in sorted([*self.running, *self.waiting, *self.swapped], key=self._priority):
            if self._step - seq.last_step > self.starvation_steps:
                seq.level, seq.iters_at_level = 0, 0
            if len(plan.seqs) >= self.max_num_seqs:
                break
            fresh = seq.status is WAITING and seq.num_computed == 0 and self.kv.supports_prefix
            hit = self.kv.match_prefix(seq) if fresh else 0
            n = seq.num_tokens - seq.num_computed - hit
            if n > budget or not self._make_room(seq, hit, n, plan, scheduled):
                continue
            plan.add(seq, n)
            scheduled.add(seq.key)
            seq.last_step = self._step
            budget -= n
        return plan

    def _make_room(self, seq: Seq, hit: int, n: int, plan: Plan, scheduled: set[int]) -> bool:
        """Get blocks for ``seq`` (``hit`` prompt tokens from the prefix cache, then ``n`` new ones), offloading
        lower-priority idle jobs if needed; swap it in or admit it."""
        need = seq.num_computed + hit + n
        while not self.kv.can_allocate(seq, need):
            victim = self._lowest_idle(seq, scheduled)
            if victim is None:
                return False
            self.running.remove(victim)
            self._preempt(victim, plan)
        self.kv.allocate(seq, need)
        if seq.status is SWAPPED:
            self.swapped.remove(seq)
            plan.swap_in_blocks += self.swap.take(seq.key)
            seq.status = RUNNING
            self.running.append(seq)
        elif seq.status is WAITING:
            self.waiting.remove(seq)
            seq.num_computed = hit
            seq.prefix_hit_tokens += hit
            seq.status = RUNNING
            self._admitted += 1
            seq.admit_order = self._admitted
            self.running.append(seq)
        return True

    def _lowest_idle(self, seq: Seq, scheduled: set[int]) -> Seq | None:
        """The lowest-priority resident job that is not running this step and ranks below ``seq``."""
        idle = [s for s in self.running if s.key not in scheduled and s is not seq]
        if not idle:
            return None
        victim = max(idle, key=self._priority)
        return victim if self._priority(victim) > self._priority(seq) else None

    def _after_step(self, seq: Seq, tokens: int) -> None:
        self._after_run(seq, ceil_div(tokens, self.prefill_tokens_per_iteration))

    def _after_run(self, seq: Seq, steps: int) -> None:
        seq.iters_at_level += steps
        while seq.level < self.num_levels - 1 and seq.iters_at_level >= self.quantum(seq.level):
            seq.iters_at_level -= self.quantum(seq.level)
            seq.level += 1

    def steady_steps(self, plan: Plan, k_max: int) -> int:
        if self.waiting or self.swapped or len(plan.seqs) != len(self.running):
            return 1  # someone is left out: a demotion could change who runs
        return super().steady_steps(plan, k_max)
