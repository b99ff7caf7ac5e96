"""Scheduler decisions, checked by hand on tiny queues (no SimPy, no cost model)."""

from __future__ import annotations

import pytest

from llmsim.errors import ConfigError, UnknownNameError
from llmsim.kv import ContiguousKV, PagedKV, PrefixCacheKV, SwapSpace
from llmsim.sched import SCHEDULERS, Seq
from llmsim.sched.cudagraph import padded_size, v0_capture_sizes, v1_capture_sizes
from llmsim.workload.request import Request


def make_seq(i: int, inp: int, out: int = 4, arrival: float = 0.0, **kw) -> Seq:
    return Seq(Request(i, arrival, inp, out, **kw))


def make_sched(block: dict, num_blocks: int = 1000, block_size: int = 16, kv=None, swap=None, max_len=4096):
    sched = SCHEDULERS.build(block)
    sched.bind(kv or PagedKV(num_blocks, block_size), swap, max_len)
    return sched


def run_to_end(sched, limit: int = 10_000) -> int:
    steps = 0
    while sched.has_work():
        plan = sched.schedule(float(steps))
        sched.commit(plan)
        sched.check()
        steps += 1
        assert steps < limit
    return steps


def test_v1_chunks_long_prompts_under_one_budget_and_mixes_decodes():
    s = make_sched({"kind": "vllm", "max_num_batched_tokens": 100, "cuda_graph": False})
    a, b = make_seq(1, 30, out=3), make_seq(2, 250, out=2)
    s.add(a)
    s.add(b)
    p = s.schedule()
    assert [(q.id, n) for q, n in zip(p.seqs, p.tokens, strict=True)] == [(1, 30), (2, 70)]
    s.commit(p)
    p = s.schedule()  # a decodes, b continues its prompt with the rest of the budget
    assert [(q.id, n) for q, n in zip(p.seqs, p.tokens, strict=True)] == [(1, 1), (2, 99)]
    s.commit(p)
    p = s.schedule()
    assert [(q.id, n) for q, n in zip(p.seqs, p.tokens, strict=True)] == [(1, 1), (2, 81)]
    emitted, finished = s.commit(p)
    assert {q.id for q in emitted} == {1, 2} and [q.id for q in finished] == [1]


def test_v1_long_prefill_threshold_caps_chunks():
    s = make_sched({"kind": "vllm", "long_prefill_token_threshold": 64, "cuda_graph": False})
    s.add(make_seq(1, 200))
    assert s.schedule().tokens == [64]


def test_v1_preempts_the_most_recently_admitted_by_recompute():
    s = make_sched({"kind": "vllm", "cuda_graph": False}, num_blocks=4, block_size=4)
    a, b = make_seq(1, 7, out=5), make_seq(2, 7, out=5)
    s.add(a)
    s.add(b)
    s.commit(s.schedule())  # both prompts: 2 blocks each, all 4 used
    s.commit(s.schedule())  # token 8 still fits the second block
    p = s.schedule()  # a needs a third block for token 9: b (admitted last) is preempted
    assert [q.id for q in p.preempted] == [2] and [q.id for q in p.seqs] == [1]
    assert b.num_computed == 0 and s.waiting[0] is b and b.num_preemptions == 1
    assert run_to_end(s) > 0
    assert a.num_emitted == 5 and b.num_emitted == 5
    assert s.kv.num_allocated == s.kv.num_freed


def test_v1_skips_prefix_cache_hits():
    kv = PrefixCacheKV(100, 4)
    s = make_sched({"kind": "vllm", "cuda_graph": False}, kv=kv)
    a = make_seq(1, 16, out=2, prefix_hashes=(1, 2), prefix_chunk_tokens=8)
    s.add(a)
    run_to_end(s)
    b = make_seq(2, 16, out=2, prefix_hashes=(1, 2), prefix_chunk_tokens=8)
    s.add(b)
    p = s.schedule()
    assert p.tokens == [4] and b.prefix_hit_tokens == 12


def test_v0_prefill_steps_are_prefill_only_and_watermarked():
    s = make_sched({"kind": "vllm", "mode": "v0", "cuda_graph": False})
    a = make_seq(1, 20, out=5)
    s.add(a)
    s.commit(s.schedule())
    s.add(make_seq(2, 30))
    p = s.schedule()
    assert [q.id for q in p.seqs] == [2] and p.tokens == [30]  # a's decode waits a step
    s.commit(p)
    p = s.schedule()
    assert [q.id for q in p.seqs] == [1, 2] and p.tokens == [1, 1]


