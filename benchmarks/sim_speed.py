"""Simulator speed: llama-3.1-8b on h100-sxm, vLLM v1, gamma arrivals (CV 2) at ~80 % of capacity, lengths
like the Azure LLM conversation trace (lognormal, mean ~1,150 in / ~210 out). Three cases:

- ``single``: one replica, 10,000 requests (``--requests``);
- ``mixed8``: a cluster of 8 mixed replicas behind least-outstanding routing, 100,000 requests
  (``--cluster-requests``);
- ``pd4x4``: 4 prefill + 4 decode replicas (InfiniBand 400 Gb/s per GPU, whole-cache transfers,
  least-outstanding decode routing), 100,000 requests.

Capacity is measured first (untimed) by a saturated run of each case; then the timed run at 80 % of it.
Prints wall seconds, simulated requests / steps per wall second, simulated time / wall time and peak RSS
per case, and ends with ``sim_speed: requests_per_s=N steps_per_s=N realtime_factor=N peak_rss_mb=N
mixed8_requests_per_s=N pd4x4_requests_per_s=N cluster_cost_ratio=N`` (the largest CPU time per request
of a cluster case over the single replica's, CPU rather than wall time so that other load on the machine
matters less; the target is <= 2). Reference: Vidur simulates 10,000
requests in ~21 s (~500 requests and ~4,700 steps per wall second).

    python benchmarks/sim_speed.py [--requests 10000] [--cluster-requests 100000] [--cases single,mixed8,pd4x4]
        [--load 0.8] [--seed 0] [--profile]
"""

from __future__ import annotations

import argparse
import resource
import time
from collections.abc import Iterator

import numpy as np

from llmsim.sim.cluster import simulate_cluster
from llmsim.sim.spec import ClusterSpec, LinkSpec, pool_spec
from llmsim.workload.request import Request

MODEL, HARDWARE = "llama-3.1-8b", "h100-sxm"
SCHEDULER = {"kind": "vllm", "mode": "v1"}
CASES = ("single", "mixed8", "pd4x4")


def cluster(case: str) -> ClusterSpec:
    def pool(name: str, role: str, n: int):
        return pool_spec(name, role, n, model=MODEL, hardware=HARDWARE, scheduler=SCHEDULER)

    if case == "single":
        return ClusterSpec((pool("default", "mixed", 1),))
    if case == "mixed8":
        return ClusterSpec((pool("m", "mixed", 8),), router={"kind": "least_outstanding"})
    return ClusterSpec((pool("p", "prefill", 4), pool("d", "decode", 4)),
                       (LinkSpec("pd", ("p", "d"), 400e9 / 8, 5e-6),), router={"kind": "least_outstanding"},
                       decode_router={"kind": "least_outstanding"})


def azure_conv_lengths(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Lognormal input/output lengths with the Azure 2023 conversation trace's means (~1,150 / ~210)."""
    sig_in, sig_out = 0.9, 1.0
    ins = rng.lognormal(np.log(1150) - sig_in**2 / 2, sig_in, n)
    outs = rng.lognormal(np.log(210) - sig_out**2 / 2, sig_out, n)
    return np.clip(ins, 1, 8000).astype(int), np.clip(outs, 1, 2000).astype(int)


def make_requests(n: int, rate: float, seed: int, cv: float = 2.0) -> Iterator[Request]:
    """Gamma arrivals (coefficient of variation ``cv``) at ``rate`` req/s; yielded lazily, as a trace reader
    would, so the simulator's memory is what it keeps, not the input list."""
    rng = np.random.default_rng(seed)
    shape = 1.0 / cv**2
    t = np.cumsum(rng.gamma(shape, 1.0 / (rate * shape), n))
    ins, outs = azure_conv_lengths(rng, n)
    return (Request(i, float(t[i]), int(ins[i]), int(outs[i])) for i in range(n))


def capacity_rps(spec: ClusterSpec, seed: int, n: int) -> float:
    """Saturated throughput: everyone arrives at once, requests/s while the queue is never empty."""
    reqs = [Request(r.id, 0.0, r.input_tokens, r.output_tokens) for r in make_requests(n, 1.0, seed + 1)]
    res = simulate_cluster(spec, reqs, seed=seed)
    fin = res.requests.sort_values("finish_s")
    busy = fin.iloc[: int(0.8 * n)]  # before the tail drains
    return len(busy) / float(busy["finish_s"].max())


def run_case(case: str, n: int, load: float, seed: int) -> dict:
    spec = cluster(case)
    replicas = sum(p.replicas for p in spec.pools)
    cap = capacity_rps(spec, seed, 3000 if replicas == 1 else 1500 * replicas)
    rate = load * cap
    print(f"[{case}] capacity ~{cap:.2f} req/s; arrival rate {rate:.2f} req/s; {n} requests")
    t0, c0 = time.perf_counter(), time.process_time()
    res = simulate_cluster(spec, make_requests(n, rate, seed), seed=seed)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    s = res.summary()
    r = res.requests
    steps = len(res.steps)
    sim_s = float(res.info["end_s"])
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"[{case}] mean input {r['input_tokens'].mean():.0f} tokens, mean output {r['output_tokens'].mean():.0f}")
    print(f"[{case}] wall {wall:.2f} s; {n / wall:.0f} requests/s; {steps} steps, {steps / wall:.0f} steps/s; "
          f"simulated {sim_s:.1f} s ({sim_s / wall:.1f}x real time); CPU {cpu:.2f} s; peak RSS {peak_mb:.0f} MB")
    print(f"[{case}] throughput {s['throughput_rps']:.2f} req/s, TTFT p50 {s['ttft_p50_s']:.3f} s p99 "
          f"{s['ttft_p99_s']:.3f} s, TPOT p50 {s['tpot_p50_s'] * 1e3:.1f} ms, overloaded={s['overloaded']}, "
          f"cost-model calls {s['cost_calls']}")
    return {"requests_per_s": n / wall, "steps_per_s": steps / wall, "realtime": sim_s / wall, "rss": peak_mb,
            "cpu_per_request": cpu / n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--cluster-requests", type=int, default=100_000)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--load", type=float, default=0.8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    cases = [c for c in args.cases.split(",") if c]
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        ap.error(f"--cases: unknown {', '.join(unknown)}; choose from {', '.join(CASES)}")
    if args.profile:
        import cProfile
        import pstats

        case = cases[0]
        n = args.requests if case == "single" else args.cluster_requests
        cProfile.runctx("run_case(case, n, args.load, args.seed)", globals(), {"case": case, "n": n, "args": args},
                        "/tmp/sim_speed.prof")
        pstats.Stats("/tmp/sim_speed.prof").sort_stats("tottime").print_stats(25)
        return
    out = {c: run_case(c, args.requests if c == "single" else args.cluster_requests, args.load, args.seed)
           for c in cases}
    parts = []
    if "single" in out:
        o = out["single"]
        parts += [f"requests_per_s={o['requests_per_s']:.0f}", f"steps_per_s={o['steps_per_s']:.0f}",
                  f"realtime_factor={o['realtime']:.1f}", f"peak_rss_mb={o['rss']:.0f}"]
    parts += [f"{c}_requests_per_s={out[c]['requests_per_s']:.0f}" for c in cases if c != "single"]
    if "single" in out and len(out) > 1:
        ratio = max(out[c]["cpu_per_request"] for c in out if c != "single") / out["single"]["cpu_per_request"]
        parts.append(f"cluster_cost_ratio={ratio:.2f}")
    print("sim_speed: " + " ".join(parts))


if __name__ == "__main__":
    main()
