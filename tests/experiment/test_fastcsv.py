"""``llmsim.experiment.fastcsv.write_csv`` writes the bytes ``DataFrame.to_csv(index=False)`` writes."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pandas as pd
import pytest

from llmsim.experiment import fastcsv
from llmsim.experiment.fastcsv import write_csv

EDGE_FLOATS = [0.0, -0.0, 1e-4, 9.999e-5, 1e-5, 5e-324, 2.2250738585072014e-308, 1e16, 9999999999999998.0,
               1.7976931348623157e308, -1.5, 0.1, 1 / 3, 123456.789, 1e15 + 0.5, float("inf"), float("-inf"),
               float("nan"), 2.0**53, -7e22]


def _same(df: pd.DataFrame, header: bool = True) -> None:
    want = io.StringIO()
    df.to_csv(want, index=False, header=header)
    got = io.StringIO()
    write_csv(df, got, header=header)
    assert got.getvalue() == want.getvalue()


def _step_like(n: int, rng: np.random.Generator) -> pd.DataFrame:
    return pd.DataFrame({
        "replica": np.zeros(n, np.int32), "start_s": np.cumsum(rng.random(n) * 0.02),
        "batch_size": rng.integers(1, 300, n).astype(np.int32), "kv_blocks_used": rng.integers(0, 40_000, n),
        "id": rng.integers(-2**62, 2**62, n), "flops": rng.random(n) * 10.0 ** rng.integers(-8, 20, n),
        "tiny": rng.random(n) * 1e-6, "neg": -rng.integers(0, 5, n).astype(np.int16),
        "u": rng.integers(0, 7, n).astype(np.uint8),
    })


def test_numeric_tables_match_pandas_across_chunks(monkeypatch):
    monkeypatch.setattr(fastcsv, "CHUNK_ROWS", 37)  # several chunks, a short last one
    rng = np.random.default_rng(3)
    df = _step_like(1000, rng)
    _same(df)
    _same(df, header=False)
    _same(df.iloc[0:0])  # the header alone
    _same(df.iloc[5:6])
    big = np.array([2**64 - 1, 2**64 - 2, 2**64 - 3, 2**64 - 1], dtype=np.uint64)  # short ranges at the ends
    low = np.array([-2**63, -2**63 + 1, -2**63 + 2, -2**63], dtype=np.int64)  # of the integer types
    _same(pd.DataFrame({"big": big, "low": low}))


def test_edge_floats_and_nan_match_pandas():
    vals = np.array(EDGE_FLOATS * 3)
    df = pd.DataFrame({"x": vals, "y": vals[::-1].copy(), "k": np.arange(vals.size)})
    _same(df)
    rng = np.random.default_rng(5)  # random bit patterns: every exponent, subnormals included
    bits = rng.integers(0, 2**63 - 1, 5000, dtype=np.int64)
    r = bits.view(np.float64)
    _same(pd.DataFrame({"r": r, "s": -r}))


def test_text_columns_match_pandas():
    texts = ["finished", "", None, float("nan"), 'a "quoted" word', "comma, inside", "line\nbreak",
             "carriage\rreturn", " padded ", "unicode ✓", 3, 2.5, np.float64(0.1), True]
    df = pd.DataFrame({"status": pd.Series(texts, dtype=object), "n": np.arange(len(texts)),
                       "ok": np.arange(len(texts)) % 2 == 0, "v": np.linspace(0, 1, len(texts))})
    _same(df)
    _same(pd.DataFrame({"a": ["", ""], "b": ["", None]}))  # rows of empty fields
    words = ["finished", "", None, "comma, inside", 'say "hi"', "line\nbreak"]
    dtypes = ["string"]  # NA for missing; pandas >= 2.3 also has NaN-missing strings (3.0's default "str")
    with contextlib.suppress(TypeError):
        dtypes.append(pd.StringDtype("python", na_value=np.nan))
    for dtype in dtypes:
        _same(pd.DataFrame({"s": pd.array(words, dtype=dtype), "n": np.arange(len(words))}))


@pytest.mark.parametrize("frame", [
    pd.DataFrame({"only": ["", "x"]}),  # a row's only field, empty: the csv module quotes it
    pd.DataFrame({"c": pd.Categorical(["a", "b"]), "n": [1, 2]}),
    pd.DataFrame({"f32": np.array([0.1, 0.2], dtype=np.float32), "n": [1, 2]}),
    pd.DataFrame({"i": pd.array([1, None], dtype="Int64"), "n": [1, 2]}),
    pd.DataFrame([[1, 2]], columns=["dup", "dup"]),
])
def test_other_tables_go_through_pandas(frame):
    _same(frame)


def test_a_results_table_is_written_with_it(tmp_path, monkeypatch):
    """``write_table``'s CSV path uses ``write_csv`` (also for a spilled step table's blocks)."""
    from llmsim.experiment import results

    monkeypatch.setattr(results, "has_parquet", lambda: False)
    calls = []
    real = results.write_csv
    monkeypatch.setattr(results, "write_csv", lambda df, f, header=True: calls.append(len(df)) or real(df, f, header))
    df = _step_like(50, np.random.default_rng(1))
    path = results.write_table(df, tmp_path / "steps")
    assert calls == [50]
    want = io.StringIO()
    df.to_csv(want, index=False)
    assert path.read_text() == want.getvalue()
