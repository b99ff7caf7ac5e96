"""The experiment YAML's cluster: block and top-level router: bad input is one line naming file and field,
exit 2; good input runs, with per-pool figures in the summary."""

import json

import pytest
import yaml

from llmsim.cli import main
from llmsim.experiment import runner

BASE = {
    "name": "cl",
    "model": "llama-3.1-8b",
    "hardware": "h100-sxm",
    "scheduler": {"kind": "vllm"},
    "workload": {"arrival": {"kind": "poisson", "rate_per_s": 8.0},
                 "input_len": {"kind": "fixed", "value": 300}, "output_len": {"kind": "fixed", "value": 20}},
    "stop": {"num_requests": 40},
}
PD = {"pools": {"p": {"role": "prefill"}, "d": {"role": "decode"}}}


def _run(tmp_path, capsys, data):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    out = tmp_path / "res"
    code = main(["run", str(path), "--out", str(out), "--no-plots"])
    return code, capsys.readouterr().err, path, out


@pytest.mark.parametrize(("patch", "message"), [
    ({"cluster": {"pools": {"d": {"role": "decode"}}}}, "cluster.pools: a decode pool needs a prefill pool"),
    ({"cluster": {"pools": {"p": {"role": "prefill"}}}}, "cluster.pools: a prefill pool needs a decode pool"),
    ({"cluster": {"pools": {"d": {"role": "decoder"}}}}, "cluster.pools.d.role: input should be 'mixed', 'prefill'"),
    ({"cluster": {**PD, "links": {"x": {"between": ["p", "q"]}}}}, "cluster.links.x.between: no pool named 'q'"),
    ({"cluster": {**PD, "links": {"x": {"between": ["p", "d"], "kind": "wifi"}}}}, "cluster.links.x.kind: input"),
    ({"cluster": {**PD, "links": {"x": {"between": ["p", "d"], "kind": "nvlink", "gbps": 10}}}},
     "cluster.links.x.gbps: only for kind infiniband or roce"),
    ({"cluster": {**PD, "links": {"x": {"between": ["p", "d"], "kind": "interconnect", "interconnect": "nope"}}}},
     "cluster.links.x.interconnect: hardware h100-sxm has no link 'nope'"),
    ({"cluster": {**PD, "router": {"kind": "nearest"}}}, "cluster.router: unknown router 'nearest'"),
    ({"router": {"kind": "nearest"}}, "exp.yaml: router: unknown router 'nearest'"),
    ({"cluster": {**PD, "decode_router": {"kind": "power_of_two", "load": "x"}}}, "cluster.decode_router: \"load\""),
    ({"cluster": {**PD, "migration": {"kind": "llumnix", "threshold": -1}}}, "cluster.migration: \"threshold\""),
    ({"cluster": {**PD, "migration": {"kind": "teleport"}}}, "cluster.migration: unknown migration policy"),
    ({"cluster": {"pools": {"p": {"role": "prefill"}, "d": {"role": "decode", "hardware": "h9000"}}}},
     "cluster.pools.d.hardware: unknown hardware 'h9000'"),
    ({"model": "llama-3.1-70b", "cluster": {"pools": {"p": {"role": "prefill", "layout": {"tp": 4}},
                                                      "d": {"role": "decode"}}}},
     "cluster.pools.d.layout: llama-3.1-70b does not fit on h100-sxm with tp=1"),
    ({"cluster": {"pools": {"p": {"role": "prefill"}, "d": {"role": "decode", "layout": {"tp": 3}}}}},
     "cluster.pools.d.layout.tp: tp=3 does not divide"),
    ({"cluster": {"pools": {"p": {"role": "prefill"}, "d": {"role": "decode", "scheduler": {"kind": "static"}}}}},
     "cluster.pools.d.scheduler: a decode pool needs a scheduler that takes in running requests"),
    ({"cluster": {"pools": {"p": {"role": "prefill"}, "d": {"role": "decode", "kv": {"block_size": 0}}}}},
     "cluster.pools.d.kv.block_size: expected a positive integer"),
    ({"layout": {"replicas": 2}, "cluster": PD}, "layout.replicas: with cluster:, give replicas per pool"),
    ({"router": {"kind": "random"}, "cluster": {**PD, "router": {"kind": "random"}}}, "router: give it once"),
    ({"cluster": {**PD, "transfer": "teleport"}}, "cluster.transfer: input should be 'whole' or 'layerwise'"),
    ({"cluster": {"pools": {"m": {}}, "decode_router": {"kind": "random"}}}, "cluster.decode_router: only with"),
    ({"cluster": {"pools": {"9x": {}}}}, "cluster.pools: pool name '9x' must start with a letter"),
])
def test_bad_cluster_input_is_one_line_naming_file_and_field(tmp_path, capsys, patch, message):
    code, err, path, out = _run(tmp_path, capsys, {**BASE, **patch})
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err
    assert lines[0].startswith(f"error: {path}: ") and message in lines[0], lines[0]
    assert not (out / "points").exists()


