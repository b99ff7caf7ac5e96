"""The tabulated step cost equals ``CostModel.step_time`` on random batches of every shape the schedulers make
(whole prompts, chunked prompts over cached context, decodes, mixtures, padding rows, partial samplers),
every launch mode, dense / MoE / sliding-window / qk-norm / learned-position models, tensor and pipeline
parallel layouts, 16- and 8-bit precisions, 2- and 4-bit KV caches, uncalibrated and calibrated profiles, with and without a power
cap."""

from __future__ import annotations

import sys
from dataclasses import replace

import numpy as np
import pytest

from llmsim.cost import CostModel
from llmsim.cost.fast import FastStepCost, aggregate_features
from llmsim.cost.operators import batch_features
from llmsim.cost.step import LAUNCH_MODES
from llmsim.specs import ModelSpec, ParallelLayout, Precision, load_hardware, load_model

CONFIGS = [  # (model, hardware, tp, pp, ep, precision)
    ("llama-3.1-8b", "h100-sxm", 1, 1, 1, "bf16"),
    ("llama-3.1-8b", "h100-sxm-calibrated", 1, 1, 1, "bf16"),
    ("llama-3.1-8b", "h100-sxm-calibrated", 2, 1, 1, "fp8"),
    ("llama-2-70b", "a100-sxm-80gb", 2, 1, 1, "bf16"),
    ("llama-2-70b", "a100-sxm-80gb-calibrated", 4, 2, 1, "bf16"),
    ("mistral-7b", "a100-sxm-80gb", 1, 1, 1, "bf16"),  # sliding window
    ("mixtral-8x7b", "h100-sxm-calibrated", 2, 1, 2, "bf16"),  # MoE, expert parallel
    ("qwen3-14b", "h200-calibrated", 1, 3, 1, "bf16"),  # qk-norm; uneven pipeline stages
    ("opt-13b", "l40s-calibrated", 1, 1, 1, "fp16"),  # learned positions
    ("qwen3-30b-a3b", "h100-sxm-calibrated", 1, 1, 1, "bf16"),  # MoE in every layer: still tabulated
    ("tiny", "h100-sxm", 1, 1, 1, "bf16"),  # microsecond kernels: the launch side of max(GPU, launches) shows
    ("tiny", "h100-sxm-calibrated", 1, 2, 1, "bf16"),
    ("llama-3.1-8b", "h100-sxm@350", 1, 1, 1, "bf16"),  # power cap (W): prefill steps at a lowered clock
    ("llama-2-70b", "a100-sxm-80gb-calibrated@200", 4, 2, 1, "bf16"),
    ("llama-3.1-8b", "h100-sxm-calibrated", 1, 1, 1, "bf16:int4"),  # 4-bit KV: dequantised per KV token read
    ("mistral-7b", "a100-sxm-80gb", 2, 1, 1, "bf16:int2"),
]
TINY = ModelSpec("tiny", num_layers=24, hidden_size=1024, num_heads=16, num_kv_heads=4, head_dim=64, ffn_size=2816,
                 vocab_size=32000, max_context=4096)
SHAPES = ("prefill", "decode", "chunked", "padded", "small")
FIELDS = ("total_s", "compute_s", "memory_s", "comm_s", "launch_s", "overhead_s", "flops", "hbm_bytes")


def batch(rng: np.random.Generator, shape: str, window: int | None):
    """(new, ctx, emits) as a policy makes them: ``prefill`` whole prompts (static, orca, vLLM v0), ``decode``,
    ``chunked`` (Sarathi / vLLM v1: chunks over cached context plus decodes), ``padded`` (CUDA-graph rows),
    ``small`` (a few short decodes: kernels shorter than their launch)."""
    if shape == "small":
        n = int(rng.integers(1, 4))
        return [1] * n, rng.integers(0, 64, n).tolist(), [True] * n
    long_ctx = window * 2 if window else 30_000
    d = int(rng.integers(0, 200))
    p = int(rng.integers(1, 6))
    new, ctx = [], []
    if shape in ("prefill", "chunked", "padded"):
        new += rng.integers(2, 2048, p).tolist()
        ctx += ([0] * p if shape == "prefill" else rng.integers(0, long_ctx, p).tolist())
    if shape in ("decode", "chunked", "padded") or not new:
        d = max(d, 1)
        new += [1] * d
        ctx += rng.integers(0, long_ctx, d).tolist()
    if shape == "padded":
        pads = int(rng.integers(1, 16))
        new += [1] * pads
        ctx += [0] * pads
    emits = rng.random(len(new)) < 0.8
    return new, ctx, emits


