"""Simulator speed, in CPU seconds (``time.process_time``: other load on the machine matters less than wall
time). Cases:

- ``single``: llama-3.1-8b on h100-sxm, vLLM v1, gamma arrivals (CV 2) at ~80 % of capacity, lengths like
  the Azure LLM conversation trace (lognormal, mean ~1,150 in / ~210 out), 10,000 requests (``--requests``):
  the favourable case (decode runs collapse);
- ``vidur``: Vidur's own scenario, ``benchmarks/vidur_scenario.yaml`` run as ``llmsim run`` runs a point
  (Llama-2-70B TP2 on A100-80GB, Sarathi chunk 512, Poisson 1 req/s, 10,000 requests with Azure-conversation
  lengths): most steps carry a prompt chunk; ``benchmarks/vidur_side_by_side.py`` times Vidur on it (whole
  processes, same machine: ~4.2 ms of CPU per request on 2026-12-04, warm predictor cache);
- ``trace1m``: a 1,000,000-request trace replay on one replica (``--trace-requests``): the Azure 2023
  conversation trace (shared data, 19,366 requests over ~1 h) repeated back to back, on ``single``'s replica
  at twice the trace's speed (~10.8 req/s, about half its capacity), without a row per step
  (``record_steps=False``; ``--trace-steps`` keeps them);
- ``run1m``: what ``llmsim run`` does with a 1,000,000-request experiment (``--run-requests``): Poisson
  10 req/s with the Azure 2023 conversation trace's lengths on ``single``'s replica, simulated, summarised
  (trust annotation included) and written to a scratch results directory (step table included), in one
  fresh process as the CLI runs it; its peak RSS is the whole process's;
- ``run8``: ``run1m``'s path for 8 such replicas behind least-outstanding routing at 8 times the rate
  (80 req/s), ``--cluster-requests`` requests: the replicas' step rows interleave, so they are spilled per
  replica and merged at the end (``llmsim.metrics.spill.merge_streams``);
- ``mixed8``: 8 mixed replicas behind least-outstanding routing, 100,000 requests (``--cluster-requests``);
- ``pd4x4``: 4 prefill + 4 decode replicas (InfiniBand 400 Gb/s per GPU, whole-cache transfers,
  least-outstanding decode routing), 100,000 requests.

Capacity of the synthetic cases is measured first (untimed) by a saturated run; then the timed run at 80 % of
it. Each case runs in its own process (so peak RSS is its own). Per case it prints simulated requests and
steps per CPU second, simulated time / CPU time, peak RSS and bytes per request (peak RSS over the process's
RSS before the run, divided by the requests), then a last line per case ``sim_speed[CASE]:
requests_per_cpu_s=N steps_per_cpu_s=N realtime_factor=N peak_rss_mb=N bytes_per_request=N``; with
``single`` and a cluster case, ``cluster_cost_ratio`` (the largest CPU time per request of a cluster case over
the single replica's; the target is <= 2).

    python benchmarks/sim_speed.py [--cases single,vidur,trace1m,run1m,run8,mixed8,pd4x4] [--requests 10000]
        [--cluster-requests 100000] [--trace-requests 1000000] [--run-requests 1000000] [--trace-steps]
        [--load 0.8] [--seed 0]
        [--profile]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from llmsim.sim.cluster import simulate_cluster
from llmsim.sim.spec import ClusterSpec, LinkSpec, pool_spec
from llmsim.workload.request import Request

MODEL, HARDWARE = "llama-3.1-8b", "h100-sxm"
SCHEDULER = {"kind": "vllm", "mode": "v1"}
CASES = ("single", "vidur", "trace1m", "run1m", "run8", "mixed8", "pd4x4")
HERE = Path(__file__).resolve().parent
VIDUR_YAML = HERE / "vidur_scenario.yaml"
AZURE_CONV = HERE.parent.parent / "shared" / "data" / "traces" / "azure2023_conv.csv"
TRACE_SPEED = 2.0
TRACE_STEPS = [False]  # keep a row per step in the trace1m case (--trace-steps)


def cluster(case: str) -> ClusterSpec:
    def pool(name: str, role: str, n: int):
        return pool_spec(name, role, n, model=MODEL, hardware=HARDWARE, scheduler=SCHEDULER)

    if case in ("single", "trace1m"):
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


def trace_requests(n: int, speed: float = TRACE_SPEED) -> Iterator[Request]:
    """The Azure 2023 conversation trace replayed ``speed`` times faster, repeated back to back (each copy
    starts one mean gap after the previous one ends) until ``n`` requests; yielded lazily."""
    from llmsim.workload.traces import load_trace

    trace = load_trace(AZURE_CONV)
    t, ins, outs = trace.arrival_s / speed, trace.input_tokens, trace.output_tokens
    period = float(t[-1]) + float(t[-1]) / max(len(t) - 1, 1)
    m = len(t)
    return (Request(i, float(t[i % m]) + (i // m) * period, int(ins[i % m]), int(outs[i % m])) for i in range(n))


def capacity_rps(spec: ClusterSpec, seed: int, n: int) -> float:
    """Saturated throughput: everyone arrives at once, requests/s while the queue is never empty."""
    reqs = [Request(r.id, 0.0, r.input_tokens, r.output_tokens) for r in make_requests(n, 1.0, seed + 1)]
    res = simulate_cluster(spec, reqs, seed=seed)
    fin = res.requests.sort_values("finish_s")
    busy = fin.iloc[: int(0.8 * n)]  # before the tail drains
    return len(busy) / float(busy["finish_s"].max())


def rss_bytes() -> int:
    """Resident set size now (Linux /proc), in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def table_rows(stem: Path) -> int:
    """Rows of a written results table, without reading it back (the Parquet footer, or CSV lines)."""
    if stem.with_suffix(".parquet").is_file():
        import pyarrow.parquet as pq

        return pq.ParquetFile(stem.with_suffix(".parquet")).metadata.num_rows
    with open(stem.with_suffix(".csv"), "rb") as f:
        return sum(1 for _ in f) - 1


