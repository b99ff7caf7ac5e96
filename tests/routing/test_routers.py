"""Routers and the migration policy as pure functions of small, hand-made replica views."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from llmsim.errors import ConfigError, UnknownNameError
from llmsim.kv import PrefixCacheKV
from llmsim.routing import MIGRATIONS, ROUTERS
from llmsim.sched import Seq
from llmsim.workload.request import Request


@dataclass
class View:
    index: int
    num_unfinished: int = 0
    kv_usage: float = 0.0
    cached: dict = field(default_factory=dict)

    def cached_prefix_tokens(self, request: Request) -> int:
        return self.cached.get(request.id, 0)


def build(block: dict, seed: int = 0):
    router = ROUTERS.build(block)
    router.bind(np.random.default_rng(seed))
    return router


REQ = Request(7, 0.0, 1000, 10)


def test_round_robin_cycles_and_least_loaded_picks_the_minimum_with_low_index_ties():
    views = [View(0, 5), View(1, 2), View(2, 2)]
    rr = build({"kind": "round_robin"})
    assert [rr.pick(REQ, views) for _ in range(5)] == [0, 1, 2, 0, 1]
    for name in ("least_outstanding", "least_loaded"):
        assert build({"kind": name}).pick(REQ, views) == 1
    kv = [View(0, 1, 0.5), View(1, 0, 0.7), View(2, 3, 0.2)]
    assert build({"kind": "least_kv"}).pick(REQ, kv) == 2


def test_random_is_uniform_and_seeded():
    views = [View(i) for i in range(4)]
    a = [build({"kind": "random"}, seed=3).pick(REQ, views) for _ in range(1)]
    r1, r2 = build({"kind": "random"}, seed=3), build({"kind": "random"}, seed=3)
    picks = [r1.pick(REQ, views) for _ in range(4000)]
    assert picks == [r2.pick(REQ, views) for _ in range(4000)] and a[0] == picks[0]
    counts = np.bincount(picks, minlength=4)
    assert (abs(counts - 1000) < 120).all()  # 4000 draws, sd ~27 per bin


def test_power_of_two_sends_to_the_less_loaded_of_two_draws():
    views = [View(0, 9), View(1, 0), View(2, 9), View(3, 9)]
    router = build({"kind": "power_of_two"}, seed=1)
    picks = [router.pick(REQ, views) for _ in range(3000)]
    # replica 1 wins every pair it is drawn into: P = 1 - C(3,2)/C(4,2) = 1/2
    assert abs(picks.count(1) / 3000 - 0.5) < 0.04
    assert all(p == 1 for p in [build({"kind": "power_of_two"}).pick(REQ, [View(0, 4), View(1, 1)])
                                for _ in range(50)])
    kv = build({"kind": "power_of_two", "load": "kv"})
    assert kv.pick(REQ, [View(0, 0, 0.9), View(1, 9, 0.1)]) == 1
    with pytest.raises(ConfigError, match='"load"'):
        ROUTERS.build({"kind": "power_of_two", "load": "queue"})


def test_prefix_affinity_prefers_the_longest_cached_prefix_unless_imbalanced():
    router = build({"kind": "prefix_affinity", "cache_threshold": 0.3, "balance_abs_threshold": 4,
                    "balance_rel_threshold": 1.5})
    views = [View(0, 3, 0.1), View(1, 5, 0.6, {7: 512}), View(2, 5, 0.6, {7: 256})]
    assert router.pick(REQ, views) == 1  # 512 of 1000 tokens cached > 30 %
    low = [View(0, 3, 0.4), View(1, 5, 0.6, {7: 256}), View(2, 5, 0.2)]
    assert router.pick(REQ, low) == 2  # best hit 25 % < 30 %: most free KV
    skewed = [View(0, 1, 0.9), View(1, 9, 0.1, {7: 900})]  # 9 - 1 > 4 and 9 > 1.5
    assert router.pick(REQ, skewed) == 0
    assert (router.num_affinity, router.num_balanced) == (1, 1)
    tie = [View(0, 4, 0.1, {7: 512}), View(1, 2, 0.1, {7: 512})]
    assert router.pick(REQ, tie) == 1  # equal hits: least loaded
    with pytest.raises(ConfigError, match="cache_threshold"):
        ROUTERS.build({"kind": "prefix_affinity", "cache_threshold": 1.5})


def test_prefix_cache_probe_matches_what_admission_hits():
    kv = PrefixCacheKV(64, block_size=16)
    ids = tuple(range(8))
    first = Seq(Request(1, 0.0, 128, 4, prefix_hashes=ids, prefix_chunk_tokens=16), key=1)
    kv.allocate(first, 128)
    probe = Request(2, 0.0, 100, 4, prefix_hashes=ids[:4] + (99, 98, 97), prefix_chunk_tokens=16)
    assert kv.cached_tokens(probe) == 64  # four shared 16-token chunks, then a different one
    second = Seq(probe, key=2)
    assert kv.cached_tokens(probe) == kv.match_prefix(second)
    assert kv.cached_tokens(Request(3, 0.0, 100, 4)) == 0  # no prefix ids: nothing to share
    # at most num_tokens - 1 tokens are ever served from the cache
    assert kv.cached_tokens(Request(4, 0.0, 64, 4, prefix_hashes=ids, prefix_chunk_tokens=16)) == 48


def test_unknown_router_names_the_valid_ones():
    with pytest.raises(UnknownNameError, match="prefix_affinity"):
        ROUTERS.build({"kind": "fastest"})


def test_llumnix_migrates_past_the_threshold_the_least_urgent_shortest_request():
    pol = MIGRATIONS.build({"kind": "llumnix", "threshold": 0.25})
    assert pol.pick_pair([0.5, 0.3, 0.4]) is None  # spread 0.2
    assert pol.pick_pair([0.2, 0.9, 0.5, 0.1]) == (1, 3)
    assert pol.pick_pair([0.7]) is None
    # (KV tokens, priority): lowest priority (largest number) first, then fewest tokens
    assert pol.pick_request([(100, 0), (900, 1), (500, 1)]) == 2
    assert pol.pick_request([(300, 0), (200, 0)]) == 1
    with pytest.raises(ConfigError, match="interval_s"):
        MIGRATIONS.build({"kind": "llumnix", "interval_s": 0})
