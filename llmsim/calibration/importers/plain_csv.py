"""llmsim's plain kernel CSV (``--import csv PATH``): one row per timed kernel, from any benchmark.

Columns (header names exact; cells a row's class does not use may stay empty; several classes per file):

| column | meaning |
|---|---|
| ``op_class`` | ``gemm``, ``attn_prefill``, ``attn_decode``, ``moe``, ``allreduce`` or ``elementwise`` |
| ``dtype`` | llmsim precision: ``bf16``, ``fp16``, ``fp8`` (W8A8), ``w8a8-int8``, ``int8`` / ``int4`` (weight-only), ``fp32`` |
| ``time_s`` or ``time_ms`` or ``time_us`` | mean or median GPU time of ONE call, in the unit the name says |
| gemm: ``m,n,k`` | Y[m,n] = X[m,k] W[n,k]^T (m = tokens) |
| attn_prefill: ``batch,seq,heads,kv_heads,head_dim`` | ``batch`` causal prompts of ``seq`` new tokens, no cached prefix; heads per GPU |
| attn_decode: ``batch,context,heads,kv_heads,head_dim`` | one new token per sequence over ``context`` KV tokens (the new one included) |
| moe: ``tokens,hidden,inter,experts,topk`` (+ ``tp``, ``ep``, default 1) | one MoE layer's experts on one GPU; model sizes |
| allreduce: ``ranks,bytes`` | all-reduce of ``bytes`` per rank over ``ranks`` GPUs of one node |
| elementwise: ``kind,rows,width`` | ``kind`` one of copy, rms_norm, silu, softmax over a rows x width tensor |
| ``kv_dtype`` (optional) | attention KV-cache dtype when it differs from ``dtype`` (``fp8``) |
| ``kind`` (optional) | a label for the kernel (MoE: the routing, ``balanced`` by default) |
| ``launch_included`` (optional) | 1 when the time includes a kernel launch (eager timing of single calls): the base profile's launch gap is subtracted |
| ``includes`` (optional) | other kernels inside the timed region, ``;``-separated: ``kv_cache_write`` (attention timed with its cache write), ``quant`` (a W8A8 GEMM timed with its activation quantisation) |
"""

from __future__ import annotations

import math
from pathlib import Path

from llmsim.calibration.importers.base import IMPORTERS, Imported, Plausibility, Rows, row_error
from llmsim.calibration.measurements import ELEMENTWISE_KINDS, PARAMS, Case, Measurement
from llmsim.errors import ConfigError
from llmsim.specs import HardwareSpec
from llmsim.specs.precision import KV_DTYPES, PRECISIONS

TIME_COLUMNS = {"time_s": 1.0, "time_ms": 1e-3, "time_us": 1e-6}
CLASSES = ("gemm", "attn_prefill", "attn_decode", "moe", "allreduce", "elementwise")
DEFAULTS = {"tp": 1, "ep": 1}
INCLUDES = ("kv_cache_write", "quant")
MIN_KERNEL_FRACTION = 0.02  # as llmsim.calibration.fit: a launch-dominated call keeps a small kernel time


def _time_column(rows: Rows) -> str:
    found = [c for c in TIME_COLUMNS if c in rows.header]
    if len(found) != 1:
        bad = [c for c in rows.header if c.lower().startswith(("time", "latency", "median", "duration"))]
        raise ConfigError(f"{rows.path}: line 1: expected exactly one time column named time_s, time_ms or "
                          f"time_us (the unit in the name); found {', '.join(found + bad) or 'none'}")
    return found[0]


def _case(rows: Rows, row: dict[str, str]) -> Case:
    cls = rows.cell(row, "op_class")
    if cls not in CLASSES:
        raise row_error(rows.path, rows.line, "op_class", f"expected one of {', '.join(CLASSES)}, got {cls!r}")
    dtype = rows.cell(row, "dtype")
    if dtype not in PRECISIONS:
        raise row_error(rows.path, rows.line, "dtype", f"expected one of {', '.join(PRECISIONS)}, got {dtype!r}")
    kv = (row.get("kv_dtype") or "").strip()
    if kv and cls in ("attn_prefill", "attn_decode") and kv != dtype:
        if kv not in KV_DTYPES:
            raise row_error(rows.path, rows.line, "kv_dtype", f"expected one of {', '.join(KV_DTYPES)}, got {kv!r}")
        dtype = f"{dtype}/kv-{kv}"
    params = {}
    for p in PARAMS[cls]:
        blank = not (row.get(p) or "").strip()
        params[p] = DEFAULTS[p] if blank and p in DEFAULTS else rows.int(row, p)
    kind = (row.get("kind") or "").strip() or ("balanced" if cls == "moe" else "csv")
    if cls == "elementwise" and kind not in ELEMENTWISE_KINDS:
        raise row_error(rows.path, rows.line, "kind", f"expected one of {', '.join(ELEMENTWISE_KINDS)}, got {kind!r}")
    if cls in ("attn_prefill", "attn_decode") and params["heads"] % params["kv_heads"]:
        raise row_error(rows.path, rows.line, "kv_heads", "expected a divisor of heads")
    return Case.make(cls, kind, dtype, **params)


@IMPORTERS.register("csv")
def import_csv(path: Path, hw: HardwareSpec) -> Imported:
    """A plain kernel CSV file (or every ``*.csv`` in a folder) -> measurements; see the module docstring."""
    files = sorted(path.glob("*.csv")) if path.is_dir() else [path]
    if not files:
        raise ConfigError(f"{path}: no .csv files here")
    out = Imported()
    launch = hw.overheads.kernel_launch_s
    subtracted = 0
    for file in files:
        rows = Rows(file, ("op_class", "dtype"))
        column = _time_column(rows)
        plausible = Plausibility(hw, file, column)
        for row in rows:
            case = _case(rows, row)
            seconds = rows.seconds(row, column, TIME_COLUMNS[column])
            flag = (row.get("launch_included") or "0").strip()
            if flag not in ("0", "1"):
                raise row_error(file, rows.line, "launch_included", f"expected 0 or 1, got {flag!r}")
            if flag == "1":
                seconds, subtracted = max(seconds - launch, MIN_KERNEL_FRACTION * seconds), subtracted + 1
            includes = tuple(x.strip() for x in (row.get("includes") or "").split(";") if x.strip())
            bad = [x for x in includes if x not in INCLUDES]
            if bad:
                raise row_error(file, rows.line, "includes", f"expected ;-separated {', '.join(INCLUDES)}, got {bad[0]!r}")
            m = Measurement(case, seconds, math.nan, 0, 0, includes=includes)
            if plausible.ok(m, rows.line):
                out.measurements.append(m)
        out.notes += plausible.finish()
        out.files.append(str(file))
    if subtracted:
        out.notes.append(f"{subtracted} rows had launch_included=1: {launch * 1e6:.1f} us ({hw.name}'s launch gap) "
                         "subtracted from each")
    out.sources.append(f"csv {path} ({len(files)} file(s), {len(out.measurements)} rows)")
    return out