def run_config(n: int, replicas: int = 1) -> dict:
    """The ``run1m`` experiment (``run8`` with 8 ``replicas``), as a user would write it."""
    cfg = {"name": "run1m", "model": MODEL, "hardware": HARDWARE, "scheduler": dict(SCHEDULER),
           "workload": {"arrival": {"kind": "poisson", "rate_per_s": 10.0 * replicas},
                        "lengths": {"kind": "trace", "path": str(AZURE_CONV)}},
           "stop": {"num_requests": n}, "seeds": [0]}
    if replicas > 1:
        cfg.update(layout={"replicas": replicas}, router={"kind": "least_outstanding"})
    return cfg


def _simulate(case: str, n: int, rate: float, seed: int):
    """(summary dict, number of steps, number of requests) of the case's timed run; workload generation is
    lazy and interleaved with the simulation (timed too, as a user's run would pay for it)."""
    if case in ("run1m", "run8"):
        import tempfile

        from llmsim.experiment.runner import run_experiment

        with tempfile.TemporaryDirectory() as tmp:
            res = run_experiment(run_config(n, 8 if case == "run8" else 1), Path(tmp) / "run1m")
            s = res.summary.iloc[0].to_dict()
            steps = table_rows(Path(tmp) / "run1m" / "points" / s["point_id"] / "steps")
        return s, steps, int(s["num_requests"])
    if case == "vidur":
        from llmsim.experiment.point import run_point
        from llmsim.experiment.runner import _coerce
        from llmsim.experiment.sweep import expand

        cfg, base, where, _ = _coerce(VIDUR_YAML, None, (f"stop.num_requests={n}",))
        summary, requests, steps = run_point(expand(cfg, base, where)[0])
        return summary, len(steps), len(requests)
    spec = cluster(case)
    stream = trace_requests(n) if case == "trace1m" else make_requests(n, rate, seed)
    lean = {"record_steps": False} if case == "trace1m" and not TRACE_STEPS[0] else {}
    res = simulate_cluster(spec, stream, seed=seed, **lean)
    return res.summary(), int(res.info.get("steps_simulated", len(res.steps))), len(res.requests)


def _capacity(case: str, seed: int) -> float:
    spec = cluster(case)
    replicas = sum(p.replicas for p in spec.pools)
    cap = capacity_rps(spec, seed, 3000 if replicas == 1 else 1500 * replicas)
    print(f"[{case}] capacity ~{cap:.2f} req/s", flush=True)
    return cap


