"""Everything a calibration writes: raw CSVs and ``run.yaml`` in the data folder, the fit, the held-out check,
the report with plots, and the profile YAML (read back before the command reports success)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from llmsim.calibration.collectives import fit_allreduce
from llmsim.calibration.environment import device_folder_name
from llmsim.calibration.fit import (
    Prediction,
    error_table,
    family_holdout,
    fit_blocks,
    fitted_efficiency,
    predict,
    split_heldout,
)
from llmsim.calibration.measurements import OP_CLASSES, Measurement, read_csvs, write_csvs
from llmsim.calibration.plan import grids_for
from llmsim.calibration.profile import build_profile, dump_profile
from llmsim.calibration.report import write_report
from llmsim.calibration.runner import Run
from llmsim.cost.calibrated import CalibratedTimer
from llmsim.errors import ConfigError
from llmsim.specs import hardware_from_dict
from llmsim.specs.hardware import load_hardware_file
from llmsim.yamlio import load_yaml

FORMAT = 1


def _calibration_block(run: Run, blocks: dict, method: str, errors: dict | None) -> dict[str, Any]:
    hw = run.base_hw
    block: dict[str, Any] = {
        "format": FORMAT,
        "method": method,
        "base": run.base_name,
        "environment": run.env,
        "reference": {"peak_flops_per_s": dict(hw.peak_flops_per_s), "hbm_bytes_per_s": hw.hbm_bytes_per_s},
        "launch_s": run.launch_s,
    }
    if errors is not None:
        block["heldout_error"] = errors
    if run.notes:
        block["notes"] = list(run.notes)
    return {**block, **blocks}


def _profile(run: Run, name: str, blocks: dict, method: str, errors: dict | None) -> dict[str, Any]:
    cpu = run.env["device"] == "cpu"
    desc = str(run.base.get("description", run.base_name))
    if not cpu:
        desc = f"{desc}; calibrated on {run.env['name']} ({run.env['date'][:10]})"
    blocks = dict(blocks)
    efficiency = fitted_efficiency(blocks)
    base = run.base
    comm = _allreduce_fits(run)
    if comm:
        blocks["allreduce"] = comm
        base, efficiency["comm"] = _with_comm(run.base, comm)
    return build_profile(base, name, desc, efficiency, run.launch_s, _calibration_block(run, blocks, method, errors))


def _allreduce_fits(run: Run) -> list[dict[str, Any]]:
    """Per group size: measured all-reduce times and the ring model fitted to them."""
    groups: dict[int, list[Measurement]] = {}
    for m in run.measurements:
        if m.case.op_class == "allreduce":
            groups.setdefault(m.case["ranks"], []).append(m)
    out = []
    for _, ms in sorted(groups.items()):
        ms.sort(key=lambda m: m.case["bytes"])
        out.append({**fit_allreduce(ms), "bytes": [m.case["bytes"] for m in ms],
                    "seconds": [m.median_s for m in ms]})
    return out


def _with_comm(base: dict[str, Any], comm: list[dict[str, Any]]) -> tuple[dict[str, Any], float]:
    """The base with the intra-node latency measured, and efficiency.comm = achieved / link bandwidth."""
    link = dict(base["interconnect"]["intra_node"])
    bw = float(np.median([c["bytes_per_s"] for c in comm]))
    link["latency_s"] = float(np.median([c["latency_s"] for c in comm]))
    eff = round(min(1.0, max(bw / float(link["bytes_per_s"]), 1e-3)), 3)
    return {**base, "interconnect": {**base["interconnect"], "intra_node": link}}, eff


def heldout_check(run: Run, method: str) -> tuple[dict, list[Prediction], dict]:
    """Fit on every other point and predict the rest (errors per class, predictions); then leave each shape
    family out in turn (errors per class on unseen families)."""
    def fitted(ms: list[Measurement]):
        blocks = fit_blocks(ms, run.base_hw, run.launch_s)
        return hardware_from_dict(_profile(run, "heldout-fit", blocks, method, None))

    fit_set, held = split_heldout(run.measurements)
    preds = predict(held, run.base_hw, fitted(fit_set))
    unseen = error_table(family_holdout(run.measurements, run.base_hw, fitted))
    return error_table(preds), preds, unseen


def write_outputs(run: Run, out: Path, data_dir: Path | None, method: str) -> list[Path]:
    if not run.measurements:
        raise ConfigError("no kernel could be measured; nothing to fit (see the notes above)")
    folder = data_dir or Path("calibration") / device_folder_name(run.env)
    written = write_csvs(run.measurements + [p for p in run.probes if p.case.op_class not in OP_CLASSES], folder)
    written.append(_write_run_yaml(run, folder))
    errors, preds, unseen = heldout_check(run, method)
    blocks = fit_blocks(run.measurements, run.base_hw, run.launch_s)
    profile = _profile(run, out.stem, blocks, method, {"heldout_points": errors, "unseen_families": unseen})
    CalibratedTimer(hardware_from_dict(profile))  # validate before writing anything the simulator will read
    header = [
        f"{out.stem}: written by `llmsim calibrate` on {run.env['date']}",
        f"command: {run.env['command']}",
        f"base profile: {run.base_name}; raw measurements, report and plots: {folder}",
        "efficiency and overheads.kernel_launch_s are fitted; calibration: holds the measured ratio grids",
    ]
    if run.env["device"] == "cpu":
        header.insert(1, "CPU RUN: a test of the calibration pipeline on a CPU, not a GPU profile")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(dump_profile(profile, header))
    hw = load_hardware_file(out)
    if hw.calibration is None or hw.name != out.stem:
        raise RuntimeError(f"{out}: the profile did not read back as written")
    written.append(out)
    written += write_report(folder, run, errors, preds, blocks, out, unseen)
    return written


def _write_run_yaml(run: Run, folder: Path) -> Path:
    """What a refit (``--from-csv``) needs besides the CSVs: environment, base profile, launch, notes."""
    path = folder / "run.yaml"
    data = {"environment": run.env, "base_name": run.base_name, "base": run.base, "launch_s": run.launch_s,
            "notes": run.notes, "planned_s": run.planned_s, "wall_s": run.wall_s}
    path.write_text(dump_profile(data, ["llmsim calibrate: run metadata (read back by --from-csv)"]))
    return path


def load_run(folder: Path) -> Run:
    """A run from a data folder written earlier (CSVs + run.yaml), to refit without measuring."""
    meta = load_yaml(folder / "run.yaml", "calibration run metadata")
    if not isinstance(meta, dict) or not {"environment", "base", "base_name", "launch_s"} <= set(meta):
        raise ConfigError(f"{folder / 'run.yaml'}: expected a mapping with environment, base, base_name and "
                          "launch_s (as `llmsim calibrate` writes it)")
    env = meta["environment"]
    try:
        grids = grids_for(env["device"], quick=False)  # the grids only plan a sweep; a refit needs none
        numbers = [float(meta["launch_s"]), float(meta.get("planned_s", 0.0)), float(meta.get("wall_s", 0.0))]
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{folder / 'run.yaml'}: environment.device, launch_s, planned_s, wall_s: expected "
                          f"what `llmsim calibrate` writes ({type(exc).__name__}: {exc})") from None
    all_rows = read_csvs(folder)
    probes = [m for m in all_rows if m.case.op_class in ("launch", "peak_gemm")]
    rows = [m for m in all_rows if m.case.op_class not in ("launch", "peak_gemm")]
    return Run(env, meta["base"], meta["base_name"], grids, numbers[0], rows, probes,
               list(meta.get("notes") or []), numbers[1], numbers[2])
