"""Step rows written to disk while a run goes, and read back as a table without holding it in memory.

A long run has millions of step rows (80 bytes each: a 1M-request run's step table is ~0.5 GB). When the
runner gives the simulation a scratch directory (inside the point's results directory), the step log writes
its rows there one block at a time, one raw native-endian file per column, and the run's step table is a
``SpilledTable``: a read-only table over those files that the summaries, the trust annotation and the table
writer read one column or one block at a time (the parts of the ``pandas.DataFrame`` interface they use).
Its values, types and row order are those of the in-memory table, to the bit.

The rows of several replicas (or engines) interleave in the log, each engine's in order of start, so each
engine's rows go to files of their own (a *stream*), and at the end of the run ``merge_streams`` merges the
streams into the table's order a window at a time (a k-way merge: memory of one window per stream, never the
whole table), where the in-memory table would be sorted as a whole.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

SPILL_DIR = ".steps.spill"  # the scratch directory's name in a point's results directory
READ_ROWS = 1 << 18  # rows read at a time where a whole column is not needed at once


class ColumnSpill:
    """Appends blocks of rows to one raw file per column in ``directory`` (emptied first)."""

    def __init__(self, directory: Path, dtypes: Mapping[str, np.dtype]) -> None:
        self.directory = Path(directory)
        self.dtypes = {c: np.dtype(t) for c, t in dtypes.items()}
        self.rows = 0
        shutil.rmtree(self.directory, ignore_errors=True)
        self.directory.mkdir(parents=True)

    def write(self, columns: Mapping[str, np.ndarray]) -> None:
        n = len(next(iter(columns.values())))
        for c, dtype in self.dtypes.items():
            with open(self.directory / f"{c}.bin", "ab") as f:
                np.ascontiguousarray(columns[c], dtype=dtype).tofile(f)
        self.rows += n

    def read(self, column: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        stop = self.rows if stop is None else min(stop, self.rows)
        dtype = self.dtypes[column]
        count = max(0, stop - start)
        if not count:
            return np.empty(0, dtype=dtype)
        return np.fromfile(self.directory / f"{column}.bin", dtype=dtype, count=count, offset=start * dtype.itemsize)

    def discard(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def merge_streams(streams: Sequence[tuple[tuple, ColumnSpill]], directory: Path, key_column: str,
                  group_columns: Sequence[str], rows: int | None = None) -> ColumnSpill:
    """The rows of ``streams`` in one ``ColumnSpill`` at ``directory``, in lexicographic order of
    (``key_column``, *``group_columns``), equal rows in stream order: what a stable sort of all of them gives.
    Each stream is (its ``group_columns`` values, the same on all its rows; its spill, sorted by
    ``key_column``). A window of at most ``rows`` (default ``READ_ROWS``) rows in all is read at a time: every row not after the
    smallest last key of the windows that do not end their stream is written (such a row sorts before any row
    not read yet), then the windows move on past them."""
    k = len(streams)
    out = ColumnSpill(directory, streams[0][1].dtypes)
    window = max(1, (READ_ROWS if rows is None else rows) // k)
    pos = [0] * k
    while True:
        live = [i for i in range(k) if pos[i] < streams[i][1].rows]
        if not live:
            return out
        keys = {i: streams[i][1].read(key_column, pos[i], pos[i] + window) for i in live}
        bound = min(((float(keys[i][-1]), streams[i][0]) for i in live if pos[i] + len(keys[i]) < streams[i][1].rows),
                    default=None)
        parts = []
        for i in live:
            if bound is None:
                n = len(keys[i])
            else:  # rows up to the bound; at the bound's key, this stream's rows if its group does not sort after
                n = int(np.searchsorted(keys[i], bound[0], side="right" if streams[i][0] <= bound[1] else "left"))
            if n:
                parts.append((streams[i][1], pos[i], pos[i] + n))
                pos[i] += n
        block = {c: np.concatenate([sp.read(c, a, b) for sp, a, b in parts]) for c in out.dtypes}
        order = np.lexsort([block[c] for c in reversed((key_column, *group_columns))])  # stable: stream order kept
        out.write({c: v[order] for c, v in block.items()})


class SpilledTable:
    """A read-only table of ``spill.rows`` rows whose columns are ``spill``'s files. Supports what the
    consumers of a step table use: ``len``, ``in``, ``columns``, ``t[name]`` (a Series, read whole),
    ``t[[names]]``, ``t.iloc[i]`` (a row), ``t.iloc[a:b]`` and ``t.loc[mask]`` / ``t.loc[mask, names]``
    (DataFrames of just those rows, indexed by their row numbers as a DataFrame's would be), ``blocks``;
    ``frame()`` reads it all into a DataFrame."""

    def __init__(self, spill: ColumnSpill, start: int = 0, stop: int | None = None) -> None:
        self._spill = spill
        self._start = start
        self._stop = spill.rows if stop is None else min(stop, spill.rows)
        self.columns = pd.Index(list(spill.dtypes))
        self.iloc = _ILoc(self)
        self.loc = _Loc(self)

    def __len__(self) -> int:
        return max(0, self._stop - self._start)

    def view(self, start: int, stop: int) -> SpilledTable:
        """Rows ``start:stop`` of this table as a table of their own that reads nothing until a column is asked
        for (``llmsim.metrics.window.Rows.blocks`` reads a long table's blocks one column at a time so)."""
        start = min(max(start, 0), len(self))
        return SpilledTable(self._spill, self._start + start, self._start + max(start, min(stop, len(self))))

    def _read(self, column: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        stop = len(self) if stop is None else stop
        return self._spill.read(column, self._start + start, self._start + stop)

    def __contains__(self, column: object) -> bool:
        return column in self._spill.dtypes

    @property
    def directory(self) -> Path:
        return self._spill.directory

    def __getitem__(self, key):
        if isinstance(key, str):
            if key not in self:
                raise KeyError(key)
            return pd.Series(self._read(key), name=key, copy=False)
        return self._rows(0, len(self), list(key))

    def _rows(self, start: int, stop: int, columns: Sequence[str] | None = None) -> pd.DataFrame:
        names = list(self.columns) if columns is None else [c for c in columns if c in self]
        missing = [c for c in (columns or ()) if c not in self]
        if missing:
            raise KeyError(missing)
        stop = max(start, min(stop, len(self)))
        return pd.DataFrame({c: self._read(c, start, stop) for c in names}, columns=names,
                            index=pd.RangeIndex(self._start + start, self._start + stop), copy=False)

    def _where(self, mask: np.ndarray, columns: Sequence[str] | None) -> pd.DataFrame:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (len(self),):
            raise ValueError(f"a row mask of {len(self)} values was expected, got shape {mask.shape}")
        names = list(self.columns) if columns is None else list(columns)
        return pd.DataFrame({c: self._masked(c, mask) for c in names}, columns=names,
                            index=np.flatnonzero(mask) + self._start, copy=False)

    def _masked(self, column: str, mask: np.ndarray) -> np.ndarray:
        """``column[mask]``, read a block at a time (the column is never held whole)."""
        out = np.empty(int(mask.sum()), dtype=self._spill.dtypes[column])
        at = 0
        for a in range(0, len(self), READ_ROWS):
            part = self._read(column, a, min(a + READ_ROWS, len(self)))[mask[a:a + READ_ROWS]]
            out[at:at + len(part)] = part
            at += len(part)
        return out

    def blocks(self, rows: int, columns: Sequence[str] | None = None) -> Iterator[pd.DataFrame]:
        """Consecutive blocks of at most ``rows`` rows (``columns`` only, when given)."""
        for a in range(0, len(self), rows):
            yield self._rows(a, a + rows, columns)

    def frame(self) -> pd.DataFrame:
        return self._rows(0, len(self))


class _ILoc:
    def __init__(self, table: SpilledTable) -> None:
        self._t = table

    def __getitem__(self, key):
        n = len(self._t)
        if isinstance(key, slice):
            start, stop, step = key.indices(n)
            if step != 1:
                raise ValueError("a spilled table is read in consecutive rows (slice step 1)")
            return self._t._rows(start, max(start, stop))
        i = int(key)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"row {key} of a {n}-row table")
        return self._t._rows(i, i + 1).iloc[0]  # named by its row, as a DataFrame's


class _Loc:
    def __init__(self, table: SpilledTable) -> None:
        self._t = table

    def __getitem__(self, key):
        if isinstance(key, tuple):
            mask, columns = key
            return self._t._where(mask, [columns] if isinstance(columns, str) else list(columns))
        return self._t._where(key, None)
