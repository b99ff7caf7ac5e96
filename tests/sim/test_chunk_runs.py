"""Collapsed runs of prompt-chunk steps (Sarathi-Serve: the decodes plus one prompt continuing chunk by chunk,
``Scheduler.steady_chunks``) give the run that stepping one step at a time gives: the same step rows and
request records, times within 1e-9, with requests queued behind the prompt, a prefix cache and a KV cache
short enough to preempt."""

from __future__ import annotations

import pytest
from test_sim_properties import assert_same_run, check_run

from llmsim.sim import replica as replica_module
from llmsim.sim import simulate

MODEL, HARDWARE = "llama-3.1-8b", "h100-sxm"
CASES = {  # (requests, rate, KV): light load; heavy load with a queue; a short prefix cache that preempts
    "light": (40, 2.0, {"kind": "paged"}),
    "queued": (60, 12.0, {"kind": "paged"}),
    "prefix-preempting": (60, 12.0, {"kind": "prefix", "num_blocks": 700}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_chunk_runs_match_step_by_step(make_requests, monkeypatch, case):
    n, rate, kv = CASES[case]
    reqs = make_requests(n, rate, seed=4, mean_in=2000, mean_out=80, max_in=6000, max_out=300,
                         prefix_groups=2 if kv["kind"] == "prefix" else 0, chunk=16)
    runs = []
    real = replica_module.Replica._chunk_run

    def counting(self, eng, plan, chunks):
        runs.append(len(chunks))
        return real(self, eng, plan, chunks)

    monkeypatch.setattr(replica_module.Replica, "_chunk_run", counting)
    kw = dict(model=MODEL, hardware=HARDWARE, scheduler={"kind": "sarathi", "chunk_size": 256}, kv=kv, seed=3,
              max_model_len=8192)
    step = simulate(reqs, max_run_steps=1, check_invariants=True, **kw)
    assert not runs
    run = simulate(reqs, max_run_steps=256, check_invariants=True, **kw)
    assert len(runs) > 10 and max(runs) > 3  # prompts did run as collapsed chunks
    if case == "prefix-preempting":
        assert step.requests["preemptions"].sum() > 0 and step.requests["prefix_hit_tokens"].sum() > 0
    assert_same_run(step, run)
    for col in ("prefill_tokens", "decode_tokens", "padded_rows", "kv_blocks_total"):
        assert step.steps[col].tolist() == run.steps[col].tolist(), col
    chunked = (step.steps["prefill_tokens"] > 0).to_numpy()  # (a decode run's rows carry its mean FLOPs)
    for col in ("flops", "hbm_bytes"):
        assert run.steps[col][chunked].tolist() == pytest.approx(step.steps[col][chunked].tolist(), rel=1e-12), col
    check_run(run, reqs)
