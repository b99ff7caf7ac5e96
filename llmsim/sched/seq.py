"""Mutable per-request engine state (what a serving engine keeps per sequence), shared by policies and KV.

A sequence is ``num_tokens`` long (prompt + tokens emitted so far); ``num_computed`` of them are in the KV
cache. A step computes some new tokens on top of ``num_computed``; a step that brings ``num_computed`` up to
``num_tokens`` samples one output token. Prefill, chunked prefill, recompute after preemption and decode are
all just that (vLLM v1's "num_computed_tokens / num_tokens" view).
"""

from __future__ import annotations

from array import array

from llmsim.workload.request import Request

WAITING, RUNNING, SWAPPED, FINISHED, REJECTED = "waiting", "running", "swapped", "finished", "rejected"


class Seq:
    """Engine-side state of one request. Times are filled in by the simulator, never by a scheduler."""

    __slots__ = (
        "req", "id", "key", "num_tokens", "num_computed", "num_emitted", "status", "admit_order", "num_preemptions",
        "prefix_hit_tokens", "noise", "level", "iters_at_level", "reason", "arrival_s", "first_scheduled_s",
        "first_token_s", "last_token_s", "finish_s", "gaps", "last_step", "computed_total",
        "hold_kv", "adopted", "prefill_replica", "handoff_s", "transfer_s", "num_migrations",
    )

    def __init__(self, req: Request, noise: float = 0.0, key: int | None = None) -> None:
        self.req = req
        self.id = req.id
        self.key = req.id if key is None else key  # unique per simulated request (ids may repeat in a trace)
        self.num_tokens = req.input_tokens
        self.num_computed = 0
        self.num_emitted = 0
        self.status = WAITING
        self.admit_order = -1
        self.num_preemptions = 0
        self.prefix_hit_tokens = 0
        self.noise = noise  # a standard-normal draw made by the simulator (length-predictor error)
        self.level = 0  # MLFQ level (fastserve)
        self.iters_at_level = 0
        self.reason = ""
        self.arrival_s = req.arrival_s
        self.first_scheduled_s = -1.0
        self.first_token_s = -1.0
        self.last_token_s = -1.0
        self.finish_s = -1.0
        self.gaps = array("d")  # inter-token gaps (seconds, float64), dropped when the request ends
        self.last_step = 0  # scheduler step that last ran this sequence (starvation checks)
        self.computed_total = 0  # tokens computed for it over its life, recomputation included
        # cluster state (llmsim.sim.cluster): its KV outlives it here (being sent to a decode replica); it moves
        # in with its KV already allocated; where it was prefilled; seconds from prefill end to decode start
        # and on the link; live migrations
        self.hold_kv = False
        self.adopted = False
        self.prefill_replica = -1
        self.handoff_s = 0.0
        self.transfer_s = 0.0
        self.num_migrations = 0

    @property
    def prompt_tokens(self) -> int:
        return self.req.input_tokens

    @property
    def max_tokens(self) -> int:
        """Tokens the sequence will hold at its longest (prompt + all outputs)."""
        return self.req.input_tokens + self.req.output_tokens

    @property
    def remaining_new(self) -> int:
        """Tokens to compute before the next output token."""
        return self.num_tokens - self.num_computed

    @property
    def remaining_outputs(self) -> int:
        return self.req.output_tokens - self.num_emitted

    @property
    def is_decoding(self) -> bool:
        return self.num_computed == self.num_tokens - 1 and self.num_emitted > 0

    def __repr__(self) -> str:
        return (f"Seq(id={self.id}, {self.status}, computed={self.num_computed}/{self.num_tokens}, "
                f"emitted={self.num_emitted}/{self.req.output_tokens})")
