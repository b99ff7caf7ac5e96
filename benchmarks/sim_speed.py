"""Simulator speed: llama-3.1-8b on h100-sxm, vLLM v1, 10,000 requests, gamma arrivals (CV 2) at ~80 % of
capacity, lengths like the Azure LLM conversation trace (lognormal, mean ~1,150 in / ~210 out).

Capacity is measured first (untimed) by a saturated run; then the timed run at 80 % of it. Prints wall
seconds, simulated requests / steps per wall second, simulated time / wall time and peak RSS, and ends with
``sim_speed: requests_per_s=N steps_per_s=N realtime_factor=N peak_rss_mb=N``. Reference: Vidur simulates
10,000 requests in ~21 s (~500 requests and ~4,700 steps per wall second).

    python benchmarks/sim_speed.py [--requests 10000] [--load 0.8] [--seed 0] [--profile]
"""

from __future__ import annotations

import argparse
import resource
import time
from collections.abc import Iterator

import numpy as np

from llmsim.sim import simulate
from llmsim.workload.request import Request

MODEL, HARDWARE = "llama-3.1-8b", "h100-sxm"
SCHEDULER = {"kind": "vllm", "mode": "v1"}


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


def capacity_rps(seed: int, n: int = 3000) -> float:
    """Saturated throughput: everyone arrives at once, requests/s while the queue is never empty."""
    reqs = [Request(r.id, 0.0, r.input_tokens, r.output_tokens) for r in make_requests(n, 1.0, seed + 1)]
    res = simulate(reqs, model=MODEL, hardware=HARDWARE, scheduler=SCHEDULER, seed=seed)
    fin = res.requests.sort_values("finish_s")
    busy = fin.iloc[: int(0.8 * n)]  # before the tail drains
    return len(busy) / float(busy["finish_s"].max())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--load", type=float, default=0.8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    cap = capacity_rps(args.seed)
    rate = args.load * cap
    reqs = make_requests(args.requests, rate, args.seed)
    print(f"capacity ~{cap:.2f} req/s; arrival rate {rate:.2f} req/s; {args.requests} requests")
    if args.profile:
        import cProfile
        import pstats

        cProfile.runctx("simulate(reqs, model=MODEL, hardware=HARDWARE, scheduler=SCHEDULER, seed=args.seed)",
                        globals(), {"reqs": reqs, "args": args}, "/tmp/sim_speed.prof")
        pstats.Stats("/tmp/sim_speed.prof").sort_stats("tottime").print_stats(25)
        return
    t0 = time.perf_counter()
    res = simulate(reqs, model=MODEL, hardware=HARDWARE, scheduler=SCHEDULER, seed=args.seed)
    wall = time.perf_counter() - t0
    s = res.summary()
    r = res.requests
    print(f"mean input {r['input_tokens'].mean():.0f} tokens, mean output {r['output_tokens'].mean():.0f} tokens")
    steps = len(res.steps)
    sim_s = float(res.info["end_s"])
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"wall {wall:.2f} s; {args.requests / wall:.0f} requests/s; {steps} steps, {steps / wall:.0f} steps/s; "
          f"simulated {sim_s:.1f} s ({sim_s / wall:.1f}x real time); peak RSS {peak_mb:.0f} MB")
    print(f"throughput {s['throughput_rps']:.2f} req/s, TTFT p50 {s['ttft_p50_s']:.3f} s p99 {s['ttft_p99_s']:.3f} s, "
          f"TPOT p50 {s['tpot_p50_s'] * 1e3:.1f} ms, overloaded={s['overloaded']}, cost-model calls {s['cost_calls']}")
    print(f"sim_speed: requests_per_s={args.requests / wall:.0f} steps_per_s={steps / wall:.0f} "
          f"realtime_factor={sim_s / wall:.1f} peak_rss_mb={peak_mb:.0f}")


if __name__ == "__main__":
    main()
