"""Real request traces: loading (one registered loader per file format) and replay options.

``load_trace(path, format="auto", ...)`` returns a :class:`TraceData` of columns (arrival times, input and
output tokens, optional per-block prefix ids) plus the malformed rows it skipped, each with its line number.
With ``strict=True`` the first malformed row raises :class:`ConfigError` naming the file and line instead.
Loaders live in ``trace_formats.py``; this module holds the data type and the format-independent options
(time window, replay speed, sampling, spreading quantised timestamps).
"""

from __future__ import annotations

import csv
import inspect
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from llmsim.errors import ConfigError
from llmsim.registry import Registry
from llmsim.workload.request import Request

TRACE_FORMATS: Registry[object] = Registry("trace format")


@dataclass(frozen=True, slots=True)
class MalformedRow:
    """A skipped input row: 1-based line number in the file and why it was skipped."""

    line: int
    reason: str


@dataclass(frozen=True, slots=True, eq=False)
class TraceData:
    """A loaded trace as columns, in arrival order, first arrival at t = 0.

    ``arrival_s`` is None for length-only traces (ShareGPT-style files): their arrivals come from an
    arrival process. ``hash_ids[i]`` holds one prefix id per ``chunk_tokens``-token prompt block, or the
    whole field is None when the format has none.
    """

    path: str
    format: str
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    arrival_s: np.ndarray | None = None
    hash_ids: tuple[tuple[int, ...], ...] | None = None
    chunk_tokens: int = 512
    malformed: tuple[MalformedRow, ...] = ()
    rows_read: int = 0
    notes: tuple[str, ...] = field(default=())
    warnings: tuple[str, ...] = field(default=())  # what a user should be told (rows replayed out of file order)

    def __len__(self) -> int:
        return len(self.input_tokens)

    @property
    def has_arrivals(self) -> bool:
        return self.arrival_s is not None

    def requests(self) -> Iterator[Request]:
        """The trace as Requests with ids 0..N-1 (arrival 0 for length-only traces)."""
        arrivals = self.arrival_s if self.arrival_s is not None else np.zeros(len(self))
        for i in range(len(self)):
            yield Request(
                id=i,
                arrival_s=float(arrivals[i]),
                input_tokens=int(self.input_tokens[i]),
                output_tokens=int(self.output_tokens[i]),
                prefix_hashes=self.hash_ids[i] if self.hash_ids is not None else (),
                prefix_chunk_tokens=self.chunk_tokens,
            )

    def malformed_report(self, limit: int = 10) -> str:
        """One line per malformed row (up to ``limit``), or '' when there were none."""
        if not self.malformed:
            return ""
        head = f"{self.path}: skipped {len(self.malformed)} malformed row(s) of {self.rows_read}"
        lines = [f"  line {m.line}: {m.reason}" for m in self.malformed[:limit]]
        if len(self.malformed) > limit:
            lines.append(f"  ... and {len(self.malformed) - limit} more (use --strict to stop at the first)")
        return "\n".join([head, *lines])

    def take(self, index: np.ndarray) -> TraceData:
        """A copy restricted to rows ``index`` (in that order)."""
        return replace(
            self,
            input_tokens=self.input_tokens[index],
            output_tokens=self.output_tokens[index],
            arrival_s=None if self.arrival_s is None else self.arrival_s[index],
            hash_ids=None if self.hash_ids is None else tuple(self.hash_ids[i] for i in index),
        )


class RowSink:
    """Collects parsed rows and malformed-row reports for a loader; raises at once when strict."""

    def __init__(self, path: Path, strict: bool) -> None:
        self.path, self.strict = path, strict
        self.arrival: list[float] = []
        self.inputs: list[int] = []
        self.outputs: list[int] = []
        self.hashes: list[tuple[int, ...]] = []
        self.malformed: list[MalformedRow] = []
        self.rows = 0
        self._last_t = -math.inf
        self._backwards: list[tuple[int, float]] = []  # (line, seconds before the row above it)

    def bad(self, line: int, reason: str) -> None:
        if self.strict:
            raise ConfigError(f"{self.path}:{line}: malformed row: {reason}")
        self.malformed.append(MalformedRow(line, reason))

    def add(
        self, line: int, arrival: float | None, inp: int, out: int, hashes: tuple[int, ...] | None
    ) -> None:
        """Validate one row's values and keep it, or report it."""
        if inp < 1:
            return self.bad(line, f"input tokens must be >= 1, got {inp}")
        if out < 1:
            return self.bad(line, f"output tokens must be >= 1, got {out}")
        if arrival is not None and not math.isfinite(arrival):
            return self.bad(line, f"arrival time is not finite: {arrival}")
        if arrival is not None and arrival < 0:  # never replayed: the file's clock is not what we think
            raise ConfigError(f"{self.path}:{line}: timestamp: must be >= 0 (time since the trace's start), "
                              f"got {arrival:g} s")
        if arrival is not None:
            if arrival < self._last_t:
                self._backwards.append((line, self._last_t - arrival))
            self._last_t = max(self._last_t, arrival)
        self.arrival.append(arrival if arrival is not None else 0.0)
        self.inputs.append(inp)
        self.outputs.append(out)
        if hashes is not None:
            self.hashes.append(hashes)

    def finish(self, fmt: str, has_arrivals: bool, has_hashes: bool, chunk_tokens: int = 512) -> TraceData:
        if not self.inputs:
            raise ConfigError(f"{self.path}: no valid rows ({len(self.malformed)} malformed) in {fmt} format")
        return TraceData(
            path=str(self.path),
            format=fmt,
            input_tokens=np.asarray(self.inputs, dtype=np.int64),
            output_tokens=np.asarray(self.outputs, dtype=np.int64),
            arrival_s=np.asarray(self.arrival, dtype=np.float64) if has_arrivals else None,
            hash_ids=tuple(self.hashes) if has_hashes else None,
            chunk_tokens=chunk_tokens,
            malformed=tuple(self.malformed),
            rows_read=self.rows,
            warnings=(unordered_warning(len(self._backwards), *self._backwards[0]),) if self._backwards else (),
        )


