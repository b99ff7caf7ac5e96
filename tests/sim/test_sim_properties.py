"""Invariants of whole runs, on random small workloads, for every policy x KV manager (hypothesis)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmsim.metrics.summary import littles_law
from llmsim.sim import simulate
from llmsim.specs import ParallelLayout

MODEL, HARDWARE = "llama-3.1-8b", "h100-sxm"

POLICIES = [
    {"kind": "vllm"},
    {"kind": "vllm", "mode": "v0"},
    {"kind": "vllm", "mode": "v0", "preemption_mode": "swap"},
    {"kind": "vllm", "max_num_batched_tokens": 256, "long_prefill_token_threshold": 128},
    {"kind": "sarathi", "chunk_size": 256},
    {"kind": "orca", "max_batch_size": 16},
    {"kind": "static", "max_batch_size": 4, "max_wait_s": 0.05},
    {"kind": "fastserve", "base_quantum": 2},
    {"kind": "sjf", "predictor_error": 0.7},
    {"kind": "vllm", "scheduling_policy": "priority", "max_num_batched_tokens": 512},
]
KV_KINDS = ["paged", "prefix", "contiguous"]


def check_run(res, reqs, work_conserving: bool = True) -> None:
    r, s = res.requests, res.steps
    assert len(r) == len(reqs) and sorted(r["id"]) == [q.id for q in reqs]
    fin = r[r["status"] == "finished"]
    rej = r[r["status"] == "rejected"]
    assert (fin["emitted_tokens"] == fin["output_tokens"]).all()  # exactly its outputs
    assert (rej["reason"] != "").all()
    assert res.info["kv_blocks_allocated"] == res.info["kv_blocks_freed"]  # every block came back
    assert (s["kv_blocks_used"] <= s["kv_blocks_total"]).all()  # never over capacity
    # token conservation: what the steps computed is what the requests needed (+ recomputation)
    assert int((s["prefill_tokens"] + s["decode_tokens"]).sum()) == int(fin["computed_tokens"].sum())
    needed = fin["input_tokens"] + fin["output_tokens"] - 1 - fin["prefix_hit_tokens"]
    assert (fin["computed_tokens"] >= needed).all()
    clean = fin["preemptions"] == 0
    assert (fin.loc[clean, "computed_tokens"] == needed[clean]).all()
    # the clock never goes back
    for _, g in s.groupby(["replica", "engine"]):
        start, end = g["start_s"].to_numpy(), (g["start_s"] + g["duration_s"]).to_numpy()
        assert (np.diff(start) >= -1e-12).all() and (end[:-1] <= start[1:] + 1e-9).all()
        assert (g["duration_s"] > 0).all()
    assert (fin["queue_s"] >= -1e-12).all()
    assert (fin["ttft_s"] >= fin["queue_s"] - 1e-12).all() and (fin["e2e_s"] >= fin["ttft_s"] - 1e-12).all()
    if (s["engine"] == 0).all():  # one engine per replica (pp = 1): its counts are the replica's
        check_number_in_system(fin, s, work_conserving)


def check_number_in_system(fin: pd.DataFrame, s: pd.DataFrame, work_conserving: bool, eps: float = 1e-9) -> None:
    """The engine's own ``num_in_system`` (logged at each step start) against the request records, and
    Little's law: the step log's time-average number in system vs arrival rate x mean time in system."""
    for replica, g in s.groupby("replica"):
        mine = fin[fin["replica"] == replica]
        arrive, leave = mine["arrival_s"].to_numpy()[None, :], mine["finish_s"].to_numpy()[None, :]
        t = g["start_s"].to_numpy()[:, None]
        surely = ((arrive < t - eps) & (leave > t + eps)).sum(axis=1)  # in system at t, whatever the tie order
        maybe = ((arrive <= t + eps) & (leave > t - eps)).sum(axis=1)
        n = g["num_in_system"].to_numpy()
        assert ((surely <= n) & (n <= maybe)).all(), g.loc[(n < surely) | (n > maybe), ["start_s", "num_in_system"]]
    if not len(fin):
        return
    # Little's law, L = lambda W, over [first arrival, last finish]. The step log sees a request from the first
    # step that starts after its arrival, so L from the steps may fall short of lambda W by at most that wait
    # (summed over requests, per unit time); a work-conserving engine has no other idle time with work queued
    # (static batching is not one: it waits up to max_wait_s for a batch to fill).
    law = littles_law(fin, s)
    span = float(fin["finish_s"].max() - fin["arrival_s"].min())
    waits = 0.0
    for replica, g in s.groupby("replica"):
        starts = np.sort(g["start_s"].to_numpy())
        mine = fin[fin["replica"] == replica]
        nxt = starts[np.minimum(np.searchsorted(starts, mine["arrival_s"].to_numpy() - eps), len(starts) - 1)]
        waits += float(np.clip(nxt - mine["arrival_s"].to_numpy(), 0.0, None).sum())
    lam_w, steps_l = law["littles_lambda_W"], law["littles_L"]
    assert steps_l <= lam_w * (1 + 1e-9) + 1e-9
    if work_conserving:
        assert lam_w - steps_l <= waits / span + 1e-6 * max(1.0, lam_w), (steps_l, lam_w, waits / span)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policy=st.sampled_from(POLICIES), kv_kind=st.sampled_from(KV_KINDS), n=st.integers(1, 25),
       rate=st.floats(1.0, 200.0), seed=st.integers(0, 10_000), num_blocks=st.integers(20, 300),
       prefix_groups=st.sampled_from([0, 2]), layout=st.sampled_from([(1, 1), (1, 1), (2, 1), (1, 2)]),
       collapse=st.booleans())
def test_invariants_hold_for_every_policy_and_kv_manager(make_requests, policy, kv_kind, n, rate, seed, num_blocks,
                                                         prefix_groups, layout, collapse):
    pp, dp = layout
    reqs = make_requests(n, rate, seed, mean_in=120, mean_out=30, max_in=600, max_out=100,
                         prefix_groups=prefix_groups, chunk=16)
    res = simulate(reqs, model=MODEL, hardware=HARDWARE, layout=ParallelLayout(pp=pp, dp=dp), scheduler=policy,
                   kv={"kind": kv_kind, "num_blocks": num_blocks * pp, "swap_space_gb": 0.01}, max_model_len=512,
                   seed=seed, max_run_steps=256 if collapse else 1, check_invariants=True)
    check_run(res, reqs, work_conserving=policy["kind"] != "static")


def test_collapsed_decode_runs_match_step_by_step(cost_model, make_requests):
    reqs = make_requests(60, 8.0, seed=3)
    runs = [simulate(reqs, model=MODEL, hardware=HARDWARE, seed=1, cost_model=cost_model, max_run_steps=m)
            for m in (1, 256)]
    assert_same_run(*runs)
    check_run(runs[1], reqs)


def assert_same_run(a_res, b_res) -> None:
    a, b = (r.requests.set_index("id").sort_index() for r in (a_res, b_res))
    for col in ("ttft_s", "e2e_s", "tpot_s", "itl_max_s", "finish_s"):
        np.testing.assert_allclose(a[col], b[col], rtol=1e-9, atol=1e-9)
    for col in ("preemptions", "prefix_hit_tokens", "computed_tokens", "status"):
        assert (a[col] == b[col]).all(), col
    sa, sb = a_res.steps, b_res.steps
    assert len(sa) == len(sb)
    for col in ("start_s", "duration_s"):
        np.testing.assert_allclose(sa[col], sb[col], rtol=1e-9, atol=1e-12)
    for col in ("batch_size", "kv_blocks_used", "queue_len", "num_in_system", "preempted"):
        np.testing.assert_array_equal(sa[col].to_numpy(), sb[col].to_numpy(), err_msg=col)


# every policy on the generic engine, and vLLM 0.15's (async, CUDA graphs) with its own v1 scheduler
ENGINE_CASES = [(p, "generic") for p in POLICIES] + [
    (p, "vllm-0.15") for p in POLICIES if p["kind"] == "vllm" and p.get("mode", "v1") == "v1"]


@pytest.mark.parametrize(("policy", "engine"), ENGINE_CASES,
                         ids=["-".join(map(str, p.values())) + "@" + e for p, e in ENGINE_CASES])
def test_collapsed_runs_match_step_by_step_under_kv_pressure_and_preemption(make_requests, policy, engine):
    reqs = make_requests(80, 30.0, seed=7, mean_in=200, mean_out=120, max_in=600, max_out=400, prefix_groups=2,
                         chunk=16)
    kw = dict(model=MODEL, hardware=HARDWARE, scheduler=policy, engine=engine, max_model_len=2048, seed=2,
              kv={"kind": "contiguous" if policy["kind"] in ("static", "orca") else "prefix", "num_blocks": 160,
                  "swap_space_gb": 0.05})
    step, run = (simulate(reqs, max_run_steps=m, check_invariants=True, **kw) for m in (1, 256))
    if policy["kind"] not in ("static", "orca"):  # contiguous reservation never preempts
        assert step.requests["preemptions"].sum() > 0  # the cache really was short
    assert run.steps["batch_size"].size > 0
    assert_same_run(step, run)
    check_run(run, reqs)


def test_same_seed_gives_byte_identical_outputs(cost_model, make_requests):
    reqs = make_requests(80, 15.0, seed=5, prefix_groups=3)
    kw = dict(model=MODEL, hardware=HARDWARE, scheduler={"kind": "sjf", "predictor_error": 0.5, "max_num_seqs": 4}, seed=11)
    a, b = simulate(reqs, **kw), simulate(reqs, **kw)
    assert a.requests.to_csv() == b.requests.to_csv()
    assert a.steps.to_csv() == b.steps.to_csv()
    assert a.summary() == b.summary()
    c = simulate(reqs, **{**kw, "seed": 12})
    assert not c.requests.equals(a.requests)  # the predictor's noise follows the seed


def test_pipeline_parallel_runs_micro_batches_through_stages(make_requests):
    reqs = make_requests(40, 10.0, seed=2)
    res = simulate(reqs, model=MODEL, hardware=HARDWARE, layout=ParallelLayout(pp=2), seed=0)
    check_pp = res.steps
    assert (res.requests["status"] == "finished").all()
    # two virtual engines overlap in time: pipelining, not a division of time
    ends = check_pp["start_s"] + check_pp["duration_s"]
    overlap = (check_pp["start_s"].to_numpy()[1:] < ends.to_numpy()[:-1]).any()
    assert overlap
    assert isinstance(res.requests, pd.DataFrame)
