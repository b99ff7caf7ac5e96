"""CSV text of a results table, the same bytes ``DataFrame.to_csv(f, index=False)`` writes, about twice as fast.

pandas formats a float column through numpy's ``astype(str)`` and then boxes every cell; on the long tables
of a run (a step row per engine step: millions of rows) that is most of the write. Here each column becomes
its cells' strings once, then rows are joined:

- integers: from a table of the strings of every value between the column's minimum and maximum when that
  range is short next to the number of rows (counts, replica indices, block counts: each string made once
  and used many times), else ``str`` of each;
- floats (float64): ``repr`` of each, the shortest round-trip digits, which is what numpy's ``str`` of a
  float64 gives (same switch to exponent notation below 1e-4 and from 1e16); NaN as the empty field, as
  pandas' default ``na_rep``;
- booleans: ``True`` / ``False``;
- objects and strings (text): None and NaN as the empty field, anything else ``str``, quoted as the csv module's
  ``QUOTE_MINIMAL`` quotes (a field holding a comma, a double quote or a newline, quotes doubled).

Any other column type (categoricals, float32, datetimes, nullable extension types) makes the whole block go
through pandas. ``tests/experiment/test_fastcsv.py`` holds the output equal to pandas' on tables of every
kind handled, edge values included.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

CHUNK_ROWS = 16_384  # rows formatted and written at a time (the strings of one chunk are held, not a block's)
_NEEDS_QUOTES = (",", '"', "\n")  # delimiter, quote, line terminator (not "\\r")


def _int_cells(values: np.ndarray) -> Callable[[np.ndarray], list[str]]:
    if not values.size:
        return lambda a: []
    lo, hi = int(values.min()), int(values.max())
    if hi - lo > values.size // 4 + 1024 or not -2**62 < lo <= hi < 2**62:  # values that rarely repeat (ids),
        # or beyond int64 offsets (huge uint64): a string per cell, a chunk at a time
        return lambda a: list(map(str, a.tolist()))
    table = np.array([str(v) for v in range(lo, hi + 1)], dtype=object)
    return lambda a: table[a.astype(np.int64) - lo].tolist()


def _float_cells(a: np.ndarray) -> list[str]:
    cells = list(map(repr, a.tolist()))
    if np.isnan(a).any():
        for i in np.flatnonzero(np.isnan(a)).tolist():
            cells[i] = ""
    return cells


def _object_cell(v) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return ""
    s = v if isinstance(v, str) else str(v)
    if any(c in s for c in _NEEDS_QUOTES):
        return '"' + s.replace('"', '""') + '"'
    return s


def _object_cells(a: np.ndarray) -> list[str]:
    return [_object_cell(v) for v in a.tolist()]


def _bool_cells(a: np.ndarray) -> list[str]:
    return ["True" if v else "False" for v in a.tolist()]


def _formatter(series: pd.Series) -> tuple[np.ndarray, Callable[[np.ndarray], list[str]]] | None:
    """(the column's values, cells of a slice of them), or None for a type this module leaves to pandas."""
    dtype = series.dtype
    if isinstance(dtype, pd.StringDtype):  # pandas 3's default text type: missing values as None
        return series.to_numpy(dtype=object, na_value=None), _object_cells
    if not isinstance(dtype, np.dtype):
        return None  # categorical, nullable integer, ...
    values = series.to_numpy()
    kind = dtype.kind
    if kind in "iu":
        return values, _int_cells(values)
    if kind == "f" and dtype.itemsize == 8:
        return values, _float_cells
    if kind == "b":
        return values, _bool_cells
    if kind == "O":
        return values, _object_cells
    return None


def _header_cell(name) -> str:
    return _object_cell(name if isinstance(name, str) else str(name))


def write_csv(df: pd.DataFrame, f, header: bool = True) -> None:
    """Write ``df`` to the text file ``f`` as ``df.to_csv(f, index=False, header=header)`` would."""
    # one column: the csv module quotes a row's only field when it is empty; left to pandas
    formatters = [_formatter(df[c]) for c in df.columns] if df.columns.is_unique and df.shape[1] > 1 else [None]
    if any(fmt is None for fmt in formatters):
        df.to_csv(f, index=False, header=header)
        return
    if header:
        f.write(",".join(_header_cell(c) for c in df.columns) + "\n")
    n = len(df)
    for a in range(0, n, CHUNK_ROWS):
        b = min(n, a + CHUNK_ROWS)
        cols = [cells(values[a:b]) for values, cells in formatters]
        f.write("\n".join(map(",".join, zip(*cols, strict=True))) + "\n")
