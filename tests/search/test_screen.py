"""The screen's bounds are bounds: what it discards, the simulator shows missing the SLO, and every simulated
request is at least as slow as the screen's per-length lower bounds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from llmsim.search.run import resolve, run_screen
from llmsim.search.spec import parse_spec
from llmsim.search.verify import experiment_dict

WORKLOAD = {"arrival": {"kind": "poisson", "rate_per_s": 1.0},
            "input_len": {"kind": "gamma", "mean": 4000, "cv": 0.1, "min": 16, "max": 8000},
            "output_len": {"kind": "gamma", "mean": 32, "cv": 0.3, "min": 4, "max": 128}}


def small_spec(slo):
    # Llama-3.1-8B, ~4000-token prompts on H100: the TTFT bound is ~0.137 s at TP1 and ~0.082 s at TP2,
    # the TPOT bound ~5.9 ms and ~3.6 ms; the targets below sit between them
    return parse_spec({"name": "bounds", "models": [{"name": "long", "model": "llama-3.1-8b", "workload": WORKLOAD,
                                                     "rate_per_s": 0.5}],
                       "slo": {**slo, "attainment": 0.9}, "gpus": {"h100-sxm": {"count": 2}}, "knobs": {"tp": [1, 2]},
                       "verify": {"num_requests": 60, "warmup_requests": 6, "min_duration_s": 0}}, "spec.yaml")


def simulate(ctx, screened):
    from llmsim.experiment.runner import run_experiment

    entry = ctx.spec.models[0]
    exp = experiment_dict(ctx.spec, entry, [(screened.candidate, 1)], ctx.workloads[entry.name], entry.rate_per_s, {})
    res = run_experiment(exp, base_dir=Path("."))
    return res.summary.iloc[0], res.requests(res.summary["point_id"].iloc[0])


@pytest.mark.parametrize("slo, reason", [({"ttft_s": 0.11, "tpot_s": 1.0}, "TTFT lower bound"),
                                         ({"ttft_s": 10.0, "tpot_s": 0.005}, "TPOT lower bound")])
def test_discarded_candidates_miss_the_slo_in_the_simulator(slo, reason):
    ctx = resolve(small_spec(slo), Path("."), "spec.yaml")
    screened, _ = run_screen(ctx)
    for s in screened:
        if not s.kept:
            summary, _ = simulate(ctx, s)
            assert not summary["slo_met"], f"{s.candidate.label} meets the SLO in the DES: {s.reason}"
    by_tp = {s.candidate.tp: s for s in screened}
    assert by_tp[1].reason.startswith(reason) and by_tp[2].kept


def test_every_simulated_request_is_slower_than_its_bounds():
    from llmsim.search.screen import _Base

    ctx = resolve(small_spec({"ttft_s": 10.0, "tpot_s": 1.0}), Path("."), "spec.yaml")
    screened, _ = run_screen(ctx)
    for s in screened:
        c = s.candidate
        _, reqs = simulate(ctx, s)
        fin = reqs[reqs["status"] == "finished"]
        from llmsim.cost.step import default_timer
        from llmsim.specs import Precision

        hw = ctx.hardware[c.hardware]
        base = _Base(ctx.models["llama-3.1-8b"], hw, c.tp, c.pp, Precision.parse(c.precision), default_timer(hw),
                     ctx.lengths["long"], ctx.targets["long"])
        ttft_lb = np.array([base.prefill_s(n) for n in fin["input_tokens"]])
        tpot_lb = np.array([base.decode_s(1, int(n)) for n in fin["input_tokens"]])
        assert (fin["ttft_s"].to_numpy() >= ttft_lb).all(), c.label
        assert (fin["tpot_s"].to_numpy() >= tpot_lb).all(), c.label
