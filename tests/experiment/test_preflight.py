"""Preflight: every point of a sweep is checked (names, blocks, memory fit, run size) before any point runs,
and each error names the file, the sweep point and the field."""

import json
import re
from types import SimpleNamespace

import pytest
import yaml

from llmsim.cli import main
from llmsim.errors import ConfigError
from llmsim.experiment import limits
from llmsim.experiment.limits import check_run_size
from llmsim.workload import load_workload

BASE = {
    "name": "pre",
    "model": "llama-3.1-8b",
    "hardware": "h100-sxm",
    "scheduler": {"kind": "vllm"},
    "workload": {"arrival": {"kind": "poisson", "rate_per_s": 4.0},
                 "input_len": {"kind": "fixed", "value": 100}, "output_len": {"kind": "fixed", "value": 10}},
    "stop": {"num_requests": 30},
}


def _run(tmp_path, capsys, data):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    out = tmp_path / "res"
    code = main(["run", str(path), "--out", str(out), "--no-plots"])
    return code, capsys.readouterr().err, path, out


def test_a_late_sweep_point_that_does_not_fit_fails_before_any_point_runs(tmp_path, capsys, monkeypatch):
    ran = []
    monkeypatch.setattr("llmsim.experiment.runner.run_point", lambda p, **kw: ran.append(p) or ({}, None, None))
    data = {**BASE, "sweep": {"grid": {"model": ["llama-3.1-8b", "qwen2.5-7b", "llama-3.1-405b"]}}}
    code, err, path, out = _run(tmp_path, capsys, data)
    assert code == 2 and ran == [] and not out.exists()
    assert err.startswith(f"error: {path} (sweep point model=llama-3.1-405b): layout: llama-3.1-405b does not "
                          "fit on h100-sxm with tp=1 pp=1")


@pytest.mark.parametrize(("patch", "message"), [
    ({"kv": {"kind": "bogus"}}, r"kv: unknown KV manager 'bogus'; valid: contiguous, paged, prefix"),
    ({"kv": {"kind": "paged", "block_size": 0}}, r"kv\.block_size: expected a positive integer, got 0"),
    ({"kv": {"kind": "paged", "block_size": "16"}}, r"kv\.block_size: expected a positive integer, got '16'"),
    ({"kv": {"kind": "paged", "num_blocks": -1}}, r"kv\.num_blocks: expected a positive integer"),
    ({"kv": {"kind": "paged", "swap_space_gb": float("nan")}}, r"kv\.swap_space_gb: expected a finite number"),
    ({"kv": {"kind": "paged", "watermark": 3}}, r"kv: \"watermark\" must be in \[0, 1\), got 3"),
    ({"layout": {"tp": 3}}, r"layout\.tp: tp=3 does not divide the 32 attention heads of llama-3\.1-8b"),
    ({"layout": {"pp": 64}}, r"layout\.pp: pp=64 exceeds the 32 layers"),
    ({"hardware": "a100-sxm-80gb", "precision": "fp8"}, r"precision: hardware a100-sxm-80gb has no fp8 peak"),
    ({"kv_dtype": "fp9"}, r"precision: kv_dtype: unknown 'fp9'"),
    ({"model": "gpt-9"}, r"model: unknown model 'gpt-9'"),
    ({"slo": {"ttft_s": float("inf")}}, r"slo\.ttft_s: input should be a finite number, got inf"),
    ({"frontend_overhead_s": float("nan")}, r"frontend_overhead_s: input should be a finite number, got nan"),
    ({"stop": {"num_requests": 30, "warmup_requests": 30}},
     r"stop\.warmup_requests: 30 leaves none of the 30 requests to summarise"),
    ({"stop": {"duration_s": 10, "warmup_s": 12}}, r"stop\.warmup_s: 12\.0 leaves none of the 10\.0 s run"),
    ({"stop": {"num_requests": 10**11}}, r"stop\.num_requests: 100,000,000,000 requests need at least"),
    ({"stop": {"num_requests": None, "duration_s": 1e12}}, r"stop\.duration_s: 4,000,000,000,001 requests need"),
    ({"sweep": {"grid": {"seeds": [[i] for i in range(101)], "workload.arrival.rate_per_s": list(range(1, 101))}}},
     r"sweep: 10,100 points x 1 seed\(s\) = 10,100 runs; at most 10,000"),
])
def test_preflight_errors_name_file_and_field(tmp_path, capsys, patch, message):
    code, err, path, out = _run(tmp_path, capsys, {**BASE, **patch})
    assert code == 2 and "Traceback" not in err and not out.exists()
    assert len(err.splitlines()) == 1
    assert re.match(rf"error: {path}( \(sweep point [^)]*\))?: {message}", err), err


