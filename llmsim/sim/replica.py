"""A serving replica as SimPy processes: plan -> step time -> advance the clock -> commit -> record.

The step period follows the engine runtime (``llmsim.engines``): with serial scheduling a step lasts its CPU
work plus its GPU work and a request arriving during a step is scheduled at the next boundary; with async
scheduling (vLLM 0.15.1 ``EngineCore.step_with_batch_queue``: step N+1 is scheduled while step N runs on the
GPU) a step lasts ``max(GPU, CPU)`` and its plan was made when the previous step started, so a request
arriving during step N joins step N+2 (the first step after idle pays CPU + GPU and admits at once).

With pipeline parallelism (``pp`` > 1) a replica runs ``pp`` virtual engines, as vLLM does: each has its
own scheduler and 1/pp of the KV blocks, and their micro-batches flow through the ``pp`` stages (one
SimPy resource per stage), so a stage idles when the micro-batch before it is short (bubbles) rather
than time being divided by ``pp``; these run with serial scheduling. With ``pp == 1`` runs of identical
decode steps are collapsed into one event (cut at the step boundary a new arrival would change).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import simpy

from llmsim.kv.base import KVManager
from llmsim.metrics.records import RequestLog, StepLog
from llmsim.sched.base import Scheduler
from llmsim.sched.plan import Plan
from llmsim.sched.seq import Seq
from llmsim.sim.timer import StepTimer


class Engine:
    """One scheduler with its KV manager, driven by one SimPy process. ``pending``: requests that reached
    the engine but that no plan has seen yet (async scheduling); ``cutoff_s``: arrivals up to this time are
    visible to the next plan."""

    __slots__ = ("index", "sched", "kv", "proc", "wake", "in_run", "pending", "cutoff_s", "held", "at_boundary",
                 "run", "tiered", "lora")

    def __init__(self, sched: Scheduler, kv: KVManager, index: int = 0) -> None:
        self.index = index  # virtual engine (pipeline micro-batch slot) within the replica
        self.sched = sched
        self.kv = kv
        self.proc: simpy.Process | None = None
        self.wake: simpy.Event | None = None
        self.in_run = False
        self.pending: deque[tuple[float, Seq]] = deque()
        self.cutoff_s = 0.0
        self.held = 0  # requests whose KV is allocated here outside the scheduler (a transfer out or in)
        self.at_boundary: list = []  # callbacks ``f(engine)`` for the next step boundary (live migration)
        self.run: tuple[list[Seq], int, int] | None = None  # collapsed run in progress: its growing sequences,
        # steps, blocks it still takes (-1: not computed yet)
        self.tiered = hasattr(kv, "take_load_s")  # a KV hierarchy whose loads a step waits for (kv/tiers.py)
        self.lora = sched.lora  # multi-LoRA runtime (llmsim.lora.runtime): adapter loads and kernels per step


class Replica:
    """``index``-th replica. ``on_end(seq, client_time_s)`` is called when a request finishes or is
    rejected (closed-loop traffic hooks in there). ``on_prefill(plan, start_s, duration_s)``, if set, is
    called as a step that computes prompt tokens starts (``duration_s`` None with pipeline stages): a
    cluster overlaps KV transfers with it."""

    def __init__(self, env: simpy.Environment, index: int, engines: list[Engine], timer: StepTimer,
                 steps: StepLog, requests: RequestLog, on_end: Callable[[Seq, float], None],
                 max_run_steps: int = 256, check_invariants: bool = False) -> None:
        self.env = env
        self.index = index
        self.engines = engines
        self.timer = timer
        self.runtime = timer.runtime
        self.async_sched = self.runtime.async_scheduling and len(engines) == 1
        self.steps = steps
        self.requests = requests
        self.on_end = on_end
        self.max_run_steps = max_run_steps if len(engines) == 1 else 1
        self.check_invariants = check_invariants
        self.stages = [simpy.Resource(env, 1) for _ in engines] if len(engines) > 1 else None
        self.on_prefill: Callable[[Plan, float, float | None], None] | None = None
        for eng in engines:
            eng.proc = env.process(self._loop(eng))

    # --- intake --------------------------------------------------------------------------------------
    @property
    def num_unfinished(self) -> int:
        return sum(e.sched.num_unfinished + len(e.pending) for e in self.engines)

    @property
    def kv_usage(self) -> float:
        return sum(e.kv.usage for e in self.engines) / len(self.engines)

    def submit(self, seq: Seq) -> None:
        """Hand a request to the virtual engine with the fewest unfinished requests (vLLM's choice)."""
        eng = min(self.engines, key=lambda e: e.sched.num_unfinished + len(e.pending))
        if self.async_sched:
            eng.pending.append((self.env.now, seq))
        elif not self._admit(eng, seq):
            return
        self.poke(eng)

    def poke(self, eng: Engine) -> None:
        """Make the engine plan again at its next step boundary: wake it if idle, cut a collapsed decode run
        short (something changed that the run's promise did not foresee)."""
        if eng.wake is not None and not eng.wake.triggered:
            eng.wake.succeed()
        elif eng.in_run:
            eng.in_run = False
            eng.proc.interrupt("arrival")

    def _admit(self, eng: Engine, seq: Seq) -> bool:
        if seq.adopted:  # moves in with its KV allocated here (cluster handoff or migration)
            eng.sched.adopt(seq)
            return True
        if eng.sched.add(seq):
            return True
        self.requests.rejected(seq, self.index, self.env.now)
        self.on_end(seq, self.env.now + self.requests.frontend_overhead_s)
        return False

    def _admit_pending(self, eng: Engine, cutoff_s: float) -> None:
        """Move the requests that reached the engine by ``cutoff_s`` into its scheduler."""
        pending = eng.pending
        while pending and pending[0][0] <= cutoff_s:
            self._admit(eng, pending.popleft()[1])

    def report_unfinished(self) -> None:
        """Record the requests still queued or running when the clock stopped (``max_time_s``)."""
        for eng in self.engines:
            sched = eng.sched
            for seq in [*sched.running, *sched.waiting, *sched.swapped, *(s for _, s in eng.pending)]:
                seq.reason = "max_time_s"
                self.requests.rejected(seq, self.index, self.env.now, status="unfinished")

    # --- the loop ------------------------------------------------------------------------------------
    def _loop(self, eng: Engine):
        stalls = 0
        after_idle = True
        while True:
            if eng.at_boundary:  # e.g. a request leaving at this step boundary (live migration)
                calls, eng.at_boundary = eng.at_boundary, []
                for callback in calls:
                    callback(eng)
            # Async: this step's plan was made when the previous one started; after idle, right now.
            self._admit_pending(eng, self.env.now if after_idle else eng.cutoff_s)
            if not eng.sched.has_work():
                if eng.pending:  # the pipeline drained: schedule the newcomers at once
                    after_idle = True
                    continue
                yield from self._sleep(eng, None)
                after_idle = True
                continue
            plan = eng.sched.schedule(self.env.now)
            if plan.is_empty:
                if eng.pending and not after_idle:
                    after_idle = True
                    continue
                stalls = self._check_stall(eng, plan, stalls)
                if not plan.preempted:
                    yield from self._sleep(eng, plan.wake_at_s)
                    after_idle = True
                continue
            stalls = 0
            if plan.num_prefill_tokens:
                now = self.env.now
                for seq in plan.seqs:
                    if seq.first_scheduled_s < 0:
                        seq.first_scheduled_s = now
            k, chunks = 1, None
            if self.max_run_steps > 1 and not after_idle and not eng.pending:
                k = eng.sched.steady_steps(plan, self.max_run_steps)
                if k == 1 and self.on_prefill is None and not eng.tiered and eng.lora is None:
                    chunks = eng.sched.steady_chunks(plan, self.max_run_steps)
            if k > 1:
                yield from self._decode_run(eng, plan, k)
            elif chunks:
                yield from self._chunk_run(eng, plan, chunks)
            else:
                yield from self._step(eng, plan, after_idle)
            after_idle = False
            if self.check_invariants:
                eng.sched.check()

    def _check_stall(self, eng: Engine, plan: Plan, stalls: int) -> int:
        if plan.wake_at_s is None and not eng.sched.running and not plan.preempted and not eng.held:
            raise RuntimeError(f"replica {self.index}: scheduler {eng.sched.name} has queued requests but "
                               "neither runs nor admits any (scheduler bug)")
        if stalls > 10_000:
            raise RuntimeError(f"replica {self.index}: scheduler {eng.sched.name} keeps preempting without "
                               "running anything (scheduler bug)")
        return stalls + 1

    def _sleep(self, eng: Engine, wake_at: float | None):
        eng.wake = self.env.event()
        if wake_at is None:
            yield eng.wake
        else:
            yield eng.wake | self.env.timeout(max(0.0, wake_at - self.env.now))
        eng.wake = None

    def _step(self, eng: Engine, plan: Plan, after_idle: bool):
        env = self.env
        cost = self.timer.step(plan)
        if eng.tiered:
            cost = _with_tier_load(cost, eng.kv)
        if eng.lora is not None:
            cost = _plus_gpu(cost, sum(eng.lora.step_s(plan)))
        cpu = self.timer.cpu_s(plan)
        start = env.now
        sched, kv = eng.sched, eng.kv
        row = (self.index, eng.index, start, 0.0, len(plan.seqs), plan.num_prefill_tokens,
               plan.num_tokens - plan.num_prefill_tokens, plan.num_pad, kv.num_used_blocks, kv.num_blocks,
               sched.num_waiting + len(eng.pending), sched.num_unfinished + len(eng.pending), len(plan.preempted),
               plan.swap_in_blocks + plan.swap_out_blocks, cost.flops, cost.hbm_bytes)
        if self.stages is None:
            # the next plan is made as this step's GPU work starts (async), i.e. after its CPU work if idle
            eng.cutoff_s = start + cpu if after_idle else start
            period = self.runtime.period_s(cost.gpu_s, cpu, after_idle or not self.async_sched)
            if self.on_prefill is not None and plan.num_prefill_tokens:
                self.on_prefill(plan, start, period)
            yield env.timeout(period)
        else:  # CPU-side scheduling, then the micro-batch through the stages in order
            if self.on_prefill is not None and plan.num_prefill_tokens:
                self.on_prefill(plan, start, None)
            yield env.timeout(cpu)
            for res, stage_s in zip(self.stages, cost.stage_s, strict=True):
                with res.request() as slot:
                    yield slot
                    yield env.timeout(stage_s)
        self.steps.step(row[:3] + (env.now - start,) + row[4:])
        emitted, finished = sched.commit(plan)
        now = env.now
        gaps = []
        for seq in emitted:
            if seq.first_token_s < 0:
                seq.first_token_s = now
            else:
                gap = now - seq.last_token_s
                seq.gaps.append(gap)
                gaps.append(gap)
            seq.last_token_s = now
        self.steps.gaps(gaps)
        for seq in finished:
            self._finish(seq, now)

    def _decode_run(self, eng: Engine, plan: Plan, k: int):
        gpu, flops, hbm = self.timer.decode_run(plan, k)
        if eng.lora is not None:  # the run's adapters: same kernels every step, any load before the first
            kernel, load = eng.lora.run_s(plan, k)
            gpu = gpu + kernel
            gpu[0] += load
        cpu = self.timer.cpu_s(plan)
        durations = np.maximum(gpu, cpu) if self.async_sched else gpu + cpu
        start, ends, done, state = yield from self._run_clock(eng, plan.seqs, durations)
        self._record_run(eng, plan.seqs, start, durations[:done], ends[:done], flops, hbm[:done], state,
                         pad=plan.num_pad)
        eng.run = None
        finished = eng.sched.commit_run(plan, done)
        t_end = start + float(ends[done - 1])
        self._run_tokens(plan.seqs, start + float(ends[0]), durations[1:done], t_end)
        for seq in finished:
            self._finish(seq, t_end)

    def _chunk_run(self, eng: Engine, plan: Plan, chunks: list[int]):
        """Steps that repeat ``plan``'s shape: its decodes (one token each) and one prompt continuing in
        ``chunks`` (``Scheduler.steady_chunks``), each step timed as a single step of that batch is."""
        i = next(j for j, t in enumerate(plan.tokens) if t > 1)
        prompt = plan.seqs[i]
        decoders = plan.seqs[:i] + plan.seqs[i + 1:]
        completes = sum(chunks) == prompt.num_tokens - prompt.num_computed
        gpu, flops, hbm = self.timer.chunk_run(plan, chunks, completes)
        seconds, b = self.timer.cpu.seconds, len(plan.seqs)
        cpu = np.array([seconds(b, b - 1 + c) for c in chunks], dtype=np.float64)
        durations = np.maximum(gpu, cpu) if self.async_sched else gpu + cpu
        start, ends, done, state = yield from self._run_clock(eng, decoders, durations)
        done_chunks = chunks[:done]
        self._record_run(eng, decoders, start, durations[:done], ends[:done], flops[:done], hbm[:done], state,
                         prompt=(prompt, done_chunks))
        eng.run = None
        emitted = prompt.num_emitted
        finished = eng.sched.commit_chunk_run(plan, prompt, sum(done_chunks), done)
        t_end = start + float(ends[done - 1])
        self._run_tokens(decoders, start + float(ends[0]), durations[1:done], t_end)
        if prompt.num_emitted != emitted:  # its last chunk ran: it sampled a token at the run's end
            if prompt.first_token_s < 0:
                prompt.first_token_s = t_end
            else:
                gap = t_end - prompt.last_token_s
                prompt.gaps.append(gap)
                self.steps.gaps([gap])
            prompt.last_token_s = t_end
        for seq in finished:
            self._finish(seq, t_end)

    def _run_clock(self, eng: Engine, growing: list[Seq], durations: np.ndarray):
        """Advance the clock over a collapsed run of steps of ``durations`` (cut short by an arrival); returns
        (start, step ends from the start, steps done, (KV blocks used, waiting, unfinished) at the start).
        ``growing``: the decoding sequences whose blocks the run takes (``run_blocks``)."""
        env = self.env
        k = len(durations)
        ends = np.cumsum(durations)
        start = env.now
        done = k
        state = (eng.kv.num_used_blocks, eng.sched.num_waiting, eng.sched.num_unfinished)  # at the run's start
        eng.run = (growing, k, -1)  # blocks it will take: computed when someone else allocates here
        eng.in_run = True
        try:
            yield env.timeout(float(ends[-1]))
        except simpy.Interrupt:  # a request arrived: stop where the first plan to see it begins
            elapsed = env.now - start
            done = int(np.searchsorted(ends, elapsed, side="left")) + 1  # the step in progress
            if self.async_sched:
                done += 1  # async: the next plan was made when the step in progress started
            done = min(k, done)
            if ends[done - 1] > elapsed:
                yield env.timeout(float(ends[done - 1]) - elapsed)
        eng.in_run = False
        eng.cutoff_s = start + (float(ends[done - 2]) if done > 1 else 0.0)  # the last step's start
        return start, ends, done, state

    def _record_run(self, eng: Engine, seqs: list[Seq], start: float, durations: np.ndarray, ends: np.ndarray,
                    flops, hbm: np.ndarray, state: tuple[int, int, int], pad: int = 0,
                    prompt: tuple | None = None) -> None:
        """Step rows of a collapsed run of decodes ``seqs`` (and, with ``prompt`` = (sequence, chunks), one
        prompt computed in those chunks on the blocks it took at admission), after taking the blocks the
        decodes grow into."""
        sched = eng.sched
        n, b = len(durations), len(seqs)
        if not self.steps.keep_rows:  # no rows to fill: only the blocks the run takes
            sched.reserve_run(seqs, n)
            self.steps.num_rows += n
            return
        kv_used, waiting, in_system = state
        kv = eng.kv
        bs = kv.block_size
        # blocks for the whole run, as the engine holds them by its end. Blocks in use at each step: those of
        # the run's start plus the blocks its sequences grow into. A sequence with c tokens computed in h
        # blocks needs ceil((c + s + 1) / bs) - h more at step s, i.e. ceil((s - r) / bs) with
        # r = h * bs - c - 1 (none while s <= r): reserve_run returns the r of those that grow (r < n - 1)
        rs = sched.reserve_run(seqs, n)
        if rs:
            steps = np.arange(n, dtype=np.int64)[:, None]
            in_use = kv_used + np.maximum(0, -((np.array(rs, dtype=np.int64)[None, :] - steps) // bs)).sum(axis=1)
        else:
            in_use = kv_used
        starts = start + ends - durations
        # requests that reached the engine during the run wait (async) from the step after their arrival
        if eng.pending:
            arrived = np.searchsorted(np.fromiter((t for t, _ in eng.pending), dtype=np.float64), starts,
                                      side="right")
            waiting, in_system = waiting + arrived, in_system + arrived
        self.steps.run({
            "replica": self.index, "engine": eng.index, "start_s": starts, "duration_s": durations,
            "batch_size": b + (prompt is not None), "decode_tokens": b, "padded_rows": pad,
            "prefill_tokens": np.array(prompt[1], dtype=np.int64) if prompt is not None else 0,
            "kv_blocks_used": in_use, "kv_blocks_total": kv.num_blocks,
            "queue_len": waiting, "num_in_system": in_system, "preempted": 0,
            "swap_blocks": 0, "flops": flops, "hbm_bytes": hbm,
        })

    def _run_tokens(self, seqs: list[Seq], first_s: float, tail: np.ndarray, t_end: float) -> None:
        """Every sequence of a decode run emitted at each step end: its first gap is its own, the rest are
        the run's step durations (their bytes made once, appended to each sequence's gaps)."""
        firsts = []
        if tail.size:
            rest = tail.tobytes()
            for seq in seqs:
                gaps = seq.gaps
                gap = first_s - seq.last_token_s
                gaps.append(gap)
                gaps.frombytes(rest)
                firsts.append(gap)
                seq.last_token_s = t_end
        else:
            for seq in seqs:
                gap = first_s - seq.last_token_s
                seq.gaps.append(gap)
                firsts.append(gap)
                seq.last_token_s = t_end
        self.steps.gaps(firsts)
        if tail.size:
            self.steps.itl.add(tail, weight=len(seqs))

    def _finish(self, seq: Seq, now: float) -> None:
        seq.finish_s = now
        self.requests.finished(seq, self.index)
        self.on_end(seq, now + self.requests.frontend_overhead_s)


def _with_tier_load(cost, kv):
    """The step's time once it waits for the KV-tier loads its admissions started (``llmsim.kv.tiers``)."""
    load = kv.take_load_s()
    if load <= 0:
        return cost
    gpu = kv.step_with_load(cost.gpu_s, load)
    stages = (cost.stage_s[0] + gpu - cost.gpu_s, *cost.stage_s[1:])
    return replace(cost, gpu_s=gpu, stage_s=stages)


def _plus_gpu(cost, extra_s: float):
    """``cost`` with ``extra_s`` more GPU seconds on the first stage (LoRA kernels and adapter loads)."""
    if extra_s <= 0:
        return cost
    return replace(cost, gpu_s=cost.gpu_s + extra_s, stage_s=(cost.stage_s[0] + extra_s, *cost.stage_s[1:]))


def run_blocks(eng: Engine) -> int:
    """Free blocks the engine's collapsed decode run in progress still takes by its end (``reserve_run``
    allocates them lazily, so whoever else allocates here meanwhile must leave them free). Computed once per
    run: its sequences neither grow nor shrink before it commits."""
    if eng.run is None:
        return 0
    seqs, k, need = eng.run
    if need < 0:
        kv, bs = eng.kv, eng.kv.block_size
        need = sum(max(0, -(-(s.num_computed + k) // bs) - kv.held_blocks(s)) for s in seqs)
        eng.run = (seqs, k, need)
    return need
