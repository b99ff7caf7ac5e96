"""Interrupts and partial files: Ctrl-C stops a run at once with one line on how to resume (exit 130),
workers die with a killed parent, and files left by a killed write are removed on resume."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from llmsim.cli import main
from llmsim.experiment.results import read_table, remove_partial_files

pytestmark = pytest.mark.e2e

SWEEP = {  # 8 points of a few seconds each: long enough to interrupt in the middle
    "name": "intr",
    "model": "llama-3.1-8b",
    "hardware": "h100-sxm",
    "workload": {"arrival": {"kind": "poisson", "rate_per_s": 20.0},
                 "input_len": {"kind": "fixed", "value": 200}, "output_len": {"kind": "fixed", "value": 400}},
    "stop": {"num_requests": 3000},
    "seeds": [0, 1],
    "sweep": {"grid": {"workload.arrival.rate_per_s": [10.0, 20.0, 30.0, 40.0]}},
}


LAUNCH = "import multiprocessing, sys; multiprocessing.set_start_method({!r}); from llmsim.cli import main; " \
         "sys.exit(main(sys.argv[1:]))"


def _start(tmp_path, jobs: int, *extra: str, method: str = "fork") -> tuple[subprocess.Popen, object]:
    """Start a run and wait until its points are running (for Dask: its cluster has started)."""
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(SWEEP))
    out = tmp_path / "res"
    proc = subprocess.Popen([sys.executable, "-c", LAUNCH.format(method), "run", str(path), "--out", str(out),
                             "--jobs", str(jobs), "--no-plots", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True,  # its own process group, as a shell job has
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    ready = "Dask cluster of" if "dask" in extra else "to run"
    while ready not in _text(out / "run.log"):  # preflight done, points started
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else ""
        time.sleep(0.1)
    time.sleep(1.0)
    return proc, out


def _text(path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _group(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group."""
    alive = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                alive.append(int(pid))
    return alive


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize(("jobs", "extra", "within_s"), [(1, (), 5.0), (2, (), 5.0),
                                                         (2, ("--executor", "dask"), 15.0)])
def test_ctrl_c_stops_at_once_and_says_how_to_resume(tmp_path, jobs, extra, within_s):
    if extra:
        pytest.importorskip("distributed")
    proc, out = _start(tmp_path, jobs, *extra)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole foreground group
    t0 = time.monotonic()
    _, err = proc.communicate(timeout=60)
    assert time.monotonic() - t0 < within_s  # Dask closes its cluster, killing busy workers after 4 s
    assert proc.returncode == 130
    assert "Traceback" not in err and "WARNING" not in err
    last = err.replace("\r", "\n").strip().splitlines()[-1]
    done = len(list((out / "points").glob("*/summary.json")))
    assert last == (f"interrupted: {done} of 8 points are done and kept in {out}/; run the same command again "
                    "to resume (finished points are skipped)")
    assert done < 8
    time.sleep(0.5)
    assert _group(proc.pid) == []  # no worker left running


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("method", ["fork", "forkserver"])  # forkserver: the workers' parent is a helper
def test_workers_die_with_a_killed_parent(tmp_path, method):
    """Each of the two mechanisms (kernel signal, watcher thread) suffices under fork; forkserver needs the
    watcher's check on the main process."""
    proc, _ = _start(tmp_path, 2, method=method)
    workers = [p for p in _group(proc.pid) if p != proc.pid]
    assert len(workers) >= 2
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)  # not communicate(): survivors would hold its pipes open
    proc.stdout.close()
    proc.stderr.close()
    deadline = time.monotonic() + 5.0
    while _group(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _group(proc.pid) == []


SMALL = {**SWEEP, "stop": {"num_requests": 20}, "seeds": [0],
         "sweep": {"grid": {"workload.arrival.rate_per_s": [5.0, 10.0]}}}


def test_resume_removes_partial_files_and_reruns_unreadable_points(tmp_path, capsys):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(SMALL))
    out = tmp_path / "res"
    assert main(["run", str(path), "--out", str(out), "--no-plots"]) == 0
    ids = sorted(read_table(out / "summary")["point_id"])
    partial = [out / "points" / ids[0] / ".steps.csv.k2j_8xq1", out / "points" / ids[1] / ".requests.parquet.a1b2c3d4",
               out / ".summary.csv.zz99yy88"]
    keep = [out / "points" / ids[0] / ".notes", out / "points" / ids[0] / ".steps.csv.short"]
    for p in partial + keep:
        p.write_text("partial")
    spill = out / "points" / ids[0] / ".steps.spill"  # the step rows of a point killed while it ran
    spill.mkdir()
    (spill / "start_s.bin").write_bytes(b"\0" * 16)
    (out / "points" / ids[1] / "summary.json").write_text('{"throughput_rps": 1.')  # cut short
    capsys.readouterr()
    assert main(["run", str(path), "--out", str(out), "--no-plots"]) == 0
    assert not any(p.exists() for p in partial) and all(p.exists() for p in keep) and not spill.exists()
    assert json.loads((out / "points" / ids[1] / "summary.json").read_text())["num_finished"] == 20
    assert "unreadable" in capsys.readouterr().err
    log = (out / "run.log").read_text()
    assert log.count("left by an interrupted write") == 4


def test_remove_partial_files_on_an_empty_folder(tmp_path):
    assert remove_partial_files(tmp_path / "absent") == [] and remove_partial_files(tmp_path) == []
