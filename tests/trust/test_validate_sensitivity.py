"""validate-run's workload rebuild and comparison, trust fields of a run, and sensitivity ranking."""

import math

import pytest

from llmsim.trust.annotate import trust_fields
from llmsim.trust.benchfiles import BenchRun
from llmsim.trust.grades import Evidence
from llmsim.trust.intervals import Residual, ResidualTable
from llmsim.trust.validate_run import compare, experiment_for_run, workload_for

BASE = {"model": "llama-3.1-8b", "hardware": "h100-sxm-calibrated", "engine": "vllm-0.15",
        "scheduler": {"kind": "vllm", "max_num_seqs": 64, "max_num_batched_tokens": 2048}}


def _run(**kw):
    args = dict(source="vllm", path="f.json", label="f", model=None, arrival="poisson", rate_per_s=4.0, cv=1.0,
                concurrency=None, num_requests=120, failed=0, duration_s=30.0, input_len_mean=300.4,
                output_len_mean=40.0, metrics={"ttft_mean_s": 0.05, "e2e_p99_s": 1.0})
    args.update(kw)
    return BenchRun(**args)


def test_workload_rebuilt_from_the_file():
    wl = workload_for(_run(arrival="gamma", cv=0.5))
    assert wl["arrival"] == {"kind": "gamma", "rate_per_s": 4.0, "cv": 0.5}
    assert wl["input_len"] == {"kind": "fixed", "value": 300} and wl["output_len"] == {"kind": "fixed", "value": 40}
    wl = workload_for(_run(arrival="closed_loop", rate_per_s=None, concurrency=8, input_lens=(5, 7),
                           output_lens=(3, 4)))
    assert wl["arrival"] == {"kind": "closed_loop", "users": 8, "think_time_s": 0.0}
    assert wl["input_len"] == {"kind": "empirical", "values": [5, 7]}
    # a shared-prefix generator: the measured prompt (300) holds the 100-token system prompt
    wl = workload_for(_run(arrival="constant", prefix={"num_unique_system_prompts": 4,
                                                       "num_users_per_system_prompt": 3, "system_prompt_len": 100}))
    assert wl["input_len"]["value"] == 200
    assert wl["prefix"] == {"kind": "prompt_pool", "groups": 4, "users_per_group": 3, "system_tokens": 100}
    cfg = experiment_for_run(_run(), BASE, scale=0.5)
    assert cfg["stop"] == {"num_requests": 60} and cfg["model"] == "llama-3.1-8b"


def test_missing_deployment_is_an_error():
    from llmsim.errors import ConfigError

    with pytest.raises(ConfigError, match="--hardware"):
        experiment_for_run(_run(), {"model": "llama-3.1-8b"})


def test_compare_by_hand():
    summary = {"ttft_mean_s": 0.06, "lo.ttft_mean_s": 0.03, "hi.ttft_mean_s": 0.12, "grade.ttft_mean_s": "A",
               "e2e_p99_s": 0.8, "lo.e2e_p99_s": None, "hi.e2e_p99_s": None, "grade.e2e_p99_s": "B"}
    rep = _run(metrics={"ttft_mean_s": 0.07, "e2e_p99_s": 1.0})
    ttft, e2e = compare(_run(), summary, [rep])
    assert ttft.error == pytest.approx(0.06 / 0.05 - 1) and ttft.inside is True and ttft.grade == "A"
    assert ttft.spread == pytest.approx(math.sqrt(2) * 0.01 / 0.06)  # sample sd of (0.05, 0.07) / mean
    assert e2e.error == pytest.approx(-0.2) and e2e.inside is None and e2e.spread == pytest.approx(0.0)


def test_trust_fields_by_hand():
    table = ResidualTable(tuple(Residual(f"r{i}", "m", "e2e_mean", "A", math.log(1.25)) for i in range(9)))
    ev = Evidence(interpolated=1.0, extrapolated=0.0, roofline=0.0, engine_share=0.0, engine_fitted=True)
    out = trust_fields({"e2e_mean_s": 2.0, "ttft_mean_s": 0.1}, ev, frontend_s=0.05, table=table)
    assert out["grade.e2e_mean_s"] == "A"
    assert (out["lo.e2e_mean_s"], out["hi.e2e_mean_s"]) == pytest.approx((1.6, 2.5))
    # TTFT: half of it is front end; fitted, so still measured -> A, but no ttft residuals -> no interval
    assert out["grade.ttft_mean_s"] == "A" and "lo.ttft_mean_s" not in out
    unfitted = Evidence(interpolated=1.0, extrapolated=0.0, roofline=0.0, engine_fitted=False)
    out = trust_fields({"e2e_mean_s": 2.0, "ttft_mean_s": 0.1}, unfitted, frontend_s=0.05, table=table)
    assert out["grade.ttft_mean_s"] == "C" and out["grade.e2e_mean_s"] == "A" and out["grade"] == "C"


def test_run_summary_carries_grades_and_intervals():
    import llmsim

    cfg = {**BASE, "workload": {"arrival": {"kind": "poisson", "rate_per_s": 4},
                                "input_len": {"kind": "fixed", "value": 256},
                                "output_len": {"kind": "fixed", "value": 32}}, "stop": {"num_requests": 80}}
    row = llmsim.run(cfg, progress=False).summary.iloc[0]
    assert row["grade"] in ("A", "B", "C", "D") and row["interval_level"] == 0.9
    assert 0 <= row["evidence_measured_share"] <= 1
    assert row["lo.e2e_mean_s"] < row["e2e_mean_s"] < row["hi.e2e_mean_s"]  # the shipped residuals cover it


