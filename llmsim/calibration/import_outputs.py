"""``llmsim calibrate --import``: fit imported kernel timings into a profile, with a report of the fit.

The fit is the one ``--device`` runs use (``llmsim.calibration.fit``); what differs is the bookkeeping:
the imported rows are someone else's data, so they are not copied into the repository (the report names the
files), and the base profile's kernel-launch gap, efficiencies and overheads are kept (the rows were timed
without launch gaps unless the importer says so, and they say nothing about CPU-side costs).
"""

from __future__ import annotations

import datetime as dt
import shlex
from pathlib import Path
from typing import Any

from llmsim.calibration.fit import error_table
from llmsim.calibration.holdout import fitted_block, heldout_families, heldout_points, heldout_ranks
from llmsim.calibration.import_report import write_import_report
from llmsim.calibration.importers import Imported
from llmsim.calibration.profile import build_profile, dump_profile, profile_yaml_data
from llmsim.cost.calibrated import CalibratedTimer
from llmsim.errors import ConfigError
from llmsim.specs import HardwareSpec, hardware_from_dict, load_hardware
from llmsim.specs.hardware import load_hardware_file

METHOD = ("imported kernel timings; per class and dtype the structural kernel model (llmsim.cost.kernels: "
          "tile and wave quantisation, fixed time per kernel, FlashAttention tiles, grouped MoE GEMMs; "
          "all-reduce by algorithm) with constants fitted by robust least squares, times a residual ratio "
          "measured / model interpolated in log space over the measured grid (GEMM: over M per (N, K), "
          "bilinearly between (N, K) families; attention: over (sequences, length) per head layout, between "
          "layouts; MoE: over tokens per expert layout) and held at the edge value outside it")


def _environment(imp: Imported, argv: list[str]) -> dict[str, Any]:
    return {"device": "import", "name": imp.device or "unknown GPU",
            "date": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
            "command": shlex.join(["llmsim", *argv]), "sources": list(imp.sources)}


def build_import_profile(imp: Imported, base_hw: HardwareSpec, name: str, argv: list[str],
                         errors: dict | None = None, notes: list[str] | None = None) -> dict:
    """The profile mapping: the base profile (its efficiencies and overheads untouched: they time what the
    data do not cover) + the fitted ``calibration:`` block."""
    base = profile_yaml_data(base_hw)
    fit_notes: list[str] = []
    blocks = fitted_block(imp.measurements, base_hw, 0.0, fit_notes)
    block: dict[str, Any] = {"format": blocks.pop("format"), "method": METHOD, "base": base_hw.name,
                             "environment": _environment(imp, argv),
                             "reference": {"peak_flops_per_s": dict(base_hw.peak_flops_per_s),
                                           "hbm_bytes_per_s": base_hw.hbm_bytes_per_s},
                             "launch_s": 0.0}
    if errors is not None:
        block["heldout_error"] = errors
    all_notes = list(imp.notes) + fit_notes + list(notes or [])
    if all_notes:
        block["notes"] = all_notes
    block.update(blocks)
    desc = f"{base.get('description', base_hw.name)}; calibrated from imported kernel timings ({imp.device or '?'})"
    return build_profile(base, name, desc, {}, base_hw.overheads.kernel_launch_s, block)


def heldout_errors(imp: Imported, base_hw: HardwareSpec) -> dict[str, dict]:
    base = profile_yaml_data(base_hw)
    ms, launch = imp.measurements, imp.launch_included
    points = error_table(heldout_points(ms, base_hw, base, 0.0, launch))
    families = error_table(heldout_families(ms, base_hw, base, 0.0, launch))
    ranks = error_table(heldout_ranks(ms, base_hw, base))
    return {"heldout_points": points, "unseen_families": families, "unseen_tp_sizes": ranks}


def write_import_outputs(imp: Imported, base_name: str, out: Path, report_dir: Path, argv: list[str]) -> list[Path]:
    """Fit, check on held-out points, families and TP sizes, write the profile (read back) and the report."""
    if not imp.measurements:
        raise ConfigError("nothing was imported; nothing to fit")
    base_hw = load_hardware(base_name)
    profile = build_import_profile(imp, base_hw, out.stem, argv, heldout_errors(imp, base_hw))
    CalibratedTimer(hardware_from_dict(profile))  # validate before writing anything the simulator will read
    env = profile["calibration"]["environment"]
    header = [f"{out.stem}: written by `llmsim calibrate --import` on {env['date']}",
              f"command: {env['command']}",
              f"base profile: {base_name}; fit report: {report_dir / 'report.md'}",
              "kernel data: " + "; ".join(imp.sources),
              "calibration: holds the fitted kernel physics and residual grids; efficiency, kernels and overheads "
              "are the base profile's (they time what the data do not cover; CPU-side costs are not fitted here)"]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(dump_profile(profile, header))
    hw = load_hardware_file(out)
    if hw.calibration is None or hw.name != out.stem:
        raise RuntimeError(f"{out}: the profile did not read back as written")
    return [out, *write_import_report(report_dir, imp, profile, out)]
