"""CLI conventions: --version, help texts, exit codes, progress on stderr, --set overrides, file modes,
a fast estimate that imports none of the simulator."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from llmsim.cli import main
from llmsim.experiment import progress
from llmsim.experiment.results import read_table

SMALL = {
    "name": "small", "model": "llama-3.1-8b", "hardware": "h100-sxm", "scheduler": {"kind": "vllm"},
    "workload": {"arrival": {"kind": "poisson", "rate_per_s": 4.0},
                 "input_len": {"kind": "uniform", "low": 64, "high": 512},
                 "output_len": {"kind": "uniform", "low": 8, "high": 64}},
    "slo": {"ttft_s": 0.5, "tpot_s": 0.05}, "stop": {"num_requests": 60, "warmup_requests": 5}, "seeds": [0],
    "sweep": {"grid": {"workload.arrival.rate_per_s": [2.0, 8.0]}},
}


def _write(tmp_path, data):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_version_and_exit_codes_in_help(capsys):
    from llmsim import __version__

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"llmsim {__version__}"
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "exit codes:" in text and "2    bad input" in text and "run" in text and "compare" in text


@pytest.mark.parametrize(("argv", "expected"), [
    (["estimate", "--help"], ["(default 0.9)", "(default 16)", "prompt tokens per sequence", "exit codes:"]),
    (["plot", "--help"], ["results directory written by `llmsim run`"]),
    (["compare", "--help"], ["results directories written by `llmsim run`", "--metrics"]),
    (["run", "--help"], ["--set KEY=VALUE", "(default 1)"]),
])
def test_help_texts(capsys, argv, expected):
    with pytest.raises(SystemExit):
        main(argv)
    text = capsys.readouterr().out
    for snippet in expected:
        assert snippet in " ".join(text.split()), snippet


def test_estimate_imports_none_of_the_simulator():
    code = ("import sys, io, contextlib\nfrom llmsim.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    main(['estimate', '--model', 'llama-3.1-8b', '--hardware', 'h100-sxm', '--batch-size', '8',"
            " '--input-len', '512', '--output-len', '128'])\n"
            "print(sorted(m for m in ('pandas', 'scipy', 'simpy', 'matplotlib', 'llmsim.workload.describe')"
            " if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_progress_goes_to_stderr_not_into_the_table(tmp_path, capsys):
    assert main(["run", str(_write(tmp_path, SMALL)), "--out", str(tmp_path / "res"), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert "sweep points" not in out and "━" not in out
    assert out.lstrip().splitlines()[1].split()[:2] == ["rate", "status"]


def test_track_reports_requests_and_simulated_time_without_changing_them():
    seen = []
    progress.set_sink(lambda *a: seen.append(a))
    try:
        items = [type("R", (), {"arrival_s": float(i)})() for i in range(200)]
        assert list(progress.track(iter(items), "p1", 200)) == items
    finally:
        progress.set_sink(None)
    assert seen[-1] == ("p1", 200, 200, 199.0)
    assert list(progress.track(iter(items), "p1", 200)) == items  # no sink: a plain pass-through


def test_set_overrides_a_field_and_a_swept_key(tmp_path):
    out = tmp_path / "res"
    argv = ["run", str(_write(tmp_path, SMALL)), "--out", str(out), "--no-plots",
            "--set", "stop.num_requests=30", "--set", "workload.arrival.rate_per_s=3"]
    assert main(argv) == 0
    summary = read_table(out / "summary")
    assert list(summary["sweep.workload.arrival.rate_per_s"]) == [3.0]  # the one point asked for
    req = read_table(out / "points" / summary["point_id"].iloc[0] / "requests")
    assert len(req) == 30
    written = (out / "experiment.yaml").read_text()
    assert written.startswith("# ") and "--set stop.num_requests=30" in written.splitlines()[0]
    assert yaml.safe_load(written)["stop"]["num_requests"] == 30  # re-runnable as it stands


def test_set_into_a_named_workload_and_into_the_sweep(tmp_path):
    from llmsim.experiment.runner import run_experiment

    data = {**SMALL, "workload": "chat", "sweep": {}, "stop": {"num_requests": 40}}
    res = run_experiment(_write(tmp_path, data), overrides=("workload.arrival.rate_per_s=9",))
    assert list(res.summary["sweep.workload.arrival.rate_per_s"]) == [9]
    res = run_experiment(_write(tmp_path, data), overrides=("sweep.grid.layout.tp=[1, 2]",))
    assert sorted(res.summary["tp"]) == [1, 2]
    zipped = {**SMALL, "stop": {"num_requests": 40},
              "sweep": {"zip": {"workload.arrival.rate_per_s": [2, 8], "scheduler.max_num_seqs": [8, 16]}}}
    res = run_experiment(_write(tmp_path, zipped), overrides=("workload.arrival.rate_per_s=3",))
    assert list(res.summary["sweep.workload.arrival.rate_per_s"]) == [3, 3]
    assert list(res.summary["sweep.scheduler.max_num_seqs"]) == [8, 16]


@pytest.mark.parametrize(("override", "message"), [
    ("stop.num_requests", "--set: expected KEY=VALUE"),
    ("model.name=x", "--set model.name: model.name: 'model' is not a mapping, so 'name' cannot be set in it"),
    ("stop.num_requests=[unclosed", "--set stop.num_requests: '[unclosed' is not a YAML value"),
    ("stop.num_requests=-3", "stop.num_requests: must be a positive integer, got -3"),
])
def test_bad_set_exits_2_with_one_line(tmp_path, capsys, override, message):
    argv = ["run", str(_write(tmp_path, SMALL)), "--out", str(tmp_path / "res"), "--no-plots", "--set", override]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_result_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        out = tmp_path / "res"
        assert main(["run", str(_write(tmp_path, {**SMALL, "sweep": {}})), "--out", str(out), "--no-plots"]) == 0
    finally:
        os.umask(old)
    files = [p for p in out.rglob("*") if p.is_file()]
    assert files and {oct(p.stat().st_mode & 0o777) for p in files} == {"0o644"}
