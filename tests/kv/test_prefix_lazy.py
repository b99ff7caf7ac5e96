"""Deferred registration of own-content blocks (``PrefixCacheKV.lazy_own``) changes nothing observable: the
same random admissions, decodes, preemptions and finishes on a lazy and an eager cache give the same hits,
the same free queue (block for block), the same evictions and the same idle cached blocks at every step."""

from __future__ import annotations

import numpy as np
import pytest

from llmsim.kv import PrefixCacheKV
from llmsim.sched.seq import Seq
from llmsim.workload.request import Request


class EagerPrefixKV(PrefixCacheKV):
    lazy_own = False


def _observe(kv: PrefixCacheKV) -> tuple:
    return (list(kv._free), kv.num_evicted, kv.num_hit_tokens, kv.num_query_tokens, kv.num_cached_idle_blocks,
            kv.num_free_blocks)


def _drive(kv: PrefixCacheKV, seed: int) -> list[tuple]:
    """A random life of 60 requests (shared prefixes from a pool of 3, chunks of 32 tokens) in 48 blocks of 8."""
    rng = np.random.default_rng(seed)
    seqs = []
    for i in range(60):
        n_ids = int(rng.integers(0, 4))
        ids = tuple(int(x) for x in rng.integers(0, 3, n_ids))
        req = Request(i, 0.0, int(rng.integers(5, 90)), int(rng.integers(1, 40)), prefix_hashes=ids,
                      prefix_chunk_tokens=32)
        seqs.append(Seq(req))
    waiting, running, trace = list(seqs), [], []
    for _ in range(3000):  # bounded: preemption ping-pong may not end
        if not (waiting or running):
            break
        op = rng.random()
        if waiting and (op < 0.3 or not running):
            seq = waiting[0]
            hit = kv.match_prefix(seq)
            ok = kv.allocate(seq, seq.num_tokens)
            trace.append(("admit", seq.key, hit, ok))
            if ok:
                waiting.pop(0)
                seq.num_computed, seq.status = seq.num_tokens, "running"
                seq.num_tokens += 1
                running.append(seq)
            elif running:  # preempt the last admitted (recompute)
                victim = running.pop()
                trace.append(("preempt", victim.key, kv.free(victim)))
                victim.num_computed, victim.status = 0, "waiting"
                victim.num_preemptions += 1
                waiting.insert(0, victim)
        else:
            seq = running[int(rng.integers(len(running)))]
            ok = kv.allocate(seq, seq.num_computed + 1)
            trace.append(("decode", seq.key, ok))
            if ok:
                seq.num_computed += 1
                seq.num_tokens += 1
                seq.num_emitted += 1
                if seq.num_emitted >= seq.req.output_tokens:
                    running.remove(seq)
                    seq.status = "finished"
                    trace.append(("finish", seq.key, kv.free(seq)))
        kv.check()
        trace.append(_observe(kv))
    return trace


@pytest.mark.parametrize("seed", range(6))
def test_lazy_own_blocks_match_eager_registration(seed):
    lazy, eager = PrefixCacheKV(48, 8), EagerPrefixKV(48, 8)
    a, b = _drive(lazy, seed), _drive(eager, seed)
    assert len(a) == len(b) and all(x == y for x, y in zip(a, b, strict=True))  # (no list diff on failure)
    assert any(t[0] == "preempt" for t in a if isinstance(t[0], str))  # the interesting case happens
    assert lazy.num_evicted > 0 and lazy.num_hit_tokens > 0