@pytest.fixture
def experiment(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(
        "name: sens\nmodel: llama-3.1-8b\nhardware: h100-sxm-calibrated\nengine: vllm-0.15\n"
        "scheduler: {kind: vllm, max_num_seqs: 64, max_num_batched_tokens: 2048}\n"
        "workload:\n  arrival: {kind: poisson, rate_per_s: 4}\n  input_len: {kind: fixed, value: 256}\n"
        "  output_len: {kind: fixed, value: 32}\nstop: {num_requests: 60}\n")
    return path


def test_sensitivity_ranks_a_no_effect_input_last(experiment):
    from llmsim.trust.sensitivity import _scale_kernels, sensitivity

    def params(pt):
        return [("no_effect", "none", lambda s: (pt, None)),
                ("kernel_time", "x(1 ± 20%)", lambda s: (pt, _scale_kernels(1 + 0.2 * s)))]

    res = sensitivity(str(experiment), "tpot_p50", params=params)
    assert [e.name for e in res.effects] == ["kernel_time", "no_effect"]
    nothing = res.effects[1]
    assert nothing.low == res.base and nothing.high == res.base and nothing.swing(res.base) == 0
    kt = res.effects[0]
    assert kt.low < res.base < kt.high  # slower kernels, slower tokens


def test_front_end_does_not_move_tpot(experiment):
    """Front-end seconds add to TTFT and E2E alike, so TPOT = (E2E - TTFT) / (n - 1) cannot move."""
    from llmsim.trust.sensitivity import sensitivity, variants

    res = sensitivity(str(experiment), "tpot_p50",
                      params=lambda pt: [v for v in variants(pt) if v[0] in ("frontend", "input_len")])
    front = next(e for e in res.effects if e.name == "frontend")
    assert front.swing(res.base) == pytest.approx(0.0, abs=1e-12)
    assert res.effects[-1].name == "frontend"


def test_sensitivity_cli(experiment, tmp_path, capsys):
    from llmsim.cli import main

    assert main(["sensitivity", str(experiment), "--metric", "nonsense"]) == 2
    assert "--metric" in capsys.readouterr().err


def test_interval_band_drawn_only_where_there_is_an_interval():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from llmsim.plots import interval_band

    fig, ax = plt.subplots()
    g = pd.DataFrame({"x": [1.0, 2.0], "ttft_p99_s": [0.1, 0.2], "lo.ttft_p99_s": [0.05, 0.1],
                      "hi.ttft_p99_s": [0.2, 0.4]})
    interval_band(ax, g, "x", "ttft_p99_s", "C0")
    assert len(ax.collections) == 1
    (path,) = ax.collections[0].get_paths()
    ys = path.vertices[:, 1]
    assert ys.min() == pytest.approx(50.0) and ys.max() == pytest.approx(400.0)  # ms
    interval_band(ax, g.drop(columns=["lo.ttft_p99_s"]), "x", "ttft_p99_s", "C0")
    assert len(ax.collections) == 1
    plt.close(fig)


def _steps(batch, decode, prefill=0, kv_used=100, kv_total=10_000):
    import pandas as pd

    return pd.DataFrame({"start_s": [0.0, 1.0], "duration_s": [0.01, 0.01], "batch_size": [batch] * 2,
                         "prefill_tokens": [prefill] * 2, "decode_tokens": [decode] * 2,
                         "kv_blocks_used": [kv_used] * 2, "kv_blocks_total": [kv_total] * 2})


def test_capacity_use_is_one_at_the_limit_and_small_far_from_it():
    from llmsim.sim.setup import deployment
    from llmsim.trust.annotate import capacity_use

    dep = deployment("llama-3.1-8b", "h100-sxm", None, "bf16", {"kind": "vllm", "max_num_seqs": 8,
                                                               "max_num_batched_tokens": 2048}, None, None, None,
                     "vllm-0.15")
    assert capacity_use(dep, _steps(8, 8), 1000) == pytest.approx(1.0)  # batch slots full
    # KV half used binds first: f = min(10000 / 5000, 8 / 2) = 2, use = s(4) / (2 s(2)), in [0.5, 1) since a
    # step of four rows takes at least as long as one of two and less than twice as long
    kv_bound = capacity_use(dep, _steps(2, 2, kv_used=5000), 1000)
    assert 0.5 <= kv_bound < 1.0
    light = capacity_use(dep, _steps(1, 1), 1000)
    assert 0 < light < 0.5  # one decode row of eight: memory-bound steps barely slow down with more rows


def test_trust_table_cells():
    import pandas as pd

    from llmsim.trust.display import trust_table

    summary = pd.DataFrame([{"seed": 0, "grade": "B", "interval_level": 0.9, "ttft_p99_s": 0.412,
                             "lo.ttft_p99_s": 0.21, "hi.ttft_p99_s": 0.83, "grade.ttft_p99_s": "A",
                             "tpot_p50_s": 0.0125, "grade.tpot_p50_s": "B", "e2e_p50_s": 2.5}])
    text = trust_table(summary)
    assert "412 [210-830] A" in text
    assert "12.5 [-] B" in text  # no interval for that grade
    assert "2.50 [-] -" in text  # no grade either
    assert "90% interval" in text
    assert trust_table(summary.drop(columns=["grade"])) == ""
