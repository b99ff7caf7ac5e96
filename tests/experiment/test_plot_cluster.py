"""Cluster figures and the goodput-per-resource table, from a small results directory."""

import json

import pandas as pd
import pytest
import yaml

from llmsim.cli import main
from llmsim.plot_cluster import cluster_label, goodput_table
from llmsim.plot_cluster import main as plot_main


def test_cluster_labels_name_pools_roles_hardware_and_migration():
    row = pd.Series({"hardware": "a100-sxm-80gb", "sweep.cluster": json.dumps({"pools": {"c": {"scheduler": {
        "kind": "vllm", "mode": "v0"}}}})})
    assert cluster_label(row) == "colocated 1x a100 (vLLM v0)"
    row = pd.Series({"pool.P.hardware": "h100-sxm", "pool.D.hardware": "a100-sxm-80gb", "sweep.cluster": json.dumps(
        {"pools": {"P": {"role": "prefill", "replicas": 2}, "D": {"role": "decode", "replicas": 3}}})})
    assert cluster_label(row) == "2P h100 + 3D a100"
    row = pd.Series({"hardware": "a10g", "sweep.cluster": json.dumps(
        {"pools": {"m": {"replicas": 4}}, "router": {"kind": "least_kv"}, "migration": {"kind": "llumnix"}})})
    assert cluster_label(row) == "colocated 4x a10g (vLLM v1), least_kv + migration"


def test_goodput_table_and_figures_from_a_results_directory(tmp_path, capsys):
    data = {"name": "pc", "model": "llama-3.1-8b", "hardware": "h100-sxm", "scheduler": {"kind": "vllm"},
            "workload": {"arrival": {"kind": "poisson", "rate_per_s": 1.0},
                         "input_len": {"kind": "fixed", "value": 200}, "output_len": {"kind": "fixed", "value": 20}},
            "slo": {"ttft_s": 1.0, "tpot_s": 0.05}, "stop": {"num_requests": 60},
            "sweep": {"grid": {"cluster": [{"pools": {"c": {}}},
                                           {"pools": {"P": {"role": "prefill"}, "D": {"role": "decode"}}}],
                               "workload.arrival.rate_per_s": [2.0, 4.0]}}}
    path = tmp_path / "e.yaml"
    path.write_text(yaml.safe_dump(data))
    out = tmp_path / "res"
    assert main(["run", str(path), "--out", str(out), "--no-plots"]) == 0
    table = goodput_table(out).set_index("label")
    assert list(table.index) == ["colocated 1x h100 (vLLM v1)", "1P + 1D h100"]
    assert list(table["num_gpus"]) == [1, 2]
    for _, r in table.iterrows():
        assert r["goodput_per_gpu"] == pytest.approx(r["goodput_rps"] / r["num_gpus"])
        assert r["requests_per_usd"] == pytest.approx(r["goodput_rps"] * 3600 / (2.99 * r["num_gpus"]))
    for kind in ("goodput", "cost", "routing", "migration"):
        png = tmp_path / f"{kind}.png"
        assert plot_main([kind, str(png), str(out)]) == 0
        assert png.stat().st_size > 10_000
    assert plot_main(["nope", "x.png"]) == 2
