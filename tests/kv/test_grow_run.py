"""``grow_run`` (the blocks of a collapsed decode run, taken in one go) leaves every KV manager exactly as
``allocate`` one sequence at a time does: same block tables, same free queue block for block, same cached
hashes and holders, same counters, and the same first sequence that does not fit when blocks run short."""

from __future__ import annotations

import numpy as np
import pytest

from llmsim.kv import PrefixCacheKV
from llmsim.kv.paged import PagedKV
from llmsim.kv.tiers import TieredPrefixKV
from llmsim.sched.seq import Seq
from llmsim.workload.request import Request


class EagerPrefixKV(PrefixCacheKV):
    lazy_own = False  # own-content blocks registered as they fill: registrations inside the run's growth


def _state(kv) -> tuple:
    common = (kv.num_free_blocks, kv.num_allocated, kv.num_freed)
    if not isinstance(kv, PrefixCacheKV):
        return common + (dict(kv._held),)
    return common + (kv.free_queue(), list(kv._hash), dict(kv._cached), {h: list(b) for h, b in kv._more.items()},
                     {k: list(b) for k, b in kv._blocks.items()}, dict(kv._num_cached), list(kv._ref),
                     kv.num_evicted, kv.num_hit_tokens)


def _one_by_one(kv, seqs: list[Seq], k: int) -> int:
    for i, seq in enumerate(seqs):
        if not kv.allocate(seq, seq.num_computed + k):
            return i
    return -1


def _lockstep(make, seed: int) -> tuple[int, int]:
    """A random life of 50 requests (shared prefixes from a pool of 3, 32-token chunks) in 40 blocks of 8 on two
    managers; decode runs grow a random subset with ``grow_run`` on one and ``allocate`` on the other. Returns
    (runs that grew, runs that ran short)."""
    rng = np.random.default_rng(seed)
    fast, ref = make(), make()
    seqs = []
    for i in range(50):
        ids = tuple(int(x) for x in rng.integers(0, 3, int(rng.integers(0, 4))))
        req = Request(i, 0.0, int(rng.integers(5, 70)), int(rng.integers(1, 60)), prefix_hashes=ids,
                      prefix_chunk_tokens=32)
        seqs.append(Seq(req))
    waiting, running = list(seqs), []
    grew = short = 0
    for _ in range(2000):
        if not (waiting or running):
            break
        if waiting and (rng.random() < 0.3 or not running):
            seq = waiting[0]
            ok = fast.allocate(seq, seq.num_tokens)
            assert ref.allocate(seq, seq.num_tokens) is ok
            if ok:
                waiting.pop(0)
                seq.num_computed, seq.status = seq.num_tokens, "running"
                seq.num_tokens += 1
                running.append(seq)
            elif running:  # preempt the last admitted (recompute)
                victim = running.pop()
                assert fast.free(victim) == ref.free(victim)
                victim.num_computed, victim.status = 0, "waiting"
                victim.num_preemptions += 1
                waiting.insert(0, victim)
        else:  # a decode run of k steps over a random subset, in a random order
            chosen = [running[j] for j in rng.permutation(len(running))[:int(rng.integers(1, len(running) + 1))]]
            k = int(rng.integers(1, 60))
            failed = fast.grow_run(chosen, k)
            assert failed == _one_by_one(ref, chosen, k)
            if failed >= 0:
                short += 1
            else:
                grew += 1
                for seq in chosen:
                    steps = min(k, seq.req.output_tokens - seq.num_emitted)
                    seq.num_computed += steps
                    seq.num_tokens += steps
                    seq.num_emitted += steps
                    if seq.num_emitted >= seq.req.output_tokens:
                        running.remove(seq)
                        seq.status = "finished"
                        assert fast.free(seq) == ref.free(seq)
        fast.check()
        assert _state(fast) == _state(ref)
    return grew, short


@pytest.mark.parametrize("make", [lambda: PrefixCacheKV(40, 8), lambda: EagerPrefixKV(40, 8),
                                  lambda: TieredPrefixKV(40, 8, cpu_gb=1e-5, block_bytes=1024, link_bytes_per_s=1e9),
                                  lambda: PagedKV(40, 8, 0.0)],
                         ids=["prefix", "prefix-eager", "tiered", "paged"])
@pytest.mark.parametrize("seed", [0, 1, 3, 5])
def test_grow_run_equals_allocate_one_by_one(make, seed):
    grew, short = _lockstep(make, seed)
    assert grew > 20 and short > 0  # both the bulk take and the run-short path happen
