"""Results files (atomic writes, read back), compare table."""

import numpy as np
import pandas as pd
import pytest

from llmsim.experiment.commands import compare_table
from llmsim.experiment.results import Results, atomic_write_text, read_table, write_table


def test_write_and_read_table_roundtrip(tmp_path):
    df = pd.DataFrame({"a": [1, 2], "b": [0.5, np.nan]})
    path = write_table(df, tmp_path / "t")
    assert path.exists() and not list(tmp_path.glob(".t*"))  # no temp file left behind
    pd.testing.assert_frame_equal(read_table(tmp_path / "t"), df)


def test_atomic_write_replaces(tmp_path):
    p = tmp_path / "x.json"
    atomic_write_text(p, "one")
    atomic_write_text(p, "two")
    assert p.read_text() == "two"


def test_compare_averages_seeds(tmp_path):
    for name, base in (("a", 1.0), ("b", 2.0)):
        d = tmp_path / name
        s = pd.DataFrame({"point_id": ["p1", "p2"], "seed": [0, 1], "sweep.rate": [1, 1],
                          "throughput_rps": [base, base + 1.0], "ttft_p50_s": [0.1, 0.3]})
        write_table(s, d / "summary")
    table = compare_table([str(tmp_path / "a"), str(tmp_path / "b")])
    assert list(table["results"]) == ["a", "b"]
    assert list(table["throughput_rps"]) == [1.5, 2.5]
    assert table["ttft_p50_s"].iloc[0] == pytest.approx(0.2)


def test_results_load_errors(tmp_path):
    from llmsim.errors import ConfigError

    with pytest.raises(ConfigError, match="not a results directory"):
        Results.load(tmp_path)


def test_csv_fallback_without_pyarrow(tmp_path, monkeypatch):
    import llmsim.experiment.results as results

    monkeypatch.setattr(results, "has_parquet", lambda: False)
    df = pd.DataFrame({"a": [1, 2]})
    assert write_table(df, tmp_path / "t").suffix == ".csv"
    pd.testing.assert_frame_equal(read_table(tmp_path / "t"), df)
