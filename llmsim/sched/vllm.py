"""vLLM's two schedulers, selected by ``mode``.

``v1`` mirrors ``vllm/v1/core/sched/scheduler.py`` (read at v0.10.2, v0.11.0 and v0.15.1; the engine's
default since v0.8): one token budget
(``max_num_batched_tokens``) per step, running requests first (each takes ``num_tokens -
num_computed_tokens``, capped by ``long_prefill_token_threshold`` and the budget, so long prompts are
chunked and mixed with decodes), then waiting requests FCFS while ``max_num_seqs`` and KV blocks allow;
a new request's prefix-cache hit is skipped; KV is allocated only for the tokens scheduled; when a running
request cannot get a block, ``self.running.pop()`` (the most recently admitted) is preempted by
recompute and put back at the head of the queue, and no new request is admitted in that step; the
step's token count is padded to the CUDA-graph capture sizes (up to ``max_capture_size``; which sizes and
how each step is launched come from the engine profile, ``llmsim.engines``). With async scheduling
(v0.15.1 ``AsyncScheduler``) a running request is scheduled again before its sampled token is known; since
output lengths are exact here, that is the same plan, one step earlier (the replica models the timing).

``v0`` mirrors ``Scheduler._schedule_default`` (v0.4-0.6, chunked prefill off): if nothing is swapped
out, waiting prompts are admitted FCFS, each whole, while the budget (default ``max(max_model_len,
2048)``), ``max_num_seqs`` and the block manager allow (``free - needed >= watermark`` blocks, watermark
0.01); a step that admits any prompt is prefill-only. Otherwise the running sequences decode; if a block
is short the last running one is preempted (recompute, or swap to CPU with ``preemption_mode='swap'``),
and when nothing was preempted swapped sequences come back FCFS. Pure-decode batches are padded to the
v0 capture sizes (1, 2, 4, 8, ..., 256).

Speculative decoding, parallel sampling and beam search wrap these policies (``llmsim.speculative``,
``llmsim.workload.parallel``, ``llmsim.workload.beam``). Not modelled: v0's ``delay_factor`` and multi-step
scheduling, stop strings and EOS (outputs have exact lengths); a request longer than ``max_model_len`` is rejected rather
than truncated.
"""

from __future__ import annotations

from llmsim.errors import ConfigError
from llmsim.sched.base import SCHEDULERS, _flag, _positive_int
from llmsim.sched.cudagraph import padded_size, v0_capture_sizes, v1_capture_sizes
from llmsim.sched.iteration import IterationScheduler
from llmsim.sched.plan import Plan
from llmsim.sched.sjf import SeqHeap

SCHEDULING_POLICIES = ("fcfs", "priority")


class VllmV1Scheduler(IterationScheduler):
    """vLLM v1 (v0.8-0.10) unified token-budget scheduler with chunked prefill. ``scheduling_policy:
    priority`` (vLLM ``--scheduling-policy priority``): the waiting queue is ordered by (request priority,
    arrival), lower first, and a request short of blocks preempts the running request with the largest
    (priority, arrival) instead of the last admitted, taking it back from the step if it was already
    scheduled."""

    name = "vllm-v1"

    def __init__(self, max_num_seqs: int = 256, max_num_batched_tokens: int = 8192,
                 long_prefill_token_threshold: int = 0, enable_chunked_prefill: bool = True,
                 cuda_graph: bool = True, max_capture_size: int = 512, capture_rule: str = "v1",
                 scheduling_policy: str = "fcfs") -> None:
        _positive_int("max_capture_size", max_capture_size)
        sizes = v1_capture_sizes(max_capture_size, capture_rule) if _flag("cuda_graph", cuda_graph) else []
        super().__init__(max_num_seqs, max_num_batched_tokens, "recompute", long_prefill_token_threshold, sizes)
        self.chunked = self.chunked_prefill = _flag("enable_chunked_prefill", enable_chunked_prefill)
        if scheduling_policy not in SCHEDULING_POLICIES:
            raise ConfigError(f'scheduling_policy: must be "fcfs" or "priority", got {scheduling_policy!r}')
        self.priority = scheduling_policy == "priority"
        if self.priority:
            self.waiting = SeqHeap(lambda seq: seq.req.priority)

    def _schedule_running(self, plan: Plan, budget: int, scheduled: set[int]) -> int:
        if not self.priority:
            return super()._schedule_running(plan, budget, scheduled)
        if self._all_decode(plan, budget):
            return budget - len(self.running)
        running, i = self.running, 0
        while i < len(running) and budget > 0:
            seq = running[i]
            n = self._chunk(seq, budget)
            while not self.kv.allocate(seq, seq.num_computed + n):
                # vLLM 0.15.1 _schedule_running, PRIORITY: max(running, key=(priority, arrival_time)), even
                # one already scheduled in this step (its tokens go back to the budget)
                victim = max(running, key=lambda s: (s.req.priority, s.arrival_s, s.admit_order))
                j = running.index(victim)
                running.pop(j)
                if j < i:
                    budget += plan.remove(victim)
                    i -= 1
                self._preempt(victim, plan)
                if victim is seq:
                    break
            else:
                plan.add(seq, n)
                budget -= n
                i += 1
        return budget


