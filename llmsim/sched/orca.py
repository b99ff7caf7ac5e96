"""Orca (Yu et al., OSDI'22): iteration-level scheduling with selective batching.

Each iteration runs every running request (a newly admitted one processes its whole prompt in its first
iteration, alongside others' decodes) and admits waiting requests FCFS while fewer than
``max_batch_size`` run and the KV manager can reserve their slots. Orca reserves KV for the maximum
length up front (use ``kv: {kind: contiguous}``, the paper's setting), so it never preempts; over a paged
KV manager it preempts like vLLM when blocks run out. ``max_num_batched_tokens`` (off by default) caps the
tokens of an iteration.
"""

from __future__ import annotations

from llmsim.sched.base import SCHEDULERS
from llmsim.sched.iteration import IterationScheduler


@SCHEDULERS.register("orca")
class OrcaScheduler(IterationScheduler):
    name = "orca"
    chunked = False
    reserve_prompt = True

    def __init__(self, max_batch_size: int = 256, max_num_batched_tokens: int | None = None) -> None:
        super().__init__(max_batch_size, max_num_batched_tokens, "recompute")