def test_v0_swap_preemption_moves_blocks_to_host_and_back():
    swap = SwapSpace(100, 1e6, 1e9)
    s = make_sched({"kind": "vllm", "mode": "v0", "preemption_mode": "swap", "cuda_graph": False},
                   kv=PagedKV(5, 4, watermark=0.0), swap=swap)
    a, b = make_seq(1, 8, out=8), make_seq(2, 8, out=8)
    s.add(a)
    s.add(b)
    swapped_out = swapped_in = 0
    while s.has_work():
        p = s.schedule()
        swapped_out += p.swap_out_blocks
        swapped_in += p.swap_in_blocks
        s.commit(p)
    assert swapped_out > 0 and swapped_in == swapped_out
    assert a.num_emitted == 8 and b.num_emitted == 8 and swap.num_free_blocks == 100


def test_v0_and_v1_pad_to_cuda_graph_sizes():
    assert v0_capture_sizes()[:5] == [1, 2, 4, 8, 16] and v0_capture_sizes()[-1] == 256
    assert v1_capture_sizes()[-1] == 512 and 272 in v1_capture_sizes()
    assert padded_size(5, v0_capture_sizes()) == 8 and padded_size(300, v0_capture_sizes()) == 300
    s = make_sched({"kind": "vllm", "mode": "v0"})
    for i in range(3):
        s.add(make_seq(i, 10, out=3))
    s.commit(s.schedule())
    p = s.schedule()
    assert p.num_decode == 4 and p.num_pad == 1


def test_sarathi_never_stalls_decodes_and_admits_whole_prompts():
    s = make_sched({"kind": "sarathi", "chunk_size": 64})
    a = make_seq(1, 10, out=5)
    s.add(a)
    s.commit(s.schedule())
    s.add(make_seq(2, 500))
    p = s.schedule()
    assert [(q.id, n) for q, n in zip(p.seqs, p.tokens, strict=True)] == [(1, 1), (2, 63)]
    assert s.kv.held_blocks(s.running[1]) == 32  # whole prompt reserved on admission


def test_orca_runs_whole_prompts_with_contiguous_reservation():
    kv = ContiguousKV(100, 1, "max", max_model_len=40)
    s = make_sched({"kind": "orca", "max_batch_size": 8}, kv=kv)
    for i in range(4):
        s.add(make_seq(i, 30, out=2))
    p = s.schedule()
    assert p.tokens == [30, 30]  # 40-token reservations: two fit in 100
    assert run_to_end(s) > 0


def test_static_waits_for_a_full_batch_or_the_window_then_pads():
    kv = ContiguousKV(1000, 1, "oracle")
    s = make_sched({"kind": "static", "max_batch_size": 2, "max_wait_s": 1.0}, kv=kv)
    a = make_seq(1, 10, out=1, arrival=0.0)
    s.add(a)
    p = s.schedule(0.5)
    assert p.is_empty and p.wake_at_s == 1.0
    b = make_seq(2, 30, out=3, arrival=0.6)
    s.add(b)
    p = s.schedule(0.6)
    assert p.prefill == [(30, 0), (30, 0)]  # prompts padded to the longest
    s.commit(p)
    p = s.schedule(0.7)
    assert p.num_pad == 1 and [q.id for q in p.seqs] == [2]  # a is done but its row still computes
    _, finished = s.commit(p)
    assert finished == []
    p = s.schedule(0.8)
    _, finished = s.commit(p)
    assert {q.id for q in finished} == {1, 2}


def test_fastserve_skip_join_and_demotion():
    s = make_sched({"kind": "fastserve", "base_quantum": 2, "prefill_tokens_per_iteration": 100},
                   swap=SwapSpace(1000, 1e6, 1e9))
    short, long = make_seq(1, 50, out=20), make_seq(2, 700, out=20)
    s.add(short)
    s.add(long)
    assert short.level == 0 and long.level == 2  # 7 prefill iterations skip to the quantum-8 level
    s.commit(s.schedule())
    assert long.level == 2
    for _ in range(3):
        s.commit(s.schedule())
    assert short.level >= 1
    run_to_end(s)
    assert short.num_emitted == 20 and long.num_emitted == 20


def test_sjf_admits_shortest_predicted_first():
    s = make_sched({"kind": "sjf", "max_num_seqs": 1})
    for i, out in enumerate([50, 5, 20]):
        s.add(make_seq(i, 10, out=out))
    order = []
    while s.has_work():
        p = s.schedule()
        order += [q.id for q in p.seqs if q.id not in order]
        s.commit(p)
    assert order == [1, 2, 0]


