"""Accuracy of `llmsim estimate` against measured GPU performance points.

Reads ../shared/data/reference/measured_points.csv (Splitwise profiling DB, TensorRT-LLM and LMDeploy
tables), predicts each point with the analytical estimate and prints the median and worst relative error
per source and per metric. Run from the repository root:

    python benchmarks/estimate_accuracy.py [--csv PATH] [--rows] [--hardware-dir DIR] [--calibrated]

``--calibrated`` uses the kernel-calibrated profiles (``h100-sxm-calibrated``, ``a100-sxm-80gb-calibrated``,
fitted on AIC kernel timings only: their CPU-side overheads are the uncalibrated profiles').

How each metric maps to the estimate (one static batch of ``batch`` prompts):
  prefill_latency_batch, first_token_latency, mean_first_token_latency -> prefill_s
  decode_step_time, per_token_latency_p50                             -> tpot_s (mean decode step)
  output_throughput_per_gpu                                           -> output_tokens_per_s_per_gpu
  output_throughput (S5: whole server; S4 A100: unit ambiguous, read as per GPU like S4's H100 table)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from llmsim.cost.estimate import estimate
from llmsim.errors import LlmsimError
from llmsim.specs import ParallelLayout, Precision, load_hardware, load_model

DEFAULT_CSV = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "reference" / "measured_points.csv"
GPU_PROFILE = {"A100": "a100-sxm-80gb", "H100": "h100-sxm"}


SUFFIX = {"name": ""}


def _profile(gpu: str) -> str:
    return next(v for k, v in GPU_PROFILE.items() if gpu.startswith(k)) + SUFFIX["name"]


def _precision(text: str) -> Precision:
    if text.startswith("fp8"):
        return Precision.parse("fp8", "fp8" if "fp8 KV" in text else "bf16")
    return Precision.parse(text)


def predict(row: pd.Series, hardware: dict | None = None) -> float:
    """The estimate's value for one measured row; ``hardware`` maps profile name -> HardwareSpec override."""
    model = load_model(row["model"].lower())
    name = _profile(row["gpu"])
    hw = (hardware or {}).get(name) or load_hardware(name)
    batch, inp, out = int(row["batch_or_concurrency"]), int(row["input_len"]), int(row["output_len"])
    est = estimate(model, hw, ParallelLayout(tp=int(row["tp"])), _precision(row["precision"]),
                   batch_size=batch, input_len=inp, output_len=out, enforce_max_context=False)
    metric = row["metric"]
    if "first_token" in metric or metric.startswith("prefill"):
        return est.prefill_s * 1e3
    if metric.startswith("decode_step") or metric.startswith("per_token"):
        return est.tpot_s * 1e3
    if metric == "output_throughput_per_gpu" or (metric == "output_throughput" and row["source_id"] == "S4"):
        return est.output_tokens_per_s_per_gpu
    if metric == "output_throughput":
        return est.output_tokens_per_s
    raise ValueError(f"unmapped metric {metric!r}")


def usable_rows(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split off rows the data itself flags as anomalous (``trust`` column); they are reported, not scored."""
    bad = df["trust"].str.contains("anomalous", na=False)
    return df[~bad], df[bad]


def evaluate(df: pd.DataFrame, hardware: dict | None = None) -> pd.DataFrame:
    preds = []
    for _, row in df.iterrows():
        try:
            preds.append(predict(row, hardware))
        except LlmsimError as exc:
            print(f"row {row['id']}: {exc}", file=sys.stderr)
            preds.append(np.nan)
    out = df.assign(predicted=preds)
    out["rel_err"] = (out["predicted"] - out["value"]) / out["value"]
    out["metric_short"] = out["metric"].str.split(" ").str[0]
    return out


def summarise(res: pd.DataFrame) -> None:
    def line(label: str, g: pd.DataFrame) -> str:
        a = g["rel_err"].abs()
        return (f"{label:<44}{len(g):>5}{a.median():>9.1%}{a.quantile(0.9):>9.1%}{a.max():>9.1%}"
                f"{g['rel_err'].median():>+10.1%}")

    print(f"{'source / metric':<44}{'n':>5}{'median':>9}{'p90':>9}{'worst':>9}{'bias':>10}")
    for src, g in res.groupby("source_id"):
        print(line(src, g))
        for metric, gm in g.groupby("metric_short"):
            print(line(f"  {metric}", gm))
    print(line("all", res))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--rows", action="store_true", help="print every point")
    parser.add_argument("--hardware-dir", help="look hardware profiles up here first")
    parser.add_argument("--calibrated", action="store_true", help="use the <profile>-calibrated profiles")
    args = parser.parse_args()
    if args.calibrated:
        SUFFIX["name"] = "-calibrated"
    if args.hardware_dir:
        os.environ["LLMSIM_HARDWARE_PATH"] = args.hardware_dir
    if not args.csv.is_file():
        print(f"no measured data at {args.csv}", file=sys.stderr)
        return 2
    rows, flagged = usable_rows(pd.read_csv(args.csv))
    res = evaluate(rows)
    if len(flagged):
        ids = ", ".join(str(i) for i in flagged["id"])
        print(f"excluded {len(flagged)} rows the data flags as anomalous (ids {ids})")
    if args.rows:
        cols = ["id", "source_id", "model", "gpu", "precision", "tp", "batch_or_concurrency", "input_len",
                "output_len", "metric_short", "value", "predicted", "rel_err"]
        print(res[cols].to_string(index=False, float_format=lambda x: f"{x:.3g}"))
    summarise(res.dropna(subset=["rel_err"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
