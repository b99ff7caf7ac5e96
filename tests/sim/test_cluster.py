"""Clusters: invariants over random clusters (hypothesis), transfer times by hand, determinism, migration."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmsim.errors import ConfigError
from llmsim.routing import Router
from llmsim.sim.cluster import simulate_cluster
from llmsim.sim.links import Overlap, transfer_seconds
from llmsim.sim.spec import ClusterSpec, LinkSpec, pool_spec
from llmsim.specs import load_model
from llmsim.workload.request import Request

MODEL, HARDWARE = "llama-3.1-8b", "h100-sxm"
ROUTERS = [{"kind": "round_robin"}, {"kind": "random"}, {"kind": "least_outstanding"}, {"kind": "least_kv"},
           {"kind": "power_of_two"}, {"kind": "prefix_affinity", "balance_abs_threshold": 2}]
SCHEDS = [{"kind": "vllm"}, {"kind": "vllm", "max_num_batched_tokens": 256, "max_num_seqs": 8},
          {"kind": "sarathi", "chunk_size": 128}, {"kind": "vllm", "mode": "v0"}]


def kv_bytes_per_token(model: str = MODEL) -> float:
    """K and V, every layer, every KV head, bf16: 2 x layers x kv_heads x head_dim x 2 bytes (by hand)."""
    m = load_model(model)
    return 2 * m.num_layers * m.num_kv_heads * m.head_dim * 2


def pool(name, role, replicas, cost_model, sched=None, num_blocks=None, pp=1):
    kv = {"kind": "prefix", **({"num_blocks": num_blocks * pp} if num_blocks else {})}
    return pool_spec(name, role, replicas, model=MODEL, hardware=HARDWARE, pp=pp, scheduler=sched or {"kind": "vllm"},
                     kv=kv, max_model_len=4096, cost_model=cost_model if pp == 1 else None)


def check_cluster(res, reqs, pd_mode: bool, first_token: str = "prefill") -> None:
    r, s = res.requests, res.steps
    assert len(r) == len(reqs) and sorted(r["id"]) == sorted(q.id for q in reqs)  # every request ends once
    fin = r[r["status"] == "finished"]
    assert (fin["emitted_tokens"] == fin["output_tokens"]).all()
    assert res.info["kv_blocks_allocated"] == res.info["kv_blocks_freed"]  # blocks conserved
    for _, g in s.groupby("replica"):
        assert (g["kv_blocks_used"] <= g["kv_blocks_total"]).all()
    # tokens computed = tokens the requests account for (a request refused by the decode pool after its
    # prefill keeps the prefill's tokens)
    assert int((s["prefill_tokens"] + s["decode_tokens"]).sum()) == int(r["computed_tokens"].sum())
    decoders = {i for role, members in res.pools.values() if role in ("decode", "mixed") for i in members}
    prefillers = {i for role, members in res.pools.values() if role == "prefill" for i in members}
    one = (fin["output_tokens"] == 1) & (first_token == "prefill")  # done with the prefill's token
    assert set(fin.loc[~one, "replica"]) <= decoders  # it decoded in a decode (or mixed) replica
    if pd_mode:
        assert set(fin.loc[~one, "prefill_replica"]) <= prefillers and set(fin.loc[one, "replica"]) <= prefillers
    check_links(res.transfers)
    if pd_mode and len(fin):
        check_decode_after_transfer(fin, res.transfers, first_token)


def check_links(tr: pd.DataFrame) -> None:
    """A port carries one transfer at a time at no more than its rate: bytes / time <= rate."""
    if tr is None or not len(tr):
        return
    assert (tr["bytes"] <= tr["rate_bytes_per_s"] * (tr["end_s"] - tr["start_s"]) * (1 + 1e-9) + 1e-6).all()
    for col in ("src_port", "dst_port"):
        for _, g in tr.groupby(col):
            g = g.sort_values("start_s")
            assert (g["start_s"].to_numpy()[1:] >= g["end_s"].to_numpy()[:-1] - 1e-12).all()


def check_decode_after_transfer(fin: pd.DataFrame, tr: pd.DataFrame, first_token: str) -> None:
    ends = tr[tr["kind"] == "handoff"].set_index("request")["end_s"]
    f = fin.set_index("id")
    if first_token == "prefill":
        f = f[f["output_tokens"] > 1]
    arrived = ends.reindex(f.index)
    assert arrived.notna().all()
    assert (f["finish_s"] >= arrived - 1e-12).all()
    if first_token == "decode":  # the first token itself is sampled on the decode replica
        assert (f["arrival_s"] + f["ttft_s"] >= arrived - 1e-12).all()
    else:  # the gap after the first token holds the whole handoff
        multi = f["output_tokens"] > 1
        assert (f.loc[multi, "itl_max_s"] >= f.loc[multi, "handoff_s"] - 1e-12).all()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(shape=st.sampled_from(["mixed", "mixed2", "pd", "pd"]), n=st.integers(1, 30), rate=st.floats(2.0, 300.0),
       seed=st.integers(0, 10_000), router=st.sampled_from(ROUTERS), decode_router=st.sampled_from(ROUTERS),
       sched=st.sampled_from(SCHEDS), blocks=st.sampled_from([None, 40, 120]), replicas=st.integers(1, 3),
       transfer=st.sampled_from(["whole", "layerwise"]), first=st.sampled_from(["prefill", "decode"]),
       migration=st.booleans(), shared=st.booleans(), pp=st.sampled_from([1, 1, 2]))
def test_invariants_hold_on_random_clusters(cost_model, make_requests, shape, n, rate, seed, router, decode_router,
                                            sched, blocks, replicas, transfer, first, migration, shared, pp):
    if shape == "pd":
        pools = (pool("p", "prefill", replicas, cost_model, sched, blocks),
                 pool("d", "decode", 4 - replicas, cost_model, sched, blocks, pp))
    else:
        pools = (pool("a", "mixed", replicas, cost_model, sched, blocks),)
        if shape == "mixed2":
            pools += (pool("b", "mixed", 2, cost_model, SCHEDS[0], blocks, pp),)
    links = (LinkSpec("pd", ("p", "d"), 2e9, 1e-5, shared),) if shape == "pd" else ()
    mig = {"kind": "llumnix", "threshold": 0.05, "interval_s": 0.01} if migration else None
    spec = ClusterSpec(pools, links, router=router, decode_router=decode_router if shape == "pd" else None,
                       transfer=transfer, first_token=first, migration=mig)
    reqs = make_requests(n, rate, seed, mean_in=150, mean_out=40, max_in=700, max_out=200, prefix_groups=2, chunk=16)
    res = simulate_cluster(spec, reqs, seed=seed, check_invariants=True)
    check_cluster(res, reqs, shape == "pd", first)


def test_one_request_transfer_time_by_hand(cost_model):
    rate, latency = 25e9, 2e-5  # a 200 Gb/s NIC per GPU
    spec = ClusterSpec((pool("p", "prefill", 1, cost_model), pool("d", "decode", 1, cost_model)),
                       (LinkSpec("pd", ("p", "d"), rate, latency),))
    prompt = 1000
    res = simulate_cluster(spec, [Request(0, 0.0, prompt, 5)])
    r = res.requests.iloc[0]
    wire = latency + prompt * kv_bytes_per_token() / rate  # the whole prompt's KV, whole-cache after prefill
    assert r["transfer_s"] == pytest.approx(wire, rel=1e-9)
    assert r["handoff_s"] == pytest.approx(wire, rel=1e-9)  # nothing else to wait for
    assert (r["replica"], r["prefill_replica"]) == (1, 0)
    steps = res.steps
    prefill_end = float((steps.loc[steps["replica"] == 0, "start_s"] + steps.loc[steps["replica"] == 0,
                                                                            "duration_s"]).max())
    first_decode = steps[steps["replica"] == 1].iloc[0]
    assert first_decode["start_s"] == pytest.approx(prefill_end + wire, rel=1e-9)  # decode after the KV lands
    assert r["ttft_s"] == pytest.approx(prefill_end)
    # the second token: the handoff plus the first decode step
    assert r["itl_max_s"] == pytest.approx(wire + first_decode["duration_s"], rel=1e-9)


def test_concurrent_transfers_queue_on_a_port_and_a_shared_link(cost_model):
    rate = 1e9
    reqs = [Request(i, 0.0, 512, 3) for i in range(2)]
    for shared, prefill_replicas in ((False, 1), (True, 2)):
        spec = ClusterSpec((pool("p", "prefill", prefill_replicas, cost_model), pool("d", "decode", 2, cost_model)),
                           (LinkSpec("pd", ("p", "d"), rate, 0.0, shared),), decode_router={"kind": "round_robin"})
        tr = simulate_cluster(spec, reqs).transfers.sort_values("start_s")
        wire = 512 * kv_bytes_per_token() / rate
        assert list(tr["end_s"] - tr["start_s"]) == pytest.approx([wire, wire])
        # one sender port (one prefill replica) or one shared port: the second waits for the first
        assert tr["start_s"].iloc[1] == pytest.approx(tr["end_s"].iloc[0])


def test_layerwise_transfer_formula_and_overlap_by_hand():
    # 1 GB at 10 GB/s: 0.1 s on the wire; acquired at the step start; a 0.25 s step computing all of it
    ov = Overlap(start_s=1.0, duration_s=0.25, last_fraction=1.0, layers=10)
    assert transfer_seconds(1e9, 1e10, 0.0, 1.0, ov) == pytest.approx(1.25 + 0.01)  # last layer after the step
    assert transfer_seconds(1e9, 1e10, 0.0, 1.2, ov) == pytest.approx(1.3)  # port free late: wire-bound
    assert transfer_seconds(1e9, 1e10, 1e-3, 1.0) == pytest.approx(1.101)  # whole


def test_layerwise_hides_the_transfer_behind_the_prefill(cost_model):
    def spec_of(mode):
        return ClusterSpec((pool("p", "prefill", 1, cost_model), pool("d", "decode", 1, cost_model)),
                                           (LinkSpec("pd", ("p", "d"), 5e9, 0.0),), transfer=mode)
    req = [Request(0, 0.0, 2000, 4)]
    whole = simulate_cluster(spec_of("whole"), req).requests.iloc[0]
    layer = simulate_cluster(spec_of("layerwise"), req).requests.iloc[0]
    wire = 2000 * kv_bytes_per_token() / 5e9
    assert whole["handoff_s"] == pytest.approx(wire)
    # the wire time overlaps the prefill step: less of it is left after the step
    assert layer["handoff_s"] < whole["handoff_s"]
    assert layer["e2e_s"] < whole["e2e_s"]


def test_same_seed_same_bytes_and_decode_first_moves_ttft(cost_model, make_requests):
    reqs = make_requests(60, 40.0, seed=5, prefix_groups=3, chunk=16)

    def run(first, seed=1):
        spec = ClusterSpec((pool("p", "prefill", 2, cost_model), pool("d", "decode", 2, cost_model)),
                           router={"kind": "random"}, decode_router={"kind": "power_of_two"}, first_token=first,
                           migration={"kind": "llumnix", "threshold": 0.01})
        return simulate_cluster(spec, reqs, seed=seed)

    a, b = run("prefill"), run("prefill")
    assert a.requests.to_csv() == b.requests.to_csv() and a.steps.to_csv() == b.steps.to_csv()
    assert a.transfers.to_csv() == b.transfers.to_csv()
    assert run("prefill", seed=2).requests.to_csv() != a.requests.to_csv()
    dec = run("decode")
    assert dec.requests["ttft_s"].median() > a.requests["ttft_s"].median()


def test_migration_moves_requests_off_a_loaded_replica(cost_model):
    # everything is routed to replica 0; migration moves some of it to the idle replica 1
    long = [Request(i, 0.01 * i, 400, 300) for i in range(12)]

    class First(Router):
        def pick(self, request, replicas):
            return 0

    spec = ClusterSpec((pool("m", "mixed", 2, cost_model, num_blocks=200),), router=First(),
                       migration={"kind": "llumnix", "threshold": 0.2, "interval_s": 0.02})
    res = simulate_cluster(spec, long, check_invariants=True)
    r = res.requests
    assert res.info["migrations"] >= 1 and (r["replica"] == 1).any() and r["migrations"].sum() == res.info["migrations"]
    assert res.info["kv_blocks_allocated"] == res.info["kv_blocks_freed"]
    mig = res.transfers[res.transfers["kind"] == "migration"]
    assert len(mig) == 2 * res.info["migrations"] + res.info["migrations_aborted"]  # live copy + final delta
    base = simulate_cluster(ClusterSpec(spec.pools, router=First()), long)
    assert r["e2e_s"].mean() < base.requests["e2e_s"].mean()  # the idle replica shares the work


def test_cluster_spec_rejects_bad_shapes(cost_model):
    p = pool("p", "prefill", 1, cost_model)
    d = pool("d", "decode", 1, cost_model)
    with pytest.raises(ConfigError, match="decode pool needs a prefill pool"):
        ClusterSpec((d,))
    with pytest.raises(ConfigError, match="needs a decode pool"):
        ClusterSpec((p,))
    with pytest.raises(ConfigError, match="no pool named 'x'"):
        ClusterSpec((p, d), (LinkSpec("l", ("p", "x"), 1e9, 0.0),))
    with pytest.raises(ConfigError, match="role"):
        pool("q", "router", 1, cost_model)
    with pytest.raises(ConfigError, match="transfer"):
        ClusterSpec((p, d), transfer="streamed")
    with pytest.raises(ConfigError, match="decode pool needs a scheduler"):
        simulate_cluster(ClusterSpec((p, pool("d", "decode", 1, cost_model, {"kind": "static"}))), [])


def test_default_link_is_the_hardware_inter_node_network(cost_model):
    spec = ClusterSpec((pool("p", "prefill", 1, cost_model), pool("d", "decode", 1, cost_model)))
    link = spec.link("p", "d")
    hw = spec.pools[0].deployment.hardware
    assert (link.bytes_per_s, link.latency_s) == (hw.inter_node.bytes_per_s, hw.inter_node.latency_s)
    assert spec.link("d", "d").bytes_per_s == hw.intra_node.bytes_per_s  # one pool on one node: NVLink
    assert np.isclose(spec.num_gpus, 2)
