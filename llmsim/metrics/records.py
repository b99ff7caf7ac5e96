"""Per-request and per-step records, accumulated cheaply during a run and turned into DataFrames once.

Memory is bounded by active requests plus one row per finished request and per step: per-token gaps
live on the sequence only while it runs, and the global inter-token distribution is a fixed histogram.
Rows are kept column-wise in typed arrays: 8-byte floats, 4-byte counts (``array('i')``), 8-byte ids, one
shared reference per text field (164 bytes per request, 80 per step); the tables are built once, column by
column, releasing each array as it is copied out, and are never consolidated (copied again) into 2-D
blocks; the step table keeps its counts as 4-byte integers (80 bytes per row; the request table's are 8).
"""

from __future__ import annotations

import shutil
from array import array
from pathlib import Path

import numpy as np
import pandas as pd

from llmsim.metrics.histogram import LogHistogram
from llmsim.metrics.spill import ColumnSpill, SpilledTable, merge_streams

REQUEST_COLUMNS = (
    "id", "replica", "status", "reason", "arrival_s", "input_tokens", "output_tokens", "queue_s", "ttft_s",
    "tpot_s", "e2e_s", "finish_s", "itl_max_s", "itl_p50_s", "itl_p99_s", "preemptions", "prefix_hit_tokens",
    "emitted_tokens", "computed_tokens", "slo_class", "session_id", "prefill_replica", "handoff_s", "transfer_s",
    "migrations",
)
STEP_COLUMNS = (
    "replica", "engine", "start_s", "duration_s", "batch_size", "prefill_tokens", "decode_tokens", "padded_rows",
    "kv_blocks_used", "kv_blocks_total", "queue_len", "num_in_system", "preempted", "swap_blocks", "flops",
    "hbm_bytes",
)
STEP_KEYS = ("start_s", "replica", "engine")  # the step table's row order
SPILL_ROWS = 1 << 18  # step rows held in memory before a block of them goes to the spill directory
_STEP_DTYPES = {"i": np.dtype(np.int32), "d": np.dtype(np.float64)}


class RequestLog:
    """One row per request that ended (finished or rejected). Latencies as a client sees them (TTFT, TPOT,
    E2E) include the front-end overhead; ``queue_s`` is arrival to first scheduled step and ``finish_s`` the
    engine-side end (both without it). In a disaggregated cluster ``replica`` is the decode replica,
    ``prefill_replica`` the prefill one (-1 otherwise), ``handoff_s`` the time from the prefill's end to the
    decode replica taking the request (waiting for blocks, queueing for and crossing the link),
    ``transfer_s`` the time its KV held the link; ``migrations`` counts live migrations."""

    OBJECT_COLUMNS = ("status", "reason", "slo_class", "session_id")
    INT_COLUMNS = ("id", "replica", "input_tokens", "output_tokens", "preemptions", "prefix_hit_tokens",
                   "emitted_tokens", "computed_tokens", "prefill_replica", "migrations")

    WIDE_INT_COLUMNS = ("id",)  # any integer a trace uses; the other counts fit in 32 bits

    def __init__(self, frontend_overhead_s: float = 0.0) -> None:
        self.frontend_overhead_s = frontend_overhead_s
        # column-wise: typed numbers (plus shared strings) per request, not a tuple of boxed floats
        self._cols: dict[str, list | array] = {c: [] if c in self.OBJECT_COLUMNS else array(_typecode(self, c))
                                               for c in REQUEST_COLUMNS}
        self._appenders = [self._cols[c].append for c in REQUEST_COLUMNS]

    def _append(self, row: tuple) -> None:
        for append, value in zip(self._appenders, row, strict=True):
            append(value)

    def finished(self, seq, replica: int) -> None:
        req = seq.req
        oh = self.frontend_overhead_s
        ttft = seq.first_token_s - seq.arrival_s + oh
        e2e = seq.finish_s - seq.arrival_s + oh
        n = req.output_tokens
        tpot = (e2e - ttft) / (n - 1) if n > 1 else float("nan")
        gaps = _gaps_array(seq.gaps)
        p50, p99 = _quantiles(gaps)
        self._append((req.id, replica, "finished", "", seq.arrival_s, req.input_tokens, n,
                          seq.first_scheduled_s - seq.arrival_s, ttft, tpot, e2e, seq.finish_s,
                          float(gaps[-1]) if gaps.size else float("nan"), p50, p99, seq.num_preemptions,
                          seq.prefix_hit_tokens, seq.num_emitted, seq.computed_total, req.slo_class,
                          req.session_id, seq.prefill_replica, seq.handoff_s, seq.transfer_s, seq.num_migrations))
        seq.gaps = array("d")

    def rejected(self, seq, replica: int, now: float, status: str = "rejected") -> None:
        """A request that will never finish: refused on arrival (``rejected``, with ``seq.reason``) or still
        in the engine when the run was cut off (``unfinished``)."""
        req = seq.req
        nan = float("nan")
        queue = seq.first_scheduled_s - seq.arrival_s if seq.first_scheduled_s >= 0 else nan
        self._append((req.id, replica, status, seq.reason, seq.arrival_s, req.input_tokens, req.output_tokens,
                          queue, nan, nan, nan, now, nan, nan, nan, seq.num_preemptions, seq.prefix_hit_tokens,
                          seq.num_emitted, seq.computed_total, req.slo_class, req.session_id, seq.prefill_replica,
                          seq.handoff_s, seq.transfer_s, seq.num_migrations))

    def frame(self, release: bool = False) -> pd.DataFrame:
        """The table, sorted by request id (stable). ``release``: empty the log column by column as the table
        is built (the run's end: the rows are then held once, not twice)."""
        cols: dict[str, np.ndarray] = {}
        for c in REQUEST_COLUMNS:
            v = self._cols[c]
            cols[c] = (np.asarray(v, dtype=object) if c in self.OBJECT_COLUMNS
                       else _column(v, c in self.INT_COLUMNS, take=release))
            if release:
                _empty(self._cols, c)
        if release:
            self._appenders = [self._cols[c].append for c in REQUEST_COLUMNS]
        return _sorted_frame(cols, ["id"])


