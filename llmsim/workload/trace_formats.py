"""Trace file loaders, one per format, registered in ``TRACE_FORMATS``.

Each loader has the signature ``loader(path, strict, **options) -> TraceData`` and reports bad rows through
``RowSink`` (line number + reason) instead of failing, unless ``strict``.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from llmsim.errors import ConfigError
from llmsim.workload.request import Request
from llmsim.workload.traces import TRACE_FORMATS, RowSink, TraceData

_ISO = re.compile(r"^(\d{4}-\d\d-\d\d)[ T](\d\d:\d\d:\d\d)(\.\d+)?\s*(Z|[+-]\d\d:?\d\d)?$")


def parse_timestamp_s(text: str) -> float:
    """Seconds since the epoch from an ISO-like timestamp.

    Azure 2023 writes ``2023-11-16 18:17:03.9799600`` (7 decimals, no zone); Azure 2024 writes
    ``2024-05-10 00:00:00.009930+00:00`` (6 decimals, UTC offset). Plain numbers are taken as seconds.
    Fractions are parsed separately because ``datetime`` stops at microseconds (and Python 3.10 at 6 digits).
    """
    m = _ISO.match(text.strip())
    if not m:
        return float(text)  # ValueError for garbage, reported by the caller
    date, clock, frac, zone = m.groups()
    stamp = datetime.fromisoformat(f"{date}T{clock}").replace(tzinfo=timezone.utc).timestamp()
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        hours, minutes = int(zone[1:3]), int(zone[-2:])
        stamp -= sign * (hours * 3600 + minutes * 60)
    return stamp + (float(frac) if frac else 0.0)


def _int(value: object, what: str) -> int:
    """Token counts: integers, tolerating '12.0'; anything else raises ValueError naming the field."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} is not a number: {value!r}") from None
    if number != int(number):
        raise ValueError(f"{what} is not an integer: {value!r}")
    return int(number)


