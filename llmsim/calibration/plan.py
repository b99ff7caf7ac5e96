"""What to measure: the exact GEMM shapes of the chosen models' layers per TP degree, attention head layouts,
elementwise kernels, each over a log grid of sizes; and how long measuring it will take.

Pure (no torch): the plan is built and its duration estimated from a roofline before anything runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from llmsim.calibration.measurements import ELEMENTWISE_KINDS, Case
from llmsim.cost.layers import last_stage_operators, layer_operators
from llmsim.cost.operators import ShardedShapes, batch_features
from llmsim.errors import ConfigError, InfeasibleError
from llmsim.specs import HardwareSpec, ModelSpec, ParallelLayout, Precision


def log_grid(lo: int, hi: int, dense: bool) -> tuple[int, ...]:
    """Powers of two from ``lo`` to ``hi``; ``dense`` adds the 1.5x points between them (1, 2, 3, 4, 6, 8, ...)."""
    out = set()
    v = lo
    while v <= hi:
        out.add(v)
        if dense and v * 3 // 2 <= hi and v * 3 // 2 > v:
            out.add(v * 3 // 2)
        v *= 2
    return tuple(sorted(out))


@dataclass(frozen=True, slots=True)
class Grids:
    """Sizes swept per class and the caps that keep each call in memory and time."""

    m: tuple[int, ...]
    prefill_batch: tuple[int, ...]
    prefill_seq: tuple[int, ...]
    decode_batch: tuple[int, ...]
    decode_context: tuple[int, ...]
    rows: tuple[int, ...]
    max_tokens: int
    max_kv_bytes: float
    max_call_s: float
    budget_s: float
    min_sample_s: float
    min_repeats: int
    max_repeats: int
    target_spread: float


def grids_for(device: str, quick: bool, max_m: int | None = None, repeats: int | None = None) -> Grids:
    """Default grids: ``--quick`` on a GPU is a few minutes, on a CPU under a minute."""
    gpu = device == "cuda"
    dense = not quick or not gpu  # CPU grids are short, so keep the 1.5x points for held-out checks
    top_m = max_m or (16384 if gpu else (64 if quick else 512))
    top_seq = 8192 if gpu and quick else 16384 if gpu else (512 if quick else 2048)
    top_ctx = 32768 if gpu and quick else 131072 if gpu else (2048 if quick else 8192)
    grids = Grids(
        m=log_grid(1, top_m, dense),
        prefill_batch=(1, 4) if quick else (1, 2, 4, 8),
        prefill_seq=log_grid(64 if not gpu else 128, top_seq, dense),
        decode_batch=(1, 4, 16, 64, 256) if gpu else (1, 4, 16),
        decode_context=log_grid(64 if not gpu else 128, top_ctx, dense),
        rows=log_grid(1, max(top_m, 64), dense),
        max_tokens=32768 if gpu else 4096,
        max_kv_bytes=8e9 if gpu else 5e8,
        max_call_s=(0.02 if quick else 0.2) if gpu else (0.05 if quick else 0.5),
        budget_s=(240.0 if quick else 1800.0) if gpu else (40.0 if quick else 600.0),
        min_sample_s=2e-3 if gpu else 5e-3,
        min_repeats=repeats or (5 if quick else 7),
        max_repeats=max(repeats or 0, 15 if quick else 30),
        target_spread=0.03,
    )
    if max_m:  # a test-sized sweep: trim the other axes to the same scale
        grids = Grids(**{**{f: getattr(grids, f) for f in Grids.__slots__},
                         "prefill_seq": tuple(s for s in grids.prefill_seq if s <= 4 * max_m),
                         "decode_context": tuple(s for s in grids.decode_context if s <= 8 * max_m),
                         "prefill_batch": (1, 2), "decode_batch": (1, 4)})
    return grids


def gemm_families(model: ModelSpec, tp: int, prec: Precision) -> list[tuple[str, int, int]]:
    """(name, N, K) of every GEMM of one layer and of the LM head, per GPU at this TP degree."""
    layout = ParallelLayout(tp=tp)
    f = batch_features([1], [0])
    ops = layer_operators(model, layout, prec, f) + last_stage_operators(model, layout, prec, f)
    seen: dict[tuple[int, int], str] = {}
    for op in ops:
        if op.op_class == "gemm":
            seen.setdefault((int(op.shape[1]), int(op.shape[2])), op.name)
    return [(name, n, k) for (n, k), name in seen.items()]


def attention_layouts(models: list[ModelSpec], tps: list[int]) -> list[tuple[str, int, int, int]]:
    """(kind, heads, kv_heads, head_dim) per GPU of each model and TP degree, plus an MHA layout of the first."""
    out: dict[tuple[int, int, int], str] = {}
    for model in models:
        for tp in tps:
            if model.num_heads % tp:
                continue
            sh = ShardedShapes.of(model, ParallelLayout(tp=tp))
            kind = "mha" if sh.kv_heads == sh.heads else ("mqa" if sh.kv_heads == 1 else "gqa")
            out.setdefault((sh.heads, sh.kv_heads, model.head_dim), kind)
    first = models[0]
    heads = first.num_heads // tps[0]
    out.setdefault((heads, heads, first.head_dim), "mha")
    return [(kind, h, kv, d) for (h, kv, d), kind in out.items()]


def build_cases(models: list[ModelSpec], tps: list[int], dtypes: list[str], grids: Grids) -> list[Case]:
    """Every case of the sweep, GEMMs first (per dtype), then attention and elementwise (16-bit)."""
    cases: list[Case] = []
    seen_gemm: set[tuple] = set()
    for dtype in dtypes:
        prec = Precision.parse(dtype)
        for model in models:
            for tp in tps:
                if model.num_heads % tp:
                    raise InfeasibleError(f"tp={tp} does not divide the {model.num_heads} heads of {model.name}")
                for name, n, k in gemm_families(model, tp, prec):
                    if (dtype, n, k) in seen_gemm:
                        continue
                    seen_gemm.add((dtype, n, k))
                    cases += [Case.make("gemm", name, dtype, m=m, n=n, k=k) for m in grids.m]
    act = "fp16" if dtypes[0] == "fp16" else "bf16"
    kv_bytes = 2
    for kind, h, kv, d in attention_layouts(models, tps):
        for b in grids.prefill_batch:
            cases += [Case.make("attn_prefill", kind, act, batch=b, seq=s, heads=h, kv_heads=kv, head_dim=d)
                      for s in grids.prefill_seq if b * s <= grids.max_tokens]
        for b in grids.decode_batch:
            cases += [Case.make("attn_decode", kind, act, batch=b, context=c, heads=h, kv_heads=kv, head_dim=d)
                      for c in grids.decode_context if 2 * b * c * kv * d * kv_bytes <= grids.max_kv_bytes]
    hidden, vocab = models[0].hidden_size, models[0].vocab_size
    for kind in ELEMENTWISE_KINDS:
        width = vocab if kind == "softmax" else hidden
        cases += [Case.make("elementwise", kind, act, rows=r, width=width) for r in grids.rows
                  if r * width <= grids.max_tokens * hidden]
    return cases


def parse_dtypes(text: str, device: str) -> list[str]:
    dtypes = [d.strip() for d in text.split(",") if d.strip()]
    bad = [d for d in dtypes if d not in ("bf16", "fp16", "fp8", "fp32")]
    if bad or not dtypes:
        raise ConfigError(f"--dtypes: expected a comma-separated subset of bf16, fp16, fp8, fp32; got {text!r}")
    return dtypes


def case_call_s(case: Case, hw: HardwareSpec, launch_s: float) -> tuple[float, float]:
    """(rough seconds per call, seconds to create its inputs): a roofline at half the peaks, used to bound
    and announce the sweep's duration before it starts."""
    op = case.operator()
    peak = hw.peak_flops(op.compute_dtype) if hw.supports(op.compute_dtype) else hw.peak_flops("bf16")
    setup = 2.0 * float(op.hbm_bytes) / hw.hbm_bytes_per_s
    return 2.0 * max(float(op.flops) / peak, float(op.hbm_bytes) / hw.hbm_bytes_per_s) + launch_s, setup


def case_total_s(call_s: float, setup_s: float, grids: Grids) -> float:
    """Input creation, warm-up (three calls and a few ms), then the minimum repeats plus a few re-samples,
    each sample lasting at least ``min_sample_s``."""
    return setup_s + 3 * call_s + 1e-2 + (grids.min_repeats + 3) * max(call_s, grids.min_sample_s)


def prune(cases: list[Case], hw: HardwareSpec, launch_s: float, grids: Grids) -> tuple[list[Case], list[Case], float]:
    """(kept, dropped, estimated seconds): cases slower per call than ``grids.max_call_s`` are dropped, and
    the cap is halved until the estimate fits ``grids.budget_s`` (the sweep's duration is bounded)."""
    timed = [(case, *case_call_s(case, hw, launch_s)) for case in cases]
    cap = grids.max_call_s
    while True:
        kept = [(c, call, setup) for c, call, setup in timed if call <= cap]
        total = sum(case_total_s(call, setup, grids) for _, call, setup in kept)
        if total <= grids.budget_s or cap < 1e-3:
            break
        cap /= 2
    names = {c for c, _, _ in kept}
    return [c for c, _, _ in kept], [c for c in cases if c not in names], total


def eta_text(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{math.ceil(seconds / 60)} min"