def _gaps_array(gaps) -> np.ndarray:
    """All gaps of a request (a float64 ``array`` or a list), sorted."""
    arr = np.array(gaps, dtype=np.float64)
    arr.sort()
    return arr


def _quantiles(sorted_gaps: np.ndarray) -> tuple[float, float]:
    """p50 and p99 (linear interpolation, as numpy's default) of sorted values."""
    n = sorted_gaps.size
    if not n:
        return float("nan"), float("nan")
    out = []
    for q in (0.5, 0.99):
        pos = q * (n - 1)
        lo = int(pos)
        hi = min(lo + 1, n - 1)
        out.append(float(sorted_gaps[lo] + (sorted_gaps[hi] - sorted_gaps[lo]) * (pos - lo)))
    return out[0], out[1]


def _typecode(log, column: str) -> str:
    if column not in log.INT_COLUMNS:
        return "d"
    return "q" if column in getattr(log, "WIDE_INT_COLUMNS", ()) else "i"


def _empty(cols: dict, column: str) -> None:
    old = cols[column]
    cols[column] = [] if isinstance(old, list) else array(old.typecode)


def _column(values: array, is_int: bool, int_dtype=np.int64, take: bool = False) -> np.ndarray:
    """A typed array's values as a numpy column (``int_dtype`` for counts, float64 otherwise): a copy, or with
    ``take`` (the log lets go of ``values``) the array's own buffer where it already has that type."""
    want = int_dtype if is_int else np.float64
    if not len(values):
        return np.empty(0, dtype=want)
    arr = np.frombuffer(values, dtype={"d": np.float64, "i": np.int32, "q": np.int64}[values.typecode])
    if take and arr.dtype == want:
        return arr  # keeps ``values`` alive as its base; nothing appends to it any more
    return arr.astype(want)  # a copy: the log's buffer may grow again


def _sorted_frame(cols: dict[str, np.ndarray], keys: list[str]) -> pd.DataFrame:
    """``pd.DataFrame(cols).sort_values(keys, kind="stable").reset_index(drop=True)``, reordering the columns
    one by one before the table is built (one copy of the rows at a time, not two), and not at all when the
    rows are already in order (one replica's steps are); the table takes the arrays as they are."""
    if not _is_sorted([cols[k] for k in keys]):
        key_arrays = [cols[k] for k in reversed(keys)]  # lexsort: last key first; stable, as sort_values
        order = np.lexsort(key_arrays) if len(keys) > 1 else np.argsort(key_arrays[0], kind="stable")
        for c in cols:
            cols[c] = cols[c][order]
    # copy=False: each column stays its own block (no consolidation into one 2-D block per dtype, which
    # would hold the rows twice while it copies); the columns are fresh arrays nobody else writes to
    return pd.DataFrame(cols, copy=False)