def _csv_rows(path: Path, sink: RowSink, required: list[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """(line, row) pairs; rows with the wrong number of fields are reported, missing columns are fatal."""
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = [h.strip() for h in next(reader, [])]
        missing = [c for c in required if c not in header]
        if missing:
            raise ConfigError(
                f"{path}: missing column(s) {', '.join(missing)}; header is {', '.join(header)}"
            )
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            sink.rows += 1
            if len(row) != len(header):
                sink.bad(reader.line_num, f"expected {len(header)} fields, got {len(row)}")
                continue
            yield reader.line_num, dict(zip(header, row, strict=True))


def _jsonl_rows(path: Path, sink: RowSink) -> Iterator[tuple[int, dict]]:
    with path.open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            sink.rows += 1
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                sink.bad(line_no, f"invalid JSON: {exc.msg}")
                continue
            if not isinstance(row, dict):
                sink.bad(line_no, "expected a JSON object")
                continue
            yield line_no, row


def _hash_list(value: object) -> tuple[int, ...]:
    """Prefix ids from a JSON list or a string such as '[1, 2]', '1 2' or '1;2'."""
    if isinstance(value, str):
        text = value.strip().strip("[]")
        value = [v for v in re.split(r"[\s;,]+", text) if v]
    if not isinstance(value, list):
        raise ValueError(f"hash_ids must be a list of integers, got {value!r}")
    return tuple(_int(v, "hash id") for v in value)


def _azure_fast(path: Path) -> TraceData | None:
    """Vectorised read for clean files (the 2024 week has tens of millions of rows); None if anything is off,
    so the row-by-row reader can report each bad row with its line number."""
    import pandas as pd  # only this reader needs it

    try:
        df = pd.read_csv(path, usecols=["TIMESTAMP", "ContextTokens", "GeneratedTokens"], engine="c")
        stamps = pd.to_datetime(df["TIMESTAMP"], format="ISO8601", utc=True, errors="coerce")
    except (ValueError, pd.errors.ParserError):
        return None
    inp, out = df["ContextTokens"], df["GeneratedTokens"]
    clean = (
        len(df) > 0
        and not stamps.isna().any()
        and pd.api.types.is_integer_dtype(inp)
        and pd.api.types.is_integer_dtype(out)
        and inp.min() >= 1
        and out.min() >= 1
    )
    if not clean:
        return None
    ns = stamps.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    if np.any(np.diff(ns) < 0):
        return None  # the row reader names the first line out of order
    return TraceData(
        path=str(path),
        format="azure",
        input_tokens=inp.to_numpy(np.int64),
        output_tokens=out.to_numpy(np.int64),
        arrival_s=(ns - ns.min()) / 1e9,  # relative first: float64 keeps nanoseconds over days
        rows_read=len(df),
    )


@TRACE_FORMATS.register("azure")
def load_azure(path: Path, strict: bool) -> TraceData:
    """Azure LLM inference trace CSV (2023 and 2024): TIMESTAMP, ContextTokens, GeneratedTokens."""
    fast = _azure_fast(path)
    if fast is not None:
        return fast
    sink = RowSink(path, strict)
    for line, row in _csv_rows(path, sink, ["TIMESTAMP", "ContextTokens", "GeneratedTokens"]):
        try:
            t = parse_timestamp_s(row["TIMESTAMP"])
        except ValueError:
            sink.bad(line, f"bad TIMESTAMP {row['TIMESTAMP']!r}")
            continue
        try:
            inp, out = (
                _int(row["ContextTokens"], "ContextTokens"),
                _int(row["GeneratedTokens"], "GeneratedTokens"),
            )
        except ValueError as exc:
            sink.bad(line, str(exc))
            continue
        sink.add(line, t, inp, out, None)
    return sink.finish("azure", has_arrivals=True, has_hashes=False)


@TRACE_FORMATS.register("mooncake")
def load_mooncake(path: Path, strict: bool, block_tokens: int = 512) -> TraceData:
    """Mooncake JSONL: timestamp (ms from start), input_length, output_length, hash_ids (one per block)."""
    sink = RowSink(path, strict)
    for line, row in _jsonl_rows(path, sink):
        try:
            t = float(row["timestamp"]) / 1000.0
            inp = _int(row["input_length"], "input_length")
            out = _int(row["output_length"], "output_length")
            hashes = _hash_list(row.get("hash_ids", []))
        except KeyError as exc:
            sink.bad(line, f"missing field {exc.args[0]!r}")
            continue
        except (TypeError, ValueError) as exc:
            sink.bad(line, str(exc))
            continue
        sink.add(line, t, inp, out, hashes)
    return sink.finish("mooncake", has_arrivals=True, has_hashes=True, chunk_tokens=block_tokens)


def mooncake_records(requests: Iterable[Request], block_tokens: int = 512) -> list[dict]:
    """Requests as Mooncake trace records (the JSONL that Mooncake's FAST'25 traces, and the simulators and
    benchmarks replaying them, use): ``timestamp`` (integer ms, as published), ``input_length``,
    ``output_length`` and ``hash_ids``, one id per ``block_tokens``-token prompt block (the last may be
    partial). A request's own prefix ids are kept; blocks it has none for get fresh ids never used
    elsewhere, so no sharing is implied that the workload did not have."""
    requests = list(requests)
    for r in requests:
        if r.prefix_hashes and r.prefix_chunk_tokens != block_tokens:
            raise ConfigError(f"request {r.id}: prefix ids cover {r.prefix_chunk_tokens}-token blocks, not the "
                              f"trace's {block_tokens}; write it with block_tokens={r.prefix_chunk_tokens}")
    fresh = 1 + max((h for r in requests for h in r.prefix_hashes), default=-1)
    out = []
    for r in requests:
        blocks = -(-r.input_tokens // block_tokens)
        ids = list(r.prefix_hashes[:blocks])
        ids += range(fresh, fresh + blocks - len(ids))
        fresh += blocks - len(r.prefix_hashes[:blocks])
        out.append({"timestamp": int(round(r.arrival_s * 1000)), "input_length": r.input_tokens,
                    "output_length": r.output_tokens, "hash_ids": ids})
    return out


def write_mooncake(requests: Iterable[Request], path: str | Path, block_tokens: int = 512) -> int:
    """Write ``requests`` as a Mooncake JSONL trace (see ``mooncake_records``), atomically; returns the
    number of records. ``load_trace(path)`` (format ``mooncake``) reads it back."""
    records = mooncake_records(requests, block_tokens)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            for rec in records:
                fh.write(json.dumps(rec, separators=(", ", ": ")) + "\n")
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return len(records)


@TRACE_FORMATS.register("burstgpt")
def load_burstgpt(path: Path, strict: bool, model: str | None = None) -> TraceData:
    """BurstGPT CSV: Timestamp (s), Model, Request tokens, Response tokens, ... Failed requests (0 response
    tokens) are reported as malformed; ``model`` keeps one model's rows (e.g. ``ChatGPT``)."""
    sink = RowSink(path, strict)
    for line, row in _csv_rows(path, sink, ["Timestamp", "Request tokens", "Response tokens"]):
        if model is not None and row.get("Model") != model:
            continue
        try:
            t = float(row["Timestamp"])
            inp = _int(row["Request tokens"], "Request tokens")
            out = _int(row["Response tokens"], "Response tokens")
        except ValueError as exc:
            sink.bad(line, str(exc))
            continue
        sink.add(line, t, inp, out, None)
    return sink.finish("burstgpt", has_arrivals=True, has_hashes=False)


@TRACE_FORMATS.register("lengths_csv")
def load_lengths_csv(
    path: Path,
    strict: bool,
    input_column: str = "num_prefill_tokens",
    output_column: str = "num_decode_tokens",
) -> TraceData:
    """Length-only CSV (ShareGPT / arXiv / BWB as processed by Vidur): no timestamps."""
    sink = RowSink(path, strict)
    for line, row in _csv_rows(path, sink, [input_column, output_column]):
        try:
            inp, out = _int(row[input_column], input_column), _int(row[output_column], output_column)
        except ValueError as exc:
            sink.bad(line, str(exc))
            continue
        sink.add(line, None, inp, out, None)
    return sink.finish("lengths_csv", has_arrivals=False, has_hashes=False)


_FIELDS = ("arrival_s", "input_tokens", "output_tokens", "hash_ids")
_TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "datetime": None}


def _mapping(path: Path, columns: Mapping[str, str] | None, time_unit: str) -> dict[str, str]:
    columns = dict(columns or {})
    unknown = sorted(set(columns) - set(_FIELDS))
    if unknown:
        raise ConfigError(
            f"{path}: columns: unknown field(s) {', '.join(unknown)}; expected {', '.join(_FIELDS)}"
        )
    if time_unit not in _TIME_UNITS:
        raise ConfigError(f"{path}: time_unit must be one of {', '.join(_TIME_UNITS)}, got {time_unit!r}")
    return {f: columns.get(f, f) for f in _FIELDS}


def _generic_row(row: Mapping, cols: dict[str, str], time_unit: str, has_time: bool, has_hash: bool):
    t = None
    if has_time:
        raw = row[cols["arrival_s"]]
        t = parse_timestamp_s(str(raw)) if time_unit == "datetime" else float(raw) * _TIME_UNITS[time_unit]
    hashes = _hash_list(row[cols["hash_ids"]]) if has_hash else None
    inp = _int(row[cols["input_tokens"]], cols["input_tokens"])
    return t, inp, _int(row[cols["output_tokens"]], cols["output_tokens"]), hashes


def _load_generic(
    path: Path, strict: bool, fmt: str, columns, time_unit: str, block_tokens: int
) -> TraceData:
    cols, sink = _mapping(path, columns, time_unit), RowSink(path, strict)
    if fmt == "csv":
        with path.open(newline="", encoding="utf-8") as fh:
            header = [h.strip() for h in next(csv.reader(fh), [])]
        rows = _csv_rows(path, sink, [cols["input_tokens"], cols["output_tokens"]])
    else:
        header = list(json.loads(_first_line(path)).keys())
        rows = _jsonl_rows(path, sink)
    has_time, has_hash = cols["arrival_s"] in header, cols["hash_ids"] in header
    for line, row in rows:
        try:
            t, inp, out, hashes = _generic_row(row, cols, time_unit, has_time, has_hash)
        except KeyError as exc:
            sink.bad(line, f"missing field {exc.args[0]!r}")
            continue
        except (TypeError, ValueError) as exc:
            sink.bad(line, str(exc))
            continue
        sink.add(line, t, inp, out, hashes)
    return sink.finish(fmt, has_arrivals=has_time, has_hashes=has_hash, chunk_tokens=block_tokens)


@TRACE_FORMATS.register("csv")
def load_csv(
    path: Path, strict: bool, columns=None, time_unit: str = "s", block_tokens: int = 512
) -> TraceData:
    """Any CSV; ``columns`` maps arrival_s / input_tokens / output_tokens / hash_ids to column names
    (default: those names). Without an arrival column the trace is length-only."""
    return _load_generic(path, strict, "csv", columns, time_unit, block_tokens)


@TRACE_FORMATS.register("jsonl")
def load_jsonl(
    path: Path, strict: bool, columns=None, time_unit: str = "s", block_tokens: int = 512
) -> TraceData:
    """Any JSONL, with the same ``columns`` mapping as ``csv`` (keys are looked up in the first object)."""
    return _load_generic(path, strict, "jsonl", columns, time_unit, block_tokens)


def _first_line(path: Path) -> str:
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                try:
                    json.loads(line)
                except json.JSONDecodeError:
                    raise ConfigError(f"{path}: first line is not a JSON object") from None
                return line
    raise ConfigError(f"{path}: file is empty")


def detect_format(path: Path) -> str:
    """Guess the format from the extension and the header / first record."""
    if path.suffix in (".jsonl", ".json"):
        keys = json.loads(_first_line(path))
        return "mooncake" if isinstance(keys, dict) and "input_length" in keys else "jsonl"
    with path.open(newline="", encoding="utf-8") as fh:
        header = {h.strip() for h in next(csv.reader(fh), [])}
    if {"TIMESTAMP", "ContextTokens", "GeneratedTokens"} <= header:
        return "azure"
    if {"Request tokens", "Response tokens"} <= header:
        return "burstgpt"
    if {"num_prefill_tokens", "num_decode_tokens"} <= header:
        return "lengths_csv"
    return "csv"
