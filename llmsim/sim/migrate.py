"""Live migration of running requests between the replicas of a pool (Llumnix, OSDI'24).

Every ``interval_s`` the policy (``llmsim.routing.migration``) compares the replicas' loads; past the
threshold it picks a decoding request on the most loaded replica, and the move is Llumnix's live migration:

1. blocks for the request's current KV are reserved on the destination (else nothing happens);
2. that KV is copied over the pool's link while the request keeps decoding on the source;
3. at the source's next step boundary the request stops there (its blocks are freed), the tokens it
   decoded meanwhile are copied (the downtime), and it joins the destination's running batch.

If the request finished, was preempted, or the destination cannot hold what it grew into by step 3, the
migration is called off and the reservation returned. Counts and times go to the run's info.
"""

from __future__ import annotations

import simpy

from llmsim.sched.seq import RUNNING, Seq
from llmsim.sim.links import Network
from llmsim.sim.pool_replica import PoolReplica

MIGRATING = "migrating"


class Migrator:
    """The migration loop of one pool."""

    def __init__(self, env: simpy.Environment, policy, replicas: list[PoolReplica], network: Network,
                 kv_bytes_per_token: float, handoff=None) -> None:
        self.env = env
        self.policy = policy
        self.replicas = replicas
        self.network = network
        self.kv_bytes_per_token = kv_bytes_per_token
        self.handoff = handoff
        self.in_flight: dict[int, tuple[Seq, int]] = {}  # key -> (seq, destination replica)
        self.num_migrations = 0
        self.num_aborted = 0
        self.downtime_s: list[float] = []
        self.copy_s: list[float] = []
        self._wake: simpy.Event | None = None
        env.process(self._monitor())

    def kick(self) -> None:
        """Work arrived in the pool: resume checking if idle."""
        if self._wake is not None and not self._wake.triggered:
            self._wake.succeed()

    def _monitor(self):
        env, policy = self.env, self.policy
        while True:
            if not any(r.num_unfinished for r in self.replicas) and not self.in_flight:
                self._wake = env.event()
                yield self._wake  # no more events once the run is over: the run ends
                self._wake = None
            yield env.timeout(policy.interval_s)
            if len(self.in_flight) >= policy.max_in_flight:
                continue
            pair = policy.pick_pair([r.load for r in self.replicas])
            if pair is not None:
                self._start(self.replicas[pair[0]], self.replicas[pair[1]])

    def _start(self, src: PoolReplica, dst: PoolReplica) -> None:
        cands = [(s, e) for e in src.engines for s in e.sched.running
                 if s.is_decoding and s.key not in self.in_flight]
        if not cands:
            return
        seq, _ = cands[self.policy.pick_request([(s.num_computed, s.req.priority) for s, _ in cands])]
        eng = dst.target_engine()
        if not dst.can_reserve(eng, seq):
            return
        hit = dst.reserve(eng, seq)
        dst.incoming += 1
        self.in_flight[seq.key] = (seq, dst.index)
        self.env.process(self._migrate(seq, src, dst, eng, hit))

    def _migrate(self, seq: Seq, src: PoolReplica, dst: PoolReplica, dst_eng, hit: int):
        env, bpt = self.env, self.kv_bytes_per_token
        copied, preemptions, t0 = seq.num_computed, seq.num_preemptions, env.now
        yield from self.network.transfer("migration", seq.id, src.index, dst.index, max(0, copied - hit) * bpt)
        src_eng = next((e for e in src.engines if seq in e.sched.running), None)
        moved = env.event()
        if src_eng is not None:
            src_eng.at_boundary.append(lambda e: self._detach(seq, e, src, dst_eng, copied, preemptions, moved))
            src.poke(src_eng)
        if src_eng is None or not (yield moved):
            dst.unreserve(dst_eng, seq)
            dst.incoming -= 1
            del self.in_flight[seq.key]
            self.num_aborted += 1
            return
        stop = env.now
        yield from self.network.transfer("migration", seq.id, src.index, dst.index, (seq.num_computed - copied) * bpt)
        seq.num_migrations += 1
        self.num_migrations += 1
        self.downtime_s.append(env.now - stop)
        self.copy_s.append(env.now - t0)
        dst.incoming -= 1
        del self.in_flight[seq.key]
        dst.accept(dst_eng, seq)

    def _detach(self, seq: Seq, eng, src: PoolReplica, dst_eng, copied: int, preemptions: int,
                moved: simpy.Event) -> None:
        """At the source's step boundary: stop ``seq`` there if it can still move."""
        ok = (seq.status is RUNNING and seq.is_decoding and seq.num_preemptions == preemptions
              and seq.num_computed >= copied and PoolReplica.has_room(dst_eng, seq, seq.num_tokens)
              and dst_eng.kv.allocate(seq, seq.num_tokens))
        if ok:
            eng.sched.running.remove(seq)
            seq.status = "finished"  # so a prefix cache forgets its hashes there
            eng.kv.free(seq)
            seq.status = MIGRATING
            if self.handoff is not None:
                self.handoff.retry(src)
        moved.succeed(ok)

    def report_unfinished(self, requests) -> None:
        for seq, replica in list(self.in_flight.values()):
            if seq.status == MIGRATING:
                seq.reason = "max_time_s"
                requests.rejected(seq, replica, self.env.now, status="unfinished")
        self.in_flight.clear()

    def stats(self) -> dict[str, float]:
        n = len(self.downtime_s)
        return {"migrations": self.num_migrations, "migrations_aborted": self.num_aborted,
                "migration_downtime_mean_s": sum(self.downtime_s) / n if n else 0.0,
                "migration_downtime_max_s": max(self.downtime_s, default=0.0),
                "migration_copy_mean_s": sum(self.copy_s) / n if n else 0.0}