def test_requests_that_can_never_run_are_rejected_with_a_reason():
    s = make_sched({"kind": "vllm"}, num_blocks=4, block_size=4, max_len=100)
    too_long = make_seq(1, 90, out=20)
    too_big = make_seq(2, 20, out=10)
    assert not s.add(too_long) and too_long.reason == "exceeds_max_model_len"
    assert not s.add(too_big) and too_big.reason == "exceeds_kv_capacity"


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="max_num_seqs"):
        SCHEDULERS.build({"kind": "vllm", "max_num_seqs": 0})
    with pytest.raises(ConfigError, match="mode"):
        SCHEDULERS.build({"kind": "vllm", "mode": "v2"})
    with pytest.raises(ConfigError, match="preemption_mode"):
        SCHEDULERS.build({"kind": "vllm", "preemption_mode": "swap"})
    with pytest.raises(UnknownNameError, match="sarathi"):
        SCHEDULERS.build({"kind": "nope"})


@pytest.mark.parametrize("block, message", [
    ({"kind": "sarathi", "chunk_size": 0}, '"chunk_size" must be a positive integer, got 0'),
    ({"kind": "sarathi", "chunk_size": None}, '"chunk_size" must be a positive integer, got None'),
    ({"kind": "static", "max_wait_s": float("nan")}, '"max_wait_s" must be a finite number >= 0, got nan'),
    ({"kind": "static", "max_wait_s": "soon"}, '"max_wait_s" must be a finite number >= 0'),
    ({"kind": "sjf", "predictor_error": float("inf")}, '"predictor_error" must be a finite number >= 0'),
    ({"kind": "vllm", "long_prefill_token_threshold": 0.5}, '"long_prefill_token_threshold" must be an integer >= 0'),
    ({"kind": "vllm", "enable_chunked_prefill": "no"}, '"enable_chunked_prefill" must be true or false'),
    ({"kind": "vllm", "mode": "v0", "cuda_graph": "yes"}, '"cuda_graph" must be true or false'),
    ({"kind": "vllm", "max_capture_size": -8}, '"max_capture_size" must be a positive integer'),
    ({"kind": "fastserve", "num_levels": True}, '"num_levels" must be a positive integer, got True'),
    ({"kind": "vllm", "max_num_batched_tokens": 0}, '"max_num_batched_tokens" must be a positive integer, got 0'),
    ({"kind": "vllm", "max_capture_size": 0}, '"max_capture_size" must be a positive integer, got 0'),
    ({"kind": "orca", "max_num_batched_tokens": 0}, '"max_num_batched_tokens" must be a positive integer'),
    ({"kind": "sjf", "max_num_batched_tokens": []}, '"max_num_batched_tokens" must be a positive integer'),
])
def test_bad_policy_values_are_named(block, message):
    with pytest.raises(ConfigError, match=f"^x.yaml: scheduler: {message}"):
        SCHEDULERS.build(block, where="x.yaml: scheduler")


def _until_preempted(sched, limit=100):
    for _ in range(limit):
        plan = sched.schedule()
        if plan.preempted:
            return plan
        sched.commit(plan)
        sched.check()
    raise AssertionError("no preemption")


def test_vllm_v1_priority_policy_orders_the_queue_and_preempts_the_least_urgent():
    sched = make_sched({"kind": "vllm", "scheduling_policy": "priority"}, num_blocks=100)
    low, mid, high = (make_seq(i, 16, arrival=0.1 * i, priority=p) for i, p in ((0, 2), (1, 1), (2, 0)))
    for seq in (low, mid, high):
        sched.add(seq)
    assert sched.schedule().seqs == [high, mid, low]  # (priority, arrival) order, not arrival
    fcfs = make_sched({"kind": "vllm"}, num_blocks=100)
    a, b = make_seq(0, 16, arrival=0.0, priority=5), make_seq(1, 16, arrival=0.1, priority=0)
    fcfs.add(a)
    fcfs.add(b)
    assert fcfs.schedule().seqs == [a, b]
    # the low-priority request is admitted first and walked first; the urgent one, admitted last, runs short
    # of a block: FCFS preempts the last admitted (the urgent one), priority the least urgent, taking it back
    # out of the step it was already scheduled in
    outcome = {}
    for policy in ("fcfs", "priority"):
        s = make_sched({"kind": "vllm", "scheduling_policy": policy}, num_blocks=5, block_size=16)
        low, high = make_seq(0, 30, out=40, priority=1), make_seq(1, 20, out=50, arrival=0.1, priority=0)
        s.add(low)
        s.commit(s.schedule())
        s.add(high)
        plan = _until_preempted(s)
        outcome[policy] = (plan.preempted[0].id, [q.id for q in plan.seqs], plan.num_tokens)
    assert outcome["fcfs"] == (1, [0], 1)
    assert outcome["priority"] == (0, [1], 1)  # low's decode token was taken back out of the plan
    with pytest.raises(ConfigError, match="scheduling_policy"):
        SCHEDULERS.build({"kind": "vllm", "scheduling_policy": "edf"})
    with pytest.raises(ConfigError, match="v1 mode"):
        SCHEDULERS.build({"kind": "vllm", "mode": "v0", "scheduling_policy": "priority"})
