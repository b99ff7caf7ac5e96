"""A battery of malformed inputs, tried as a new user would: each must exit 2 with one line
``error: FILE: field: ...`` naming the file (or flag) and the field, no traceback, nothing run or written,
in bounded time (and, for the hostile ones, bounded memory in a separate process)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from llmsim.cli import main

REPO = Path(__file__).parents[2]
H100 = REPO / "hardware_profiles" / "h100-sxm.yaml"
BASE = {
    "name": "battery",
    "model": "llama-3.1-8b",
    "hardware": "h100-sxm",
    "scheduler": {"kind": "vllm"},
    "workload": {"arrival": {"kind": "poisson", "rate_per_s": 2.0},
                 "input_len": {"kind": "fixed", "value": 100}, "output_len": {"kind": "fixed", "value": 10}},
    "stop": {"num_requests": 40},
}
# billion laughs: level i lists level i-1 nine times (9**9 leaves); as mapping entries and as a flow list
BOMB = "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}' if i else 'lol'] * 9)}]\n" for i in range(9))
BOMB_ITEMS = ", ".join(f"&l{i} [{', '.join([f'*l{i - 1}' if i else 'lol'] * 9)}]" for i in range(9))
ESTIMATE = ["estimate", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--batch-size", "4",
            "--input-len", "128", "--output-len", "16"]


def _yaml(tmp: Path, name: str, data) -> Path:
    path = tmp / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def _bytes(tmp: Path, name: str, data: bytes) -> Path:
    path = tmp / name
    path.write_bytes(data)
    return path


def _exp(tmp: Path, **patch) -> Path:
    return _yaml(tmp, "exp.yaml", {**BASE, **patch})


def _profile(tmp: Path, edit) -> Path:
    data = yaml.safe_load(H100.read_text())
    edit(data)
    return _yaml(tmp, "gpu.yaml", data)


def _hf(tmp: Path, **patch) -> Path:
    cfg = {**json.loads((REPO / "llmsim" / "specs" / "models" / "llama-3.1-8b.json").read_text()), **patch}
    path = tmp / "config.json"
    path.write_text(json.dumps(cfg))
    return path


def _trace(tmp: Path, rows: list[str]) -> Path:
    path = tmp / "trace.jsonl"
    path.write_text("\n".join(rows) + "\n")
    return path


def _run(path: Path) -> list[str]:
    return ["run", str(path), "--out", str(path.parent / "results"), "--no-plots"]


# (case name, builder(tmp) -> (argv, [fragments that must appear in the error line]))
CASES = {
    "yaml alias bomb": lambda t: (  # inside a free-form block, where only a walk of the result would notice
        _run(_yaml(t, "exp.yaml", yaml.safe_dump({k: v for k, v in BASE.items() if k != "scheduler"})
                   + "scheduler:\n  kind: vllm\n" + "".join(f"  {line}\n" for line in BOMB.splitlines()))),
        ["exp.yaml: scheduler.l5: expands to more than 200,000 nodes"]),
    "alias bomb inside a sweep": lambda t: (
        _run(_yaml(t, "exp.yaml", yaml.safe_dump(BASE) + f"sweep: {{grid: {{scheduler.extra: [{BOMB_ITEMS}]}}}}\n")),
        ["exp.yaml: sweep.grid.scheduler.extra[5]: expands to more than"]),
    "binary experiment": lambda t: (_run(_bytes(t, "exp.yaml", bytes(range(256)) * 4)), ["exp.yaml: a binary file"]),
    "latin-1 experiment": lambda t: (_run(_bytes(t, "exp.yaml", b"name: caf\xe9\n")),
                                     ["exp.yaml: byte 9 is not UTF-8"]),
    "deeply nested sequence": lambda t: (_run(_yaml(t, "exp.yaml", "model: " + "[" * 20000 + "]" * 20000)),
                                         ["exp.yaml: line 1"]),
    "recursive alias": lambda t: (_run(_yaml(t, "exp.yaml", "model: &m [*m]\n")), ["exp.yaml: model[0]: "]),
    "python tag": lambda t: (_run(_yaml(t, "exp.yaml", "model: !!python/object/apply:os.system [ls]\n")),
                             ["exp.yaml: line 1, column 8: not valid YAML"]),
    "duplicate key": lambda t: (_run(_yaml(t, "exp.yaml", yaml.safe_dump(BASE) + "model: llama-2-7b\n")),
                                ["exp.yaml: model: duplicate key at line"]),
    "empty experiment": lambda t: (_run(_yaml(t, "exp.yaml", "")), ["exp.yaml: expected a YAML mapping"]),
    "top-level list": lambda t: (_run(_yaml(t, "exp.yaml", "- 1\n- 2\n")), ["exp.yaml: expected a YAML mapping"]),
    "experiment is a directory": lambda t: (_run(t), [f"{t}: is a directory"]),
    "unknown key": lambda t: (_run(_exp(t, schduler={"kind": "vllm"})), ["exp.yaml: schduler: unknown key"]),
    "warm-up eats every request": lambda t: (_run(_exp(t, stop={"num_requests": 40, "warmup_requests": 40})),
                                             ["exp.yaml: stop.warmup_requests: 40 leaves none"]),
    "enormous num_requests": lambda t: (_run(_exp(t, stop={"num_requests": 10**12})),
                                        ["exp.yaml: stop.num_requests: 1,000,000,000,000 requests need at least"]),
    "enormous duration": lambda t: (_run(_exp(t, stop={"num_requests": None, "duration_s": 1e13})),
                                    ["exp.yaml: stop.duration_s: "]),
    "enormous sweep": lambda t: (_run(_exp(t, sweep={"grid": {"scheduler.max_num_seqs": list(range(1, 1001)),
                                                               "workload.arrival.rate_per_s": list(range(1, 1001))}})),
                                 ["exp.yaml: sweep: 1,000,000 points x 1 seed(s) = 1,000,000 runs; at most 10,000"]),
    "late sweep point does not fit": lambda t: (
        _run(_exp(t, sweep={"grid": {"model": ["llama-3.1-8b", "mistral-7b", "llama-3.1-70b"]}})),
        ["exp.yaml (sweep point model=llama-3.1-70b): layout: llama-3.1-70b does not fit"]),
    "unknown KV kind": lambda t: (_run(_exp(t, kv={"kind": "radix"})), ["exp.yaml: kv: unknown KV manager 'radix'"]),
    "zero block size": lambda t: (_run(_exp(t, kv={"kind": "paged", "block_size": 0})),
                                  ["exp.yaml: kv.block_size: expected a positive integer, got 0"]),
    "TP does not divide the heads": lambda t: (_run(_exp(t, layout={"tp": 6})),
                                               ["exp.yaml: layout.tp: tp=6 does not divide the 32"]),
    "model does not fit": lambda t: (_run(_exp(t, model="llama-3.1-405b")), ["exp.yaml: layout: llama-3.1-405b"]),
    "sarathi chunk_size 0": lambda t: (_run(_exp(t, scheduler={"kind": "sarathi", "chunk_size": 0})),
                                       ['exp.yaml: scheduler: "chunk_size" must be a positive integer']),
    "negative arrival rate": lambda t: (_run(_exp(t, workload={**BASE["workload"], "arrival": {
        "kind": "poisson", "rate_per_s": -2}})), ["exp.yaml: workload.arrival: 'rate_per_s' must be"]),
    "profile misspelled key": lambda t: (
        _run(_exp(t, hardware=str(_profile(t, lambda d: d.update(efficency=d.pop("efficiency")))))),
        ["exp.yaml: hardware: ", "gpu.yaml: efficency: unknown key (did you mean 'efficiency'?)"]),
    "profile unknown key": lambda t: (_run(_exp(t, hardware=str(_profile(t, lambda d: d.update(nvlink_gen=4))))),
                                      ["gpu.yaml: nvlink_gen: unknown key"]),
    "profile negative bandwidth": lambda t: (
        _run(_exp(t, hardware=str(_profile(t, lambda d: d["interconnect"]["intra_node"].update(bytes_per_s=-1))))),
        ["gpu.yaml: interconnect.intra_node.bytes_per_s: expected a finite number > 0"]),
    "profile NaN HBM": lambda t: (_run(_exp(t, hardware=str(_profile(t, lambda d: d.update(hbm_bytes=float("nan")))))),
                                  ["gpu.yaml: hbm_bytes: expected a finite number > 0, got nan"]),
    "profile zero peak": lambda t: (
        _run(_exp(t, hardware=str(_profile(t, lambda d: d["peak_flops_per_s"].update(bf16=0))))),
        ["gpu.yaml: peak_flops_per_s.bf16: expected a finite number > 0, got 0"]),
    "config.json heads do not divide hidden": lambda t: (_run(_exp(t, model=str(_hf(t, num_attention_heads=30)))),
                                                         ["exp.yaml: model: ", "config.json: field 'num_attention_heads'"]),
    "config.json nested too deeply": lambda t: (
        _run(_exp(t, model=str(_yaml(t, "config.json", "[" * 100000 + "]" * 100000)))),
        ["config.json: not valid JSON (nested too deeply)"]),
    "trace with a negative timestamp": lambda t: (
        _run(_exp(t, workload={"trace": {"path": str(_trace(t, [
            '{"timestamp": 0, "input_length": 5, "output_length": 2}',
            '{"timestamp": -40, "input_length": 5, "output_length": 2}']))}})),
        ["trace.jsonl:2: timestamp: must be >= 0"]),
    "binary trace": lambda t: (["workload", "describe", str(_bytes(t, "trace.csv", b"\x89PNG\r\n\x1a\n" * 50))],
                               ["trace.csv: byte 0 is not UTF-8"]),
    "workload file alias bomb": lambda t: (_run(_exp(t, workload=str(_yaml(t, "w.yaml", BOMB)))),
                                           ["w.yaml: l5: expands"]),
    "top-level alias bomb": lambda t: (_run(_yaml(t, "exp.yaml", BOMB)), ["exp.yaml: l5: expands"]),
    "calibration run.yaml with a bad number": lambda t: (
        ["calibrate", "--device", "cpu", "--out", str(t / "results" / "x.yaml"), "--from-csv",
         str(_yaml(t, "run.yaml", {"environment": {"device": "cpu"}, "base": {}, "base_name": "b",
                                   "launch_s": "soon"}).parent)],
        ["run.yaml: environment.device, launch_s, planned_s, wall_s: expected what `llmsim calibrate` writes"]),
    "estimate TP": lambda t: ([*ESTIMATE, "--tp", "3"], ["--tp: tp=3 does not divide"]),
    "estimate profile": lambda t: ([*ESTIMATE, "--hardware", str(_profile(t, lambda d: d.update(hbm_bytes=-1)))],
                                   ["--hardware: ", "gpu.yaml: hbm_bytes: expected a finite number > 0"]),
    "estimate enormous batch": lambda t: ([*ESTIMATE, "--batch-size", str(10**9)], ["--batch-size: at most"]),
}
HOSTILE = ["yaml alias bomb", "alias bomb inside a sweep", "deeply nested sequence", "binary experiment",
           "enormous num_requests", "enormous sweep", "config.json nested too deeply", "estimate enormous batch"]


def _alarm(*_):
    raise TimeoutError("took more than 30 s")


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_input_is_one_clean_line(tmp_path, capsys, case):
    argv, fragments = CASES[case](tmp_path)
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(30)
    try:
        code = main(argv)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and not out
    for fragment in fragments:
        assert fragment in err, err
    assert not (tmp_path / "results").exists()  # nothing ran, nothing was written


def _limit_memory() -> None:
    """A regression fails fast with MemoryError instead of taking the machine's memory (4 GiB of address
    space; the driver needs ~0.6 GiB)."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))


