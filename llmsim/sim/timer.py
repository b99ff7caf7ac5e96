"""Step durations from the cost model and the engine runtime, cached by the plan's cost signature (what the
cost model's batch features depend on: the prompt chunks, the number of decodes and the sum of their
contexts, the number of sequences that sample).

The GPU time of a step comes from ``CostModel.step_time`` with the launch mode the engine uses for it (full
CUDA-graph replay, piecewise graphs or eager, ``EngineRuntime.launch_mode``); its CPU time from the engine's
CPU cost model. How the two combine (serially, or overlapped by async scheduling) is the replica's business
(``EngineRuntime.period_s``).

Pure-decode steps are served from a per-(batch size, samplers) line in the sum of decode contexts: the cost
model's decode attention reads and multiplies each cached token once, so time, FLOPs and bytes are linear in
that sum. The line is checked on three points (0, a mid point and the longest context) when first built; if
the cost model is not linear there (a calibrated curve), every step is computed exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from llmsim.cost.fast import FastStepCost, aggregate_features
from llmsim.cost.step import CostModel
from llmsim.kv.swap import SwapSpace
from llmsim.sched.plan import Plan


@dataclass(frozen=True, slots=True)
class StepTime:
    """GPU seconds of one step (``gpu_s = sum(stage_s)``, swap copies included), per pipeline stage, and its
    FLOPs and HBM bytes."""

    gpu_s: float
    stage_s: tuple[float, ...]
    flops: float
    hbm_bytes: float


def _lerp(a: StepTime, b: StepTime, x: float) -> StepTime:
    return StepTime(a.gpu_s + x * (b.gpu_s - a.gpu_s),
                    tuple(sa + x * (sb - sa) for sa, sb in zip(a.stage_s, b.stage_s, strict=True)),
                    a.flops + x * (b.flops - a.flops), a.hbm_bytes + x * (b.hbm_bytes - a.hbm_bytes))


def _close(a: StepTime, b: StepTime, rel: float = 1e-9) -> bool:
    pairs = [(a.gpu_s, b.gpu_s), (a.flops, b.flops), (a.hbm_bytes, b.hbm_bytes),
             *zip(a.stage_s, b.stage_s, strict=True)]
    return all(abs(x - y) <= rel * max(abs(x), abs(y), 1e-30) for x, y in pairs)


def _fast_path(cost_model) -> FastStepCost | None:
    """The tabulated step cost of a plain ``CostModel`` (``llmsim.cost.fast``); None for any other model."""
    if type(cost_model) is not CostModel:
        return None
    fast = FastStepCost(cost_model)
    return fast if fast.exact else None


class StepTimer:
    """Wraps ``CostModel`` for one engine runtime: ``step(plan)`` for one step's GPU time, ``cpu_s(plan)``
    for its CPU time, ``decode_run(plan, k)`` for ``k`` identical decode steps. Swap transfers are added to
    the GPU time of the step that issues them (vLLM runs the block copies before the forward pass on the
    same stream)."""

    def __init__(self, cost_model, runtime, swap: SwapSpace | None = None, kv_bytes_per_token: float = 0.0,
                 max_context: int = 131072, max_entries: int = 16_384) -> None:
        self.cm = cost_model
        self.runtime = runtime
        self.cpu = runtime.cpu
        self.swap = swap
        self.kv_bytes_per_token = kv_bytes_per_token  # whole replica (fallback growth of KV reads in a run)
        self.max_context = max_context
        self.max_entries = max_entries
        self._cache: dict[tuple, StepTime] = {}
        self._lines: dict[tuple[int, int], tuple[StepTime, StepTime, int] | None] = {}
        self.num_calls = 0
        self._fast = _fast_path(cost_model)

    def cpu_s(self, plan: Plan) -> float:
        """Host seconds of the step: per step, per real sequence and per real token scheduled."""
        return self.cpu.seconds(len(plan.seqs), plan.num_tokens)

    def step(self, plan: Plan) -> StepTime:
        if plan.prefill:
            prefill = tuple(sorted(plan.prefill)) if len(plan.prefill) > 1 else tuple(plan.prefill)
            hit = self._lookup(prefill, plan.num_decode, plan.decode_ctx_sum, plan.num_emit)
        else:
            hit = self._decode(plan.num_decode, plan.decode_ctx_sum, plan.num_emit)
        if plan.swap_in_blocks + plan.swap_out_blocks and self.swap is not None:
            extra = self.swap.transfer_s(plan.swap_in_blocks) + self.swap.transfer_s(plan.swap_out_blocks)
            return StepTime(hit.gpu_s + extra, hit.stage_s, hit.flops, hit.hbm_bytes)
        return hit

    def _lookup(self, prefill: tuple, num_decode: int, decode_ctx_sum: int, num_emit: int) -> StepTime:
        key = (prefill, num_decode, decode_ctx_sum, num_emit)
        hit = self._cache.get(key)
        if hit is None:
            hit = self._compute(prefill, num_decode, decode_ctx_sum, num_emit)
            if len(self._cache) >= self.max_entries:
                self._cache.clear()
            self._cache[key] = hit
        return hit

    def _launch(self, prefill: tuple, num_decode: int) -> str:
        """Launch mode of a step whose cost rows (padding included) are ``prefill`` chunks and ``num_decode``
        one-token rows: a step of one-token rows only is a uniform decode (vLLM: full graph)."""
        tokens = sum(n for n, _ in prefill) + num_decode
        return self.runtime.launch_mode(tokens, not prefill)

    def _compute(self, prefill: tuple, num_decode: int, decode_ctx_sum: int, num_emit: int) -> StepTime:
        self.num_calls += 1
        if self._fast is not None:  # the same floats as the exact path below, from tabulated operators
            f = aggregate_features(prefill, num_decode, decode_ctx_sum, num_emit, self.cm.model.sliding_window)
            stages, flops, hbm = self._fast.stage_times(f, self._launch(prefill, num_decode))
            return StepTime(float(sum(stages)), stages, flops, hbm)
        new = [n for n, _ in prefill]
        ctx = [c for _, c in prefill]
        if num_decode:  # only the sum of decode contexts matters to the cost model's features
            base, extra = divmod(decode_ctx_sum, num_decode)
            new += [1] * num_decode
            ctx += [base + 1] * extra + [base] * (num_decode - extra)
        emits = [True] * num_emit + [False] * (len(new) - num_emit)
        c = self.cm.step_time(new, ctx, emits, launch=self._launch(prefill, num_decode))
        stages = tuple(float(s) for s in c.stage_s)
        return StepTime(float(sum(stages)), stages, float(c.flops), float(c.hbm_bytes))

    # --- pure decode -------------------------------------------------------------------------------
    def _line(self, d: int, e: int) -> tuple[StepTime, StepTime, int] | None:
        key = (d, e)
        if key not in self._lines:
            span = d * self.max_context
            a, b = self._compute((), d, 0, e), self._compute((), d, span, e)
            mid = self._compute((), d, span // 3, e)
            self._lines[key] = (a, b, span) if _close(_lerp(a, b, (span // 3) / span), mid) else None
        return self._lines[key]

    def _decode(self, d: int, ctx_sum: int, e: int) -> StepTime:
        line = self._line(d, e)
        if line is None:
            return self._lookup((), d, ctx_sum, e)
        a, b, span = line
        return _lerp(a, b, ctx_sum / span)

    def chunk_run(self, plan: Plan, chunks: list[int], completes: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(GPU seconds, FLOPs, HBM bytes) of each step of a ``steady_chunks`` run of ``plan`` (one prompt
        chunk, the rest one-token decodes): step i computes ``chunks[i]`` prompt tokens on top of the earlier
        ones while each decode's context grows by one; the prompt samples in the last step if it ``completes``.
        Each step is the single step's cost (the same cache and floats as ``step``)."""
        ((_, ctx),) = plan.prefill
        d, ctx_sum, e = plan.num_decode, plan.decode_ctx_sum, plan.num_emit
        last = len(chunks) - 1
        gpu, flops, hbm = [], [], []
        for i, c in enumerate(chunks):
            hit = self._lookup(((c, ctx),), d, ctx_sum + i * d, e + (completes and i == last))
            ctx += c
            gpu.append(hit.gpu_s)
            flops.append(hit.flops)
            hbm.append(hit.hbm_bytes)
        return (np.array(gpu, dtype=np.float64), np.array(flops, dtype=np.float64),
                np.array(hbm, dtype=np.float64))

    def decode_run(self, plan: Plan, k: int) -> tuple[np.ndarray, float, np.ndarray]:
        """(GPU seconds of each of the k steps, FLOPs per step, HBM bytes of each step) of a steady decode
        run; the contexts of ``plan.num_growing_rows`` rows grow by one token per step."""
        d, e, grow = plan.num_decode, plan.num_emit, plan.num_growing_rows
        sums = plan.decode_ctx_sum + grow * np.arange(k, dtype=np.float64)
        line = self._line(d, e)
        if line is not None:
            a, b, span = line
            x = sums / span
            mean = float(np.add.reduce(x)) / k  # x.mean(), the same float without its Python overhead
            return (a.gpu_s + x * (b.gpu_s - a.gpu_s), a.flops + mean * (b.flops - a.flops),
                    a.hbm_bytes + x * (b.hbm_bytes - a.hbm_bytes))
        first = self._lookup((), d, plan.decode_ctx_sum, e)
        if plan.num_pad:  # padding rows neither grow nor sample: interpolate between the ends
            last = self._lookup((), d, int(sums[-1]), e)
            durations = np.linspace(first.gpu_s, last.gpu_s, k)
        else:
            _, ctx = plan.cost_batch()
            stages = self.cm.decode_run(np.asarray(ctx, dtype=np.int64), k, launch=self._launch((), d))
            durations = np.asarray(stages, dtype=np.float64).sum(axis=1)
        hbm = first.hbm_bytes + self.kv_bytes_per_token * grow * np.arange(k, dtype=np.float64)
        return durations, first.flops, hbm
