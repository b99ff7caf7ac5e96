"""``llmsim search``: spec errors name the file and field (exit 2), an infeasible search names its tightest
constraint, and a small search writes its outputs and resumes without re-running simulations."""

from __future__ import annotations

import yaml

from llmsim.cli import main

SPEC = {
    "name": "tiny",
    "models": [{"name": "chat", "model": "llama-3.1-8b", "rate_per_s": 2.0,
                "workload": {"arrival": {"kind": "poisson", "rate_per_s": 1.0},
                             "input_len": {"kind": "gamma", "mean": 256, "cv": 0.5, "min": 16, "max": 1024},
                             "output_len": {"kind": "gamma", "mean": 32, "cv": 0.5, "min": 4, "max": 128}}}],
    "slo": {"ttft_s": 0.5, "tpot_s": 0.05, "attainment": 0.9},
    "gpus": {"h100-sxm": {"count": 2}, "a100-sxm-80gb": {"count": 2, "price_per_gpu_hour_usd": 1.0}},
    "objective": "goodput_per_usd",
    "knobs": {"tp": [1], "max_num_seqs": [64]},
    "verify": {"top_k": 1, "num_requests": 60, "warmup_requests": 6, "min_duration_s": 0, "rel_tol": 0.3,
               "refine_rounds": 0},
}


def write(tmp_path, spec):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def run(tmp_path, spec, capsys):
    code = main(["search", str(write(tmp_path, spec)), "--out", str(tmp_path / "out")])
    return code, capsys.readouterr()


def test_unknown_key_and_bad_value_name_the_field(tmp_path, capsys):
    code, io = run(tmp_path, {**SPEC, "knobs": {"tq": [1]}}, capsys)
    assert code == 2 and "spec.yaml: knobs.tq: unknown key" in io.err
    bad = {**SPEC, "models": [{**SPEC["models"][0], "rate_per_s": -1}]}
    code, io = run(tmp_path, bad, capsys)
    assert code == 2 and "models[0].rate_per_s" in io.err and "greater than 0" in io.err
    code, io = run(tmp_path, {**SPEC, "gpus": {"h100-sxm": {}}}, capsys)
    assert code == 2 and "give a count" in io.err
    code, io = run(tmp_path, {**SPEC, "gpus": {"h900": {"count": 1}}}, capsys)
    assert code == 2 and "gpus.h900" in io.err


def test_infeasible_search_names_the_tightest_constraint(tmp_path, capsys):
    spec = {**SPEC, "models": [{**SPEC["models"][0], "rate_per_s": 500.0}], "budget_usd_per_hour": 3.0}
    code, io = run(tmp_path, spec, capsys)
    assert code == 2 and "tightest constraint is" in io.err and "Traceback" not in io.err


def test_small_search_end_to_end_and_resume(tmp_path, capsys):
    code, io = run(tmp_path, SPEC, capsys)
    assert code == 0, io.err
    out = tmp_path / "out"
    assert "candidates per CPU second" in io.out
    for name in ("search.csv", "search.json", "screen.csv", "discards.csv", "pareto.png", "winner-chat.yaml"):
        assert (out / name).is_file(), name
    from llmsim.experiment.config import load_config

    cfg, _ = load_config(out / "winner-chat.yaml")  # the winner is a valid, runnable experiment
    assert cfg.model == "llama-3.1-8b"
    runs = sorted(out.glob("verify/alloc-0/chat/rate-*/points/*/requests.*"))
    assert runs
    stamps = [p.stat().st_mtime_ns for p in runs]
    code, _ = run(tmp_path, SPEC, capsys)
    assert code == 0 and [p.stat().st_mtime_ns for p in runs] == stamps  # resumed: nothing re-simulated


def test_slo_no_candidate_can_meet_is_named(tmp_path, capsys):
    code, io = run(tmp_path, {**SPEC, "slo": {"ttft_s": 0.001, "tpot_s": 0.05}}, capsys)
    assert code == 2 and "the screen discarded all 2 candidates (2 TTFT)" in io.err
    assert "tightest constraint is the SLO" in io.err and "TTFT lower bound" in io.err


def test_refined_capacities_by_hand():
    from llmsim.metrics.goodput_search import GoodputSearch
    from llmsim.search.ilp import Allocation, Item
    from llmsim.search.run import refined

    items = [Item("P", "m", "prefill", "h", 1, 1.0, 1.0, 4.0), Item("D", "m", "decode", "h", 1, 1.0, 1.0, 3.0),
             Item("X", "m", "mixed", "h", 1, 1.0, 1.0, 5.0)]
    # 2 P + 2 D: estimated min(8, 6) = 6 req/s; the DES measured lam 1.5 x rate 2 = 3 req/s -> factor 0.5
    alloc = Allocation({"P": 2, "D": 2}, 3.0, 4.0, 4, 4.0, 0.0)
    out = refined(items, [alloc], [{"m": ([], GoodputSearch(1.5, 1.6), {})}], {"m": 2.0})
    assert [i.capacity_rps for i in out] == [2.0, 1.5, 5.0]


def test_shipped_search_specs_and_winners_validate():
    from pathlib import Path

    from llmsim.experiment.config import load_config
    from llmsim.search.spec import load_spec

    folder = Path(__file__).resolve().parents[2] / "experiments" / "search"
    specs = sorted(folder.glob("llama70b_*.yaml"))
    assert len(specs) == 5
    for path in specs:
        (load_config if "winner" in path.name else load_spec)(path)
