"""Published findings reproduced on equal hardware and memory, and the analytical cross-checks."""

from __future__ import annotations

import numpy as np
import pytest

from llmsim.sim import simulate
from llmsim.workload.request import Request

MODEL, HARDWARE = "llama-3.1-8b", "h100-sxm"


def run(reqs, cost_model, scheduler, kv=None, **kw):
    return simulate(reqs, model=MODEL, hardware=HARDWARE, scheduler=scheduler, kv=kv, seed=0,
                    cost_model=cost_model, **kw)


def burst(reqs):
    return [Request(r.id, 0.0, r.input_tokens, r.output_tokens) for r in reqs]


def test_paged_kv_admits_larger_batches_and_more_throughput_than_max_reservation(cost_model, make_requests):
    # vLLM (SOSP'23) vs Orca(Max): same scheduler, same 64k-token KV pool, only the KV manager differs.
    reqs = burst(make_requests(300, 1.0, seed=1, mean_in=300, mean_out=150, max_in=1500, max_out=500))
    kv_common = {"num_blocks": 4096, "block_size": 16}
    contiguous = run(reqs, cost_model, {"kind": "orca", "max_batch_size": 256},
                     {"kind": "contiguous", **kv_common}, max_model_len=2048).summary()
    paged = run(reqs, cost_model, {"kind": "orca", "max_batch_size": 256},
                {"kind": "paged", **kv_common}, max_model_len=2048).summary()
    vllm = run(reqs, cost_model, {"kind": "vllm"}, {"kind": "paged", **kv_common}, max_model_len=2048).summary()
    assert paged["mean_batch_size"] > 2 * contiguous["mean_batch_size"]
    assert paged["throughput_rps"] > 1.5 * contiguous["throughput_rps"]
    assert vllm["throughput_rps"] > 1.5 * contiguous["throughput_rps"]


def test_chunked_prefill_cuts_tail_inter_token_latency_at_some_ttft_cost(cost_model, make_requests):
    # Sarathi-Serve (OSDI'24) vs vLLM v0 prefill-priority: long prompts stall v0's decodes.
    reqs = make_requests(300, 6.0, seed=2, mean_in=2000, mean_out=150, max_in=6000, max_out=500)
    v0 = run(reqs, cost_model, {"kind": "vllm", "mode": "v0", "max_num_seqs": 256}, {"kind": "paged"}).summary()
    sarathi = run(reqs, cost_model, {"kind": "sarathi", "chunk_size": 512, "max_num_seqs": 256},
                  {"kind": "paged"}).summary()
    assert not v0["overloaded"] and not sarathi["overloaded"]
    assert sarathi["itl_p99_s"] < 0.6 * v0["itl_p99_s"]
    assert sarathi["itl_max_p99_s"] < v0["itl_max_p99_s"]
    assert sarathi["ttft_p50_s"] > v0["ttft_p50_s"]


def test_request_level_batching_falls_far_behind_iteration_level(cost_model, make_requests):
    # Orca (OSDI'22): same batch size and KV reservation; static batching pads and waits for the longest.
    reqs = make_requests(200, 1.0, seed=3, mean_in=200, mean_out=120, max_in=1000, max_out=1000)
    kv = {"kind": "contiguous", "reservation": "oracle"}
    sat_static = run(burst(reqs), cost_model, {"kind": "static", "max_batch_size": 16, "max_wait_s": 0.0}, kv)
    sat_orca = run(burst(reqs), cost_model, {"kind": "orca", "max_batch_size": 16}, kv)
    assert sat_orca.summary()["throughput_rps"] > 1.5 * sat_static.summary()["throughput_rps"]
    rate = 0.6 * sat_static.summary()["throughput_rps"]  # a load static batching can still carry
    paced = make_requests(200, rate, seed=4, mean_in=200, mean_out=120, max_in=1000, max_out=1000)
    static = run(paced, cost_model, {"kind": "static", "max_batch_size": 16, "max_wait_s": 0.05}, kv).summary()
    orca = run(paced, cost_model, {"kind": "orca", "max_batch_size": 16}, kv).summary()
    assert static["e2e_mean_s"] > 1.5 * orca["e2e_mean_s"]


def saturated(cost_model, make_requests) -> float:
    """Requests per second while a burst keeps the engine full (before its tail drains)."""
    reqs = burst(make_requests(400, 1.0, seed=7))
    res = run(reqs, cost_model, {"kind": "vllm"})
    fin = res.requests.sort_values("finish_s")
    busy = fin.iloc[:300]
    return len(busy) / float(busy["finish_s"].max())


def test_overload_is_reported_and_throughput_stays_under_the_capacity_bound(cost_model, make_requests):
    cap = saturated(cost_model, make_requests)
    over = run(make_requests(600, 2.0 * cap, seed=8), cost_model, {"kind": "vllm"})
    under = run(make_requests(600, 0.5 * cap, seed=8), cost_model, {"kind": "vllm"})
    assert over.overloaded and "grows" in over.overloaded.reason
    assert not under.overloaded
    for res in (over, under):
        s = res.summary()
        assert s["within_capacity_bound"]
        assert s["computed_tokens_per_s"] <= s["capacity_tokens_per_s"]
        assert s["throughput_rps"] <= 1.05 * cap


def test_littles_law_from_engine_queues_matches_request_records(cost_model, make_requests):
    s = run(make_requests(400, 10.0, seed=9), cost_model, {"kind": "vllm"}).summary()
    assert s["littles_L"] == pytest.approx(s["littles_lambda_W"], rel=0.05)


def test_max_time_stops_the_clock_and_flags_unfinished_work(cost_model, make_requests):
    reqs = make_requests(300, 200.0, seed=10)
    res = run(reqs, cost_model, {"kind": "vllm"}, max_time_s=1.0)
    assert res.info["end_s"] == pytest.approx(1.0)
    assert res.info["unfinished"] > 0 and res.overloaded
    r = res.requests
    assert len(r) == len({q.id for q in reqs if q.arrival_s <= 1.0})  # every submitted request is reported
    assert (r.loc[r["status"] == "unfinished", "reason"] == "max_time_s").all()
    assert np.isfinite(r.loc[r["status"] == "finished", "ttft_s"]).all()


@pytest.mark.parametrize("layout", [(1, 2), (2, 1)])
def test_capacity_bound_holds_with_pipeline_and_tensor_parallelism(make_requests, layout):
    from llmsim.specs import ParallelLayout

    tp, pp = layout
    reqs = burst(make_requests(300, 1.0, seed=11, mean_in=800, mean_out=100))
    s = simulate(reqs, model=MODEL, hardware=HARDWARE, layout=ParallelLayout(tp=tp, pp=pp)).summary()
    assert s["within_capacity_bound"] and s["computed_tokens_per_s"] > 0.2 * s["capacity_tokens_per_s"]