def test_a_hardware_file_error_names_both_files(tmp_path, capsys):
    hw = tmp_path / "hw.yaml"
    hw.write_text("name: x\nhbm_bytes: .nan\n")
    code, err, path, _ = _run(tmp_path, capsys, {**BASE, "hardware": str(hw)})
    assert code == 2 and err == f"error: {path}: hardware: {hw}: hbm_bytes: expected a finite number > 0, got nan\n"


def test_trace_warnings_are_printed_once_and_kept_in_the_log(tmp_path, capsys):
    trace = tmp_path / "t.jsonl"
    rows = [(0, 50), (2000, 60), (1000, 70), (3000, 80)]  # line 3 goes back 1 s
    trace.write_text("".join(json.dumps({"timestamp": t, "input_length": n, "output_length": 4}) + "\n"
                             for t, n in rows))
    data = {**BASE, "workload": {"trace": {"path": str(trace)}}, "stop": {"num_requests": 4},
            "seeds": [0, 1], "sweep": {"grid": {"scheduler.max_num_seqs": [8, 16]}}}
    code, err, _, out = _run(tmp_path, capsys, data)
    assert code == 0
    expected = f"warning: {trace}: 1 row(s) go back in time (first at line 3, 1 s before an earlier row)"
    assert err.count(expected) == 1
    assert expected.removeprefix("warning: ") in (out / "run.log").read_text()


def test_warmup_longer_than_a_replayed_trace(tmp_path, capsys):
    trace = tmp_path / "t.jsonl"
    trace.write_text("".join(json.dumps({"timestamp": 100 * i, "input_length": 9, "output_length": 3}) + "\n"
                             for i in range(5)))
    data = {**BASE, "workload": {"trace": {"path": str(trace)}}, "stop": {"num_requests": 50, "warmup_requests": 5}}
    code, err, path, _ = _run(tmp_path, capsys, data)
    assert code == 2
    assert err == (f"error: {path}: stop.warmup_requests: 5 leaves nothing to summarise of the 5 requests in the "
                   "trace; lower it\n")


def test_run_size_floor_by_hand():
    # fixed 256-token outputs, max_num_seqs 256: at least one step row (80 B) per request on top of its own
    # row (208 B), so 288 B per request; 90 % of 1 GB admits 0.9e9 / 288 = 3,125,000 requests
    spec = load_workload({"arrival": {"kind": "poisson", "rate_per_s": 1.0},
                          "input_len": {"kind": "fixed", "value": 10},
                          "output_len": {"kind": "fixed", "value": 256}})
    stop = SimpleNamespace(num_requests=3_125_000, duration_s=None, warmup_requests=0)
    assert check_run_size("f", stop, spec, 256, 4096, available=1e9) == 3_125_000
    stop.num_requests = 3_125_001
    with pytest.raises(ConfigError, match=r"^f: stop\.num_requests: 3,125,001 requests need at least 0\.9 GB for "
                                          r"their records \(0\.3 kB each, steps included\), but only 1\.0 GB is "
                                          r"free here: at most about 3,125,000 requests fit"):
        check_run_size("f", stop, spec, 256, 4096, available=1e9)
    # a duration caps the count at rate x duration (+1): 2 req/s for 100 s is 201 requests at most
    stop = SimpleNamespace(num_requests=None, duration_s=100.0, warmup_requests=0)
    spec2 = load_workload({"arrival": {"kind": "poisson", "rate_per_s": 2.0},
                           "input_len": {"kind": "fixed", "value": 10}, "output_len": {"kind": "fixed", "value": 2}})
    assert check_run_size("f", stop, spec2, 256, 4096, available=1e9) == pytest.approx(201.0)


def test_available_memory_is_read_from_the_os():
    mem = limits.available_memory_bytes()
    assert mem is None or 1e8 < mem < 1e15
