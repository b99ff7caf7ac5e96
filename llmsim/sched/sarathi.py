"""Sarathi-Serve (Agrawal et al., OSDI'24; ``sarathi-serve`` repo, ``SarathiScheduler``): stall-free
batching with chunked prefills under a fixed per-step token budget (``chunk_size``, 512 by default).

Every step first takes all running decodes (one token each, never stalled by prefills), then continues
running partial prefills, then admits waiting requests FCFS, each chunked to what is left of the budget.
Admission allocates KV for the whole prompt (the vLLM-v0 block manager it is built on, watermark 0.01);
a decode that cannot get a block preempts the most recently admitted request by recompute.
"""

from __future__ import annotations

from llmsim.sched.base import SCHEDULERS, _positive_int
from llmsim.sched.iteration import IterationScheduler


@SCHEDULERS.register("sarathi")
class SarathiScheduler(IterationScheduler):
    name = "sarathi"
    chunked = True
    reserve_prompt = True
    admission_watermark = True
    decodes_first = True
    collapses_chunks = True

    def __init__(self, chunk_size: int = 512, max_num_seqs: int = 128, preemption_mode: str = "recompute") -> None:
        super().__init__(max_num_seqs, _positive_int("chunk_size", chunk_size), preemption_mode)