DRIVER = """
import json, resource, signal, sys, time
from llmsim.cli import main
def alarm(*_):
    raise TimeoutError
signal.signal(signal.SIGALRM, alarm)
for argv in json.loads(sys.argv[1]):
    t0 = time.monotonic()
    signal.alarm(30)
    try:
        code = main(argv)
    except TimeoutError:
        code = "timeout"
    signal.alarm(0)
    print(json.dumps({"code": code, "s": time.monotonic() - t0,
                      "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}), flush=True)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss is in kB on Linux")
def test_hostile_inputs_are_bounded_in_time_and_memory(tmp_path):
    """One fresh process runs every hostile case in turn: its peak memory bounds each case's."""
    argvs = []
    for i, case in enumerate(HOSTILE):
        folder = tmp_path / str(i)
        folder.mkdir()
        argvs.append(CASES[case](folder)[0])
    proc = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(argvs)], capture_output=True, text=True,
                          timeout=120, preexec_fn=_limit_memory)
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(rows) == len(HOSTILE), proc.stderr
    for case, row in zip(HOSTILE, rows, strict=True):
        assert row["code"] == 2 and row["s"] < 20, (case, row)
    assert rows[-1]["peak_mb"] < 600, rows
    assert "Traceback" not in proc.stderr and proc.stderr.count("error: ") == len(HOSTILE)
