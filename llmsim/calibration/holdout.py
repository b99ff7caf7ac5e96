"""Error on data the fit did not see, three ways: held-out points between fitted ones (every other size
along each swept axis), unseen shape families (each GEMM (N, K), attention head layout, MoE expert layout
left out, physics and residuals refitted without it), and unseen all-reduce group sizes (one TP size left
out, predicted by the algorithm model fitted on the others). Everything goes through the same
``CalibratedTimer`` the simulator uses.
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any

from llmsim.calibration.fit import (
    Prediction,
    family_of,
    fit_blocks,
    fitted_measurements,
    predict,
    split_heldout,
)
from llmsim.calibration.measurements import Measurement
from llmsim.calibration.physics_fit import fit_allreduce_terms
from llmsim.specs import HardwareSpec, hardware_from_dict

MAX_LEAVE_ONE_OUT = 20  # classes with more families are left out in this many folds instead


def allreduce_curves(ms: list[Measurement]) -> list[dict[str, Any]]:
    """Measured all-reduce seconds over bytes per group size (vLLM's custom kernel's rows if present)."""
    kinds = {m.case.kind for m in ms if m.case.op_class == "allreduce"}
    kind = "custom_graph" if "custom_graph" in kinds else ("nccl" if "nccl" in kinds else next(iter(kinds), None))
    groups: dict[int, dict[int, float]] = defaultdict(dict)
    for m in ms:
        if m.case.op_class == "allreduce" and m.case.kind == kind:
            groups[m.case["ranks"]][m.case["bytes"]] = m.median_s
    return [{"ranks": r, "kind": kind, "bytes": sorted(g), "seconds": [float(f"{g[b]:.5g}") for b in sorted(g)]}
            for r, g in sorted(groups.items())]


def calibrated_hw(base: dict[str, Any], block: dict[str, Any], name: str = "heldout-fit") -> HardwareSpec:
    return hardware_from_dict({**base, "name": name, "calibration": block})


def fitted_block(ms: list[Measurement], base_hw: HardwareSpec, launch_s: float,
                 notes: list[str] | None = None) -> dict[str, Any]:
    block = fit_blocks(ms, base_hw, launch_s, notes)
    curves = allreduce_curves(ms)
    if curves:
        block["allreduce"] = curves
    return block


def heldout_points(ms: list[Measurement], base_hw: HardwareSpec, base: dict, launch_s: float,
                   with_launch: bool) -> list[Prediction]:
    fit_set, held = split_heldout(ms)
    hw = calibrated_hw(base, fitted_block(fit_set, base_hw, launch_s))
    return predict(held, base_hw, hw, with_launch)


def _folds(families: list[tuple]) -> list[list[tuple]]:
    if len(families) <= MAX_LEAVE_ONE_OUT:
        return [[f] for f in families]
    order = sorted(families, key=str)
    random.Random(0).shuffle(order)  # fixed seed: the same folds on every run
    return [order[i::MAX_LEAVE_ONE_OUT] for i in range(MAX_LEAVE_ONE_OUT)]


def heldout_families(ms: list[Measurement], base_hw: HardwareSpec, base: dict, launch_s: float,
                     with_launch: bool, classes: tuple[str, ...] | None = None) -> list[Prediction]:
    """Leave each shape family (or a fold of them) of each class out; refit that class without it."""
    by_class: dict[str, dict[tuple, list[Measurement]]] = defaultdict(lambda: defaultdict(list))
    for m in fitted_measurements(ms):
        if classes is None or m.case.op_class in classes:
            by_class[m.case.op_class][family_of(m)].append(m)
    preds: list[Prediction] = []
    for _, fams in sorted(by_class.items()):
        if len(fams) < 2:
            continue
        rows = [m for f in fams.values() for m in f]
        for fold in _folds(list(fams)):
            out = set(fold)
            rest = [m for m in rows if family_of(m) not in out]
            hw = calibrated_hw(base, fit_blocks(rest, base_hw, launch_s))
            preds += predict([m for f in fold for m in fams[f]], base_hw, hw, with_launch)
    return preds


def heldout_ranks(ms: list[Measurement], base_hw: HardwareSpec, base: dict) -> list[Prediction]:
    """Leave each all-reduce group size out: fit the algorithm terms on the other sizes, predict it."""
    ar = [m for m in ms if m.case.op_class == "allreduce"]
    curves = allreduce_curves(ar)
    kind = curves[0]["kind"] if curves else None
    ar = [m for m in ar if m.case.kind == kind]
    preds: list[Prediction] = []
    ranks = sorted({m.case["ranks"] for m in ar})
    if len(ranks) < 2:
        return preds
    for r in ranks:
        rest = [m for m in ar if m.case["ranks"] != r]
        block = {"format": 2, "physics": {"allreduce": fit_allreduce_terms(rest, base_hw)},
                 "allreduce": allreduce_curves(rest)}
        preds += predict([m for m in ar if m.case["ranks"] == r], base_hw, calibrated_hw(base, block), False)
    return preds