def test_pd_cluster_runs_with_pool_figures_and_pool_defaults_merged(tmp_path, capsys):
    data = {**BASE, "scheduler": {"kind": "vllm", "max_num_seqs": 64},
            "cluster": {"pools": {"p": {"role": "prefill", "replicas": 2},
                                  "d": {"role": "decode", "hardware": "a100-sxm-80gb",
                                        "scheduler": {"max_num_batched_tokens": 2048}}},
                        "links": {"pd": {"between": ["p", "d"], "kind": "infiniband", "gbps": 100}},
                        "decode_router": {"kind": "least_kv"}, "transfer": "layerwise"},
            "sweep": {"grid": {"cluster.pools.d.replicas": [1, 2]}}}
    code, err, _, out = _run(tmp_path, capsys, data)
    assert code == 0, err
    rows = [json.loads(p.read_text()) for p in sorted((out / "points").glob("*/summary.json"))]
    assert sorted(r["num_gpus"] for r in rows) == [3, 4]  # 2 prefill + 1 or 2 decode GPUs
    for s in rows:
        assert s["num_finished"] == 40 and s["pool.d.hardware"] == "a100-sxm-80gb"
        assert s["pool.p.replicas"] == 2 and s["pool.d.scheduler"] == "vllm"
        assert s["link.pd.transfers"] == 40
        assert s["pool.d.transfer_mean_s"] > 0 and 0 < s["pool.p.utilization"] < 1
        assert s["output_tokens_per_usd"] > 0 and s["output_tokens_per_s_per_kw"] > 0
        assert s["price_per_hour_usd"] == pytest.approx(2 * 2.99 + (s["num_gpus"] - 2) * 1.79)


def test_top_level_router_applies_to_the_single_pool(tmp_path, capsys, monkeypatch):
    seen = []
    real = runner.run_point

    def spy(point, **kw):
        from llmsim.experiment.cluster_build import build_cluster
        from llmsim.specs import load_model

        seen.append(build_cluster(point.config, load_model(point.config.model), point.where)[0].router)
        return real(point, **kw)

    monkeypatch.setattr("llmsim.experiment.runner.run_point", spy)
    data = {**BASE, "layout": {"replicas": 2}, "router": {"kind": "least_kv"}}
    code, err, _, out = _run(tmp_path, capsys, data)
    assert code == 0, err
    assert seen == [{"kind": "least_kv"}]


def test_a_sweep_or_override_into_an_unknown_pool_is_an_error(tmp_path, capsys):
    data = {**BASE, "cluster": PD, "sweep": {"grid": {"cluster.pools.decod.replicas": [1, 2]}}}
    code, err, path, _ = _run(tmp_path, capsys, data)
    assert code == 2 and "cluster.pools.decod.replicas: no pool named 'decod' (pools: p, d)" in err
    path.write_text(yaml.safe_dump({**BASE, "cluster": PD}, sort_keys=False))
    code = main(["run", str(path), "--out", str(tmp_path / "r2"), "--no-plots", "--set", "cluster.pools.q.replicas=2"])
    assert code == 2 and "no pool named 'q'" in capsys.readouterr().err
