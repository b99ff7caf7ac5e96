"""Structural kernel terms: what a plain roofline misses about how real kernels run, each named after the
kernel behaviour it models. Both timers use them: ``RooflineTimer`` with the profile's constants
(``efficiency`` and ``kernels``), ``CalibratedTimer`` with fitted ones (``calibration.physics``) and a
measured residual on top. Every kernel takes ``fixed_s + max(compute_s, memory_s)`` on the GPU (latency
plus throughput, as in LogGP-style models), launch gaps excluded (they are the engine's business).

Pure: numpy only. The decode-attention path accepts numpy arrays (vectorised decode runs).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from llmsim.cost.operators import Operator, experts_hit
from llmsim.errors import ConfigError
from llmsim.specs import HardwareSpec
from llmsim.specs.precision import PRECISIONS

# (weights, compute) of a GEMM -> the precision name its measurements are filed under
GEMM_LABELS = {(w, c): name for name, (w, c) in PRECISIONS.items()}


@dataclass(frozen=True, slots=True)
class Physics:
    """Constants of one kernel class and dtype: fraction of the peak FLOP/s and of HBM bandwidth reached,
    fixed GPU time per kernel, per-sequence time (attention) and per-CTA prologue/epilogue in tiles."""

    compute_eff: float
    memory_eff: float
    fixed_s: float
    per_seq_s: float = 0.0
    cta_tiles: float = 0.0
    cta_s: float = 0.0

    @classmethod
    def from_mapping(cls, data: Any, where: str, default: Physics) -> Physics:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: expected a mapping of physics constants")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; accepted: {', '.join(sorted(names))}")
        try:
            out = replace(default, **{k: float(v) for k, v in data.items()})
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected numbers") from None
        if not (0 < out.compute_eff <= 1.5 and 0 < out.memory_eff <= 1.5) or min(out.fixed_s, out.per_seq_s,
                                                                                   out.cta_tiles, out.cta_s) < 0:
            raise ConfigError(f"{where}: efficiencies must be in (0, 1.5] and times >= 0")
        return out


def gemm_label(op: Operator) -> str:
    return GEMM_LABELS.get((op.storage_dtype or op.compute_dtype, op.compute_dtype), op.compute_dtype)


def attention_label(op: Operator) -> str:
    kv = op.storage_dtype or op.compute_dtype
    same = kv == op.compute_dtype or {kv, op.compute_dtype} == {"bf16", "fp16"}
    return op.compute_dtype if same else f"{op.compute_dtype}/kv-{kv}"


def label_of(op: Operator) -> str:
    """The dtype label measurements of this operator are filed under (``bf16``, ``int4``, ``bf16/kv-fp8``)."""
    if op.op_class in ("gemm", "moe"):
        return gemm_label(op)
    if op.op_class in ("attn_prefill", "attn_decode"):
        return attention_label(op)
    return "all"  # elementwise kernels share one set of constants (their kinds differ in the residual)


def wave_utilisation(m: float, n: float, k: float, sms: int, tile_m: float, tile_n: float) -> float:
    """Tile and wave quantisation of a GEMM (NVIDIA "Matrix multiplication background", wave quantisation):
    the useful fraction of ceil(M/tm) ceil(N/tn) output tiles run in ceil(tiles/SMs) waves. Below one wave,
    split-K spreads K over idle SMs (cuBLAS/CUTLASS), up to one split per 256 of K. The library picks the
    tile shape that wastes least: (tm, tn), (tm/2, tn) or (tm, 2tn)."""
    if sms <= 0:
        return 1.0
    best = 0.0
    for tm, tn in ((tile_m, tile_n), (tile_m / 2, tile_n), (tile_m, 2 * tile_n)):
        rows, cols = math.ceil(m / tm), math.ceil(n / tn)
        pad = m * n / (rows * tm * cols * tn)
        ctas = rows * cols
        if ctas < sms:
            ctas *= max(1, min(sms // ctas, int(k // 256)))
        best = max(best, pad * ctas / (math.ceil(ctas / sms) * sms))
    return best


def causal_tile_pairs(s: float, c: float, tq: float, tk: float) -> tuple[float, float]:
    """(query x key tile pairs, query tiles) one (sequence, head) of FlashAttention's causal forward computes
    for ``s`` new queries over ``c`` cached keys (Dao 2023, FA2 Sec. 3.1: tiles above the diagonal skipped,
    diagonal tiles computed whole). Query tile i attends ceil((c + min((i+1) tq, s)) / tk) key tiles."""
    nq = max(1.0, math.ceil(s / tq))
    full = nq - 1  # query tiles before the last one
    pairs = full * math.ceil(c / tk) + (tq / tk) * full * (full + 1) / 2 + math.ceil((c + s) / tk)
    return pairs, nq


class KernelModel:
    """Seconds of one kernel from the structural terms: ``(fixed_s, compute_s, memory_s)`` per operator class.

    ``physics`` (a calibrated profile's ``calibration.physics``) maps class -> dtype label -> constants;
    missing entries fall back to the profile's ``efficiency`` and ``kernels`` values.
    """

    def __init__(self, hardware: HardwareSpec, physics: Mapping[str, Any] | None = None,
                 peaks: Mapping[str, float] | None = None, hbm_bytes_per_s: float | None = None) -> None:
        self.hw = hardware
        kt, eff = hardware.kernels, hardware.efficiency
        self.terms = kt
        self.sms = hardware.sm_count or 108
        self._peaks = dict(peaks or hardware.peak_flops_per_s)
        self.bw = float(hbm_bytes_per_s or hardware.hbm_bytes_per_s)
        self.defaults = {
            "gemm": Physics(eff.gemm, eff.memory, kt.fixed_s),
            "moe": Physics(eff.gemm, eff.memory, kt.fixed_s),
            "attn_prefill": Physics(eff.attention, eff.memory, kt.fixed_s, kt.prefill_per_seq_s, kt.attn_cta_tiles),
            "attn_decode": Physics(eff.attention, eff.memory, kt.fixed_s, 0.0, 0.0, kt.decode_cta_s),
            "elementwise": Physics(1.0, eff.memory, kt.fixed_s),
        }
        self.fitted: dict[tuple[str, str], Physics] = {}
        for cls, by_label in (physics or {}).items():
            if cls not in self.defaults or not isinstance(by_label, Mapping):
                continue
            for label, data in by_label.items():
                where = f"calibration.physics.{cls}.{label}"
                self.fitted[(cls, str(label))] = Physics.from_mapping(data, where, self.defaults[cls])
        self._peak_cache: dict[str, float] = {}
        self._physics_cache: dict[tuple[str, str], tuple[Physics, bool]] = {}
        self._util_cache: dict[tuple[float, float, float, float], float] = {}
        self._methods = {cls: getattr(self, cls) for cls in self.defaults}

    def physics(self, cls: str, label: str) -> tuple[Physics, bool]:
        """Constants for (class, dtype label) and whether they were fitted (fp16 stands in for bf16)."""
        key = (cls, label)
        hit = self._physics_cache.get(key)
        if hit is None:
            hit = self.defaults[cls], False
            for name in (label, {"bf16": "fp16", "fp16": "bf16"}.get(label, "")):
                if (cls, name) in self.fitted:
                    hit = self.fitted[(cls, name)], True
                    break
            self._physics_cache[key] = hit
        return hit

    def utilisation(self, m: float, n: float, k: float, tile_m: float) -> float:
        """``wave_utilisation`` on this GPU, memoised (a model's GEMMs repeat their shapes every step)."""
        key = (m, n, k, tile_m)
        util = self._util_cache.get(key)
        if util is None:
            if len(self._util_cache) > 65536:
                self._util_cache.clear()
            util = self._util_cache[key] = wave_utilisation(m, n, k, self.sms, tile_m, self.terms.gemm_tile_n)
        return util

    def peak(self, dtype: str) -> float:
        if dtype not in self._peak_cache:
            hw = self.hw
            other = {"bf16": "fp16", "fp16": "bf16"}.get(dtype, "")
            value = self._peaks.get(dtype) or self._peaks.get(other)
            if value is None:  # elementwise and weight-only paths on a GPU without that peak: the 16-bit one
                value = hw.peak_flops(dtype) if hw.supports(dtype) else hw.peak_flops("bf16")
            self._peak_cache[dtype] = float(value)
        return self._peak_cache[dtype]

    # --- per class ----------------------------------------------------------------------------------
    def gemm(self, op: Operator, p: Physics) -> tuple[float, float, float]:
        m, n, k = op.shape
        util = self.utilisation(float(m), float(n), float(k), self.terms.gemm_tile_m)
        compute = float(op.flops) / (self.peak(op.compute_dtype) * p.compute_eff * util)
        return op.kernels * p.fixed_s, compute, float(op.hbm_bytes) / (self.bw * p.memory_eff)

    def attn_prefill(self, op: Operator, p: Physics) -> tuple[float, float, float]:
        """FlashAttention forward as tile iterations on the SMs (FA3, Shah et al. 2024): the query tile packs
        the heads that share a KV head (GQA packing), so a tile covers tq / group query positions; the busiest
        SM runs at least the longest query tile's key tiles and at least the mean over all tile pairs; every
        CTA adds its prologue and epilogue (``cta_tiles``). Short prompts waste most of a 128 x 128 tile."""
        tokens, heads, kv_heads, head_dim, kv_tokens, seqs = op.shape
        b = max(float(seqs), 1.0)
        s = float(tokens) / b
        c = max(float(kv_tokens) / b - s, 0.0)
        tq, tk = self.terms.attn_tile_q, self.terms.attn_tile_k
        group = max(1.0, float(heads) / float(kv_heads))
        pairs, nq = causal_tile_pairs(s, c, tq / group, tk)
        total = b * kv_heads * (pairs + p.cta_tiles * nq)
        iters = max(total / self.sms, math.ceil((c + s) / tk) + p.cta_tiles)
        flops = iters * self.sms * 4.0 * tq * tk * head_dim
        compute = flops / (self.peak(op.compute_dtype) * p.compute_eff)
        fixed = op.kernels * p.fixed_s + p.per_seq_s * b
        return fixed, compute, float(op.hbm_bytes) / (self.bw * p.memory_eff)

    def attn_decode(self, op: Operator, p: Physics):
        """Paged decode attention (FlashDecoding-style split-KV): streams each sequence's KV once. Every
        (sequence, KV head) CTA first does fixed work (page table, Q load, O write: ``cta_s``) before its
        KV loop, spread over the SMs: it dominates large batches of short contexts. Linear in the KV read
        for a fixed batch, so consecutive decode steps cost a straight line."""
        seqs, kv_heads = float(op.shape[0]), float(op.shape[2])
        compute = op.flops / (self.peak(op.compute_dtype) * p.compute_eff)
        memory = op.hbm_bytes / (self.bw * p.memory_eff)
        fixed = op.kernels * p.fixed_s + p.per_seq_s * seqs + p.cta_s * seqs * kv_heads / self.sms
        return fixed, compute, memory

    def moe(self, op: Operator, p: Physics) -> tuple[float, float, float]:
        """Grouped expert GEMMs (vLLM fused_moe): each expert hit runs its routed rows, padded to the row
        block, through gate/up then down; tile and wave quantisation as for a GEMM over all experts' tiles."""
        tokens, hidden, ffn, experts, topk, ep, up = op.shape
        # the pairs this GPU runs, routing skew and capacity included (moe_experts builds flops from them)
        routed = float(op.flops) / (2.0 * hidden * ffn * (up + 1))
        hit = max(experts_hit(float(tokens), experts, topk) / ep, 1e-9)
        bm = self.terms.moe_tile_m
        blocks = hit * math.ceil(routed / hit / bm)  # row blocks over the experts hit
        peak = self.peak(op.compute_dtype) * p.compute_eff
        compute = 0.0
        for width, depth in ((up * ffn, hidden), (hidden, ffn)):
            util = self.utilisation(blocks * bm, width, depth, bm)
            compute += 2.0 * blocks * bm * width * depth / (peak * util)
        return op.kernels * p.fixed_s, compute, float(op.hbm_bytes) / (self.bw * p.memory_eff)

    def elementwise(self, op: Operator, p: Physics) -> tuple[float, float, float]:
        """A streaming kernel: fixed time (its minimum duration) plus its bytes at the achieved bandwidth."""
        compute = op.flops / self.peak(op.compute_dtype)  # an array over a decode run (KV dequantisation)
        return op.kernels * p.fixed_s, compute, float(op.hbm_bytes) / (self.bw * p.memory_eff)

    def time(self, op: Operator, p: Physics | None = None):
        """(fixed_s, compute_s, memory_s) of ``op`` with constants ``p`` (default: this model's for its dtype)."""
        cls = op.op_class
        method = self._methods.get(cls)
        if method is None:
            raise ValueError(f"no kernel model for operator class {cls!r}")
        if p is None:
            p = self.physics(cls, label_of(op))[0] if self.fitted else self.defaults[cls]
        return method(op, p)


def kernel_seconds(parts) -> float | np.ndarray:
    fixed, compute, memory = parts
    return fixed + np.maximum(compute, memory)
