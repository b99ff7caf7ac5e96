"""Accuracy of the calibrated kernel model on measured kernels it was not fitted on.

For each GPU of ../shared/data/kernels/aic (imported exactly as its shipped calibrated profile is), each
shape family is left out in turn (a GEMM (N, K), an attention head layout, a MoE expert layout: one at a time,
or in 20 folds for classes with more families), its class refitted without it (physics constants and
residual grids), and its kernels predicted; for all-reduce each TP size is left out and predicted from the
algorithm model fitted on the others. Prints median and p90 absolute relative error per GPU, class and dtype,
before (the uncalibrated profile) and after, then one summary line: per class, the worst median over the
GPUs the targets name (H100 and A100). Elementwise kernels have no imported data (AIC has no tables): n/a.

    python benchmarks/kernel_accuracy.py [--gpus h100,a100,...] [--commands]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from llmsim.calibration.fit import Prediction
from llmsim.calibration.holdout import heldout_families, heldout_ranks
from llmsim.calibration.importers import load_imports
from llmsim.calibration.profile import profile_yaml_data
from llmsim.specs import load_hardware

AIC = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "kernels" / "aic"
# The imports each shipped calibrated profile is made from (calibration/README.md has the commands).
SYSTEMS = {
    "h100": ("h100-sxm", ["h100_sxm/vllm-0.14.0", "h100_sxm/vllm-0.24.0::gemm/fp8,moe/bf16"]),
    "a100": ("a100-sxm-80gb", ["a100_sxm/vllm-0.14.0", "a100_sxm/trtllm-1.0.0"]),
    "h200": ("h200", ["h200_sxm/vllm-0.14.0::gemm/bf16,attn_prefill,attn_decode,moe,allreduce",
                      "h200_sxm/trtllm-1.2.0rc5"]),
    "l40s": ("l40s", ["l40s/vllm-0.14.0::gemm,attn_prefill/bf16,attn_decode,moe,allreduce", "l40s/trtllm-1.0.0"]),
    "b200": ("b200", ["b200_sxm/vllm-0.24.0"]),
}
TARGET_GPUS = ("h100", "a100")
CLASSES = ("gemm", "attn_prefill", "attn_decode", "allreduce", "elementwise", "moe")


def command(gpu: str) -> str:
    hw, imports = SYSTEMS[gpu]
    parts = " ".join(f"--import aic ../shared/data/kernels/aic/{p}" for p in imports)
    return f"llmsim calibrate {parts} --hardware {hw} --out hardware_profiles/{hw}-calibrated.yaml"


def heldout(gpu: str) -> list[Prediction]:
    name, imports = SYSTEMS[gpu]
    hw = load_hardware(name)
    imp = load_imports([("aic", str(AIC / p)) for p in imports], hw)
    base = profile_yaml_data(hw)
    return heldout_families(imp.measurements, hw, base, 0.0, False) + heldout_ranks(imp.measurements, hw, base)


def _err(ps: list[Prediction], after: bool = True) -> np.ndarray:
    return np.array([abs((p.after_s if after else p.before_s) - p.measured_s) / p.measured_s for p in ps])


def report(gpu: str, preds: list[Prediction]) -> dict[str, float]:
    """Print one GPU's rows; return the median error per class."""
    groups: dict[tuple[str, str], list[Prediction]] = defaultdict(list)
    for p in preds:
        groups[(p.op_class, p.dtype)].append(p)
        groups[(p.op_class, "all")].append(p)
    medians = {}
    for (cls, dtype), ps in sorted(groups.items(), key=lambda kv: (CLASSES.index(kv[0][0]), kv[0][1] != "all")):
        a, b = _err(ps), _err(ps, after=False)
        held = "TP size" if cls == "allreduce" else "family"
        print(f"{gpu:<6}{cls:<14}{dtype:<14}{held:<9}{len(ps):>7}{np.median(a):>9.1%}{np.percentile(a, 90):>8.1%}"
              f"{np.median(b):>11.1%}{np.percentile(b, 90):>8.1%}")
        if dtype == "all":
            medians[cls] = float(np.median(a))
    return medians


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpus", default=",".join(SYSTEMS), help=f"comma-separated subset of {', '.join(SYSTEMS)}")
    parser.add_argument("--commands", action="store_true", help="print the calibrate commands of the profiles")
    args = parser.parse_args()
    gpus = [g.strip() for g in args.gpus.split(",") if g.strip()]
    bad = [g for g in gpus if g not in SYSTEMS]
    if bad:
        print(f"error: --gpus: unknown {', '.join(bad)}; valid: {', '.join(SYSTEMS)}", file=sys.stderr)
        return 2
    if args.commands:
        print("\n".join(command(g) for g in gpus))
        return 0
    if not AIC.is_dir():
        print(f"no kernel data at {AIC}", file=sys.stderr)
        return 2
    print(f"{'gpu':<6}{'class':<14}{'dtype':<14}{'held out':<9}{'n':>7}{'median':>9}{'p90':>8}"
          f"{'before med':>11}{'p90':>8}")
    per_gpu: dict[str, dict[str, float]] = {}
    for gpu in gpus:
        start = time.perf_counter()
        per_gpu[gpu] = report(gpu, heldout(gpu))
        print(f"# {gpu}: {time.perf_counter() - start:.0f} s", file=sys.stderr)
    scope = [g for g in gpus if g in TARGET_GPUS] or gpus
    worst = {c: max(per_gpu[g][c] for g in scope if c in per_gpu[g]) for c in CLASSES
             if any(c in per_gpu[g] for g in scope)}
    line = " ".join(f"{c}={worst[c]:.1%}" if c in worst else f"{c}=n/a" for c in CLASSES)
    print(f"worst median over {', '.join(scope)}; elementwise: no imported data (unfitted)")
    print(f"kernel_accuracy: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
