"""Benchmark cases and their measurements: what was timed, as the cost model's own ``Operator``, and CSV I/O.

A case's FLOPs and HBM bytes come from the cost model's operator builders (``llmsim.cost.operators`` /
``llmsim.cost.layers``), so a fitted ratio measured / roofline means the same thing when the simulator asks.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from llmsim.cost.layers import attention_ops
from llmsim.cost.operators import (
    FP32_BYTES,
    Operator,
    ShardedShapes,
    batch_features,
    elementwise,
    gemm,
    moe_experts,
)
from llmsim.errors import ConfigError
from llmsim.specs import Precision

OP_CLASSES = ("gemm", "attn_prefill", "attn_decode", "elementwise")
PARAMS = {
    "gemm": ("m", "n", "k"),
    "attn_prefill": ("batch", "seq", "heads", "kv_heads", "head_dim"),
    "attn_decode": ("batch", "context", "heads", "kv_heads", "head_dim"),
    "elementwise": ("rows", "width"),
    "launch": (),
    "peak_gemm": ("m", "n", "k"),
    "allreduce": ("ranks", "bytes"),
    # one MoE layer's experts on one GPU: model sizes (inter = full expert FFN), routed over all experts
    "moe": ("tokens", "hidden", "inter", "experts", "topk", "tp", "ep"),
}
# Bytes and FLOPs per element of the measured elementwise kernels (what each kernel reads + writes).
ELEMENTWISE_KINDS = {
    "copy": (2.0, 0.0, "act"),      # dst.copy_(src)
    "rms_norm": (2.0, 5.0, "act"),  # F.rms_norm: read x, write y (the weight is negligible)
    "silu": (2.0, 5.0, "act"),      # F.silu: read x, write y
    "softmax": (2.0, 10.0, "fp32"),  # softmax over fp32 logits (sampling)
}
CSV_HEAD = ("op_class", "kind", "dtype", "torch_dtype")
CSV_TAIL = ("flops", "hbm_bytes", "median_s", "spread", "samples", "calls_per_sample")


@dataclass(frozen=True, slots=True)
class Case:
    """One kernel call to time: its class, kernel kind (GEMM name, attention layout, elementwise kernel),
    llmsim dtype name and integer shape parameters (named per class in ``PARAMS``)."""

    op_class: str
    kind: str
    dtype: str
    params: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        if self.op_class not in PARAMS:
            raise ValueError(f"op_class: unknown {self.op_class!r}")
        if tuple(k for k, _ in self.params) != PARAMS[self.op_class]:
            raise ValueError(f"params: {self.op_class} needs {PARAMS[self.op_class]}")

    @classmethod
    def make(cls, op_class: str, kind: str, dtype: str, **params: int) -> Case:
        return cls(op_class, kind, dtype, tuple((k, int(params[k])) for k in PARAMS[op_class]))

    def __getitem__(self, key: str) -> int:
        for k, v in self.params:
            if k == key:
                return v
        raise KeyError(key)

    @property
    def family(self) -> tuple:
        """The shape family a fit groups by (all parameters except the swept sizes)."""
        p = dict(self.params)
        if self.op_class == "gemm":
            return (self.dtype, p["n"], p["k"])
        if self.op_class in ("attn_prefill", "attn_decode"):
            return (self.dtype, p["heads"], p["kv_heads"], p["head_dim"])
        if self.op_class == "moe":
            return (self.dtype, self.kind, p["hidden"], p["inter"], p["experts"], p["topk"], p["tp"], p["ep"])
        if self.op_class == "allreduce":
            return (self.kind, p["ranks"])
        return (self.kind,)

    def operator(self) -> Operator:
        """The cost model's operator for this call (FLOPs, bytes and shape as ``llmsim.cost`` computes them)."""
        p = dict(self.params)
        if self.op_class in ("gemm", "peak_gemm"):
            return gemm(self.kind, p["m"], p["n"], p["k"], Precision.parse(self.dtype))
        if self.op_class in ("attn_prefill", "attn_decode"):
            return _attention_operator(self.op_class, p, case_precision(self.dtype))
        if self.op_class == "moe":
            return moe_experts(p["tokens"], p["hidden"], -(-p["inter"] // p["tp"]), p["experts"], p["topk"], p["ep"],
                               True, Precision.parse(self.dtype))
        if self.op_class == "elementwise":
            per_elem, flops, which = ELEMENTWISE_KINDS[self.kind]
            size = FP32_BYTES if which == "fp32" else Precision.parse(self.dtype).act_bytes
            return elementwise(self.kind, p["rows"] * p["width"], per_elem * size, flops)
        if self.op_class == "allreduce":
            return Operator("allreduce", "allreduce", 0.0, 0.0, self.dtype, comm_bytes=float(p["bytes"]),
                            comm_ranks=p["ranks"])
        return elementwise("launch", 1, 0.0, 0.0)


def case_precision(dtype: str) -> Precision:
    """A case's dtype: a precision name, with ``/kv-DTYPE`` when the KV cache is in another format."""
    name, _, kv = dtype.partition("/kv-")
    return Precision.parse(name, kv or None)


def _attention_operator(op_class: str, p: dict[str, int], prec: Precision) -> Operator:
    heads, kv_heads, hd = p["heads"], p["kv_heads"], p["head_dim"]
    # attention_ops reads only head_dim from the model: build the operator the simulator builds.
    model = SimpleNamespace(head_dim=hd)
    sh = ShardedShapes(q=heads * hd, kv=kv_heads * hd, heads=heads, kv_heads=kv_heads, ffn=0, expert_ffn=0,
                       shared_ffn=0, vocab=0)
    b = p["batch"]
    if op_class == "attn_prefill":
        f = batch_features([p["seq"]] * b, [0] * b)
    else:  # one new token on top of context - 1 cached ones: the kernel reads `context` KV tokens
        f = batch_features([1] * b, [p["context"] - 1] * b)
    return next(op for op in attention_ops(model, sh, prec, f) if op.op_class == op_class)


@dataclass(frozen=True, slots=True)
class Measurement:
    """Median seconds per call of ``case``; ``spread`` is the interquartile range over the median (NaN when
    the source does not say). ``includes`` names other kernels inside the timed region that the cost model
    times as operators of their own (``kv_cache_write`` before attention, ``quant`` before a W8A8 GEMM)."""

    case: Case
    median_s: float
    spread: float
    samples: int
    calls_per_sample: int
    torch_dtype: str = ""
    includes: tuple[str, ...] = ()
    operator: Operator = field(default=None, compare=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.operator is None:
            object.__setattr__(self, "operator", self.case.operator())


def write_csvs(measurements: list[Measurement], folder: Path) -> list[Path]:
    """One CSV per op class in ``folder``: a row per kernel call with shape, dtype, median and spread."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for cls in (*OP_CLASSES, "launch", "peak_gemm", "allreduce"):
        rows = [m for m in measurements if m.case.op_class == cls]
        if not rows:
            continue
        path = folder / f"{cls}.csv"
        with path.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow((*CSV_HEAD, *PARAMS[cls], *CSV_TAIL))
            for m in rows:
                c, op = m.case, m.operator
                w.writerow((c.op_class, c.kind, c.dtype, m.torch_dtype, *(v for _, v in c.params),
                            f"{float(op.flops):.6e}", f"{float(op.hbm_bytes):.6e}", f"{m.median_s:.6e}",
                            f"{m.spread:.4f}", m.samples, m.calls_per_sample))
        written.append(path)
    return written


def read_csvs(folder: Path) -> list[Measurement]:
    """Measurements back from the CSVs ``write_csvs`` wrote (to refit without measuring again)."""
    out: list[Measurement] = []
    files = sorted(folder.glob("*.csv"))
    if not files:
        raise ConfigError(f"{folder}: no measurement CSVs found")
    for path in files:
        with path.open(newline="") as fh:
            for i, row in enumerate(csv.DictReader(fh)):
                try:
                    cls = row["op_class"]
                    case = Case.make(cls, row["kind"], row["dtype"], **{k: int(row[k]) for k in PARAMS[cls]})
                    out.append(Measurement(case, float(row["median_s"]), float(row["spread"]), int(row["samples"]),
                                           int(row["calls_per_sample"]), row.get("torch_dtype", "")))
                except (KeyError, ValueError) as exc:
                    raise ConfigError(f"{path}: row {i + 2}: {exc}") from None
    return out