def unordered_warning(count: int, line: int, back_s: float) -> str:
    return (f"{count} row(s) go back in time (first at line {line}, {back_s:g} s before an earlier row); "
            "replayed sorted by arrival time")


def load_trace(
    path: str | Path,
    format: str = "auto",
    *,
    strict: bool = False,
    start_s: float | None = None,
    end_s: float | None = None,
    speed: float = 1.0,
    sample: float | None = None,
    max_requests: int | None = None,
    spread_s: float | None = None,
    seed: int = 0,
    **options: object,
) -> TraceData:
    """Load a trace file and apply replay options.

    ``format``: a ``TRACE_FORMATS`` name (``azure``, ``mooncake``, ``burstgpt``, ``lengths_csv``, ``csv``,
    ``jsonl``) or ``auto`` (guessed from the extension and header). ``options`` go to the loader (e.g.
    ``columns`` for the generic formats). Then, in this order: arrivals are sorted and shifted so the first is
    at 0; ``spread_s`` spreads requests that share a timestamp uniformly over ``[t, t + spread_s)`` (for
    quantised traces such as Mooncake conversation, ~3 s buckets); the window ``[start_s, end_s)`` is kept and
    shifted to start at 0; ``sample`` keeps each request with that probability; ``max_requests`` keeps the
    first N; ``speed`` replays k times faster (arrival times divided by k). Randomness uses ``seed``.
    """
    from llmsim.workload import trace_formats  # noqa: F401  (registers the loaders)

    path = Path(path)
    _check_replay_options(path, start_s=start_s, end_s=end_s, speed=speed, sample=sample,
                          max_requests=max_requests, spread_s=spread_s, seed=seed, strict=strict)
    trace = _read(path, format, strict, options)
    rng = np.random.default_rng(seed)
    trace = _order_and_rebase(trace)
    trace = _spread(trace, spread_s, rng)
    trace = _window(trace, start_s, end_s)
    trace = _sample(trace, sample, max_requests, rng)
    return _speed(trace, speed)


def _read(path: Path, format: str, strict: bool, options: dict) -> TraceData:
    """The file through its format's loader; a binary or non-CSV file is a ConfigError naming it."""
    from llmsim.workload import trace_formats

    if not path.is_file():
        raise ConfigError(f"{path}: {'is a directory, not a trace file' if path.is_dir() else 'trace file not found'}")
    try:
        fmt = trace_formats.detect_format(path) if format == "auto" else format
        loader = TRACE_FORMATS.get(fmt)
        _check_options(loader, path, fmt, options)
        return loader(path, strict, **options)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: byte {exc.start} is not UTF-8 text: not a trace file (CSV or JSON lines)") from None
    except csv.Error as exc:
        raise ConfigError(f"{path}: not readable as CSV ({exc})") from None


def _check_replay_options(path: Path, **opts: object) -> None:
    """Types and ranges of the replay options, each named (the loaders' own options check themselves)."""
    def number(v: object) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)

    rules = {
        "start_s": (lambda v: v is None or (number(v) and v >= 0), "a finite number >= 0"),
        "end_s": (lambda v: v is None or (number(v) and v > 0), "a finite number > 0"),
        "speed": (lambda v: number(v) and v > 0, "a finite number > 0"),
        "sample": (lambda v: v is None or (number(v) and 0 < v <= 1), "a fraction in (0, 1]"),
        "max_requests": (lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 1),
                         "an integer >= 1"),
        "spread_s": (lambda v: v is None or (number(v) and v > 0), "a finite number > 0"),
        "seed": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0, "an integer >= 0"),
        "strict": (lambda v: isinstance(v, bool), "true or false"),
    }
    for name, value in opts.items():
        ok, what = rules[name]
        if not ok(value):
            raise ConfigError(f"{path}: {name}: expected {what}, got {value!r}")


