"""The CPU calibration path end to end, measured for real: CSVs, report, profile written, read back and used."""

import csv
import re

import numpy as np
import pytest

from llmsim.calibration.measurements import OP_CLASSES
from llmsim.cli import main
from llmsim.cost.calibrated import CalibratedTimer
from llmsim.cost.step import CostModel
from llmsim.specs import load_hardware, load_model
from llmsim.specs.hardware import load_hardware_file


def test_command_writes_profile_csvs_and_report(cpu_run):
    code, out, data = cpu_run
    assert code == 0
    for name in ("gemm", "attn_prefill", "attn_decode", "elementwise", "launch"):
        rows = list(csv.DictReader((data / f"{name}.csv").open()))
        assert rows, name
        for row in rows:
            assert float(row["median_s"]) > 0 and float(row["spread"]) >= 0 and int(row["samples"]) >= 1
    report = (data / "report.md").read_text()
    assert "CPU run" in report and "| gemm |" in report and "median after" in report
    assert (data / "predicted_vs_measured.png").stat().st_size > 1000
    assert out.is_file() and not list(out.parent.glob("*.csv"))  # only --out and --data-dir are written


def test_profile_reads_back_with_environment_and_fit(cpu_run):
    _, out, _ = cpu_run
    hw = load_hardware_file(out)
    assert hw.name == "tiny-cpu"
    cal = hw.calibration
    env = cal["environment"]
    assert env["device"] == "cpu" and env["torch"] and env["command"].startswith("llmsim calibrate")
    assert set(OP_CLASSES) <= set(cal)
    assert hw.overheads.kernel_launch_s == pytest.approx(cal["launch_s"])
    for cls in OP_CLASSES:
        errors = cal["heldout_error"]["heldout_points"][cls]
        assert errors["n"] >= 1 and errors["median_after"] >= 0


def test_profile_is_tidy_yaml(cpu_run):
    _, out, _ = cpu_run
    text = out.read_text()
    assert text.startswith("# tiny-cpu: written by `llmsim calibrate`")
    # every exponent number has a dot and a signed exponent, so PyYAML reads it as a float
    for number in re.findall(r"(?<![\w.])\d[\d.]*e[-+]?\d+", text):
        assert re.fullmatch(r"\d+\.\d+e[-+]\d\d", number), number


def test_loadable_by_name(cpu_run, monkeypatch):
    _, out, _ = cpu_run
    monkeypatch.setenv("LLMSIM_HARDWARE_PATH", str(out.parent))
    assert load_hardware("tiny-cpu").calibration is not None


def test_cost_model_uses_the_calibrated_numbers(cpu_run, tiny_model_path):
    _, out, _ = cpu_run
    hw = load_hardware_file(out)
    cm = CostModel(load_model(str(tiny_model_path)), hw)
    assert isinstance(cm.timer, CalibratedTimer)
    rows = {r.name: r for r in cm.operator_costs([1] * 4, [100] * 4)}
    assert rows["qkv_proj"].source == "interpolated"
    assert rows["attn_decode"].source == "interpolated"
    far = {r.name: r for r in cm.operator_costs([1] * 4, [100_000] * 4)}
    assert far["attn_decode"].source == "extrapolated"
    assert {r.source for r in rows.values()} <= {"interpolated", "extrapolated", "roofline"}
    # vectorised decode runs agree with step-by-step steps
    run = cm.decode_run_s([100] * 4, 3)
    for k in range(3):
        assert run[k] == pytest.approx(cm.step_time([1] * 4, [100 + k] * 4).total_s, rel=1e-9)


def test_estimate_breakdown_shows_sources(cpu_run, tiny_model_path, capsys):
    _, out, _ = cpu_run
    assert main(["estimate", "--model", str(tiny_model_path), "--hardware", str(out), "--batch-size", "2",
                 "--input-len", "32", "--output-len", "8", "--breakdown"]) == 0
    text = capsys.readouterr().out
    assert "interpolated" in text


def test_fit_passes_through_measured_points(cpu_run):
    """A measured shape predicts its own measured time (launch included), up to the stored 4 digits."""
    from llmsim.calibration.measurements import read_csvs

    _, out, data = cpu_run
    timer = CalibratedTimer(load_hardware_file(out))
    gemms = [m for m in read_csvs(data) if m.case.op_class == "gemm"]
    pred = np.array([float(timer.time(m.operator).total_s) for m in gemms])
    meas = np.array([m.median_s for m in gemms])
    kernel_floor = 0.1 * meas + timer.time(gemms[0].operator).launch_s  # launch-dominated calls
    exact = (np.abs(pred - meas) <= 1e-3 * meas) | (pred <= kernel_floor)
    # isolated spikes (>= 1.5x both neighbours) are noise: the fit replaced them, and says how many
    notes = " ".join(load_hardware_file(out).calibration.get("notes", []))
    spikes = int(re.search(r"(\d+) isolated spikes", notes).group(1)) if "isolated spikes" in notes else 0
    assert np.count_nonzero(~exact) <= spikes


def test_refit_from_csv_reproduces_the_profile(cpu_run, tmp_path):
    _, out, data = cpu_run
    again = tmp_path / "tiny-cpu.yaml"
    assert main(["calibrate", "--device", "cpu", "--from-csv", str(data), "--out", str(again),
                 "--data-dir", str(tmp_path / "data")]) == 0
    a, b = load_hardware_file(out).calibration, load_hardware_file(again).calibration
    from llmsim.calibration.fit import gemm_families

    for cls in ("gemm", "attn_decode"):  # equal up to the digits the CSVs and run.yaml keep
        fams_a, fams_b = (gemm_families(x[cls]) if cls == "gemm" else x[cls] for x in (a, b))
        for fa, fb in zip(fams_a, fams_b, strict=True):
            assert np.allclose(np.array(fa["ratio"]), np.array(fb["ratio"]), rtol=2e-3)
