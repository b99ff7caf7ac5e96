"""torch kernels for each benchmark case, with inputs rotated through enough copies to defeat the cache.

A serving step runs every layer's GEMMs on different weights, so a benchmark that re-reads one small weight
from L2 would be optimistic: each case cycles through copies of its inputs totalling about twice the last-level
cache (bounded by a memory cap).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from llmsim.calibration.measurements import Case

TORCH_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32", "fp8": "float8_e4m3fn"}


class KernelFactory:
    """Builds ``(fn, context)`` for a case on ``device``; ``cache_bytes`` is the last-level cache to defeat."""

    def __init__(self, torch: Any, device: str, cache_bytes: float, mem_cap_bytes: float) -> None:
        self.torch, self.device = torch, device
        self.cache_bytes, self.mem_cap_bytes = cache_bytes, mem_cap_bytes
        gen = torch.Generator(device="cpu").manual_seed(0)
        self._pool = torch.randn(1 << 22, generator=gen).to(device)  # reused random values: fast to fill
        self._pools: dict[tuple, Any] = {}
        self.expand_gqa = False  # set if the FlashAttention backend refuses grouped K/V (enable_gqa)
        self._weight_key: tuple | None = None
        self._weight_list: list = []

    def dtype(self, name: str) -> Any:
        return getattr(self.torch, TORCH_DTYPES[name])

    def rand(self, shape: tuple[int, ...], dtype: Any, scale: float = 1.0) -> Any:
        """A tensor of normal-looking values, tiled from a pool in the target dtype (one write pass: filling
        gigabyte weights stays cheap)."""
        key = (dtype, scale)
        if key not in self._pools:
            self._pools[key] = (self._pool * scale).to(dtype)
        pool = self._pools[key]
        size, n = pool.numel(), math.prod(shape)
        out = self.torch.empty(n, dtype=dtype, device=self.device)
        full, rest = divmod(n, size)
        if full:
            out[: full * size].view(full, size).copy_(pool.expand(full, size))
        if rest:
            out[full * size:].copy_(pool[:rest])
        return out.view(shape)

    def copies(self, case_bytes: float) -> int:
        if case_bytes <= 0:
            return 1
        want = math.ceil(2.0 * self.cache_bytes / case_bytes)
        return int(max(1, min(8, want, self.mem_cap_bytes // max(case_bytes, 1.0))))

    def build(self, case: Case) -> tuple[Callable[[], Any], AbstractContextManager | None]:
        builder = getattr(self, f"_{case.op_class}")
        return builder(case)

    def _rotate(self, make: Callable[[], tuple], run: Callable[..., Any], case_bytes: float) -> Callable[[], Any]:
        sets = [make() for _ in range(self.copies(case_bytes))]
        if len(sets) == 1:
            only = sets[0]
            return lambda: run(*only)
        cycle = itertools.cycle(sets)
        return lambda: run(*next(cycle))

    def _gemm(self, case: Case):
        t = self.torch
        m, n, k = case["m"], case["n"], case["k"]
        nbytes = float(case.operator().hbm_bytes)
        if case.dtype == "fp8":
            f8 = self.dtype("fp8")
            one = t.ones((), device=self.device)

            def make_fp8():
                # _scaled_mm wants the second operand column-major: a row-major [N, K] weight, transposed.
                return (self.rand((m, k), f8, 0.5), self.rand((n, k), f8, 0.5).t())

            return self._rotate(make_fp8, lambda a, b: t._scaled_mm(a, b, one, one, out_dtype=t.bfloat16),
                                nbytes), None
        dt = self.dtype(case.dtype)
        linear = t.nn.functional.linear
        weights = iter(self._weights((n, k), dt))
        return self._rotate(lambda: (self.rand((m, k), dt), next(weights)), linear, nbytes), None

    def _weights(self, shape: tuple[int, int], dtype: Any) -> Any:
        """Weight copies of one GEMM family, kept while its M sweep runs (making a large weight is slow)."""
        key = (shape, dtype)
        if self._weight_key != key:
            self._weight_key, self._weight_list = key, []
        i = 0
        while True:
            if i == len(self._weight_list):
                self._weight_list.append(self.rand(shape, dtype, 0.02))
            yield self._weight_list[i]
            i += 1

    _peak_gemm = _gemm

    def _attn_prefill(self, case: Case):
        t = self.torch
        b, s, h, kv, d = (case[x] for x in ("batch", "seq", "heads", "kv_heads", "head_dim"))
        dt = self.dtype(case.dtype)
        sdpa = t.nn.functional.scaled_dot_product_attention
        gqa = kv != h and not self.expand_gqa
        kv_heads = h if self.expand_gqa else kv  # fallback: K/V repeated per query head (prefill is compute-bound)

        def make():
            return (self.rand((b, h, s, d), dt), self.rand((b, kv_heads, s, d), dt),
                    self.rand((b, kv_heads, s, d), dt))

        def run(q, k, v):
            return sdpa(q, k, v, is_causal=True, enable_gqa=gqa)

        context = None
        if self.device == "cuda":  # the FlashAttention path, as serving engines run prefill
            from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: PLC0415

            context = sdpa_kernel([SDPBackend.FLASH_ATTENTION])
        return self._rotate(make, run, float(case.operator().hbm_bytes)), context

    def _attn_decode(self, case: Case):
        t = self.torch
        b, c, h, kv, d = (case[x] for x in ("batch", "context", "heads", "kv_heads", "head_dim"))
        dt = self.dtype(case.dtype)
        sdpa = t.nn.functional.scaled_dot_product_attention
        group = h // kv

        # GQA decode packs the query heads that share a KV head into the query-length axis (as flash-decoding
        # kernels do): one read of the KV cache, no causal mask needed for a single new token per sequence.
        def make():
            return (self.rand((b, kv, group, d), dt), self.rand((b, kv, c, d), dt), self.rand((b, kv, c, d), dt))

        return self._rotate(make, sdpa, float(case.operator().hbm_bytes)), None

    def _elementwise(self, case: Case):
        t = self.torch
        rows, width = case["rows"], case["width"]
        dt = self.dtype(case.dtype)
        nbytes = float(case.operator().hbm_bytes)
        F = t.nn.functional
        if case.kind == "copy":
            return self._rotate(lambda: (t.empty((rows, width), dtype=dt, device=self.device),
                                         self.rand((rows, width), dt)), lambda dst, src: dst.copy_(src), nbytes), None
        if case.kind == "rms_norm":
            weight = t.ones(width, dtype=dt, device=self.device)
            return self._rotate(lambda: (self.rand((rows, width), dt),),
                                lambda x: F.rms_norm(x, (width,), weight, 1e-6), nbytes), None
        if case.kind == "silu":
            return self._rotate(lambda: (self.rand((rows, width), dt),), F.silu, nbytes), None
        if case.kind == "softmax":
            return self._rotate(lambda: (self.rand((rows, width), t.float32),),
                                lambda x: t.softmax(x, dim=-1), nbytes), None
        raise ValueError(f"kind: unknown elementwise kernel {case.kind!r}")

    def _launch(self, case: Case):
        # The cheapest real kernel: a one-element copy. Its per-call time back to back is the launch gap.
        src, dst = self.torch.ones(1, device=self.device), self.torch.empty(1, device=self.device)
        return (lambda: dst.copy_(src)), None
