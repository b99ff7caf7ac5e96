"""Deferred registration of own-content blocks (``PrefixCacheKV.lazy_own``) changes nothing observable: the
same random admissions, decodes, preemptions and finishes on a lazy and an eager cache give the same hits,
the same free queue (block for block), the same evictions and the same idle cached blocks at every step.
The free queue with stale entries (a ``deque``) keeps the order an ordered dict with removal in place keeps."""

from __future__ import annotations

from collections import OrderedDict, deque

import numpy as np
import pytest

from llmsim.kv import PrefixCacheKV
from llmsim.kv import prefix as prefix_module
from llmsim.sched.seq import Seq
from llmsim.workload.request import Request


class EagerPrefixKV(PrefixCacheKV):
    lazy_own = False


class OrderedDictPrefixKV(PrefixCacheKV):
    """The free queue as an ordered dict: a touched block leaves it in place (the reference order)."""

    def __init__(self, num_blocks: int, block_size: int = 16) -> None:
        super().__init__(num_blocks, block_size)
        self._od: OrderedDict[int, None] = OrderedDict.fromkeys(range(num_blocks))

    def free_queue(self, n=None):
        return list(self._od)[:n]

    def _touch(self, b):
        if self._ref[b] == 0:
            del self._od[b]
            self.num_free_blocks -= 1
            self.num_allocated += 1
        self._ref[b] += 1

    def _take(self, n):
        blocks = [self._od.popitem(last=False)[0] for _ in range(n)]
        self._free = deque(blocks)  # the parent's pass over them: evictions, references, counters
        self._stale = [0] * self.num_blocks
        return super()._take(n)

    def free(self, seq):
        blocks = list(self._blocks.get(seq.key, ()))
        released = super().free(seq)
        self._od.update((b, None) for b in reversed(blocks) if self._ref[b] == 0)
        return released

    def check(self):
        pass


def _observe(kv: PrefixCacheKV) -> tuple:
    return (kv.free_queue(), kv.num_evicted, kv.num_hit_tokens, kv.num_query_tokens, kv.num_cached_idle_blocks,
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


def test_free_queue_with_stale_entries_keeps_the_ordered_dict_order(monkeypatch):
    compactions = []
    real = prefix_module.PrefixCacheKV._compact
    monkeypatch.setattr(prefix_module.PrefixCacheKV, "_compact", lambda kv: (compactions.append(1), real(kv)))
    for seed in range(6):
        fast, ref = PrefixCacheKV(48, 8), OrderedDictPrefixKV(48, 8)
        a, b = _drive(fast, seed), _drive(ref, seed)
        assert len(a) == len(b) and all(x == y for x, y in zip(a, b, strict=True)), seed
        assert fast.num_hit_tokens > 0 and fast.num_evicted > 0
    assert compactions  # hits on free blocks left enough stale entries to rebuild the queue
