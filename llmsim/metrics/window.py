"""The measurement window of a run: which requests are warm-up, measured or cool-down.

Warm-up and cool-down are chosen in *arrival order* (not by request id: closed-loop users and replayed
traces do not issue ids in arrival order). A summary describes the ``measured`` requests; the window is
the span of their arrivals, and throughput counts what completed inside it (the drain after the last
arrival, when nothing arrives any more, is not steady state).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

PHASES = ("warmup", "measured", "cooldown")
ROW_BLOCK = 1 << 18  # rows per block of a reduction over a long table (``Rows.blocks``)


def mark_phases(requests: pd.DataFrame, *, warmup_requests: int = 0, warmup_s: float = 0.0,
                cooldown_requests: int = 0, cooldown_s: float = 0.0, inplace: bool = False) -> pd.DataFrame:
    """A copy of ``requests`` with a ``phase`` column: the first ``warmup_requests`` arrivals and those
    before ``warmup_s`` (simulated time) are ``warmup``; the last ``cooldown_requests`` arrivals and those
    within ``cooldown_s`` of the last arrival are ``cooldown``; the rest ``measured``. Rows keep their order.
    ``inplace``: add the column to ``requests`` itself and return it (a long run's table is not copied)."""
    n = len(requests)
    arrival = requests["arrival_s"].to_numpy(np.float64)
    last = float(arrival.max()) if n else 0.0
    warm = arrival < warmup_s
    cool = arrival > last - cooldown_s if cooldown_s > 0 else np.zeros(n, dtype=bool)
    if warmup_requests > 0 or cooldown_requests > 0:  # by rank in arrival order, ties by id
        order = np.lexsort((requests["id"].to_numpy(), arrival))
        warm[order[:max(0, min(warmup_requests, n))]] = True
        cool[order[max(0, n - cooldown_requests):]] = True
    # one shared string per phase (not a string object per row)
    codes = np.ones(n, dtype=np.int8)  # 1 byte a row: measured, unless cool-down, unless warm-up
    codes[cool] = 2
    codes[warm] = 0
    phase = np.array(PHASES, dtype=object)[codes]
    if not inplace:
        return requests.assign(phase=phase)
    requests["phase"] = phase
    return requests


def measured_mask(requests: pd.DataFrame) -> np.ndarray:
    """Rows a summary describes: ``phase == "measured"``, or every row when there is no phase column."""
    if "phase" not in requests:
        return np.ones(len(requests), dtype=bool)
    return (requests["phase"] == "measured").to_numpy()


@dataclass(frozen=True, slots=True)
class Window:
    """The span ``[start_s, end_s]`` of the measured arrivals; ``length_s`` is 0 for a burst (all at once)."""

    start_s: float
    end_s: float

    @property
    def length_s(self) -> float:
        return self.end_s - self.start_s

    @classmethod
    def of(cls, requests: pd.DataFrame) -> Window:
        arrival = requests.loc[measured_mask(requests), "arrival_s"].to_numpy(np.float64)
        if not arrival.size:
            return cls(0.0, 0.0)
        return cls(float(arrival.min()), float(arrival.max()))

    def completed(self, requests: pd.DataFrame, columns: tuple[str, ...] | None = None) -> pd.DataFrame:
        """Finished requests (of any phase) whose engine-side end falls inside the window (only ``columns``,
        when given: a long run's table is not copied whole)."""
        return take_rows(requests, self.completed_mask(requests), columns)

    def completed_mask(self, requests: pd.DataFrame) -> np.ndarray:
        """Which rows ``completed`` selects."""
        end = requests["finish_s"].to_numpy(np.float64)
        return (requests["status"] == "finished").to_numpy() & (end >= self.start_s) & (end <= self.end_s)


def take_rows(df: pd.DataFrame, mask: np.ndarray, columns: tuple[str, ...] | None = None) -> pd.DataFrame:
    """``df[mask]`` (only ``columns``, when given) for read-only use: the table itself when every row is
    selected, and otherwise a copy of just the columns asked for, so that a summary of a long run does not
    hold a second full copy of its step table."""
    if columns is not None:
        columns = [c for c in columns if c in df.columns]
    if bool(mask.all()):
        return df if columns is None else df[columns]
    return df.loc[mask] if columns is None else df.loc[mask, columns]


def in_span(steps: pd.DataFrame, start_s: float, end_s: float, column: str = "start_s") -> np.ndarray:
    """``(steps[column] >= start_s) & (steps[column] <= end_s)`` as a row mask, computed a block of rows at a
    time (a long spilled table's column is never read whole)."""
    out = np.empty(len(steps), dtype=bool)
    at = 0
    for b in Rows(steps).blocks():
        v = b[column].astype(np.float64, copy=False)
        out[at:at + len(v)] = (v >= start_s) & (v <= end_s)
        at += len(v)
    return out


def column(steps: pd.DataFrame, name: str, dtype=np.float64) -> np.ndarray:
    """One column of ``steps`` as a new array of ``dtype``, filled a block at a time (one copy, where a whole
    read and a conversion would hold two)."""
    out = np.empty(len(steps), dtype=dtype)
    at = 0
    for b in Rows(steps).blocks():
        v = b[name]
        out[at:at + len(v)] = v
        at += len(v)
    return out


class Selection:
    """The rows of ``df`` that ``mask`` selects, one column at a time: ``s[name]`` is ``df[mask][name]`` (the same
    values, dtype and row labels) without a copy of the table's other columns; also ``len``, ``in`` and
    ``columns``. What a summary reads of a run's measured and finished requests (a copy of a 1M-request table
    per selection otherwise)."""

    def __init__(self, df: pd.DataFrame, mask: np.ndarray | None = None) -> None:
        self._df = df
        self._mask = None if mask is None or bool(mask.all()) else np.asarray(mask, dtype=bool)
        self.columns = df.columns

    def __len__(self) -> int:
        return len(self._df) if self._mask is None else int(self._mask.sum())

    def __contains__(self, column: object) -> bool:
        return column in self._df

    def __getitem__(self, column: str) -> pd.Series:
        values = self._df[column]
        return values if self._mask is None else values[self._mask]

    def where(self, mask: np.ndarray) -> Selection:
        """The rows of these that ``mask`` (over these rows) selects."""
        if self._mask is None:
            return Selection(self._df, mask)
        both = self._mask.copy()
        both[both] = np.asarray(mask, dtype=bool)
        return Selection(self._df, both)


class Rows:
    """Read-only columns of the rows of ``df`` that ``mask`` selects (None: all of them), each handed out as
    a numpy array when asked for: a summary of a long run holds one selected column at a time, never a
    copy of its step table. ``Rows(df, m)["x"]`` equals ``df[m]["x"].to_numpy()``."""

    def __init__(self, df: pd.DataFrame, mask: np.ndarray | None = None) -> None:
        self._df = df
        self._mask = None if mask is None or bool(mask.all()) else np.asarray(mask, dtype=bool)

    def __len__(self) -> int:
        return len(self._df) if self._mask is None else int(self._mask.sum())

    def __getitem__(self, column: str) -> np.ndarray:
        values = self._df[column].to_numpy()
        return values if self._mask is None else values[self._mask]

    def blocks(self, size: int | None = None) -> Iterator[Rows]:
        """These rows, in consecutive blocks of at most ``size`` rows of the table (default ``ROW_BLOCK``): a
        reduction over a long run then holds one block's temporaries, not several copies of a column of the
        whole table. A table of at most ``size`` rows is one block, these rows themselves (a reduction over
        it is the whole-column one, to the bit); a block may select no rows."""
        size = ROW_BLOCK if size is None else size
        n = len(self._df)
        if n <= size:
            yield self
            return
        view = getattr(self._df, "view", None)  # a spilled table: a block reads only the columns asked for
        for a in range(0, n, size):
            part = view(a, a + size) if callable(view) else self._df.iloc[a:a + size]
            yield Rows(part, None if self._mask is None else self._mask[a:a + size])

    def where(self, mask: np.ndarray) -> Rows:
        """The rows of these that ``mask`` (over these rows) selects."""
        if self._mask is None:
            return Rows(self._df, mask)
        both = self._mask.copy()
        both[both] = mask
        return Rows(self._df, both)
