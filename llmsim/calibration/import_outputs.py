"""``llmsim calibrate --import``: fit imported kernel timings into a profile, with a report of the fit.

The fit is the one ``--device`` runs use (``llmsim.calibration.fit``); what differs is the bookkeeping:
the imported rows are someone else's data, so they are not copied into the repository (the report names the
files), the kernel-launch gap of the base profile is kept (the rows were timed without one unless the
importer says so), and the held-out check leaves out whole shape families cheaply (each family's ratio grid
is fitted on its own rows only, so dropping it from the block is the same as refitting without it).
"""

from __future__ import annotations

import datetime as dt
import shlex
from pathlib import Path
from typing import Any

from llmsim.calibration.collectives import fit_allreduce
from llmsim.calibration.fit import error_table, fit_blocks, fitted_efficiency, predict, split_heldout
from llmsim.calibration.import_report import write_import_report
from llmsim.calibration.importers import Imported
from llmsim.calibration.measurements import Measurement
from llmsim.calibration.profile import build_profile, dump_profile, profile_yaml_data
from llmsim.cost.calibrated import CalibratedTimer
from llmsim.errors import ConfigError
from llmsim.specs import HardwareSpec, hardware_from_dict, load_hardware
from llmsim.specs.hardware import load_hardware_file

FORMAT = 1
METHOD = ("imported kernel timings; ratio measured / unit-efficiency roofline per shape family, interpolated "
          "piecewise-linearly in log space (GEMM: over M per (dtype, N, K), and bilinearly over (N, K) between "
          "measured families; attention: over (sequences, length) per head layout), held at the edge value "
          "outside the measured range")


def _allreduce_block(ms: list[Measurement], kind: str) -> list[dict[str, Any]]:
    groups: dict[int, list[Measurement]] = {}
    for m in ms:
        if m.case.op_class == "allreduce" and m.case.kind == kind:
            groups.setdefault(m.case["ranks"], []).append(m)
    out = []
    for ranks, rows in sorted(groups.items()):
        rows.sort(key=lambda m: m.case["bytes"])
        out.append({**fit_allreduce(rows), "ranks": ranks, "bytes": [m.case["bytes"] for m in rows],
                    "seconds": [float(f"{m.median_s:.5g}") for m in rows]})
    return out


def _environment(imp: Imported, argv: list[str]) -> dict[str, Any]:
    return {"device": "import", "name": imp.device or "unknown GPU",
            "date": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
            "command": shlex.join(["llmsim", *argv]), "sources": list(imp.sources)}


def build_import_profile(imp: Imported, base_hw: HardwareSpec, name: str, argv: list[str],
                         measurements: list[Measurement] | None = None, errors: dict | None = None) -> dict:
    """The profile mapping: base profile + fitted efficiencies + ``calibration:`` block of ``measurements``."""
    ms = imp.measurements if measurements is None else measurements
    base = profile_yaml_data(base_hw)
    blocks = fit_blocks(ms, base_hw, launch_s=0.0)
    efficiency = fitted_efficiency(blocks)
    allreduce = _allreduce_block(ms, "custom_graph") or _allreduce_block(ms, "nccl")
    block: dict[str, Any] = {"format": FORMAT, "method": METHOD, "base": base_hw.name,
                             "environment": _environment(imp, argv),
                             "reference": {"peak_flops_per_s": dict(base_hw.peak_flops_per_s),
                                           "hbm_bytes_per_s": base_hw.hbm_bytes_per_s},
                             "launch_s": 0.0}
    if errors is not None:
        block["heldout_error"] = errors
    unfitted = sorted({m.case.op_class for m in ms} - set(blocks) - {"allreduce"})
    notes = list(imp.notes) + [f"{cls}: imported but not fitted yet; predicted by the base roofline"
                               for cls in unfitted]
    if notes:
        block["notes"] = notes
    block.update(blocks)
    if allreduce:
        block["allreduce"] = allreduce
    desc = f"{base.get('description', base_hw.name)}; calibrated from imported kernel timings ({imp.device or '?'})"
    launch = base_hw.overheads.kernel_launch_s
    return build_profile(base, name, desc, efficiency, launch, block)


def family_holdout_fast(measurements: list[Measurement], profile: dict, base_hw: HardwareSpec,
                        with_launch: bool = False):
    """Leave each shape family out of the fitted block in turn and predict it from the others."""
    from llmsim.calibration.fit import _axis  # noqa: PLC0415 (the family key the fit groups by)

    cal = profile["calibration"]
    preds = []
    by_family: dict[tuple, list[Measurement]] = {}
    for m in measurements:
        if m.case.op_class in ("gemm", "attn_prefill", "attn_decode"):
            by_family.setdefault(_axis(m)[0], []).append(m)
    for fam, ms in by_family.items():
        cls = fam[0]
        key = _family_key(fam)
        rest = [f for f in cal.get(cls, []) if _block_key(cls, f) != key]
        if not rest:
            continue
        hw = hardware_from_dict({**profile, "calibration": {**cal, cls: rest}})
        preds += predict(ms, base_hw, hw, with_launch=with_launch)
    return preds


def _family_key(fam: tuple) -> tuple:
    return tuple(fam[1:])


def _block_key(cls: str, f: dict) -> tuple:
    if cls == "gemm":
        return (f["dtype"], f["n"], f["k"])
    return (f["dtype"], f["heads"], f["kv_heads"], f["head_dim"])


def write_import_outputs(imp: Imported, base_name: str, out: Path, report_dir: Path, argv: list[str]) -> list[Path]:
    """Fit, check on held-out points and families, write the profile (read back) and the report."""
    if not imp.measurements:
        raise ConfigError("nothing was imported; nothing to fit")
    base_hw = load_hardware(base_name)
    fit_set, held = split_heldout(imp.measurements)
    half = hardware_from_dict(build_import_profile(imp, base_hw, "heldout-fit", argv, fit_set))
    points = error_table(predict(held, base_hw, half, with_launch=imp.launch_included))
    full = build_import_profile(imp, base_hw, out.stem, argv)
    unseen = error_table(family_holdout_fast(imp.measurements, full, base_hw, imp.launch_included))
    errors = {"heldout_points": points, "unseen_families": unseen}
    profile = build_import_profile(imp, base_hw, out.stem, argv, errors=errors)
    CalibratedTimer(hardware_from_dict(profile))  # validate before writing anything the simulator will read
    header = [f"{out.stem}: written by `llmsim calibrate --import` on {profile['calibration']['environment']['date']}",
              f"command: {profile['calibration']['environment']['command']}",
              f"base profile: {base_name}; fit report: {report_dir / 'report.md'}",
              "kernel data: " + "; ".join(imp.sources),
              "efficiency is fitted on the imported kernels; overheads are the base profile's (not fitted here)"]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(dump_profile(profile, header))
    hw = load_hardware_file(out)
    if hw.calibration is None or hw.name != out.stem:
        raise RuntimeError(f"{out}: the profile did not read back as written")
    return [out, *write_import_report(report_dir, imp, profile, out)]
