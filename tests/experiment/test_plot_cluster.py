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
    _check_scaled_goodput(out)
    for kind in ("goodput", "cost", "routing", "migration"):
        png = tmp_path / f"{kind}.png"
        assert plot_main([kind, str(png), str(out)]) == 0
        assert png.stat().st_size > 10_000
    assert plot_main(["nope", "x.png"]) == 2


def _check_scaled_goodput(out):
    """Each SLO scale's goodput from the measured requests' latency columns equals the same figure computed
    from the whole request tables (the reference here)."""
    from llmsim.experiment.results import Results
    from llmsim.metrics.slo import slo_attainment
    from llmsim.plot_cluster import _configs, attainment_goodput, scaled_goodput

    got = scaled_goodput(out, scales=(1.0, 0.1))
    res = Results.load(out)
    summary, rate = _configs(out)
    want = []
    for scale in (1.0, 0.1):
        slo = {"ttft_s": 1.0 * scale, "tpot_s": 0.05 * scale}
        att = [slo_attainment(res.requests(p)[res.requests(p)["phase"] == "measured"], slo)
               for p in summary["point_id"]]
        for _label, g in summary.assign(slo_attainment=att).groupby("label", sort=False):
            gp = attainment_goodput(g, rate, 0.9)
            want.append(None if gp is None else gp / int(g["num_gpus"].iloc[0]))
    assert len(got) == 4 and any(v for v in want[:2]) and want[:2] != want[2:]  # the scale matters
    assert [None if pd.isna(v) else v for v in got["goodput_per_gpu"]] == want