class VllmV0Scheduler(IterationScheduler):
    """vLLM v0 (v0.4-0.6) ``_schedule_default``: prefill-priority steps, no mixing, no chunking."""

    name = "vllm-v0"
    chunked = False
    reserve_prompt = True
    admission_watermark = True

    def __init__(self, max_num_seqs: int = 256, max_num_batched_tokens: int | None = None,
                 preemption_mode: str = "recompute", cuda_graph: bool = True, max_capture_size: int = 256) -> None:
        _positive_int("max_capture_size", max_capture_size)
        super().__init__(max_num_seqs, max_num_batched_tokens or 2048, preemption_mode, 0,
                         v0_capture_sizes(max_capture_size) if _flag("cuda_graph", cuda_graph) else [])
        self._budget_given = max_num_batched_tokens is not None

    def bind(self, kv, swap=None, max_model_len=None) -> None:
        super().bind(kv, swap, max_model_len)
        if not self._budget_given and max_model_len:
            self.max_num_batched_tokens = max(max_model_len, 2048)  # vLLM's default without chunking

    def schedule(self, now: float = 0.0) -> Plan:
        plan = Plan()
        if not self.swapped:
            self._schedule_waiting(plan, self.max_num_batched_tokens)
        if plan.seqs:
            return plan
        scheduled: set[int] = set()
        budget = self._schedule_running(plan, self.max_num_batched_tokens, scheduled)
        if not plan.preempted:
            self._schedule_swapped(plan, budget)
        if self.capture_sizes and plan.seqs and plan.is_pure_decode:
            plan.pad(padded_size(len(plan.seqs), self.capture_sizes) - len(plan.seqs))
        return plan


@SCHEDULERS.register("vllm")
def make_vllm(mode: str = "v1", max_num_seqs: int = 256, max_num_batched_tokens: int | None = None,
              long_prefill_token_threshold: int = 0, enable_chunked_prefill: bool = True,
              preemption_mode: str = "recompute", cuda_graph: bool = True,
              max_capture_size: int | None = None, capture_rule: str = "v1",
              scheduling_policy: str = "fcfs") -> IterationScheduler:
    """vLLM's scheduler: ``mode: v1`` (default, vLLM 0.8-0.15) or ``v0`` (vLLM 0.4-0.6 ``_schedule_default``);
    the module docstring gives each mode's semantics. ``capture_rule`` names the CUDA-graph size list
    (``v1``, ``v1_step8``; see ``llmsim.engines.profile.capture_sizes``); an engine profile sets it.
    ``scheduling_policy``: ``fcfs`` (default) or ``priority`` (v1 only; the workload's ``priority``, lower
    first, as vLLM's ``--scheduling-policy priority``)."""
    if capture_rule not in ("v1", "v1_step8", "v0"):
        raise ConfigError(f'capture_rule: must be "v1", "v1_step8" or "v0", got {capture_rule!r}')
    if max_num_batched_tokens is not None:  # None picks the mode's default; 0 must not
        _positive_int("max_num_batched_tokens", max_num_batched_tokens)
    if max_capture_size is not None:
        _positive_int("max_capture_size", max_capture_size)
    if mode == "v1":
        if preemption_mode != "recompute":
            raise ConfigError('preemption_mode: vLLM v1 preempts by recompute only; use mode "v0" for swap')
        return VllmV1Scheduler(max_num_seqs, max_num_batched_tokens or 8192, long_prefill_token_threshold,
                               enable_chunked_prefill, cuda_graph, max_capture_size or 512, capture_rule,
                               scheduling_policy)
    if scheduling_policy != "fcfs":
        raise ConfigError('scheduling_policy: "priority" is a vLLM v1 mode (mode: v1)')
    if mode == "v0":
        return VllmV0Scheduler(max_num_seqs, max_num_batched_tokens, preemption_mode, cuda_graph,
                               max_capture_size or 256)
    raise ConfigError(f'mode: must be "v0" or "v1", got {mode!r}')
