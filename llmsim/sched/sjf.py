"""Shortest predicted job first, S3-style (Jin et al., 2023): an output-length predictor orders the queue.

Iteration-level batching as in vLLM v1 (token budget, chunked prefill, preemption of the last admitted),
but waiting requests are admitted in order of predicted output length. The prediction is
``output_tokens * exp(predictor_error * z)``, ``z`` a standard-normal draw per request made by the
simulator from its seeded generator (``Seq.noise``): ``predictor_error=0`` is an oracle.
"""

from __future__ import annotations

import heapq
import math

from llmsim.sched.base import SCHEDULERS, _non_negative
from llmsim.sched.iteration import IterationScheduler
from llmsim.sched.seq import Seq


class SeqHeap:
    """A min-heap of sequences by (key, arrival, id) with the deque verbs the schedulers use."""

    def __init__(self, key) -> None:
        self._key = key
        self._heap: list[tuple[float, float, int, Seq]] = []

    def _entry(self, seq: Seq) -> tuple[float, float, int, Seq]:
        return (self._key(seq), seq.arrival_s, seq.key, seq)

    def append(self, seq: Seq) -> None:
        heapq.heappush(self._heap, self._entry(seq))

    appendleft = append  # a preempted request keeps its priority

    def popleft(self) -> Seq:
        return heapq.heappop(self._heap)[3]

    def __getitem__(self, index: int) -> Seq:
        if index != 0:
            raise IndexError("only the head of a SeqHeap can be read")
        return self._heap[0][3]

    def __len__(self) -> int:
        return len(self._heap)

    def __iter__(self):
        return (entry[3] for entry in self._heap)


@SCHEDULERS.register("sjf")
class SJFScheduler(IterationScheduler):
    name = "sjf"

    def __init__(self, predictor_error: float = 0.0, max_num_seqs: int = 256, max_num_batched_tokens: int = 8192,
                 long_prefill_token_threshold: int = 0) -> None:
        _non_negative("predictor_error", predictor_error)
        super().__init__(max_num_seqs, max_num_batched_tokens, "recompute", long_prefill_token_threshold)
        self.predictor_error = float(predictor_error)
        self.waiting = SeqHeap(self.predicted_remaining)

    def predicted_output(self, seq: Seq) -> float:
        return seq.req.output_tokens * math.exp(self.predictor_error * seq.noise)

    def predicted_remaining(self, seq: Seq) -> float:
        return max(1.0, self.predicted_output(seq) - seq.num_emitted)
