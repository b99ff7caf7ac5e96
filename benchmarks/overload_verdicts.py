"""How often the load verdict (stable / overloaded / inconclusive) is right, on simulated runs whose truth
is settled by a much longer run of the same rate.

For each rate, one run of ``--truth-requests`` requests gives the truth (its verdict; an inconclusive truth
leaves that rate out of the error counts). Then ``--seeds`` runs of each length in ``--lengths`` are judged:
a *false overloaded* is an overloaded verdict where the truth is stable, a *false stable* a stable verdict
where the truth is overloaded. Warm-up is a tenth of each run. The thresholds in
``llmsim/metrics/overload.py`` were set on the quickstart configuration; the default here is a held-out
one (Llama-3.1-8B on A100-80GB, Sarathi-Serve chunk 512 and 128 sequences, chat traffic).

    python benchmarks/overload_verdicts.py                      # held-out configuration (~6 min, 2 cores)
    python benchmarks/overload_verdicts.py --experiment experiments/quickstart.yaml --rates 5,6,6.5,7,8
"""

from __future__ import annotations

import argparse
import collections
import sys
import warnings
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
HELD_OUT = {
    "name": "held_out", "model": "llama-3.1-8b", "hardware": "a100-sxm-80gb", "workload": "chat",
    "scheduler": {"kind": "sarathi", "chunk_size": 512, "max_num_seqs": 128},
    "slo": {"ttft_s": 2.0, "tpot_s": 0.1},
}


def verdicts(base: dict, n: int, rates: list[float], seeds: list[int], jobs: int) -> dict:
    from llmsim.experiment.runner import run_experiment

    cfg = {**base, "stop": {"num_requests": n, "warmup_requests": n // 10}, "seeds": seeds,
           "sweep": {"grid": {"workload.arrival.rate_per_s": rates}}}
    s = run_experiment(cfg, None, jobs=jobs, base_dir=REPO / "experiments").summary
    out = collections.defaultdict(list)
    for _, row in s.iterrows():
        out[float(row["sweep.workload.arrival.rate_per_s"])].append(row["load_verdict"])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", help="experiment YAML whose base configuration to judge (default: held out)")
    parser.add_argument("--rates", default="2.5,3,3.5,4,4.5", help="request rates, comma-separated")
    parser.add_argument("--lengths", default="600,2000", help="requests per judged run, comma-separated")
    parser.add_argument("--seeds", type=int, default=4, help="judged runs per rate and length")
    parser.add_argument("--truth-requests", type=int, default=10000)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # cross-check warnings of overloaded runs
    base = yaml.safe_load(Path(args.experiment).read_text()) if args.experiment else dict(HELD_OUT)
    base.pop("sweep", None)
    rates = [float(r) for r in args.rates.split(",")]
    truth = {r: v[0] for r, v in verdicts(base, args.truth_requests, rates, [100], args.jobs).items()}
    print(f"truth ({args.truth_requests} requests): " + ", ".join(f"{r:g}: {v}" for r, v in truth.items()))
    counts = collections.Counter()
    print(f"{'requests':>8} {'rate':>5} {'truth':>12}   stable / inconclusive / overloaded")
    for n in (int(x) for x in args.lengths.split(",")):
        for rate, vs in verdicts(base, n, rates, list(range(args.seeds)), args.jobs).items():
            c = collections.Counter(vs)
            print(f"{n:>8} {rate:>5g} {truth[rate]:>12}   {c['stable']} / {c['inconclusive']} / {c['overloaded']}")
            if truth[rate] == "stable":
                counts["stable_truth"] += len(vs)
                counts["false_overloaded"] += c["overloaded"]
            elif truth[rate] == "overloaded":
                counts["overloaded_truth"] += len(vs)
                counts["false_stable"] += c["stable"]
            counts["runs"] += len(vs)
            counts["inconclusive"] += c["inconclusive"]
    name = Path(args.experiment).stem if args.experiment else "held-out (llama-3.1-8b, a100-80gb, sarathi, chat)"
    print(f"overload verdicts on {name}: {counts['runs']} runs; false overloaded {counts['false_overloaded']} of "
          f"{counts['stable_truth']} stable-truth, false stable {counts['false_stable']} of "
          f"{counts['overloaded_truth']} overloaded-truth, inconclusive {counts['inconclusive'] / counts['runs']:.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
