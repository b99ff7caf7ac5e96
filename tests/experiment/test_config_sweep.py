"""Experiment YAML validation (errors name file, field path, expectation) and sweep expansion."""

import pytest
import yaml

from llmsim.errors import ConfigError
from llmsim.experiment.config import load_config, parse_config
from llmsim.experiment.sweep import expand

BASE = {"model": "llama-3.1-8b", "hardware": "h100-sxm",
        "workload": {"arrival": {"kind": "poisson", "rate_per_s": 2.0},
                     "input_len": {"kind": "fixed", "value": 100}, "output_len": {"kind": "fixed", "value": 10}}}


@pytest.mark.parametrize(("patch", "message"), [
    ({"layout": {"tp": -4}}, "x.yaml: layout.tp: must be a positive integer, got -4"),
    ({"colour": "red"}, "x.yaml: colour: unknown key"),
    ({"slo": {"ttft_s": "fast"}}, "x.yaml: slo.ttft_s:"),
    ({"stop": {"num_requests": None}}, "x.yaml: stop: give num_requests or duration_s"),
    ({"scheduler": {"max_num_seqs": 4}}, "x.yaml: scheduler: expected a mapping with a 'kind' key"),
    ({"sweep": {"zip": {"a": [1], "b": [1, 2]}}}, "zip lists must have equal lengths"),
    ({"seeds": []}, "x.yaml: seeds:"),
    ({"slo": {"percentiles": {"queue_p99_s": 1}}}, "slo.percentiles: queue_p99_s: expected <ttft|tpot|itl|e2e>_p"),
    ({"slo": {"percentiles": {"itl_p99_s": -1}}}, "slo.percentiles: itl_p99_s: must be a positive number"),
    ({"stop": {"num_requests": 100, "warmup_requests": 60, "cooldown_requests": 40}},
     "stop: warmup_requests + cooldown_requests (100) must be less than num_requests (100)"),
])
def test_validation_messages(patch, message):
    with pytest.raises(ConfigError) as err:
        parse_config({**BASE, **patch}, "experiments/x.yaml")
    assert message in str(err.value)


def test_missing_required_field():
    with pytest.raises(ConfigError, match="hardware: required field is missing"):
        parse_config({"model": "m", "workload": "chat"}, "x.yaml")


def test_load_config_bad_yaml(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("model: [unclosed")
    with pytest.raises(ConfigError, match=r"bad.yaml: line \d+, column \d+: not valid YAML"):
        load_config(p)


def test_grid_times_zip_times_seeds(tmp_path):
    cfg = parse_config({**BASE, "seeds": [0, 1],
                        "sweep": {"grid": {"workload.arrival.rate_per_s": [1, 2, 3], "layout.tp": [1, 2]},
                                  "zip": {"scheduler.kind": ["vllm", "sarathi"],
                                          "scheduler.max_num_batched_tokens": [8192, 512]}}}, "x.yaml")
    points = expand(cfg, tmp_path, "x.yaml")
    assert len(points) == 3 * 2 * 2 * 2
    assert len({p.id for p in points}) == len(points)
    sar = [p for p in points if p.config.scheduler["kind"] == "sarathi"]
    assert all(p.config.scheduler["max_num_batched_tokens"] == 512 for p in sar)
    assert {p.config.workload["arrival"]["rate_per_s"] for p in points} == {1, 2, 3}


def test_point_ids_are_stable_and_config_sensitive(tmp_path):
    cfg = parse_config(BASE, "x.yaml")
    a = expand(cfg, tmp_path, "x.yaml")[0].id
    assert a == expand(parse_config(BASE, "x.yaml"), tmp_path, "x.yaml")[0].id
    other = parse_config({**BASE, "precision": "fp8"}, "x.yaml")
    assert expand(other, tmp_path, "x.yaml")[0].id != a


def test_sweep_into_referenced_workload_inlines_it(tmp_path):
    (tmp_path / "w.yaml").write_text(yaml.safe_dump(BASE["workload"]))
    cfg = parse_config({**BASE, "workload": "w.yaml",
                        "sweep": {"grid": {"workload.arrival.rate_per_s": [5, 6]}}}, "x.yaml")
    points = expand(cfg, tmp_path, "x.yaml")
    assert [p.config.workload["arrival"]["rate_per_s"] for p in points] == [5, 6]
    assert points[0].config.workload["input_len"] == {"kind": "fixed", "value": 100}


def test_sweep_value_invalid_names_the_point(tmp_path):
    cfg = parse_config({**BASE, "sweep": {"grid": {"layout.tp": [1, 0]}}}, "x.yaml")
    with pytest.raises(ConfigError, match=r"sweep point layout.tp=0\): layout.tp"):
        expand(cfg, tmp_path, "x.yaml")


def test_unknown_workload_reference(tmp_path):
    cfg = parse_config({**BASE, "workload": "nonexistent-workload"}, "x.yaml")
    with pytest.raises(ConfigError, match="no workload named 'nonexistent-workload'"):
        expand(cfg, tmp_path, "x.yaml")


def test_percentile_slo_reaches_the_summary(tmp_path):
    from llmsim.experiment.runner import run_experiment

    cfg = {**BASE, "slo": {"ttft_s": 5.0, "percentiles": {"itl_p99_s": 10.0, "ttft_p90_s": 1e-9}},
           "stop": {"num_requests": 60, "warmup_requests": 6, "cooldown_requests": 4}}
    row = run_experiment(cfg).summary.iloc[0]
    assert row["slo_itl_p99_s"] == 10.0 and row["itl_p99_s"] > 0 and row["ttft_p90_s"] > 1e-9
    assert not row["slo_percentiles_met"] and not row["slo_met"]  # no TTFT p90 is under a nanosecond
    assert row["num_warmup"] == 6 and row["num_cooldown"] == 4 and row["num_requests"] == 50


def test_memory_reserved_bytes_reaches_the_kv_capacity():
    import llmsim

    base = {"model": "llama-3.1-8b", "hardware": "h100-sxm", "workload": {
        "arrival": {"kind": "poisson", "rate_per_s": 1.0}, "input_len": {"kind": "fixed", "value": 64},
        "output_len": {"kind": "fixed", "value": 4}}, "stop": {"num_requests": 5}}
    small = llmsim.run(base).summary.iloc[0]["num_blocks_per_replica"]
    reserved = llmsim.run({**base, "memory": {"reserved_bytes": 20e9}}).summary.iloc[0]["num_blocks_per_replica"]
    # 20 GB more reserved (vs the 1 GiB default) leaves (20e9 - 2**30) / (128 KiB x 16) fewer blocks
    assert small - reserved == pytest.approx((20e9 - 2**30) / (131072 * 16), abs=1)
