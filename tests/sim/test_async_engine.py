"""The replica loop under an engine runtime, against hand-worked timelines: async scheduling overlaps CPU and
GPU (period max(GPU, CPU), new arrivals join one step later, the first step after idle pays both), serial
scheduling adds them; front-end costs shift TTFT and E2E only."""

from __future__ import annotations

import numpy as np
import pytest

from llmsim.cost.step import StepCost
from llmsim.sim import simulate
from llmsim.workload.request import Request

GPU_S, CPU_S = 0.010, 0.004


class FixedCost:
    """A cost model whose every step takes GPU_S on the GPU, whatever it holds."""

    def step_time(self, new_tokens, context_tokens, emits=None, launch="eager"):
        return StepCost(GPU_S, (GPU_S,), GPU_S, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)

    def decode_run(self, context_tokens, num_steps, launch="eager"):
        return np.full((num_steps, 1), GPU_S)


def run(reqs, engine="vllm-0.15", max_run_steps=256, **frontend):
    eng = {"name": engine, "cpu": {"step_s": CPU_S, "per_seq_s": 0.0, "per_token_s": 0.0},
           "frontend": {"request_s": 0.0, "token_s": 0.0, **frontend}}
    res = simulate(reqs, model="llama-3.1-8b", hardware="h100-sxm", engine=eng, cost_model=FixedCost(),
                   scheduler={"kind": "vllm", "max_num_seqs": 8, "max_num_batched_tokens": 512},
                   max_run_steps=max_run_steps)
    return res.requests.set_index("id")


@pytest.mark.parametrize("collapse", [1, 256])
def test_async_period_is_max_of_gpu_and_cpu_after_a_first_step_that_pays_both(collapse):
    r = run([Request(0, 0.0, 32, 5)], max_run_steps=collapse)
    assert r.loc[0, "ttft_s"] == pytest.approx(GPU_S + CPU_S)  # idle engine: CPU, then GPU
    assert r.loc[0, "e2e_s"] == pytest.approx(GPU_S + CPU_S + 4 * GPU_S)  # then one token per max(GPU, CPU)


@pytest.mark.parametrize("collapse", [1, 256])
def test_serial_scheduling_adds_cpu_to_every_step(collapse):
    r = run([Request(0, 0.0, 32, 5)], engine="vllm-0.11", max_run_steps=collapse)
    assert r.loc[0, "ttft_s"] == pytest.approx(GPU_S + CPU_S)
    assert r.loc[0, "e2e_s"] == pytest.approx(5 * (GPU_S + CPU_S))


@pytest.mark.parametrize("collapse", [1, 256])
def test_async_arrival_joins_the_step_after_next(collapse):
    # A's steps: [0, 14 ms] (after idle), then every 10 ms: [14, 24], [24, 34], [34, 44], [44, 54] ...
    # B arrives at 27 ms, during [24, 34]: the plan of [34, 44] was made at 24 ms, so B runs in [44, 54].
    r = run([Request(0, 0.0, 32, 20), Request(1, 0.027, 32, 3)], max_run_steps=collapse)
    assert r.loc[1, "ttft_s"] == pytest.approx(0.054 - 0.027)
    assert r.loc[1, "e2e_s"] == pytest.approx(0.074 - 0.027)
    assert r.loc[0, "e2e_s"] == pytest.approx(0.014 + 19 * 0.010)  # A never stalls


@pytest.mark.parametrize("collapse", [1, 256])
def test_serial_arrival_joins_the_next_step(collapse):
    # A's steps every 14 ms: [0, 14], [14, 28], ...; B arrives at 27 ms and runs in [28, 42].
    r = run([Request(0, 0.0, 32, 20), Request(1, 0.027, 32, 3)], engine="vllm-0.11", max_run_steps=collapse)
    assert r.loc[1, "ttft_s"] == pytest.approx(0.042 - 0.027)


def test_a_drained_pipeline_schedules_a_newcomer_at_once():
    # A: [0, 14] prefill, [14, 24] its last token. B arrives at 20 ms, after the plan of A's next step was
    # made (14 ms), but nothing else runs: at 24 ms the engine schedules B at once (CPU, then GPU).
    r = run([Request(0, 0.0, 32, 2), Request(1, 0.020, 32, 1)])
    assert r.loc[0, "e2e_s"] == pytest.approx(0.024)
    assert r.loc[1, "ttft_s"] == pytest.approx(0.024 + CPU_S + GPU_S - 0.020)


def test_frontend_costs_shift_ttft_and_e2e_by_request_and_token_delays():
    base = run([Request(0, 0.0, 32, 5)])
    shifted = run([Request(0, 0.0, 32, 5)], request_s=0.003, token_s=0.002)
    for col in ("ttft_s", "e2e_s"):
        assert shifted.loc[0, col] == pytest.approx(base.loc[0, col] + 0.005)
    assert shifted.loc[0, "tpot_s"] == pytest.approx(base.loc[0, "tpot_s"])
