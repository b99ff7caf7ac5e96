"""The step timer agrees with the cost model it wraps; pipeline stages overlap but do not divide time."""

from __future__ import annotations

import numpy as np
import pytest

from llmsim.kv.swap import SwapSpace
from llmsim.sched import Seq
from llmsim.sched.plan import Plan
from llmsim.sim import simulate
from llmsim.sim.timer import StepTimer
from llmsim.specs import ParallelLayout
from llmsim.workload.request import Request


def decode_plan(ctxs, pads=0) -> Plan:
    plan = Plan()
    for i, c in enumerate(ctxs):
        seq = Seq(Request(i, 0.0, 10, 10_000))
        seq.num_tokens, seq.num_computed, seq.num_emitted = c + 1, c, 1
        plan.add(seq, 1)
    plan.pad(pads)
    return plan


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_decode_steps_match_the_cost_model_exactly(cost_model, seed):
    rng = np.random.default_rng(seed)
    ctxs = rng.integers(1, 30_000, int(rng.integers(1, 300))).tolist()
    timer = StepTimer(cost_model, max_context=131072)
    plan = decode_plan(ctxs)
    got = timer.step(plan)
    want = cost_model.step_time([1] * len(ctxs), ctxs)
    assert got.total_s == pytest.approx(want.total_s, rel=1e-9)
    assert got.flops == pytest.approx(want.flops, rel=1e-9)
    assert got.hbm_bytes == pytest.approx(want.hbm_bytes, rel=1e-9)
    durations, _, _ = timer.decode_run(plan, 40)
    np.testing.assert_allclose(durations, cost_model.decode_run_s(np.asarray(ctxs), 40), rtol=1e-9)


def test_padded_runs_keep_padding_rows_fixed(cost_model):
    timer = StepTimer(cost_model)
    ctxs = [100, 200, 300]
    durations, _, _ = timer.decode_run(decode_plan(ctxs, pads=5), 3)
    for k in range(3):
        new = [1] * 8
        ctx = [c + k for c in ctxs] + [0] * 5
        want = cost_model.step_time(new, ctx, [True] * 3 + [False] * 5).total_s
        assert durations[k] == pytest.approx(want, rel=1e-9)


def test_mixed_steps_are_exact_and_swaps_add_pcie_time(cost_model):
    swap = SwapSpace(100, block_bytes=2e6, link_bytes_per_s=50e9, latency_s=1e-5)
    timer = StepTimer(cost_model, swap)
    plan = decode_plan([500, 700])
    seq = Seq(Request(99, 0.0, 800, 5))
    plan.add(seq, 512)
    want = cost_model.step_time([512, 1, 1], [0, 500, 700], [False, True, True]).total_s  # a partial chunk samples nothing
    assert timer.step(plan).total_s == pytest.approx(want, rel=1e-12)
    plan.swap_out_blocks = 10
    assert timer.step(plan).total_s == pytest.approx(want + 1e-5 + 10 * 2e6 / 50e9, rel=1e-12)


def test_pipeline_overlaps_micro_batches_with_bubbles(make_requests):
    reqs = [Request(r.id, 0.0, r.input_tokens, r.output_tokens)
            for r in make_requests(300, 1.0, seed=1, mean_in=500, mean_out=150)]
    one = simulate(reqs, model="llama-3.1-8b", hardware="h100-sxm").summary()["throughput_rps"]
    two = simulate(reqs, model="llama-3.1-8b", hardware="h100-sxm", layout=ParallelLayout(pp=2)).summary()
    # two stages work on two micro-batches at once, but imbalance and sends keep it under 2x
    assert 1.2 * one < two["throughput_rps"] < 2.0 * one
