"""Power, energy and cost against hand calculations (figures chosen to make the arithmetic exact)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from llmsim.cost.energy import (
    FALLBACK,
    PowerProfile,
    ReplicaPower,
    activity,
    power_profile,
    step_energy_j,
    step_power,
    usd_per_million_tokens,
)
from llmsim.errors import ConfigError
from llmsim.metrics.energy import energy_fields
from llmsim.metrics.records import STEP_COLUMNS

PEAK, BW = 1000e12, 3e12
PROFILE = PowerProfile(idle_w=100.0, tdp_w=700.0, memory_bound_w=300.0, full_power_mfu=0.7)


def test_half_compute_half_memory_step_by_hand():
    # MFU 0.35 (a_c = 0.35 / 0.7 = 0.5), MBU 0.5: P = 100 + 600 * 0.5 + 200 * 0.5 = 500 W; 0.1 s -> 50 J
    rp = ReplicaPower(1, PROFILE, PEAK, BW, 2.0)
    joules, factor = step_energy_j(rp, [0.35 * PEAK * 0.1], [0.5 * BW * 0.1], [0.1])
    assert joules[0] == pytest.approx(50.0)
    assert factor[0] == 1.0
    # two GPUs doing the same per-GPU work draw twice the energy
    rp2 = ReplicaPower(2, PROFILE, PEAK, BW, 2.0)
    joules2, _ = step_energy_j(rp2, [2 * 0.35 * PEAK * 0.1], [2 * 0.5 * BW * 0.1], [0.1])
    assert joules2[0] == pytest.approx(100.0)


def test_power_never_above_tdp_or_below_idle():
    power, _ = step_power(PROFILE, [1.0, 0.0, 0.0], [1.0, 0.0, 1.0])
    assert power.tolist() == pytest.approx([700.0, 100.0, 300.0])
    a_c, a_m = activity([5 * PEAK], [5 * BW], [1.0], 1, PEAK, BW, 0.7)  # over 100 %: clipped to 1
    assert (a_c[0], a_m[0]) == (1.0, 1.0)


def test_power_cap_lowers_the_clock_of_compute_bound_work():
    # a_c = 1, a_m = 0, cap 400 W: 100 + 600 r^3 = 400 -> r = 0.5^(1/3); the step takes 1/r longer
    capped = PowerProfile(100.0, 700.0, 300.0, 0.7, cap_w=400.0)
    power, factor = step_power(capped, [1.0], [0.0])
    r = 0.5 ** (1 / 3)
    assert factor[0] == pytest.approx(1 / r, rel=1e-9)
    assert power[0] == pytest.approx(400.0, rel=1e-9)
    # energy over the lengthened step: 400 W * 0.1 s / r = 50.4 J (vs 70 J uncapped)
    rp = ReplicaPower(1, capped, PEAK, BW, 0.0)
    joules, _ = step_energy_j(rp, [0.7 * PEAK * 0.1], [0.0], [0.1])
    assert joules[0] == pytest.approx(400 * 0.1 / r, rel=1e-9)


def test_power_cap_does_not_slow_memory_bound_steps():
    capped = PowerProfile(100.0, 700.0, 300.0, 0.7, cap_w=250.0)
    power, factor = step_power(capped, [0.0], [1.0])
    assert factor[0] == 1.0 and power[0] == pytest.approx(300.0)  # the SM clock cannot lower HBM power


def test_profile_figures_and_fallbacks(make_hw):
    hw = make_hw(tdp_w=700, idle_w=90, memory_bound_w=280, full_power_mfu=0.75)
    p = power_profile(hw)
    assert (p.idle_w, p.memory_bound_w, p.full_power_mfu, p.source) == (90, 280, 0.75, "profile")
    q = power_profile(make_hw(tdp_w=400))
    assert q.source == "fallback" and q.idle_w == pytest.approx(FALLBACK["idle"] * 400)
    with pytest.raises(ConfigError, match="tdp_w"):
        power_profile(make_hw())
    with pytest.raises(ConfigError, match="above the idle power"):
        PowerProfile(100.0, 700.0, 300.0, 0.7, cap_w=50.0)


def test_shipped_profiles_carry_power_figures():
    from llmsim.specs import load_hardware

    for name in ("h100-sxm", "h100-sxm-calibrated", "a100-sxm-80gb-calibrated", "h200-calibrated"):
        assert power_profile(load_hardware(name)).source == "profile", name


def test_usd_per_million_tokens_by_hand():
    # 8 GPUs at $2.50 = $20/h; 1000 tokens/s = 3.6 M tokens/h -> $5.556 per M
    assert usd_per_million_tokens(20.0, 1000.0) == pytest.approx(20 / 3.6)
    assert usd_per_million_tokens(20.0, 0.0) is None


def test_summary_energy_and_cost_by_hand():
    # one 1-GPU replica; window 0..10 s (arrivals); two 1 s steps: a pure prefill at full compute (700 W)
    # and a pure decode at full bandwidth (300 W); 8 s idle at 100 W -> 700 + 300 + 800 = 1800 J
    reqs = pd.DataFrame({"arrival_s": [0.0, 10.0], "status": ["finished"] * 2, "finish_s": [5.0, 10.0]})
    steps = pd.DataFrame({c: np.zeros(2) for c in STEP_COLUMNS})
    steps = steps.assign(replica=[0, 0], start_s=[1.0, 3.0], duration_s=[1.0, 1.0], flops=[0.7 * PEAK, 0.0],
                         hbm_bytes=[0.0, BW], prefill_tokens=[1000, 0], decode_tokens=[0, 10])
    rp = ReplicaPower(1, PROFILE, PEAK, BW, 3.6)
    out = energy_fields(reqs, steps, [rp], {"output_tokens_per_s": 2.0, "input_tokens_per_s": 8.0,
                                            "throughput_rps": 0.2})
    assert out["energy_j"] == pytest.approx(1800.0)
    assert out["power_mean_w"] == pytest.approx(180.0)
    assert out["energy_j_per_output_token"] == pytest.approx(90.0)
    assert out["energy_j_per_token"] == pytest.approx(18.0)
    assert out["energy_j_per_request"] == pytest.approx(900.0)
    # $3.6/h = $0.001/s; half the busy GPU time is prefill -> $0.0005/s over 8 input tokens/s
    assert out["cost_usd_per_m_input_tokens"] == pytest.approx(0.0005 / 8 * 1e6)
    assert out["cost_usd_per_m_output_tokens"] == pytest.approx(0.0005 / 2 * 1e6)
    assert out["cost_usd_per_m_tokens"] == pytest.approx(0.001 / 10 * 1e6)
    assert out["cost_usd_per_m_output_tokens_all"] == pytest.approx(0.001 / 2 * 1e6)
    assert "power_cap_time_factor" not in out and math.isfinite(out["energy_j"])


def test_simulated_summary_reports_energy_and_cost():
    from llmsim.sim import simulate
    from llmsim.workload import Request

    reqs = [Request(id=i, arrival_s=0.05 * i, input_tokens=256, output_tokens=32) for i in range(40)]
    out = simulate(reqs, model="llama-3.1-8b", hardware="h100-sxm").summary()
    assert out["energy_j_per_output_token"] > 0 and out["cost_usd_per_m_output_tokens"] > 0
    # average power between idle and TDP of the one GPU
    assert 100.0 <= out["power_mean_w"] <= 700.0


def _config(cost):
    from llmsim.experiment.config import parse_config

    return parse_config({"model": "llama-3.1-8b", "hardware": "h100-sxm", "workload": "chat", "cost": cost},
                        "exp.yaml")


def test_experiment_cost_block_overrides_price_and_cap():
    from llmsim.experiment.cluster_build import build_cluster
    from llmsim.specs import load_model

    cfg = _config({"price_per_gpu_hour_usd": {"h100-sxm": 1.25}, "power_cap_w": 450})
    cluster, _ = build_cluster(cfg, load_model("llama-3.1-8b"), "exp.yaml")
    hw = cluster.pools[0].deployment.hardware
    assert (hw.price_per_hour_usd, hw.power_cap_w) == (1.25, 450.0)


def test_experiment_cost_block_errors_name_the_field():
    from llmsim.experiment.cluster_build import build_cluster
    from llmsim.specs import load_model

    with pytest.raises(ConfigError, match=r"exp.yaml: cost.price_per_gpu_hour_usd: must be a number >= 0"):
        _config({"price_per_gpu_hour_usd": -1})
    with pytest.raises(ConfigError, match=r"exp.yaml: cost.power_cap_w: must be above the idle power"):
        build_cluster(_config({"power_cap_w": 20}), load_model("llama-3.1-8b"), "exp.yaml")


def test_power_cap_on_steps_timed_at_full_clock():
    """A cost model built without the cap (passed in) times steps at full clocks: the accounting then says
    how much longer they would take (``power_cap_time_factor``); see test_power_cap.py for capped steps."""
    from dataclasses import replace

    from llmsim.cost import CostModel
    from llmsim.sim import simulate
    from llmsim.specs import load_hardware, load_model
    from llmsim.workload import Request

    reqs = [Request(id=i, arrival_s=0.05 * i, input_tokens=2048, output_tokens=16) for i in range(30)]
    hw = load_hardware("h100-sxm")
    full_clock = CostModel(load_model("llama-3.1-8b"), hw)
    free = simulate(reqs, model="llama-3.1-8b", hardware=hw).summary()
    capped = simulate(reqs, model="llama-3.1-8b", hardware=replace(hw, power_cap_w=300.0),
                      cost_model=full_clock).summary()
    assert "power_cap_time_factor" not in free
    assert capped["power_cap_time_factor"] > 1.0  # prefill-heavy steps slow down under a 300 W cap
    assert capped["power_mean_w"] < free["power_mean_w"]
