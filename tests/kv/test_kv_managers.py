"""KV managers: allocator verbs, capacity, counters, prefix tree hits and eviction."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmsim.errors import ConfigError
from llmsim.kv import KV_MANAGERS, ContiguousKV, PagedKV, PrefixCacheKV, SwapSpace
from llmsim.sched.seq import Seq
from llmsim.workload.request import Request


def make_seq(i: int, inp: int = 40, out: int = 8, hashes: tuple[int, ...] = (), chunk: int = 16) -> Seq:
    return Seq(Request(i, 0.0, inp, out, prefix_hashes=hashes, prefix_chunk_tokens=chunk))


def test_paged_allocates_blocks_on_demand_and_frees_them():
    kv = PagedKV(num_blocks=10, block_size=16)
    a = make_seq(1, inp=40)
    assert kv.blocks_needed(a, 40) == 3
    assert kv.allocate(a, 40)
    assert kv.num_free_blocks == 7 and kv.held_blocks(a) == 3
    assert kv.allocate(a, 48) and kv.held_blocks(a) == 3  # still inside the third block
    assert kv.allocate(a, 49) and kv.held_blocks(a) == 4
    assert kv.free(a) == 4
    assert kv.num_free_blocks == 10 and kv.num_allocated == kv.num_freed == 4
    kv.check()


def test_paged_refuses_without_change_when_short_and_keeps_watermark():
    kv = PagedKV(num_blocks=100, block_size=16, watermark=0.05)
    a = make_seq(1, inp=16 * 96)
    assert not kv.can_allocate(a, 16 * 96, watermark=True)  # 100 - 96 < 5 watermark blocks
    assert kv.can_allocate(a, 16 * 95, watermark=True)
    b = make_seq(2, inp=16 * 101)
    assert not kv.allocate(b, 16 * 101) and kv.num_free_blocks == 100 and kv.num_allocated == 0
    assert not kv.fits_ever(b)


def test_contiguous_reserves_the_maximum_up_front():
    kv = ContiguousKV(num_blocks=100, block_size=1, reservation="max", max_model_len=30)
    a = make_seq(1, inp=10, out=5)
    assert kv.blocks_needed(a, 10) == 30
    kv.allocate(a, 10)
    assert kv.blocks_needed(a, 15) == 0  # decodes never need memory
    assert ContiguousKV(64, 1, "pow2").reserved_tokens(make_seq(2, inp=20, out=5)) == 32
    assert ContiguousKV(64, 1, "oracle").reserved_tokens(make_seq(3, inp=20, out=5)) == 25
    with pytest.raises(ConfigError, match="reservation"):
        ContiguousKV(64, 1, "huge")


def test_registry_builds_by_name_and_names_bad_fields():
    kv = KV_MANAGERS.build({"kind": "paged", "block_size": 8}, num_blocks=5)
    assert isinstance(kv, PagedKV) and kv.block_size == 8
    with pytest.raises(ConfigError, match="block_size"):
        KV_MANAGERS.build({"kind": "paged", "block_size": 0}, num_blocks=5)
    with pytest.raises(ConfigError, match="bogus"):
        KV_MANAGERS.build({"kind": "prefix", "bogus": 1}, num_blocks=5)


def test_prefix_cache_hits_shared_blocks_and_caps_at_prompt_minus_one():
    kv = PrefixCacheKV(num_blocks=20, block_size=4)
    a = make_seq(1, inp=16, hashes=(7, 8, 9, 10), chunk=4)
    assert kv.match_prefix(a) == 0
    kv.allocate(a, 16)  # registered when allocated: 4 full blocks
    b = make_seq(2, inp=16, hashes=(7, 8, 9, 10), chunk=4)
    assert kv.match_prefix(b) == 12  # 16 cached, but the last token is always recomputed
    assert kv.blocks_needed(b, 16) == 1
    kv.allocate(b, 16)
    assert kv.num_hit_tokens == 12 and kv.num_used_blocks == 5
    c = make_seq(3, inp=16, hashes=(7, 99, 9, 10), chunk=4)  # diverges after the first block
    assert kv.match_prefix(c) == 4
    a.num_computed = b.num_computed = 16
    kv.free(a)
    kv.free(b)
    assert kv.num_free_blocks == 20 and kv.num_cached_idle_blocks == 5  # b's own last block is cached too
    kv.check()


def test_prefix_cache_two_requests_admitted_in_one_step_share_the_prefix_being_computed():
    # 1,536 shared tokens (96 blocks of 16), then 64 tokens of each request's own: the second request, admitted
    # right after the first in the same step, hits the 96 blocks the first one registered when allocated.
    kv = PrefixCacheKV(num_blocks=400, block_size=16)
    shared = tuple(range(96))
    a = make_seq(1, inp=1600, hashes=shared + (1000, 1001, 1002, 1003), chunk=16)
    b = make_seq(2, inp=1600, hashes=shared + (2000, 2001, 2002, 2003), chunk=16)
    assert kv.match_prefix(a) == 0 and kv.allocate(a, 1600)
    assert kv.match_prefix(b) == 1536
    assert kv.blocks_needed(b, 1600) == 4  # only its own 4 blocks
    assert kv.allocate(b, 1600) and kv.num_used_blocks == 100 + 4
    kv.check()


def test_prefix_cache_preempted_request_rehits_its_prompt_and_output_blocks():
    kv = PrefixCacheKV(num_blocks=50, block_size=4)
    a = make_seq(1, inp=10, out=20)  # no prefix ids: content unique to this request
    kv.allocate(a, 10)
    a.num_computed = 10
    for _ in range(9):  # decode 9 tokens: 19 computed, 20 tokens long
        a.num_tokens += 1
        kv.allocate(a, a.num_computed + 1)
        a.num_computed += 1
    a.num_tokens += 1
    assert (a.num_computed, a.num_tokens) == (19, 20)
    kv.free(a)  # preempted (recompute): blocks go back to the free queue, still cached
    a.num_computed, a.num_preemptions = 0, 1
    assert kv.match_prefix(a) == 16  # 4 full blocks of prompt + outputs; 19 tokens computed, cap 20 - 1
    other = make_seq(2, inp=10, out=5)
    assert kv.match_prefix(other) == 0  # nobody else shares that content
    kv.check()


def test_prefix_cache_evicts_from_the_free_queue_head_tail_blocks_first():
    kv = PrefixCacheKV(num_blocks=6, block_size=4)
    a = make_seq(1, inp=16, hashes=(1, 2, 3, 4), chunk=4)
    kv.allocate(a, 16)  # takes blocks 0-3; 4 and 5 stay at the queue head
    a.num_computed = 16
    kv.free(a)  # queue: 4, 5, then a's blocks tail first: 3, 2, 1, 0
    assert kv.free_queue() == [4, 5, 3, 2, 1, 0]
    b = make_seq(2, inp=12, hashes=(5, 6, 7), chunk=4)  # unrelated, 3 blocks: uses 4, 5 and evicts block 3
    assert kv.allocate(b, 12)
    assert kv.num_evicted == 1
    a2 = make_seq(3, inp=16, hashes=(1, 2, 3, 4), chunk=4)
    assert kv.match_prefix(a2) == 12  # blocks 0-2 survive (the deepest went first); cap 15 -> 3 blocks
    c = make_seq(4, inp=8, hashes=(8, 9), chunk=4)
    assert kv.allocate(c, 8) and kv.num_evicted == 3  # next from the head: 2 then 1
    assert kv.match_prefix(a2) == 4
    kv.check()


def test_prefix_cache_does_not_deduplicate_blocks_computed_twice():
    kv = PrefixCacheKV(num_blocks=10, block_size=4)
    a = make_seq(1, inp=9, hashes=(1, 2, 3), chunk=4)
    b = make_seq(2, inp=9, hashes=(1, 2, 3), chunk=4)
    kv.allocate(a, 4)  # a gets a 4-token chunk: block 0 registered
    assert kv.match_prefix(b) == 4
    kv.allocate(b, 9)  # b hits block 0, computes its own blocks 1 and 2 (block 1 registered)
    kv.allocate(a, 9)  # a computes its block 1 too: same content, a second copy (vLLM keeps both)
    assert kv.num_used_blocks == 1 + 2 + 2
    b.num_computed = 9
    kv.free(b)  # b's copy was registered first: lookups return it, from the free queue
    c = make_seq(3, inp=9, hashes=(1, 2, 3), chunk=4)
    assert kv.match_prefix(c) == 8
    assert kv.blocks_needed(c, 9) == 1 + 1  # one new block, plus b's idle block 1 leaving the free queue
    kv.check()


def test_swap_space_accounts_blocks_and_transfer_time():
    sw = SwapSpace(num_blocks=10, block_bytes=1e6, link_bytes_per_s=1e9, latency_s=1e-5)
    sw.put(1, 4)
    assert sw.num_free_blocks == 6 and not sw.can_hold(7)
    assert sw.take(1) == 4 and sw.num_free_blocks == 10
    assert sw.transfer_s(4) == pytest.approx(1e-5 + 4e-3)
    assert sw.transfer_s(0) == 0.0


ops = st.lists(st.tuples(st.sampled_from(["grow", "free"]), st.integers(0, 5), st.integers(1, 64)), max_size=60)


@settings(max_examples=60, deadline=None)
@given(ops=ops, kind=st.sampled_from(["paged", "prefix", "contiguous"]))
def test_random_allocator_traffic_keeps_books_balanced(ops, kind):
    kv = KV_MANAGERS.build({"kind": kind, "block_size": 4}, num_blocks=24)
    seqs = {i: make_seq(i, inp=12, out=60, hashes=(i % 2, 3, 4), chunk=4) for i in range(6)}
    for op, i, n in ops:
        seq = seqs[i]
        if op == "grow":
            target = max(n, seq.num_computed)
            if kv.allocate(seq, target):
                seq.num_computed = target
        else:
            kv.free(seq)
            seq.num_computed = 0
        assert 0 <= kv.num_used_blocks <= kv.num_blocks
        kv.check()
    for seq in seqs.values():
        kv.free(seq)
    assert kv.num_allocated == kv.num_freed
    assert kv.num_used_blocks == 0
