"""Prefill/decode disaggregation (DistServe, Splitwise): a request prefills on a prefill replica, its KV cache
moves over the link to a decode replica, and it decodes there.

1. On a prefill replica the request runs with a one-output copy of itself (so the engine stops after the
   first token, as vLLM's prefill instances run ``max_tokens=1``) and keeps its KV when it finishes there.
2. The decode router picks a decode replica (after the prefill; for ``layerwise`` transfers as the last
   prefill step starts). The request waits there, in arrival order, until that replica has the blocks and
   a sequence slot for it (the decode side admits only when it has the blocks); the blocks are reserved.
3. The KV moves (``llmsim.sim.links``): the prompt's tokens minus those the decode replica's prefix cache
   already holds, at ``kv_bytes_per_token`` each. Then the prefill replica frees its copy and the request
   joins the decode replica's running batch.

With ``first_token: prefill`` the first token left with the prefill and the transfer shows in the next
inter-token gap (TPOT, E2E); with ``first_token: decode`` the decode replica recomputes the last prompt
token and samples the first output (TTFT includes the transfer), as vLLM's P/D connectors do.
"""

from __future__ import annotations

from array import array
from collections import deque
from dataclasses import replace

import simpy

from llmsim.metrics.records import RequestLog
from llmsim.sched.plan import Plan
from llmsim.sched.seq import REJECTED, Seq
from llmsim.sim.links import Network, Overlap
from llmsim.sim.pool_replica import PoolReplica
from llmsim.workload.request import Request


