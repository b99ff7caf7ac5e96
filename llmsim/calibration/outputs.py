"""Everything a calibration writes: raw CSVs and ``run.yaml`` in the data folder, the fit, the held-out check,
the report with plots, and the profile YAML (read back before the command reports success)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmsim.calibration.environment import device_folder_name
from llmsim.calibration.fit import Prediction, error_table
from llmsim.calibration.holdout import fitted_block, heldout_families, heldout_points, heldout_ranks
from llmsim.calibration.measurements import OP_CLASSES, read_csvs, write_csvs
from llmsim.calibration.plan import grids_for
from llmsim.calibration.profile import build_profile, dump_profile
from llmsim.calibration.report import write_report
from llmsim.calibration.runner import Run
from llmsim.cost.calibrated import CalibratedTimer
from llmsim.errors import ConfigError
from llmsim.specs import hardware_from_dict
from llmsim.specs.hardware import load_hardware_file
from llmsim.yamlio import load_yaml


def _calibration_block(run: Run, blocks: dict, method: str, errors: dict | None) -> dict[str, Any]:
    hw = run.base_hw
    blocks = dict(blocks)
    block: dict[str, Any] = {
        "format": blocks.pop("format"),
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
    return build_profile(run.base, name, desc, {}, run.launch_s, _calibration_block(run, blocks, method, errors))


def heldout_check(run: Run) -> tuple[dict, list[Prediction], dict, dict]:
    """Held-out points (errors per class, their predictions), unseen families and unseen TP sizes."""
    hw, base = run.base_hw, run.base
    preds = heldout_points(run.measurements, hw, base, run.launch_s, True)
    unseen = error_table(heldout_families(run.measurements, hw, base, run.launch_s, True))
    ranks = error_table(heldout_ranks(run.measurements, hw, base))
    return error_table(preds), preds, unseen, ranks


def write_outputs(run: Run, out: Path, data_dir: Path | None, method: str) -> list[Path]:
    if not run.measurements:
        raise ConfigError("no kernel could be measured; nothing to fit (see the notes above)")
    folder = data_dir or Path("calibration") / device_folder_name(run.env)
    written = write_csvs(run.measurements + [p for p in run.probes if p.case.op_class not in OP_CLASSES], folder)
    written.append(_write_run_yaml(run, folder))
    errors, preds, unseen, ranks = heldout_check(run)
    blocks = fitted_block(run.measurements, run.base_hw, run.launch_s, run.notes)
    profile = _profile(run, out.stem, blocks, method, {"heldout_points": errors, "unseen_families": unseen,
                                                       "unseen_tp_sizes": ranks})
    CalibratedTimer(hardware_from_dict(profile))  # validate before writing anything the simulator will read
    header = [
        f"{out.stem}: written by `llmsim calibrate` on {run.env['date']}",
        f"command: {run.env['command']}",
        f"base profile: {run.base_name}; raw measurements, report and plots: {folder}",
        "overheads.kernel_launch_s is measured; calibration: holds the fitted kernel physics and residual grids",
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