@pytest.fixture(scope="module", params=CONFIGS, ids=lambda c: "-".join(map(str, c)))
def models(request):
    name, hw, tp, pp, ep, prec = request.param
    model = TINY if name == "tiny" else load_model(name)
    hw, _, cap = hw.partition("@")
    hardware = replace(load_hardware(hw), power_cap_w=float(cap or 0.0))
    cm = CostModel(model, hardware, ParallelLayout(tp=tp, pp=pp, ep=ep), Precision.parse(*prec.split(":")))
    assert (cm.power is not None) == bool(cap)
    return cm, FastStepCost(cm)


@pytest.mark.parametrize("launch", LAUNCH_MODES)
@pytest.mark.parametrize("shape", SHAPES)
def test_fast_step_cost_equals_the_exact_path(models, launch, shape):
    cm, fast = models
    assert fast.exact
    rng = np.random.default_rng(10 * SHAPES.index(shape) + LAUNCH_MODES.index(launch))
    for _ in range(8):
        new, ctx, emits = batch(rng, shape, cm.model.sliding_window)
        want = cm.step_time(new, ctx, emits, launch=launch)
        got = fast.step_time(cm.features(new, ctx, emits), launch)
        for name in FIELDS:
            assert getattr(got, name) == pytest.approx(getattr(want, name), rel=1e-9, abs=0.0), name
        assert got.stage_s == pytest.approx(want.stage_s, rel=1e-9, abs=0.0)


@pytest.mark.parametrize("launch", LAUNCH_MODES)
def test_stage_times_are_the_step_costs_floats(models, launch):
    """The simulator's lean call gives ``step_time``'s stage seconds, FLOPs and bytes: the same floats (on
    CPython < 3.12, where ``sum`` adds floats one by one; later versions compensate: within 1e-12)."""
    cm, fast = models
    rng = np.random.default_rng(7 + LAUNCH_MODES.index(launch))
    exact = sys.version_info < (3, 12)
    for shape in SHAPES:
        for _ in range(4):
            f = cm.features(*batch(rng, shape, cm.model.sliding_window))
            want = fast.step_time(f, launch)
            got = fast.stage_times(f, launch)
            want = (tuple(float(x) for x in want.stage_s), float(want.flops), float(want.hbm_bytes))
            assert got == want if exact else got == pytest.approx(want, rel=1e-12), shape


@pytest.mark.parametrize("window", [None, 7, 4096])
def test_plan_aggregates_give_the_features_of_the_spread_batch(window):
    """``StepTimer`` builds its batch from a plan's aggregates: decode contexts spread evenly over the rows."""
    rng = np.random.default_rng(window or 0)
    for _ in range(50):
        prefill = [(int(n), int(c)) for n, c in zip(rng.integers(2, 3000, 4), rng.integers(0, 9000, 4),
                                                    strict=True)][: int(rng.integers(0, 5))]
        d = int(rng.integers(0, 300))
        ctx_sum = int(rng.integers(0, 9000 * max(d, 1))) if d else 0
        emit = int(rng.integers(0, len(prefill) + d + 1))
        base, extra = divmod(ctx_sum, d) if d else (0, 0)
        new = [n for n, _ in prefill] + [1] * d
        ctx = [c for _, c in prefill] + [base + 1] * extra + [base] * (d - extra)
        want = batch_features(new, ctx, [True] * emit + [False] * (len(new) - emit), window)
        assert aggregate_features(prefill, d, ctx_sum, emit, window) == want


def test_an_unknown_operator_structure_falls_back_to_the_exact_path(monkeypatch):
    """An operator that depends on more than the token count (here: on the prefill sequences) is not tabulated."""
    import llmsim.cost.fast as fast_mod
    from llmsim.cost.operators import elementwise

    real = fast_mod.layer_operators

    def with_extra(model, layout, prec, f):
        ops = real(model, layout, prec, f)
        return ops + [elementwise("per_seq", 1.0, 1.0, 0.0)] if f.prefill_seqs else ops

    monkeypatch.setattr(fast_mod, "layer_operators", with_extra)
    cm = CostModel(load_model("llama-3.1-8b"), load_hardware("h100-sxm"))
    assert not FastStepCost(cm).exact


@pytest.mark.parametrize("name, tp, ep", [("llama-4-maverick", 8, 8), ("llama-4-scout", 2, 1), ("gpt-oss-120b", 1, 1),
                                          ("deepseek-v3", 8, 8)])
def test_models_with_mixed_layers_take_the_exact_path(name, tp, ep):
    """Interleaved dense/MoE layers (Llama 4), chunked attention (Llama 4), global layers among windowed ones
    (gpt-oss) and latent attention (DeepSeek) do not fit the per-layer tables: the timer must not use them."""
    cm = CostModel(load_model(name), load_hardware("h100-sxm-calibrated"), ParallelLayout(tp=tp, ep=ep),
                   Precision.parse("bf16"))
    assert not FastStepCost(cm).exact
