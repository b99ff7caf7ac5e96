"""The public simulate() API: routing, closed-loop arrivals, front-end overhead, errors, summary shape."""

from __future__ import annotations

import json

import numpy as np
import pytest

from llmsim.errors import ConfigError, UnknownNameError
from llmsim.sim import LeastLoadedRouter, Router, simulate
from llmsim.specs import ParallelLayout
from llmsim.workload.request import Request

MODEL, HARDWARE = "llama-3.1-8b", "h100-sxm"


def test_round_robin_spreads_requests_over_replicas(cost_model, make_requests):
    reqs = make_requests(60, 20.0, seed=1)
    res = simulate(reqs, model=MODEL, hardware=HARDWARE, layout=ParallelLayout(dp=3), cost_model=cost_model)
    assert sorted(res.requests["replica"].value_counts().tolist()) == [20, 20, 20]
    assert res.info["capacity_tokens_per_s"] > 0 and res.info["dp"] == 3


def test_custom_and_named_routers(cost_model, make_requests):
    class First(Router):
        def pick(self, request, replicas):
            return 0

    reqs = make_requests(20, 20.0, seed=2)
    res = simulate(reqs, model=MODEL, hardware=HARDWARE, layout=ParallelLayout(dp=2), router=First(),
                   cost_model=cost_model)
    assert (res.requests["replica"] == 0).all()
    res = simulate(reqs, model=MODEL, hardware=HARDWARE, layout=ParallelLayout(dp=2),
                   router={"kind": "least_loaded"}, cost_model=cost_model)
    assert set(res.requests["replica"]) == {0, 1}
    assert isinstance(LeastLoadedRouter(), Router)
    with pytest.raises(UnknownNameError, match="round_robin"):
        simulate(reqs, model=MODEL, hardware=HARDWARE, router={"kind": "no_such_router"}, cost_model=cost_model)


def test_closed_loop_callback_injects_the_next_request_after_think_time(cost_model):
    users, turns, think_s = 4, 3, 0.5

    def next_request(req: Request, end_s: float):
        if req.id // 1000 >= turns - 1:
            return []
        nid = req.id + 1000
        return [Request(nid, end_s + think_s, 100, 20, session_id=req.session_id)]

    first = [Request(u, 0.0, 100, 20, session_id=u) for u in range(users)]
    res = simulate(first, model=MODEL, hardware=HARDWARE, arrivals_callback=next_request, cost_model=cost_model,
                   frontend_overhead_s=0.01)
    r = res.requests.set_index("id")
    assert len(r) == users * turns
    for rid in r.index:
        if rid >= 1000:
            prev = r.loc[rid - 1000]
            assert r.loc[rid, "arrival_s"] == pytest.approx(prev["arrival_s"] + prev["e2e_s"] + think_s)


def test_frontend_overhead_adds_to_ttft_and_e2e_only(cost_model, make_requests):
    reqs = make_requests(30, 5.0, seed=3)
    base = simulate(reqs, model=MODEL, hardware=HARDWARE, cost_model=cost_model).requests
    oh = simulate(reqs, model=MODEL, hardware=HARDWARE, cost_model=cost_model, frontend_overhead_s=0.05).requests
    assert (oh["ttft_s"] - base["ttft_s"]).to_numpy() == pytest.approx(0.05)
    assert (oh["e2e_s"] - base["e2e_s"]).to_numpy() == pytest.approx(0.05)
    assert (oh["tpot_s"]).to_numpy() == pytest.approx(base["tpot_s"].to_numpy())


def test_rejections_are_reported_with_reasons(cost_model):
    reqs = [Request(0, 0.0, 100, 10), Request(1, 0.1, 5000, 10)]
    res = simulate(reqs, model=MODEL, hardware=HARDWARE, max_model_len=1024, cost_model=cost_model)
    r = res.requests.set_index("id")
    assert r.loc[0, "status"] == "finished"
    assert r.loc[1, "status"] == "rejected" and r.loc[1, "reason"] == "exceeds_max_model_len"
    assert res.summary()["num_rejected"] == 1


