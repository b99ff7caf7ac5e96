"""End to end through the CLI: quickstart-like run, small sweep, resumption, determinism, bad YAML."""

import json

import pandas as pd
import pytest
import yaml

from llmsim.cli import main
from llmsim.experiment.results import Results, read_table

pytestmark = pytest.mark.e2e

SMALL = {
    "name": "small",
    "model": "llama-3.1-8b",
    "hardware": "h100-sxm",
    "scheduler": {"kind": "vllm", "mode": "v1"},
    "workload": {"arrival": {"kind": "poisson", "rate_per_s": 4.0},
                 "input_len": {"kind": "uniform", "low": 64, "high": 512},
                 "output_len": {"kind": "uniform", "low": 8, "high": 64}},
    "slo": {"ttft_s": 0.5, "tpot_s": 0.05},
    "stop": {"num_requests": 60, "warmup_requests": 5},
    "seeds": [0, 1],
    "sweep": {"grid": {"workload.arrival.rate_per_s": [2.0, 8.0]}},
}


def _write(tmp_path, data, name="exp.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_small_sweep_files_and_consistency(tmp_path, capsys):
    out = tmp_path / "res"
    assert main(["run", str(_write(tmp_path, SMALL)), "--out", str(out), "--no-plots"]) == 0
    summary = read_table(out / "summary")
    assert len(summary) == 4 and set(summary["seed"]) == {0, 1}
    index = json.loads((out / "points.json").read_text())
    assert sorted(p["id"] for p in index) == sorted(summary["point_id"])
    assert (out / "experiment.yaml").is_file() and (out / "run.log").is_file()
    for _, row in summary.iterrows():
        req = read_table(out / "points" / row["point_id"] / "requests")
        steps = read_table(out / "points" / row["point_id"] / "steps")
        assert len(req) == 60 and len(steps) > 0
        assert list(req.sort_values("arrival_s")["phase"][:6]) == ["warmup"] * 5 + ["measured"]
        kept = req[req["phase"] == "measured"]
        fin = kept[kept["status"] == "finished"]
        assert row["num_finished"] == len(fin)
        assert row["ttft_p50_s"] == pytest.approx(fin["ttft_s"].median(), rel=1e-9)
        # token conservation: every request finishes with all its output tokens; the steps computed exactly the
        # tokens the requests account for; without preemption or prefix hits, each prompt token is prefilled
        # once and each output token but the first (which the prefill emits) takes one decode token
        assert (req["status"] == "finished").all()
        assert (req["emitted_tokens"] == req["output_tokens"]).all()
        assert steps["prefill_tokens"].sum() + steps["decode_tokens"].sum() == req["computed_tokens"].sum()
        assert req["preemptions"].sum() == 0 and req["prefix_hit_tokens"].sum() == 0  # preconditions of:
        assert steps["prefill_tokens"].sum() == req["input_tokens"].sum()
        assert steps["decode_tokens"].sum() == (req["output_tokens"] - 1).sum()


def test_rerun_skips_finished_points_and_resumes(tmp_path):
    path, out = _write(tmp_path, SMALL), tmp_path / "res"
    assert main(["run", str(path), "--out", str(out), "--no-plots"]) == 0
    first = read_table(out / "summary")
    victim = first["point_id"].iloc[1]
    (out / "points" / victim / "summary.json").unlink()  # as if killed before this point finished
    stamps = {p: (out / "points" / p / "summary.json").stat().st_mtime_ns
              for p in first["point_id"] if p != victim}
    assert main(["run", str(path), "--out", str(out), "--no-plots"]) == 0
    assert (out / "points" / victim / "summary.json").is_file()
    for p, ns in stamps.items():
        assert (out / "points" / p / "summary.json").stat().st_mtime_ns == ns
    pd.testing.assert_frame_equal(read_table(out / "summary"), first)


def test_same_seed_byte_identical_tables(tmp_path):
    path = _write(tmp_path, {**SMALL, "sweep": {}, "seeds": [3]})
    for name in ("a", "b"):
        assert main(["run", str(path), "--out", str(tmp_path / name), "--no-plots"]) == 0
    pid = read_table(tmp_path / "a" / "summary")["point_id"].iloc[0]
    for table in ("requests", "steps"):
        a = read_table(tmp_path / "a" / "points" / pid / table)
        b = read_table(tmp_path / "b" / "points" / pid / table)
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    sa = (tmp_path / "a" / "points" / pid / "summary.json").read_bytes()
    assert sa == (tmp_path / "b" / "points" / pid / "summary.json").read_bytes()


def test_parallel_jobs_match_serial(tmp_path):
    path = _write(tmp_path, SMALL)
    assert main(["run", str(path), "--out", str(tmp_path / "serial"), "--no-plots"]) == 0
    assert main(["run", str(path), "--out", str(tmp_path / "par"), "--jobs", "2", "--no-plots"]) == 0
    pd.testing.assert_frame_equal(read_table(tmp_path / "serial" / "summary"), read_table(tmp_path / "par" / "summary"))


def test_plots_and_compare(tmp_path, capsys):
    out = tmp_path / "res"
    assert main(["run", str(_write(tmp_path, SMALL)), "--out", str(out)]) == 0
    for name in ("slo_attainment", "throughput_latency", "latency_cdf", "ttft_vs_itl"):
        assert (out / "plots" / f"{name}.png").stat().st_size > 1000
        assert (out / "plots" / f"{name}.svg").is_file()
    capsys.readouterr()
    assert main(["compare", str(out), str(out)]) == 0
    text = capsys.readouterr().out
    assert "1:res" in text and "2:res" in text and "TTFT p50 ms" in text


@pytest.mark.parametrize(("patch", "message"), [
    ({"scheduler": {"kind": "vllm", "max_num_seqs": -4}}, "max_num_seqs"),
    ({"scheduler": {"kind": "nope"}}, "unknown scheduler 'nope'"),
    ({"layout": {"tp": 0}}, "layout.tp: must be a positive integer, got 0"),
    ({"bogus": 1}, "bogus: unknown key"),
    ({"model": "gpt-9"}, "unknown model 'gpt-9'"),
    ({"workload": {"arrival": {"kind": "poisson", "rate_per_s": -1}}}, "workload.arrival"),
])
def test_bad_yaml_exits_2_naming_the_field(tmp_path, capsys, patch, message):
    data = {**SMALL, **patch, "sweep": {}}
    path = _write(tmp_path, data)
    assert main(["run", str(path), "--out", str(tmp_path / "res"), "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_python_api_in_memory(tmp_path):
    import llmsim

    res = llmsim.run({**SMALL, "sweep": {}, "seeds": [0]})
    assert isinstance(res, Results) and len(res.summary) == 1
    pid = res.summary["point_id"].iloc[0]
    assert len(res.requests(pid)) == 60 and len(res.steps(pid)) > 0
    assert not list(tmp_path.iterdir())


def test_dask_executor_matches_local(tmp_path):
    pytest.importorskip("distributed")
    path = _write(tmp_path, {**SMALL, "seeds": [0]})
    assert main(["run", str(path), "--out", str(tmp_path / "local"), "--no-plots"]) == 0
    assert main(["run", str(path), "--out", str(tmp_path / "dask"), "--executor", "dask", "--jobs", "2",
                 "--no-plots"]) == 0
    pd.testing.assert_frame_equal(read_table(tmp_path / "local" / "summary"),
                                  read_table(tmp_path / "dask" / "summary"))
