"""A power cap slows the simulated steps: compute-bound kernel time at the clock the cap allows, HBM-bound
time, collectives and launches untouched (``llmsim.cost.step.apply_power_cap``); checked by hand."""

from __future__ import annotations

from dataclasses import replace

import pytest

from llmsim.cost import CostModel
from llmsim.cost.energy import PowerProfile, cap_clock, step_energy_j
from llmsim.specs import load_model

POWER = {"tdp_w": 700.0, "idle_w": 100.0, "memory_bound_w": 300.0, "full_power_mfu": 0.7}


def solve(f, lo: float = 1e-6, hi: float = 1.0) -> float:
    """Root of an increasing ``f`` on [lo, hi] (plain bisection, written out here)."""
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if f(mid) < 0 else (lo, mid)
    return (lo + hi) / 2


def test_clock_when_half_the_step_is_compute_bound():
    # 100 W idle, 600 W of compute activity, no HBM power, cap 400 W, half of the step compute-bound:
    # 100 + 600 r^2 / (1 + 0.5 (1/r - 1)) = 400  <=>  600 r^2 = 150 + 150 / r  <=>  4 r^3 - r - 1 = 0
    profile = PowerProfile(100.0, 700.0, 300.0, 0.7, cap_w=400.0)
    r = float(cap_clock(profile, 0.5, 600.0, 0.0))
    assert 4 * r**3 - r - 1 == pytest.approx(0.0, abs=1e-9)
    assert r == pytest.approx(0.7607, abs=1e-3)
    assert float(cap_clock(profile, 1.0, 600.0, 0.0)) == pytest.approx(0.5 ** (1 / 3), rel=1e-9)  # 100 + 600 r^3
    assert float(cap_clock(profile, 0.5, 200.0, 50.0)) == 1.0  # 350 W at full clock: the cap does not bind


def test_capped_prefill_step_by_hand(make_hw):
    hw = make_hw(**POWER)
    model = load_model("llama-3.1-8b")
    free = CostModel(model, hw).step_time([2048], [0])
    capped_cm = CostModel(model, replace(hw, power_cap_w=400.0))
    got = capped_cm.step_time([2048], [0])
    # the full-clock step's power (one GPU): activity from its FLOPs and bytes over its GPU seconds
    gpu_s = sum(free.stage_s)
    mfu = free.flops / (gpu_s * hw.peak_flops("bf16"))
    mbu = free.hbm_bytes / (gpu_s * hw.hbm_bytes_per_s)
    dyn_c, dyn_m = 600.0 * min(1.0, mfu / 0.7), 200.0 * min(1.0, mbu)
    if dyn_c + dyn_m > 600.0:  # never above the TDP
        dyn_c, dyn_m = dyn_c * 600.0 / (dyn_c + dyn_m), dyn_m * 600.0 / (dyn_c + dyn_m)
    assert 100.0 + dyn_c + dyn_m > 400.0  # a prefill of 2048 tokens draws more than the cap at full clock
    share = free.compute_s / gpu_s
    r = solve(lambda r: 100.0 + (dyn_c * r**2 + dyn_m) / (1 + share * (1 / r - 1)) - 400.0)
    assert 0.3 < r < 1.0
    extra = free.compute_s * (1 / r - 1)
    assert got.compute_s == pytest.approx(free.compute_s / r, rel=1e-9)
    assert got.total_s == pytest.approx(free.total_s + extra, rel=1e-9)
    assert got.stage_s[0] == pytest.approx(free.stage_s[0] + extra, rel=1e-9)
    # HBM-bound kernels, collectives, launches, overheads and the work itself are unchanged
    for name in ("memory_s", "comm_s", "launch_s", "overhead_s", "flops", "hbm_bytes"):
        assert getattr(got, name) == getattr(free, name), name
    # the lengthened step's power meets the cap: 100 + (dyn_c r^2 + dyn_m) * gpu_s / new gpu_s
    assert 100.0 + (dyn_c * r**2 + dyn_m) * gpu_s / sum(got.stage_s) == pytest.approx(400.0, rel=1e-6)


def test_memory_bound_decode_and_uncapped_profiles_are_untouched(make_hw):
    hw = make_hw(**POWER)
    model = load_model("llama-3.1-8b")
    batch = ([1] * 8, [2000] * 8)
    free = CostModel(model, hw).step_time(*batch)
    assert CostModel(model, replace(hw, power_cap_w=400.0)).step_time(*batch) == free  # draws < 400 W
    assert CostModel(model, replace(hw, power_cap_w=700.0)).power is None  # a cap at the TDP binds nothing


def test_capped_run_is_slower_and_draws_at_most_the_cap():
    from llmsim.sim import simulate
    from llmsim.specs import load_hardware
    from llmsim.workload import Request

    reqs = [Request(id=i, arrival_s=0.05 * i, input_tokens=2048, output_tokens=16) for i in range(30)]
    hw = load_hardware("h100-sxm")
    free = simulate(reqs, model="llama-3.1-8b", hardware=hw).summary()
    run = simulate(reqs, model="llama-3.1-8b", hardware=replace(hw, power_cap_w=300.0))
    capped = run.summary()
    assert capped["ttft_p50_s"] > 1.1 * free["ttft_p50_s"]  # prefill-bound TTFT at a lowered clock
    assert capped["power_mean_w"] < free["power_mean_w"]
    assert "power_cap_time_factor" not in capped  # the slowdown is simulated, not reported on the side
    (rp,) = run.power
    joules, factor = step_energy_j(rp, run.steps["flops"], run.steps["hbm_bytes"], run.steps["duration_s"])
    assert rp.steps_capped and (factor == 1.0).all()  # not lengthened a second time in the accounting
    assert (joules / run.steps["duration_s"].to_numpy() <= 300.0 * (1 + 1e-12)).all()
