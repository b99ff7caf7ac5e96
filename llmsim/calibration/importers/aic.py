"""NVIDIA AIConfigurator ("AIC") perf database, as the plain CSVs of ``../shared/data/kernels/aic`` (see its
README): ``<system>/<backend>-<version>/<op>.csv`` with ``latency_ms`` per single kernel call, timed as the mean
of CUDA-graph replays (no launch gap; unknown spread).

PATH is one backend folder (``aic/h100_sxm/vllm-0.14.0``, or ``aic/h100_sxm/nccl-2.29.2``). What is read:

- ``gemm.csv``: ``bfloat16`` -> bf16 and ``fp8`` (per-tensor W8A8, input quantisation inside the timed call)
  -> fp8 GEMMs; ``int8_wo`` / ``int4_wo`` (weight-only) -> int8 / int4; ``sq`` -> w8a8-int8;
- ``context_attention.csv`` / ``generation_attention.csv``: full attention (window 0), KV cache bf16 or fp8;
  decode's context is ``kv_len_tokens`` (the KV rows each sequence reads, new token included);
- ``moe.csv``: the expert computation of one MoE layer, per token-routing distribution;
- ``custom_allreduce.csv``: vLLM's all-reduce as decode sees it (``vLLM_custom_graph`` rows);
- ``nccl.csv``: nccl-tests ``all_reduce_perf``.

The system's ``system.yaml`` (one folder up) must match ``--hardware`` (peak FLOP/s and HBM bandwidth within
15 %): AIC data of one GPU never calibrate another.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from pathlib import Path

import yaml

from llmsim.calibration.importers.base import IMPORTERS, Imported, Plausibility, Rows, row_error
from llmsim.calibration.measurements import Case, Measurement
from llmsim.errors import ConfigError
from llmsim.specs import HardwareSpec

GEMM_DTYPES = {"bfloat16": "bf16", "float16": "fp16", "fp8": "fp8", "int8_wo": "int8", "int4_wo": "int4",
               "sq": "w8a8-int8"}
ATTN_DTYPES = {"bfloat16": "bf16", "float16": "fp16"}
KV_DTYPES = {"bfloat16": None, "float16": None, "fp8": "fp8"}  # None: the KV cache is in the attention dtype
MOE_DTYPES = {"bfloat16": "bf16", "float16": "fp16", "fp8": "fp8"}
SYSTEM_TOLERANCE = 0.15


def _check_system(folder: Path, hw: HardwareSpec) -> None:
    path = folder.parent / "system.yaml"
    if not path.is_file():
        return
    try:
        gpu = (yaml.safe_load(path.read_text()) or {}).get("gpu") or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    for key, ours, what in (("bfloat16_tc_flops", hw.peak_flops("bf16") if hw.supports("bf16") else 0.0, "FLOP/s"),
                            ("mem_bw", hw.hbm_bytes_per_s, "B/s")):
        theirs = gpu.get(key)
        if isinstance(theirs, int | float) and ours and abs(theirs / ours - 1) > SYSTEM_TOLERANCE:
            raise ConfigError(f"{path}: gpu.{key}: {theirs:.4g} {what} does not match --hardware {hw.name} "
                              f"({ours:.4g} {what}): these measurements belong to another GPU")


def _device(folder: Path) -> str:
    manifest = folder.parent.parent / "MANIFEST.csv"
    if not manifest.is_file():
        return ""
    rel = f"{folder.parent.name}/{folder.name}/"
    with manifest.open(newline="") as fh:
        for row in csv.DictReader(fh):
            if row.get("file", "").startswith(rel):
                return row.get("device_string", "")
    return ""


class _Collector:
    """Rows keyed by case; repeated keys (AIC caveat 4) are averaged in log space; skipped rows are counted."""

    def __init__(self, hw: HardwareSpec, path: Path) -> None:
        self.hw = hw
        self.times: dict[Case, list[float]] = defaultdict(list)
        self.skipped: dict[str, int] = defaultdict(int)
        self.plausible = Plausibility(hw, path, "latency_ms")

    def add(self, case: Case, seconds: float, rows: Rows) -> None:
        if self.plausible.ok(Measurement(case, seconds, math.nan, 0, 0), rows.line):
            self.times[case].append(seconds)

    @staticmethod
    def includes(case: Case) -> tuple[str, ...]:
        """AIC's timed regions: attention includes the KV-cache write of the new tokens; per-tensor fp8 and
        SmoothQuant GEMMs include the activation quantisation kernel (kernels/README.md)."""
        if case.op_class in ("attn_prefill", "attn_decode"):
            return ("kv_cache_write",)
        if case.op_class == "gemm" and case.dtype in ("fp8", "w8a8-int8"):
            return ("quant",)
        return ()

    def skip(self, why: str) -> None:
        self.skipped[why] += 1

    def measurements(self) -> list[Measurement]:
        return [Measurement(c, math.exp(sum(map(math.log, ts)) / len(ts)), math.nan, 0, 0,
                            includes=self.includes(c)) for c, ts in self.times.items()]

    def notes(self, name: str) -> list[str]:
        dups = sum(len(ts) - 1 for ts in self.times.values())
        out = self.plausible.finish() + [f"{name}: {n} rows skipped ({why})" for why, n in sorted(self.skipped.items())]
        return out + ([f"{name}: {dups} repeated keys averaged (geometric mean)"] if dups else [])


def _dtype(rows: Rows, row: dict[str, str], column: str, table: dict[str, str | None], col: _Collector):
    value = rows.cell(row, column)
    if value not in table:
        col.skip(f"{column} {value}: no llmsim counterpart")
        return None, False
    return table[value], True


def _gemm(rows: Rows, col: _Collector) -> None:
    for row in rows:
        dtype, ok = _dtype(rows, row, "gemm_dtype", GEMM_DTYPES, col)
        if not ok:
            continue
        case = Case.make("gemm", "aic", dtype, m=rows.int(row, "m"), n=rows.int(row, "n"), k=rows.int(row, "k"))
        col.add(case, rows.seconds(row, "latency_ms", 1e-3), rows)


def _attention(rows: Rows, col: _Collector, op_class: str) -> None:
    length = "isl_tokens" if op_class == "attn_prefill" else "kv_len_tokens"
    for row in rows:
        if row.get("window_size_tokens", "0").strip() not in ("", "0"):
            col.skip("sliding-window attention")
            continue
        dtype, ok = _dtype(rows, row, "attn_dtype", ATTN_DTYPES, col)
        kv, ok_kv = _dtype(rows, row, "kv_cache_dtype", KV_DTYPES, col) if ok else (None, False)
        if not ok_kv:
            continue
        dims = {"heads": rows.int(row, "num_heads"), "kv_heads": rows.int(row, "num_kv_heads"),
                "head_dim": rows.int(row, "head_dim")}
        if dims["heads"] % dims["kv_heads"]:
            raise row_error(rows.path, rows.line, "num_kv_heads", "expected a divisor of num_heads")
        size = {"seq": rows.int(row, length)} if op_class == "attn_prefill" else {"context": rows.int(row, length)}
        if size.get("seq") == 1:
            col.skip("isl_tokens 1: llmsim costs a one-token step as decode")
            continue
        case = Case.make(op_class, "aic", dtype if kv is None else f"{dtype}/kv-{kv}",
                         batch=rows.int(row, "batch_size"), **size, **dims)
        col.add(case, rows.seconds(row, "latency_ms", 1e-3), rows)


def _moe(rows: Rows, col: _Collector) -> None:
    for row in rows:
        dtype, ok = _dtype(rows, row, "moe_dtype", MOE_DTYPES, col)
        if not ok:
            continue
        case = Case.make("moe", rows.cell(row, "distribution"), dtype, tokens=rows.int(row, "num_tokens"),
                         hidden=rows.int(row, "hidden_size"), inter=rows.int(row, "inter_size"),
                         experts=rows.int(row, "num_experts"), topk=rows.int(row, "topk"),
                         tp=rows.int(row, "moe_tp_size"), ep=rows.int(row, "moe_ep_size"))
        col.add(case, rows.seconds(row, "latency_ms", 1e-3), rows)


def _allreduce(rows: Rows, col: _Collector, nccl: bool) -> None:
    for row in rows:
        if nccl and rows.cell(row, "collective") != "all_reduce":
            col.skip(f"collective {rows.cell(row, 'collective')}: not modelled from nccl-tests")
            continue
        if not nccl and rows.cell(row, "kernel_source") != "vLLM_custom_graph":
            col.skip(f"{rows.cell(row, 'kernel_source')}: eager calls include input.clone() and launch overhead")
            continue
        case = Case.make("allreduce", "nccl" if nccl else "custom_graph", "bf16", ranks=rows.int(row, "num_gpus"),
                         bytes=rows.int(row, "message_size_bytes"))
        col.add(case, rows.seconds(row, "latency_ms", 1e-3), rows)


TABLES = {
    "gemm.csv": (("m", "n", "k", "gemm_dtype", "latency_ms"), _gemm),
    "context_attention.csv": (("batch_size", "isl_tokens", "num_heads", "num_kv_heads", "head_dim", "attn_dtype",
                               "kv_cache_dtype", "latency_ms"), lambda r, c: _attention(r, c, "attn_prefill")),
    "generation_attention.csv": (("batch_size", "kv_len_tokens", "num_heads", "num_kv_heads", "head_dim",
                                  "attn_dtype", "kv_cache_dtype", "latency_ms"),
                                 lambda r, c: _attention(r, c, "attn_decode")),
    "moe.csv": (("num_tokens", "hidden_size", "inter_size", "topk", "num_experts", "moe_tp_size", "moe_ep_size",
                 "distribution", "moe_dtype", "latency_ms"), _moe),
    "custom_allreduce.csv": (("num_gpus", "message_size_bytes", "kernel_source", "latency_ms"),
                             lambda r, c: _allreduce(r, c, nccl=False)),
    "nccl.csv": (("collective", "num_gpus", "message_size_bytes", "latency_ms"),
                 lambda r, c: _allreduce(r, c, nccl=True)),
}


@IMPORTERS.register("aic")
def import_aic(path: Path, hw: HardwareSpec) -> Imported:
    """One AIC backend folder (or one of its CSVs) -> measurements; see the module docstring."""
    folder = path if path.is_dir() else path.parent
    files = [folder / name for name in TABLES if (folder / name).is_file()] if path.is_dir() else [path]
    if path.is_file() and path.name not in TABLES:
        raise ConfigError(f"{path}: not an AIC table (expected one of {', '.join(TABLES)})")
    if not files:
        raise ConfigError(f"{path}: no AIC tables here (expected {', '.join(TABLES)})")
    _check_system(folder, hw)
    out = Imported(device=_device(folder))
    for file in files:
        required, read = TABLES[file.name]
        col = _Collector(hw, file)
        read(Rows(file, required), col)
        out.notes += col.notes(f"{folder.name}/{file.name}")
        out.measurements += col.measurements()
        out.files.append(str(file))
    how = ("TensorRT per-layer profiler time of one inference, a single sample" if folder.name.startswith("trtllm")
           else "nccl-tests average" if folder.name.startswith("nccl")
           else "mean of CUDA-graph replays, no launch gap, spread unknown")
    out.sources.append(f"aic {folder} ({folder.parent.name}, {folder.name}; {len(out.measurements)} kernel shapes; "
                       f"latency_ms = {how})")
    return out
