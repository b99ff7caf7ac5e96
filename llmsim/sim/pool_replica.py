"""A replica as a member of a pool: what routers and the cluster read of it, and the verbs the cluster uses to
move a running request's KV in (``reserve`` / ``accept``) and out (``release``).

Prefill replicas run a request only to its first token (its ``Request`` is swapped for a one-output copy
while it is there, see ``llmsim.sim.handoff``) and keep its KV after it finishes until the transfer to the
decode replica ends.
"""

from __future__ import annotations

from llmsim.kv.base import ceil_div
from llmsim.sched.seq import Seq
from llmsim.sim.replica import Engine, Replica, run_blocks
from llmsim.workload.request import Request

LOAD_QUEUE_SCAN = 64  # queued requests whose block demand counts toward a replica's load


class PoolReplica(Replica):
    """``pool`` / ``role`` name where it belongs; ``incoming``: requests routed here whose KV is on its way
    (counted as outstanding by routers); ``cluster``: the handoff (prefill and decode roles) that it reports
    finishes and rejections to."""

    def __init__(self, *args, pool: str = "default", role: str = "mixed", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.pool = pool
        self.role = role
        self.incoming = 0
        self.handoff = None  # llmsim.sim.handoff.Disaggregation for prefill and decode roles
        self.migrator = None  # llmsim.sim.migrate.Migrator of its pool, if migration is on

    # --- views (routers, migration) ----------------------------------------------------------------
    @property
    def num_unfinished(self) -> int:
        return super().num_unfinished + self.incoming

    @property
    def num_resident(self) -> int:
        """Requests in its schedulers or pending there (what ends as finished, rejected or unfinished here)."""
        return super().num_unfinished

    def cached_prefix_tokens(self, request: Request) -> int:
        return max(e.kv.cached_tokens(request) for e in self.engines)

    @property
    def load(self) -> float:
        """Llumnix-like virtual usage: blocks held plus those the first queued requests need, over capacity."""
        total = 0.0
        for eng in self.engines:
            kv, bs = eng.kv, eng.kv.block_size
            queued = 0
            for i, seq in enumerate(eng.sched.waiting):
                if i >= LOAD_QUEUE_SCAN:
                    break
                queued += ceil_div(seq.num_tokens, bs)
            total += (kv.num_used_blocks + queued) / kv.num_blocks
        return total / len(self.engines)

    def submit(self, seq: Seq) -> None:
        if self.role == "prefill":
            self.handoff.prepare(seq)
        super().submit(seq)
        if self.migrator is not None:
            self.migrator.kick()

    # --- moving KV in ------------------------------------------------------------------------------
    def target_engine(self) -> Engine:
        return min(self.engines, key=lambda e: (e.sched.num_unfinished + len(e.pending) + e.held, e.index))

    def can_reserve(self, eng: Engine, seq: Seq) -> bool:
        """Blocks for ``seq.num_tokens`` tokens and a sequence slot (counting requests already on their way)."""
        sched = eng.sched
        return len(sched.running) + eng.held < sched.max_num_seqs and self.has_room(eng, seq, seq.num_tokens)

    @staticmethod
    def has_room(eng: Engine, seq: Seq, num_tokens: int) -> bool:
        """Whether ``seq`` can grow to ``num_tokens`` on ``eng`` without the blocks a collapsed run there
        still has to take."""
        need = eng.kv.blocks_needed(seq, num_tokens)
        return need <= eng.kv.num_free_blocks and (eng.run is None or need <= eng.kv.num_free_blocks - run_blocks(eng))

    def reserve(self, eng: Engine, seq: Seq) -> int:
        """Allocate ``seq``'s blocks on ``eng`` before its KV arrives; returns the leading tokens this
        replica's prefix cache already holds (they need not travel)."""
        hit = eng.kv.match_prefix(seq) if eng.kv.supports_prefix else 0
        if not eng.kv.allocate(seq, seq.num_tokens):
            raise RuntimeError(f"replica {self.index}: reserve without room for request {seq.id} (a bug)")
        eng.held += 1
        return min(hit, seq.num_tokens - 1)

    def accept(self, eng: Engine, seq: Seq) -> None:
        """The reserved request's KV has arrived: it joins ``eng`` (at the next plan, as an arrival does)."""
        eng.held -= 1
        seq.adopted = True
        if self.async_sched:
            eng.pending.append((self.env.now, seq))
        else:
            self._admit(eng, seq)
        self.poke(eng)
        if self.migrator is not None:
            self.migrator.kick()

    def unreserve(self, eng: Engine, seq: Seq) -> None:
        """Give back a reservation whose request will not come (a migration called off)."""
        eng.kv.free(seq)
        eng.held -= 1
        self.poke(eng)

    # --- moving KV out -----------------------------------------------------------------------------
    def holder(self, seq: Seq) -> Engine:
        """The virtual engine whose KV holds ``seq``."""
        for eng in self.engines:
            if eng.kv.held_blocks(seq):
                return eng
        return self.engines[0]

    def release(self, eng: Engine, seq: Seq) -> None:
        """Free KV kept for a transfer that has ended (prefill side) and let the engine plan with it."""
        eng.kv.free(seq)
        eng.held -= 1
        self.poke(eng)

    # --- roles -------------------------------------------------------------------------------------
    def _admit(self, eng: Engine, seq: Seq) -> bool:
        if self.role != "prefill" or seq.adopted:
            return super()._admit(eng, seq)
        if eng.sched.add(seq):
            return True
        self.handoff.rejected(self, seq)
        return False

    def _finish(self, seq: Seq, now: float) -> None:
        if self.role == "prefill":
            seq.finish_s = now
            self.handoff.prefilled(self, seq, now)
            return
        super()._finish(seq, now)
        if self.handoff is not None:
            self.handoff.retry(self)

    def report_unfinished(self) -> None:
        if self.role == "prefill":
            for eng in self.engines:
                for seq in [*eng.sched.running, *eng.sched.waiting, *eng.sched.swapped, *(s for _, s in eng.pending)]:
                    self.handoff.restore(seq)
        super().report_unfinished()
