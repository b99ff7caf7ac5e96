"""The step timer agrees with the cost model it wraps; pipeline stages overlap but do not divide time."""

from __future__ import annotations

import numpy as np
import pytest

from llmsim.engines import load_engine, resolve_engine
from llmsim.kv.swap import SwapSpace
from llmsim.sched import Seq
from llmsim.sched.plan import Plan
from llmsim.sim import simulate
from llmsim.sim.timer import StepTimer
from llmsim.specs import ParallelLayout
from llmsim.workload.request import Request


def runtime(cost_model, engine="generic", **sched):
    return resolve_engine(load_engine(engine), cost_model.hardware, scheduler=sched or None)


def gpu_s(cost) -> float:
    return cost.total_s - cost.overhead_s


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
    timer = StepTimer(cost_model, runtime(cost_model), max_context=131072)
    plan = decode_plan(ctxs)
    got = timer.step(plan)
    want = cost_model.step_time([1] * len(ctxs), ctxs)
    assert got.gpu_s == pytest.approx(gpu_s(want), rel=1e-9)
    assert got.flops == pytest.approx(want.flops, rel=1e-9)
    assert got.hbm_bytes == pytest.approx(want.hbm_bytes, rel=1e-9)
    assert timer.cpu_s(plan) == pytest.approx(want.overhead_s, rel=1e-12)  # generic engine: the hardware's
    durations, _, _ = timer.decode_run(plan, 40)
    np.testing.assert_allclose(durations, cost_model.decode_run(np.asarray(ctxs), 40).sum(axis=1), rtol=1e-9)


def tiny_cost_model():
    from llmsim.cost import CostModel
    from llmsim.specs import ModelSpec, load_hardware

    # a small model (24 layers, 1024 wide): microsecond kernels, so launch costs show
    tiny = ModelSpec("tiny", num_layers=24, hidden_size=1024, num_heads=16, num_kv_heads=4, head_dim=64,
                     ffn_size=2816, vocab_size=32000, max_context=4096)
    return CostModel(tiny, load_hardware("h100-sxm"))


class RecordingCost:
    """Wraps a cost model and records the launch mode of every step it is asked for."""

    def __init__(self, inner):
        self.inner, self.modes = inner, []

    def step_time(self, new, ctx, emits=None, launch="eager"):
        self.modes.append(launch)
        return self.inner.step_time(new, ctx, emits, launch=launch)

    def decode_run(self, ctx, k, launch="eager"):
        self.modes.append(launch)
        return self.inner.decode_run(ctx, k, launch=launch)


def test_engine_launch_modes_follow_vllm_cudagraph_dispatch():
    cost_model = RecordingCost(tiny_cost_model())
    rt = runtime(cost_model.inner, "vllm-0.15", max_num_seqs=128, max_num_batched_tokens=2048)
    assert rt.max_capture_size == 256  # min(2 * 128, 512, 2048)
    timer = StepTimer(cost_model, rt)
    timer.step(decode_plan([300] * 8))  # uniform decode: one full graph
    assert cost_model.modes[-1] == "full"
    mixed = decode_plan([300] * 8)
    mixed.add(Seq(Request(50, 0.0, 100, 5)), 100)  # 108 tokens <= 256: piecewise
    timer.step(mixed)
    assert cost_model.modes[-1] == "piecewise"
    big = decode_plan([300] * 8)
    big.add(Seq(Request(51, 0.0, 2000, 5)), 300)  # 308 tokens, over the largest capture size: eager
    timer.step(big)
    assert cost_model.modes[-1] == "eager"
    many = decode_plan([300] * 300)  # a uniform decode of 300 > 256: eager too
    timer.step(many)
    assert cost_model.modes[-1] == "eager"
    old = StepTimer(cost_model, runtime(cost_model.inner, "vllm-0.10", max_num_seqs=128))
    old.step(decode_plan([300] * 8))
    assert cost_model.modes[-1] == "piecewise"  # 0.10 captures piecewise graphs only
    timer.step(decode_plan([300] * 4))
    want = cost_model.inner.step_time([1] * 4, [300] * 4, launch="full")
    assert timer.step(decode_plan([300] * 4)).gpu_s == pytest.approx(gpu_s(want), rel=1e-9)


