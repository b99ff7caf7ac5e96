"""Inter-token latency of a disaggregated cluster: every gap of every request (decoded on another replica
than the one that sampled its first token, or ending with that first token) is in the run's ITL histogram
once, its percentiles lie among the requests' own gaps, and a run without any gap reports None, never 0.0."""

from __future__ import annotations

import numpy as np
import pytest

from llmsim.sim.cluster import simulate_cluster
from llmsim.sim.spec import ClusterSpec, LinkSpec, pool_spec
from llmsim.workload.request import Request


def pool(name: str, role: str, replicas: int):
    return pool_spec(name, role, replicas, model="llama-3.2-1b", hardware="h100-sxm", scheduler={"kind": "vllm"},
                     kv={"kind": "prefix"}, max_model_len=4096)


def run(reqs, first_token: str):
    spec = ClusterSpec((pool("p", "prefill", 2), pool("d", "decode", 2)), (LinkSpec("pd", ("p", "d"), 2e9, 1e-5),),
                       first_token=first_token, decode_router={"kind": "round_robin"})
    return simulate_cluster(spec, reqs, seed=0)


def requests(n: int = 40, seed: int = 0) -> list[Request]:
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.exponential(1 / 40.0, n))
    outs = rng.integers(1, 30, n)
    outs[::5] = 1  # every fifth request wants its first token only
    return [Request(i, float(t[i]), int(rng.integers(16, 600)), int(outs[i])) for i in range(n)]


@pytest.mark.parametrize("first_token", ["prefill", "decode"])
def test_every_gap_counted_once_and_percentiles_among_the_gaps(first_token):
    res = run(requests(), first_token)
    fin = res.requests[res.requests["status"] == "finished"]
    assert len(fin) == 40
    moved = fin[fin["output_tokens"] > 1]
    assert (moved["replica"] != moved["prefill_replica"]).all()  # decoded on a decode replica
    # a request of n tokens has n - 1 gaps, whichever replica emitted them (by hand: 1 token, none)
    assert res.itl.total == int((fin["output_tokens"] - 1).sum())
    s = res.summary()
    longest = float(fin["itl_max_s"].max())
    assert res.itl.max == pytest.approx(longest, rel=1e-12)  # the histogram saw the longest gap
    assert 0.0 < s["itl_p50_s"] <= s["itl_p99_s"] <= longest * 1.005  # none above it (0.5 % bins)


def test_a_run_without_gaps_reports_none():
    """First token from the prefill and nothing more: no inter-token gap exists, so no ITL figure."""
    reqs = [Request(i, 0.01 * i, 100, 1) for i in range(12)]
    res = run(reqs, "prefill")
    assert res.itl.total == 0
    s = res.summary()
    for key in ("itl_mean_s", "itl_p50_s", "itl_p90_s", "itl_p99_s"):
        assert s[key] is None, key
    assert s["tpot_p99_s"] is None