class Disaggregation:
    """Handoffs from the prefill to the decode replicas of one cluster."""

    def __init__(self, env: simpy.Environment, replicas: list[PoolReplica], router, network: Network,
                 requests: RequestLog, on_end, kv_bytes_per_token: float, num_layers: int,
                 layerwise: bool = False, decode_first: bool = False) -> None:
        self.env = env
        self.decoders = [r for r in replicas if r.role == "decode"]
        self.router = router
        self.network = network
        self.requests = requests
        self.on_end = on_end
        self.kv_bytes_per_token = kv_bytes_per_token
        self.num_layers = num_layers
        self.layerwise = layerwise
        self.decode_first = decode_first
        self._orig: dict[int, Request] = {}  # seq key -> the request as sent, while a one-output copy runs
        self._ready: dict[int, simpy.Event] = {}  # layerwise: the prefill's end, as its transfer waits on it
        self._gates: dict[int, deque] = {r.index: deque() for r in self.decoders}
        self.in_flight: dict[int, tuple[Seq, int]] = {}  # key -> (seq, replica it is counted on)
        for r in replicas:
            if r.role in ("prefill", "decode"):
                r.handoff = self
            if r.role == "prefill" and layerwise:
                r.on_prefill = lambda plan, start, dur, src=r: self.on_prefill(src, plan, start, dur)

    # --- the request's identity on the prefill side ----------------------------------------------------
    def prepare(self, seq: Seq) -> None:
        """A request enters a prefill replica: run it to its first token only and keep its KV after."""
        self._orig[seq.key] = seq.req
        seq.req = replace(seq.req, output_tokens=1)
        seq.hold_kv = True

    def restore(self, seq: Seq) -> None:
        req = self._orig.pop(seq.key, None)
        if req is not None:
            seq.req = req
        seq.hold_kv = False

    def rejected(self, src: PoolReplica, seq: Seq) -> None:
        """The prefill replica refused the request (too long for it)."""
        self.restore(seq)
        self.requests.rejected(seq, src.index, self.env.now)
        self.on_end(seq, self.env.now + self.requests.frontend_overhead_s)

    # --- prefill side events ---------------------------------------------------------------------------
    def on_prefill(self, src: PoolReplica, plan: Plan, start_s: float, duration_s: float | None) -> None:
        """Layerwise: a step that completes prompts starts; their transfers may start with it."""
        if duration_s is None:
            return  # pipeline stages: the step's length is not known in advance; send after it
        for seq, n in zip(plan.seqs, plan.tokens, strict=True):
            if seq.num_emitted == 0 and seq.num_computed + n == seq.num_tokens and self._needs_decode(seq):
                ready = self._ready[seq.key] = self.env.event()
                overlap = Overlap(start_s, duration_s, n / seq.num_tokens, self.num_layers)
                self.env.process(self._handoff(src, seq, overlap, ready=ready))

    def _needs_decode(self, seq: Seq) -> bool:
        orig = self._orig.get(seq.key)
        return orig is not None and (self.decode_first or orig.output_tokens > 1)

    def prefilled(self, src: PoolReplica, seq: Seq, now: float) -> None:
        """The prefill replica emitted the first token; its KV stays until the transfer ends (a request
        that wanted one token is done there, unless the decode side samples the first token)."""
        eng = src.holder(seq)
        if not self._needs_decode(seq):
            self.restore(seq)
            eng.kv.free(seq)
            src.poke(eng)
            self.requests.finished(seq, src.index)
            self.on_end(seq, now + self.requests.frontend_overhead_s)
            return
        eng.held += 1
        ready = self._ready.pop(seq.key, None)
        if ready is not None:
            ready.succeed(eng)
        else:
            self.env.process(self._handoff(src, seq, None, eng))

    # --- the handoff -----------------------------------------------------------------------------------
    def _handoff(self, src: PoolReplica, seq: Seq, overlap: Overlap | None, src_eng=None,
                 ready: simpy.Event | None = None):
        """Pick the decode replica, wait for room there, move the KV, hand the request over. Whole transfers
        start after the prefill (``src_eng`` holds the KV); layerwise ones as it starts (``ready`` fires
        with the engine when it ends)."""
        env = self.env
        orig = self._orig[seq.key]
        prefill_end = env.now if overlap is None else overlap.start_s + overlap.duration_s
        dst = self.decoders[self.router.pick(orig, self.decoders)]
        dst.incoming += 1
        self.in_flight[seq.key] = (seq, dst.index)
        tokens = orig.input_tokens + (0 if self.decode_first else 1)  # KV slots needed on arrival
        reason = self._never_fits(dst, seq, orig)
        if reason:
            if src_eng is None:
                src_eng = yield ready
            self._reject_on_decode(src, src_eng, dst, seq, reason)
            return
        queued = env.event()
        self._gates[dst.index].append((seq, tokens, queued))
        self.retry(dst)
        eng, hit = yield queued
        num_bytes = max(0, tokens - 1 - hit) * self.kv_bytes_per_token
        on_link = yield from self.network.transfer("handoff", seq.id, src.index, dst.index, num_bytes, overlap)
        if src_eng is None:
            src_eng = yield ready
        src.release(src_eng, seq)
        self.restore(seq)
        if self.decode_first:
            _rewind_first_token(seq)
        seq.prefill_replica, seq.handoff_s, seq.transfer_s = src.index, env.now - prefill_end, on_link
        dst.incoming -= 1
        del self.in_flight[seq.key]
        dst.accept(eng, seq)

    def retry(self, dst: PoolReplica) -> None:
        """Reserve blocks for the requests queued on ``dst``, in order, while it has room."""
        gate = self._gates.get(dst.index)
        while gate:
            seq, tokens, queued = gate[0]
            eng = dst.target_engine()
            saved, seq.num_tokens = seq.num_tokens, tokens  # the state it will arrive in
            room = dst.can_reserve(eng, seq)
            hit = dst.reserve(eng, seq) if room else 0
            seq.num_tokens = saved
            if not room:
                return
            gate.popleft()
            queued.succeed((eng, hit))

    def _never_fits(self, dst: PoolReplica, seq: Seq, orig: Request) -> str:
        saved, seq.req = seq.req, orig
        try:
            return dst.target_engine().sched.reject_reason(seq)
        finally:
            seq.req = saved

    def _reject_on_decode(self, src: PoolReplica, src_eng, dst: PoolReplica, seq: Seq, reason: str) -> None:
        src.release(src_eng, seq)
        self.restore(seq)
        dst.incoming -= 1
        del self.in_flight[seq.key]
        seq.reason, seq.status = reason, REJECTED
        self.requests.rejected(seq, dst.index, self.env.now)
        self.on_end(seq, self.env.now + self.requests.frontend_overhead_s)

    def report_unfinished(self) -> None:
        """Requests between their prefill and their decode when the clock stopped."""
        for seq, replica in list(self.in_flight.values()):
            self.restore(seq)
            seq.reason = "max_time_s"
            self.requests.rejected(seq, replica, self.env.now, status="unfinished")
        self.in_flight.clear()


def _rewind_first_token(seq: Seq) -> None:
    """``first_token: decode``: the prefill's sampled token is dropped; the decode replica recomputes the last
    prompt token and samples the first output itself."""
    seq.num_computed = seq.req.input_tokens - 1
    seq.num_tokens = seq.req.input_tokens
    seq.num_emitted = 0
    seq.first_token_s = seq.last_token_s = -1.0
    seq.gaps = array("d")