def test_padded_runs_keep_padding_rows_fixed(cost_model):
    timer = StepTimer(cost_model, runtime(cost_model))
    ctxs = [100, 200, 300]
    durations, _, _ = timer.decode_run(decode_plan(ctxs, pads=5), 3)
    for k in range(3):
        new = [1] * 8
        ctx = [c + k for c in ctxs] + [0] * 5
        want = gpu_s(cost_model.step_time(new, ctx, [True] * 3 + [False] * 5))
        assert durations[k] == pytest.approx(want, rel=1e-9)


def test_mixed_steps_are_exact_and_swaps_add_pcie_time(cost_model):
    swap = SwapSpace(100, block_bytes=2e6, link_bytes_per_s=50e9, latency_s=1e-5)
    timer = StepTimer(cost_model, runtime(cost_model), swap)
    plan = decode_plan([500, 700])
    seq = Seq(Request(99, 0.0, 800, 5))
    plan.add(seq, 512)
    want = gpu_s(cost_model.step_time([512, 1, 1], [0, 500, 700], [False, True, True]))  # a partial chunk samples nothing
    assert timer.step(plan).gpu_s == pytest.approx(want, rel=1e-12)
    plan.swap_out_blocks = 10
    assert timer.step(plan).gpu_s == pytest.approx(want + 1e-5 + 10 * 2e6 / 50e9, rel=1e-12)


def test_pipeline_overlaps_micro_batches_with_bubbles(make_requests):
    reqs = [Request(r.id, 0.0, r.input_tokens, r.output_tokens)
            for r in make_requests(300, 1.0, seed=1, mean_in=500, mean_out=150)]
    one = simulate(reqs, model="llama-3.1-8b", hardware="h100-sxm").summary()["throughput_rps"]
    two = simulate(reqs, model="llama-3.1-8b", hardware="h100-sxm", layout=ParallelLayout(pp=2)).summary()
    # two stages work on two micro-batches at once, but imbalance and sends keep it under 2x
    assert 1.2 * one < two["throughput_rps"] < 2.0 * one


def test_eager_steps_last_as_long_as_the_cpu_takes_to_launch_their_kernels():
    cm = tiny_cost_model()
    hw = cm.hardware
    eager = cm.step_time([1], [100], launch="eager")
    full = cm.step_time([1], [100], launch="full")
    rows = cm.operator_costs([1], [100])
    launches = sum(r.launch_s for r in rows)
    assert launches == pytest.approx(hw.overheads.kernel_launch_s * sum(
        r.count * op_kernels(r) for r in rows), rel=1e-9)
    # the GPU work is shorter than the CPU's launches: eager lasts the launches, the full graph does not
    assert gpu_s(full) < launches
    assert gpu_s(eager) == pytest.approx(launches, rel=1e-9)
    assert eager.launch_s == pytest.approx(launches - gpu_s(full), rel=1e-9)
    piecewise = cm.step_time([1], [100], launch="piecewise")
    assert gpu_s(full) <= gpu_s(piecewise) < gpu_s(eager)  # pieces hide most launches
    # a long prefill: the kernels hide the launches, every mode costs the same
    long = [cm.step_time([4000], [0], launch=m) for m in ("eager", "piecewise", "full")]
    assert gpu_s(long[0]) == pytest.approx(gpu_s(long[2]), rel=1e-12) == pytest.approx(gpu_s(long[1]), rel=1e-12)


def op_kernels(row) -> int:
    """Kernels per execution of a breakdown row (its launch time over count x launch gap)."""
    return {"sampling": 4}.get(row.name, 1)