def _check_options(loader, path: Path, fmt: str, options: dict) -> None:
    """Unknown loader options are user mistakes: name them and the accepted ones."""
    accepted = list(inspect.signature(loader).parameters)[2:]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ConfigError(
            f"{path}: unknown option(s) {', '.join(unknown)} for trace format {fmt!r}; "
            f"accepted: {', '.join(accepted + ['strict', 'start_s', 'end_s', 'speed', 'sample', 'max_requests', 'spread_s', 'seed'])}"
        )


def save_trace_jsonl(requests: Iterable[Request], path: str | Path) -> int:
    """Write requests as Mooncake-style JSONL (timestamp in ms, input_length, output_length, hash_ids).

    Round-trips through ``load_trace`` (format ``mooncake``); session ids, priorities and classes are not
    part of that format and are dropped. Returns the number of requests written.
    """
    count = 0
    with Path(path).open("w", encoding="utf-8") as fh:
        for r in requests:
            row = {
                "timestamp": round(r.arrival_s * 1000.0, 3),
                "input_length": r.input_tokens,
                "output_length": r.output_tokens,
                "hash_ids": list(r.prefix_hashes),
            }
            fh.write(json.dumps(row) + "\n")
            count += 1
    return count


def _need_arrivals(trace: TraceData, option: str) -> None:
    if trace.arrival_s is None:
        raise ConfigError(f"{trace.path}: option {option!r} needs arrival times, but this trace has none")


def _order_and_rebase(trace: TraceData) -> TraceData:
    if trace.arrival_s is None:
        return trace
    order = np.argsort(trace.arrival_s, kind="stable")
    if np.any(order != np.arange(len(order))):
        trace = trace.take(order)
    return replace(trace, arrival_s=trace.arrival_s - trace.arrival_s[0])


def _spread(trace: TraceData, spread_s: float | None, rng: np.random.Generator) -> TraceData:
    """Spread ties uniformly over ``[t, t + spread_s)``; a quantised clock otherwise fakes huge bursts."""
    if spread_s is None:
        return trace
    _need_arrivals(trace, "spread_s")
    if not spread_s > 0:
        raise ConfigError(f"{trace.path}: spread_s must be > 0, got {spread_s}")
    t = trace.arrival_s
    _, counts = np.unique(t, return_counts=True)  # t is sorted, so counts line up with it
    tied = np.repeat(counts > 1, counts)
    spread = t + np.where(tied, rng.uniform(0.0, spread_s, len(t)), 0.0)
    order = np.argsort(spread, kind="stable")
    note = f"spread requests sharing a timestamp over {spread_s:g} s"
    out = replace(trace, arrival_s=spread, notes=(*trace.notes, note)).take(order)
    return replace(out, arrival_s=out.arrival_s - out.arrival_s[0])


def _window(trace: TraceData, start_s: float | None, end_s: float | None) -> TraceData:
    if start_s is None and end_s is None:
        return trace
    _need_arrivals(trace, "start_s/end_s")
    lo, hi = start_s or 0.0, math.inf if end_s is None else end_s
    if hi <= lo:
        raise ConfigError(f"{trace.path}: end_s ({end_s}) must be greater than start_s ({start_s})")
    keep = np.flatnonzero((trace.arrival_s >= lo) & (trace.arrival_s < hi))
    if len(keep) == 0:
        raise ConfigError(f"{trace.path}: no requests in the window [{lo}, {hi}) s")
    out = trace.take(keep)
    return replace(out, arrival_s=out.arrival_s - lo)


def _sample(trace: TraceData, sample: float | None, max_requests: int | None, rng) -> TraceData:
    if sample is not None:
        if not 0 < sample <= 1:
            raise ConfigError(f"{trace.path}: sample must be a fraction in (0, 1], got {sample}")
        trace = trace.take(np.flatnonzero(rng.random(len(trace)) < sample))
    if max_requests is not None:
        if max_requests < 1:
            raise ConfigError(f"{trace.path}: max_requests must be >= 1, got {max_requests}")
        trace = trace.take(np.arange(min(max_requests, len(trace))))
    if len(trace) == 0:
        raise ConfigError(f"{trace.path}: sampling left no requests")
    return trace


def _speed(trace: TraceData, speed: float) -> TraceData:
    if speed == 1.0:
        return trace
    _need_arrivals(trace, "speed")
    if not speed > 0:
        raise ConfigError(f"{trace.path}: speed must be > 0, got {speed}")
    return replace(trace, arrival_s=trace.arrival_s / speed)