def test_summary_is_flat_and_json_able_with_slo_attainment(cost_model, make_requests):
    res = simulate(make_requests(50, 10.0, seed=4), model=MODEL, hardware=HARDWARE, cost_model=cost_model)
    s = res.summary(slo={"ttft_s": 10.0, "tpot_s": 1.0})
    json.dumps(s, allow_nan=False)
    assert s["slo_attainment"] == 1.0
    assert s["num_finished"] == 50 and s["throughput_rps"] > 0
    for key in ("ttft_p99_s", "tpot_p50_s", "itl_p99_s", "e2e_p90_s", "queue_mean_s", "kv_utilization_mean",
                "mfu", "mbu", "preemptions", "input_tokens_per_s", "output_tokens_per_s"):
        assert key in s
    assert 0 < s["mfu"] < 1 and 0 < s["mbu"] < 1
    assert s["cross_check_warnings"] == "" and s["within_capacity_bound"]
    assert res.summary(slo={"ttft_s": 1e-6})["slo_attainment"] == 0.0
    with pytest.raises(ValueError, match="latency"):
        res.summary(slo={"latency": 1.0})


def test_bad_input_is_a_config_error(cost_model):
    unsorted = [Request(0, 1.0, 10, 2), Request(1, 0.5, 10, 2)]
    with pytest.raises(ConfigError, match="non-decreasing"):
        simulate(unsorted, model=MODEL, hardware=HARDWARE, cost_model=cost_model)
    with pytest.raises(ConfigError, match="max_num_seqs"):
        simulate([], model=MODEL, hardware=HARDWARE, scheduler={"kind": "vllm", "max_num_seqs": -1},
                 cost_model=cost_model)
    with pytest.raises(ConfigError, match="swap"):
        simulate([], model=MODEL, hardware=HARDWARE, cost_model=cost_model,
                 scheduler={"kind": "vllm", "mode": "v0", "preemption_mode": "swap"}, kv={"swap_space_gb": 0})


def test_prefix_cache_hits_shared_prompts_and_cuts_ttft(cost_model, make_requests):
    reqs = make_requests(200, 20.0, seed=6, mean_in=1500, mean_out=50, max_in=4000, prefix_groups=3, chunk=256)
    paged = simulate(reqs, model=MODEL, hardware=HARDWARE, kv={"kind": "paged"}, cost_model=cost_model)
    prefix = simulate(reqs, model=MODEL, hardware=HARDWARE, kv={"kind": "prefix"}, cost_model=cost_model)
    s = prefix.summary()
    assert s["prefix_hit_rate"] > 0.2 and s["prefix_cached_tokens"] == s["prefix_hit_tokens"]
    assert paged.summary()["prefix_hit_tokens"] == 0
    assert s["ttft_mean_s"] < paged.summary()["ttft_mean_s"]
    assert prefix.info["kv_blocks_allocated"] == prefix.info["kv_blocks_freed"]


def test_closed_loop_users_keep_a_fixed_concurrency(cost_model):
    from llmsim.workload import ClosedLoop

    loop = ClosedLoop(users=3, think_time_s=0.2, think_cv=0.0)
    contents = (Request(i, 0.0, 200, 30) for i in range(12))
    res = simulate(contents, model=MODEL, hardware=HARDWARE, closed_loop=loop, cost_model=cost_model)
    r = res.requests.sort_values("arrival_s")
    assert len(r) == 12 and (r["status"] == "finished").all()
    assert (r["arrival_s"].iloc[:3] == 0.0).all()
    steps = res.steps
    assert steps["num_in_system"].max() <= 3  # never more than one request per user
    ends = np.sort((r["arrival_s"] + r["e2e_s"]).to_numpy())
    later = np.sort(r["arrival_s"].iloc[3:].to_numpy())
    np.testing.assert_allclose(later, ends[:9] + 0.2)  # each next request: one think time after an end


def test_policies_command_lists_every_registered_name(capsys):
    from llmsim.cli import main

    assert main(["policies"]) == 0
    out = capsys.readouterr().out
    for name in ("static", "orca", "vllm", "sarathi", "fastserve", "sjf", "paged", "prefix", "contiguous",
                 "round_robin"):
        assert f"  {name}" in out


def test_repeated_request_ids_are_kept_apart(cost_model):
    reqs = [Request(7, 0.0, 300, 20), Request(7, 0.0, 500, 30), Request(7, 0.01, 100, 5)]
    res = simulate(reqs, model=MODEL, hardware=HARDWARE, scheduler={"kind": "sjf"}, cost_model=cost_model)
    assert (res.requests["status"] == "finished").all() and len(res.requests) == 3
    assert sorted(res.requests["emitted_tokens"]) == [5, 20, 30]
    assert res.info["kv_blocks_allocated"] == res.info["kv_blocks_freed"]
