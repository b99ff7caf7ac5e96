"""Parallel sampling: n children per request sharing the prompt's full blocks (copy on write at the first
divergent block), finishing together; naive copies share nothing."""

import pandas as pd

from llmsim.metrics.parallel import parent_summary
from llmsim.sim import simulate
from llmsim.workload.parallel import fan_out
from llmsim.workload.request import Request


def test_children_share_the_prompt_pieces_wholly_inside_it():
    parent = Request(7, 1.0, 100, 20)
    kids = list(fan_out([parent], 3))
    assert len(kids) == 3 and all(k.id == 7 and k.arrival_s == 1.0 for k in kids)
    assert kids[0].prefix_hashes is kids[1].prefix_hashes
    assert len(kids[0].prefix_hashes) == 100 // 16  # tokens 96..99 share a piece with outputs: not shared
    assert list(fan_out([parent], 3, share_prompt=False))[0].prefix_hashes == ()


def test_children_keep_the_parents_own_prefix_ids():
    parent = Request(1, 0.0, 1100, 5, prefix_hashes=(11, 12), prefix_chunk_tokens=512)
    ids = next(fan_out([parent], 2)).prefix_hashes
    assert ids[:32] == (11,) * 32 and ids[32:64] == (12,) * 32  # 16-token pieces of the two 512 chunks
    assert len(set(ids[64:])) == 1 and ids[64] not in (11, 12)  # the rest: this parent's own prompt


def _run(n, share):
    reqs = [Request(i, 0.2 * i, 1000, 50) for i in range(10)]
    return simulate(fan_out(reqs, n, share), model="llama-3.1-8b", hardware="h100-sxm", check_invariants=True)


def test_shared_prompts_are_computed_once_and_blocks_conserved():
    shared, naive = _run(4, True), _run(4, False)
    for res in (shared, naive):
        assert (res.requests["emitted_tokens"] == 50).all() and len(res.requests) == 40
        assert res.info["kv_blocks_allocated"] == res.info["kv_blocks_freed"]
    # 3 of 4 children hit the 62 full prompt blocks (992 tokens) the first one computes
    assert shared.info["prefix_cached_tokens"] == 10 * 3 * 992
    assert naive.info["prefix_cached_tokens"] == 0
    assert shared.requests["computed_tokens"].sum() < naive.requests["computed_tokens"].sum() - 10 * 3 * 900


def test_parent_ends_with_its_last_child():
    df = pd.DataFrame({"id": [1, 1, 2, 2], "arrival_s": [0.0, 0.0, 1.0, 1.0], "status": ["finished"] * 4,
                       "ttft_s": [0.1, 0.2, 0.3, 0.1], "e2e_s": [1.0, 3.0, 2.0, 2.5]})
    out = parent_summary(df, 2)
    assert out["sampling_parents"] == 2
    assert out["parent_ttft_p50_s"] == 0.1  # median of 0.1 and 0.1
    assert out["parent_e2e_p50_s"] == 2.75  # median of 3.0 and 2.5
