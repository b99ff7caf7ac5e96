"""Beam search as vLLM v1 runs it: one single-token request per beam and step, KV forked through the
prefix cache (shared full blocks, each beam's partial block its own); blocks conserved."""

import pytest

from llmsim.metrics.parallel import beam_summary
from llmsim.sim import simulate
from llmsim.workload.beam import BeamSearch
from llmsim.workload.request import Request


def _run(parents, width):
    beams = BeamSearch(width)
    return simulate(beams.initial(parents), model="llama-3.1-8b", hardware="h100-sxm",
                    arrivals_callback=beams.callback, check_invariants=True)


def test_forked_blocks_by_hand():
    # prompt 40 tokens (2 full blocks of 16), width 2, 10 steps. Step 0: beam 0 computes all 40, beam 1 hits
    # the 2 prompt blocks (32 tokens). Steps 1-8: both beams hit those 2 blocks (their third block is partial,
    # or at step 8 holds the last, uncomputed token). Step 9 (49 tokens): each beam also hits its own third
    # block, filled by its step 8: 48 tokens each.
    res = _run([Request(0, 0.0, 40, 10)], 2)
    assert len(res.requests) == 20 and (res.requests["emitted_tokens"] == 1).all()
    assert res.info["prefix_cached_tokens"] == 32 + 8 * 2 * 32 + 2 * 48
    assert res.info["kv_blocks_allocated"] == res.info["kv_blocks_freed"]


def test_a_search_ends_with_its_last_step():
    res = _run([Request(i, 0.3 * i, 300, 12) for i in range(4)], 3)
    out = beam_summary(res.requests, 3)
    assert out["beam_parents"] == 4 and len(res.requests) == 4 * 12 * 3
    last = res.requests.groupby("id")["finish_s"].max() - res.requests.groupby("id")["arrival_s"].min()
    assert out["beam_e2e_p50_s"] == pytest.approx(float(last.median()))


def test_width_must_be_positive():
    with pytest.raises(ValueError, match="beam_width"):
        BeamSearch(0)


def test_beams_share_the_prompt_but_not_their_own_tokens():
    beams = BeamSearch(3)
    first = list(beams.initial([Request(0, 0.0, 40, 30)]))
    assert len({r.prefix_hashes for r in first}) == 1  # step 0: only the prompt
    for r in first:
        nxt = beams.callback(r, 1.0)
    later = nxt
    for _ in range(8):  # step 9: 49 tokens, 3 pieces: 2 of the prompt, 1 of the beam's own tokens
        for r in later:
            got = beams.callback(r, 2.0)
        later = got
    ids = [r.prefix_hashes for r in later]
    assert all(i[:2] == first[0].prefix_hashes for i in ids)
    assert len({i[2] for i in ids}) == 3
