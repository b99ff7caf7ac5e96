"""The per-request vLLM 0.11.0 runs replay with the load generator's shared prefix (guidellm's
``prefix_tokens``): every prompt starts with the same text, so vLLM's prefix cache serves it after the first
request. Replaying them as unique prompts computed ~50 % more prefill and put two runs at +192 % / +27 % E2E."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmsim.sim import simulate
from llmsim.specs import load_hardware
from llmsim.trust.realruns import RequestRun, load_request_runs

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real_runs"
CSV = DATA / "per_request_vllm_0.11.0.csv"


def _run(prompts, prefix, arrivals=None) -> RequestRun:
    n = len(prompts)
    arrivals = arrivals or tuple(10.0 * i for i in range(n))
    return RequestRun("toy", "llama-2-7b", 4096, 2048, 32, tuple(arrivals), tuple(prompts), (8,) * n,
                      (0.0,) * n, (0.0,) * n, prefix)


def test_shared_prefix_is_one_content_for_every_request_and_the_rest_is_each_ones_own():
    reqs = _run((3000, 2000, 500), 1024).requests()
    assert [len(r.prefix_hashes) * r.prefix_chunk_tokens for r in reqs] == [1024, 1024, 496]
    assert reqs[0].prefix_hashes == reqs[1].prefix_hashes  # same text, same block ids
    assert reqs[2].prefix_hashes == reqs[0].prefix_hashes[:31]  # a prompt shorter than the prefix: its full blocks
    assert all(not r.prefix_hashes for r in _run((3000, 2000), 0).requests())


def test_a_later_request_hits_the_whole_shared_prefix_and_nothing_else():
    def hits(prefix):
        reqs = _run((3000, 2500), prefix).requests()
        res = simulate(reqs, model="llama-2-7b", hardware=load_hardware("h100-sxm"), engine="vllm-0.11",
                       scheduler={"kind": "vllm", "max_num_seqs": 32, "max_num_batched_tokens": 2048},
                       max_model_len=4096)
        return res.summary()["prefix_hit_tokens"]

    assert hits(1024) == 1024  # the second request (10 s later) finds the first one's 64 prefix blocks
    assert hits(0) == 0


@pytest.mark.skipif(not CSV.exists(), reason="no ../shared/data/real_runs")
def test_prefill_run_replay_hits_the_cache_as_the_real_server_logged():
    # vLLM's own log of jan20-codellama-prefill-1 (inference-sim/inference-sim eval/ground_truth, vllm.log)
    # reports "Prefix cache hit rate" settling at 32.6-33.1 % over the run.
    run = next(r for r in load_request_runs(CSV) if r.experiment == "jan20-codellama-prefill-1")
    res = simulate(run.requests(), model=run.model, hardware=load_hardware("h100-sxm-calibrated"),
                   engine="vllm-0.11", scheduler={"kind": "vllm", "max_num_seqs": run.max_num_seqs,
                                                 "max_num_batched_tokens": run.max_num_batched_tokens},
                   max_model_len=run.max_model_len)
    assert 0.31 <= res.summary()["prefix_hit_rate"] <= 0.35