SORT_CHECK_ROWS = 1 << 18  # rows per block of the order check (its temporaries are a block's, not a table's)


def _is_sorted(keys: list[np.ndarray]) -> bool:
    """Whether rows are in non-decreasing lexicographic order of ``keys`` (then a stable sort keeps them),
    checked over overlapping blocks of ``SORT_CHECK_ROWS`` rows."""
    first = keys[0]
    if first.size < 2 or first.dtype == object:
        return first.size < 2
    n = first.size
    return all(_block_sorted([k[a:min(n, a + SORT_CHECK_ROWS + 1)] for k in keys])
               for a in range(0, n - 1, SORT_CHECK_ROWS))


def _block_sorted(keys: list[np.ndarray]) -> bool:
    first = keys[0]
    d = np.diff(first)
    if (d < 0).any():
        return False
    if len(keys) == 1 or (d > 0).all():
        return True
    tie = d == 0  # rows equal on the first key: the rest must be ordered there
    rest = [k[1:][tie] for k in keys[1:]]
    prev = [k[:-1][tie] for k in keys[1:]]
    return _pairs_ordered(prev, rest)


def _pairs_ordered(prev: list[np.ndarray], nxt: list[np.ndarray]) -> bool:
    """Each (prev[i], nxt[i]) row pair is in lexicographic order over the key columns."""
    undecided = np.ones(prev[0].size, dtype=bool)
    for a, b in zip(prev, nxt, strict=True):
        if (undecided & (b < a)).any():
            return False
        undecided &= b == a
    return True


def _streams_of(replica: np.ndarray, engine: np.ndarray):
    """(replica, engine) and the rows of each among a block's rows, in order (rows None: all of them)."""
    if replica.min() == replica.max() and engine.min() == engine.max():
        return [((int(replica[0]), int(engine[0])), None)]
    code = replica.astype(np.int64) * (int(engine.max()) + 1) + engine
    order = np.argsort(code, kind="stable")
    cuts = np.flatnonzero(np.diff(code[order])) + 1
    return [((int(replica[g[0]]), int(engine[g[0]])), g) for g in np.split(order, cuts)]