def run_case(case: str, n: int, load: float, seed: int) -> dict:
    rate = load * _capacity(case, seed) if case not in ("vidur", "trace1m", "run1m", "run8") else 0.0  # untimed
    rss0 = rss_bytes()
    c0 = time.process_time()
    s, steps, n_done = _simulate(case, n, rate, seed)
    cpu = time.process_time() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    sim_s = float(s.get("end_s") or s.get("duration_s") or 0.0)
    out = {"case": case, "requests": n_done, "cpu_s": cpu, "requests_per_cpu_s": n_done / cpu,
           "steps": steps, "steps_per_cpu_s": steps / cpu, "realtime_factor": sim_s / cpu,
           "peak_rss_mb": peak / 2**20, "bytes_per_request": max(0, peak - rss0) / max(n_done, 1),
           "cpu_ms_per_request": cpu / n_done * 1e3}
    print(f"[{case}] {n_done} requests, {steps} steps, simulated {sim_s:.0f} s in {cpu:.2f} CPU s: "
          f"{out['requests_per_cpu_s']:.0f} requests/CPU-s ({out['cpu_ms_per_request']:.3f} ms each), "
          f"{out['steps_per_cpu_s']:.0f} steps/CPU-s, {out['realtime_factor']:.0f}x real time; peak RSS "
          f"{out['peak_rss_mb']:.0f} MiB, {out['bytes_per_request']:.0f} B per request")
    print(f"[{case}] throughput {s['throughput_rps']:.2f} req/s, TTFT p50 {s['ttft_p50_s']:.3f} s p99 "
          f"{s['ttft_p99_s']:.3f} s, TPOT p50 {s['tpot_p50_s'] * 1e3:.1f} ms, overloaded={s['overloaded']}")
    print(f"sim_speed[{case}]: requests_per_cpu_s={out['requests_per_cpu_s']:.0f} "
          f"steps_per_cpu_s={out['steps_per_cpu_s']:.0f} realtime_factor={out['realtime_factor']:.1f} "
          f"peak_rss_mb={out['peak_rss_mb']:.0f} bytes_per_request={out['bytes_per_request']:.0f}", flush=True)
    return out


def _requests_for(case: str, args) -> int:
    return {"single": args.requests, "vidur": args.requests, "trace1m": args.trace_requests,
            "run1m": args.run_requests}.get(case, args.cluster_requests)


def _child(case: str, args) -> dict:
    """Run one case in a fresh interpreter (its own peak RSS); its result is the last stdout line (JSON)."""
    cmd = [sys.executable, __file__, "--one", case, "--requests", str(args.requests), "--cluster-requests",
           str(args.cluster_requests), "--trace-requests", str(args.trace_requests), "--run-requests",
           str(args.run_requests), "--load", str(args.load),
           "--seed", str(args.seed)] + (["--trace-steps"] if args.trace_steps else [])
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True)
    lines = proc.stdout.rstrip().splitlines()
    print("\n".join(lines[:-1]), flush=True)
    return json.loads(lines[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--cluster-requests", type=int, default=100_000)
    ap.add_argument("--trace-requests", type=int, default=1_000_000)
    ap.add_argument("--run-requests", type=int, default=1_000_000)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--load", type=float, default=0.8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profile", action="store_true", help="cProfile the first case, print the top 25")
    ap.add_argument("--trace-steps", action="store_true", help="trace1m: keep a row per step")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    TRACE_STEPS[0] = args.trace_steps
    if args.one:
        print(json.dumps(run_case(args.one, _requests_for(args.one, args), args.load, args.seed)))
        return
    cases = [c for c in args.cases.split(",") if c]
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        ap.error(f"--cases: unknown {', '.join(unknown)}; choose from {', '.join(CASES)}")
    if args.profile:
        import cProfile
        import pstats

        case = cases[0]
        cProfile.runctx("run_case(case, n, args.load, args.seed)", globals(),
                        {"case": case, "n": _requests_for(case, args), "args": args}, "/tmp/sim_speed.prof")
        pstats.Stats("/tmp/sim_speed.prof").sort_stats("tottime").print_stats(25)
        return
    out = {c: _child(c, args) for c in cases}
    if "single" in out and set(out) & {"mixed8", "pd4x4"}:
        ratio = max(out[c]["cpu_ms_per_request"] for c in out if c in ("mixed8", "pd4x4")) / \
            out["single"]["cpu_ms_per_request"]
        print(f"sim_speed: cluster_cost_ratio={ratio:.2f}")


if __name__ == "__main__":
    main()
