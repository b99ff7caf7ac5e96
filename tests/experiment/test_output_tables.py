"""Result tables are written streamed (Parquet row groups, CSV in row chunks) and read back as they were;
``output.steps: false`` leaves the step table out and changes nothing else."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import llmsim.experiment.results as results
from llmsim.experiment.results import Results, read_table, write_table
from llmsim.experiment.runner import run_experiment
from llmsim.metrics.records import STEP_COLUMNS


def _table(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({"id": np.arange(n, dtype=np.int64), "count": rng.integers(0, 9, n).astype(np.int32),
                         "t": rng.random(n), "status": np.where(rng.random(n) < 0.5, "finished", "rejected"),
                         "reason": np.array([""] * (n - 3) + ["kv", "", "len"], dtype=object)}, copy=False)


def test_long_parquet_table_is_written_in_row_groups_and_reads_back_equal(tmp_path, monkeypatch):
    pq = pytest.importorskip("pyarrow.parquet")
    monkeypatch.setattr(results, "WRITE_ROWS", 100)
    df = _table(1050)
    path = write_table(df, tmp_path / "t")
    assert path.suffix == ".parquet" and pq.ParquetFile(path).metadata.num_row_groups == 11
    pd.testing.assert_frame_equal(read_table(tmp_path / "t"), df)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind


def test_csv_table_is_the_text_to_csv_gives(tmp_path, monkeypatch):
    monkeypatch.setattr(results, "has_parquet", lambda: False)
    df = _table(500)
    path = write_table(df, tmp_path / "t")
    assert path.suffix == ".csv" and path.read_text() == df.to_csv(index=False)


EXP = {
    "name": "nosteps", "model": "llama-3.1-8b", "hardware": "h100-sxm",
    "workload": {"arrival": {"kind": "poisson", "rate_per_s": 4.0},
                 "input_len": {"kind": "uniform", "low": 64, "high": 512},
                 "output_len": {"kind": "uniform", "low": 8, "high": 64}},
    "stop": {"num_requests": 60, "warmup_requests": 5},
}


def test_output_steps_false_writes_no_step_table_and_the_same_summary(tmp_path):
    with_steps = run_experiment(dict(EXP), tmp_path / "a")
    without = run_experiment({**EXP, "output": {"steps": False}}, tmp_path / "b")
    pid = with_steps.summary["point_id"].iloc[0]
    a, b = tmp_path / "a" / "points" / pid, tmp_path / "b" / "points" / without.summary["point_id"].iloc[0]
    assert any(a.glob("steps.*")) and not any(b.glob("steps.*"))
    sa, sb = json.loads((a / "summary.json").read_text()), json.loads((b / "summary.json").read_text())
    assert sa["num_steps"] > 0 and sa == sb
    pd.testing.assert_frame_equal(read_table(a / "requests"), read_table(b / "requests"))
    steps = Results.load(tmp_path / "b").steps(without.summary["point_id"].iloc[0])
    assert len(steps) == 0 and list(steps.columns) == list(STEP_COLUMNS)
    assert len(without.steps(without.summary["point_id"].iloc[0])) == 0  # in memory too: not kept
    for f in a.glob("steps.*"):  # a table the run wrote and that went missing is not read as "no steps"
        f.unlink()
    with pytest.raises(Exception, match="no .parquet or .csv table"):
        Results.load(tmp_path / "a").steps(pid)


def test_a_point_without_summary_still_has_no_table_to_read(tmp_path):
    (tmp_path / "points" / "x").mkdir(parents=True)
    with pytest.raises(Exception, match="no .parquet or .csv table"):
        Results(summary=pd.DataFrame(), directory=tmp_path).steps("x")


@pytest.mark.parametrize("parquet", [True, False])
def test_table_blocks_read_the_columns_a_block_at_a_time(tmp_path, monkeypatch, parquet):
    if parquet:
        pytest.importorskip("pyarrow")
    else:
        monkeypatch.setattr(results, "has_parquet", lambda: False)
    monkeypatch.setattr(results, "WRITE_ROWS", 100)
    df = _table(1050)
    write_table(df, tmp_path / "t")
    blocks = list(results.table_blocks(tmp_path / "t", ("t", "count")))
    assert [len(b) for b in blocks] == [100] * 10 + [50]
    got = pd.concat(blocks, ignore_index=True)
    assert list(got.columns) == ["t", "count"]
    assert np.array_equal(got["t"].to_numpy(), df["t"].to_numpy())  # Parquet keeps the bits; CSV too (repr)
    assert np.array_equal(got["count"].to_numpy(), df["count"].to_numpy())