class StepLog:
    """Step rows, kept column-wise in compact typed arrays (a collapsed decode run extends them with its k
    rows at once). ``keep_rows=False`` counts steps (``num_rows``) without keeping them: for runs too long to
    hold a row per step (the table is then empty, and the summary's step statistics are None); the global
    inter-token histogram is kept either way. ``spill``: a directory the rows go to, a block of at least
    ``spill_rows`` (default ``SPILL_ROWS``) at a time, once they outgrow one (``llmsim.metrics.spill``)."""

    INT_COLUMNS = ("replica", "engine", "batch_size", "prefill_tokens", "decode_tokens", "padded_rows", "kv_blocks_used",
                   "kv_blocks_total", "queue_len", "num_in_system", "preempted", "swap_blocks")

    def __init__(self, keep_rows: bool = True, spill: Path | None = None, spill_rows: int | None = None) -> None:
        self.keep_rows = keep_rows
        self.num_rows = 0
        self._cols: dict[str, array] = {c: array(_typecode(self, c)) for c in STEP_COLUMNS}
        self._appenders = [self._cols[c].append for c in STEP_COLUMNS]
        self.itl = LogHistogram()
        self._gap_buffer: list[float] = []
        self._spill_dir = spill if keep_rows else None
        self._spill_rows = SPILL_ROWS if spill_rows is None else spill_rows
        # per (replica, engine): the files of its rows, made when the rows first outgrow ``spill_rows``
        self._streams: dict[tuple[int, int], ColumnSpill] = {}
        self._spilled_sorted = True  # each stream's rows on disk are in order of start
        self._last_start: dict[tuple[int, int], float] = {}
        self._disk_rows = 0

    def step(self, row: tuple) -> None:
        self.num_rows += 1
        if not self.keep_rows:
            return
        for append, value in zip(self._appenders, row, strict=True):
            append(value)
        if self._spill_dir is not None and self.num_rows - self._on_disk() >= self._spill_rows:
            self._write_block()

    def _on_disk(self) -> int:
        return self._disk_rows

    def _write_block(self) -> None:
        """The rows held in memory appended to their streams' spill files; the memory let go."""
        cols = {c: np.frombuffer(self._cols[c], dtype=_STEP_DTYPES[self._cols[c].typecode]) for c in STEP_COLUMNS}
        replica, engine = cols["replica"], cols["engine"]
        self._disk_rows += len(replica)
        if len(replica):
            for key, rows in _streams_of(replica, engine):
                part = cols if rows is None else {c: v[rows] for c, v in cols.items()}
                self._append_stream(key, part)
        del cols, replica, engine
        for c in STEP_COLUMNS:
            _empty(self._cols, c)
        self._appenders = [self._cols[c].append for c in STEP_COLUMNS]

    def _append_stream(self, key: tuple[int, int], part: dict) -> None:
        start = part["start_s"]
        if self._spilled_sorted:
            last = self._last_start.get(key)
            self._spilled_sorted = bool((np.diff(start) >= 0).all()) and (last is None or start[0] >= last)
            self._last_start[key] = float(start[-1])
        spill = self._streams.get(key)
        if spill is None:
            dtypes = {c: _STEP_DTYPES[self._cols[c].typecode] for c in STEP_COLUMNS}
            spill = self._streams[key] = ColumnSpill(self._spill_dir / f"r{key[0]}e{key[1]}", dtypes)
        spill.write(part)

    def run(self, columns: dict) -> None:
        """Rows of a collapsed run: each value is a scalar (repeated) or an array of the run's length."""
        n = len(columns["duration_s"])
        self.num_rows += n
        if not self.keep_rows:
            return
        cols = self._cols
        for c in STEP_COLUMNS:
            v, col = columns[c], cols[c]
            if isinstance(v, np.ndarray):  # its bytes (tobytes: C order), converted first to the column's type
                want = np.int32 if col.typecode == "i" else np.float64
                col.frombytes((v if v.dtype == want else v.astype(want)).tobytes())
            else:
                col.extend([int(v) if col.typecode == "i" else float(v)] * n)
        if self._spill_dir is not None and self.num_rows - self._on_disk() >= self._spill_rows:
            self._write_block()

    def gaps(self, values: list[float]) -> None:
        """Inter-token gaps for the global distribution (buffered, binned in bulk)."""
        self._gap_buffer.extend(values)
        if len(self._gap_buffer) >= 65536:
            self.flush_gaps()

    def flush_gaps(self) -> None:
        if self._gap_buffer:
            self.itl.add(self._gap_buffer)
            self._gap_buffer = []

    def frame(self, release: bool = False) -> pd.DataFrame | SpilledTable:
        """The table sorted by (start, replica, engine); ``release`` as for ``RequestLog.frame``. Once rows
        were written to the spill directory, a ``SpilledTable`` over it when each engine's rows are in order of
        start (they are: an engine's steps follow one another): over its files if there is one engine, else
        over the engines' files merged into that order (``merge_streams``, a window at a time). Otherwise the
        whole table is read back and sorted in memory."""
        self.flush_gaps()
        if self._streams:
            self._write_block()
            streams = sorted(self._streams.items())
            self._streams, self._last_start = {}, {}
            if self._spilled_sorted:
                if len(streams) == 1:
                    return SpilledTable(streams[0][1])
                merged = merge_streams(streams, self._spill_dir / "merged", "start_s", STEP_KEYS[1:])
                for _, spill in streams:
                    spill.discard()
                return SpilledTable(merged)
            # a stream out of order: sorted in memory (equal keys are one stream's rows, in the order logged)
            parts = [SpilledTable(spill).frame() for _, spill in streams]
            shutil.rmtree(self._spill_dir, ignore_errors=True)
            self._spilled_sorted = True
            return _sorted_frame({c: np.concatenate([p[c].to_numpy() for p in parts]) for c in STEP_COLUMNS},
                                 list(STEP_KEYS))
        cols = {}
        for c in STEP_COLUMNS:  # counts stay 4-byte integers: a long run's table is mostly step rows
            cols[c] = _column(self._cols[c], c in self.INT_COLUMNS, np.int32, take=release)
            if release:
                _empty(self._cols, c)
        if release:
            self._appenders = [self._cols[c].append for c in STEP_COLUMNS]
        return _sorted_frame(cols, list(STEP_KEYS))


def empty_steps() -> pd.DataFrame:
    """A step table with no rows (the columns and types of ``StepLog.frame``): what a point run with
    ``output.steps: false`` has."""
    return StepLog().frame(release=True)
