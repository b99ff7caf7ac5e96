"""Fit a hardware profile's physical parameters to the measured reference points, and print them.

Tunes only efficiencies (gemm, attention, memory, comm) and overheads (kernel_launch_s, step_s) of one
profile, on ../shared/data/reference/measured_points.csv rows of that GPU (rows the data flags as anomalous
excluded). Objective: the mean over (source, metric) groups of the median |log(predicted / measured)|, so a
source with many rows does not drown the others. Nothing is written: copy the printed values into the
profile YAML by hand, with a comment naming this script.

    python benchmarks/tune_profiles.py --profile h100-sxm
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

import numpy as np
import pandas as pd
from estimate_accuracy import DEFAULT_CSV, _profile, evaluate, usable_rows
from scipy.optimize import minimize

from llmsim.specs import Efficiency, Overheads, load_hardware

NAMES = ("gemm", "attention", "memory", "comm", "kernel_launch_s", "step_s")
LOW = np.array([0.3, 0.2, 0.4, 0.2, 0.0, 0.0])
HIGH = np.array([0.95, 0.95, 0.95, 0.95, 20e-6, 40e-3])


def with_params(hw, x):
    eff = Efficiency(gemm=x[0], attention=x[1], memory=x[2], comm=x[3])
    oh = Overheads(kernel_launch_s=x[4], step_s=x[5], per_seq_s=hw.overheads.per_seq_s)
    return dataclasses.replace(hw, efficiency=eff, overheads=oh)


def score(res: pd.DataFrame) -> float:
    err = np.log(res["predicted"] / res["value"]).abs()
    return float(err.groupby([res["source_id"], res["metric_short"]]).median().mean())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", required=True)
    parser.add_argument("--iters", type=int, default=150)
    args = parser.parse_args()
    rows, _ = usable_rows(pd.read_csv(DEFAULT_CSV))
    rows = rows[rows["gpu"].map(_profile) == args.profile]
    base = load_hardware(args.profile)
    x0 = np.array([base.efficiency.gemm, base.efficiency.attention, base.efficiency.memory,
                   base.efficiency.comm, base.overheads.kernel_launch_s, base.overheads.step_s])

    def unit(x):  # optimise in [0, 1] coordinates, clipped to the physical bounds
        return LOW + np.clip(x, 0, 1) * (HIGH - LOW)

    def objective(u):
        return score(evaluate(rows, {args.profile: with_params(base, unit(u))}))

    u0 = (x0 - LOW) / (HIGH - LOW)
    before = objective(u0)
    best = minimize(objective, u0, method="Nelder-Mead", options={"maxfev": args.iters, "xatol": 1e-3})
    x = unit(best.x)
    print(f"{args.profile}: {len(rows)} rows; objective {before:.4f} -> {best.fun:.4f}")
    for name, v0, v in zip(NAMES, x0, x, strict=True):
        print(f"  {name:<16} {v0:.4g} -> {v:.4g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
