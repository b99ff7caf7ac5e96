"""Per-request and per-step records, accumulated cheaply during a run and turned into DataFrames once.

Memory is bounded by active requests plus one row per finished request and per step: per-token gaps
live on the sequence only while it runs, and the global inter-token distribution is a fixed histogram.
"""

from __future__ import annotations

from array import array

import numpy as np
import pandas as pd

from llmsim.metrics.histogram import LogHistogram

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

    def __init__(self, frontend_overhead_s: float = 0.0) -> None:
        self.frontend_overhead_s = frontend_overhead_s
        # column-wise: 8 bytes per number (plus shared strings) per request, not a tuple of boxed floats
        self._cols: dict[str, list | array] = {c: [] if c in self.OBJECT_COLUMNS else array("d")
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
        gaps = _gaps_array(seq.gaps, seq.gap_runs)
        p50, p99 = _quantiles(gaps)
        self._append((req.id, replica, "finished", "", seq.arrival_s, req.input_tokens, n,
                          seq.first_scheduled_s - seq.arrival_s, ttft, tpot, e2e, seq.finish_s,
                          float(gaps[-1]) if gaps.size else float("nan"), p50, p99, seq.num_preemptions,
                          seq.prefix_hit_tokens, seq.num_emitted, seq.computed_total, req.slo_class,
                          req.session_id, seq.prefill_replica, seq.handoff_s, seq.transfer_s, seq.num_migrations))
        seq.gaps = []
        seq.gap_runs = []

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

    def frame(self) -> pd.DataFrame:
        cols: dict[str, np.ndarray | list] = {}
        for c, v in self._cols.items():
            if c in self.OBJECT_COLUMNS:
                cols[c] = np.asarray(v, dtype=object)
            else:
                arr = np.frombuffer(v, dtype=np.float64) if len(v) else np.empty(0)
                cols[c] = arr.astype(np.int64) if c in self.INT_COLUMNS else arr.copy()
        df = pd.DataFrame(cols)
        return df.sort_values("id", kind="stable").reset_index(drop=True)


def _gaps_array(gaps: list[float], runs: list) -> np.ndarray:
    """All gaps of a request, sorted (single steps and collapsed runs; their order does not matter here)."""
    arr = np.concatenate([np.asarray(gaps, dtype=np.float64), *runs]) if runs else np.asarray(gaps, dtype=np.float64)
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


class StepLog:
    """Step rows, kept column-wise in compact float arrays (a collapsed decode run extends them with its k
    rows at once)."""

    INT_COLUMNS = ("replica", "engine", "batch_size", "prefill_tokens", "decode_tokens", "padded_rows", "kv_blocks_used",
                   "kv_blocks_total", "queue_len", "num_in_system", "preempted", "swap_blocks")

    def __init__(self) -> None:
        self._cols: dict[str, array] = {c: array("d") for c in STEP_COLUMNS}
        self._appenders = [self._cols[c].append for c in STEP_COLUMNS]
        self.itl = LogHistogram()
        self._gap_buffer: list[float] = []

    def step(self, row: tuple) -> None:
        for append, value in zip(self._appenders, row, strict=True):
            append(value)

    def run(self, columns: dict) -> None:
        """Rows of a collapsed run: each value is a scalar (repeated) or an array of the run's length."""
        n = len(columns["duration_s"])
        for c in STEP_COLUMNS:
            v = columns[c]
            if isinstance(v, np.ndarray):
                self._cols[c].frombytes(np.ascontiguousarray(v, dtype=np.float64).tobytes())
            else:
                self._cols[c].extend([float(v)] * n)

    def gaps(self, values: list[float]) -> None:
        """Inter-token gaps for the global distribution (buffered, binned in bulk)."""
        self._gap_buffer.extend(values)
        if len(self._gap_buffer) >= 65536:
            self.flush_gaps()

    def flush_gaps(self) -> None:
        if self._gap_buffer:
            self.itl.add(self._gap_buffer)
            self._gap_buffer = []

    def frame(self) -> pd.DataFrame:
        self.flush_gaps()
        cols = {c: np.frombuffer(v, dtype=np.float64) if len(v) else np.empty(0) for c, v in self._cols.items()}
        for c in self.INT_COLUMNS:
            cols[c] = cols[c].astype(np.int64)
        df = pd.DataFrame(cols)
        return df.sort_values(["start_s", "replica", "engine"], kind="stable").reset_index(drop=True)
