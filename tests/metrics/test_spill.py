"""A long run's step rows go to disk while it runs (``llmsim.metrics.spill``): the table read back from
there must be the in-memory one, value for value, type for type and in the same order, and whatever the
summaries and the table writer compute from it must be the same bytes."""

from __future__ import annotations

import filecmp

import numpy as np
import pandas as pd
import pytest

import llmsim.metrics.records as records
import llmsim.metrics.spill as spill
from llmsim.experiment.results import write_table
from llmsim.metrics.records import STEP_COLUMNS, StepLog
from llmsim.metrics.spill import SpilledTable


def _row(rng, start: float, replica: int = 0) -> tuple:
    ints = rng.integers(0, 500, size=12)
    return (replica, 0, start, float(rng.random()), *map(int, ints[:10]), float(rng.random() * 1e12),
            float(rng.random() * 1e9))


def _feed(log: StepLog, starts, replicas, seed: int = 0) -> None:
    """Single steps and collapsed runs (``run``) in turn, at the given starts."""
    rng = np.random.default_rng(seed)
    i = 0
    while i < len(starts):
        k = int(rng.integers(1, 9))
        if rng.random() < 0.5 or i + k > len(starts):
            log.step(_row(rng, float(starts[i]), int(replicas[i])))
            i += 1
            continue
        cols = dict(zip(STEP_COLUMNS, _row(rng, 0.0, int(replicas[i])), strict=True))
        cols["start_s"] = np.asarray(starts[i:i + k], dtype=np.float64)
        cols["duration_s"] = rng.random(k)
        cols["kv_blocks_used"] = rng.integers(0, 99, k)
        cols["hbm_bytes"] = rng.random(k) * 1e9
        log.run(cols)
        i += k


def _both(tmp_path, starts, replicas, rows: int = 16):
    mem, disk = StepLog(), StepLog(spill=tmp_path / "spill", spill_rows=rows)
    _feed(mem, starts, replicas)
    _feed(disk, starts, replicas)
    return mem.frame(release=True), disk.frame(release=True)


def test_rows_in_order_are_read_back_from_disk_as_the_in_memory_table(tmp_path):
    starts = np.cumsum(np.random.default_rng(1).random(300))
    starts[40:43] = starts[40]  # ties on start: broken by replica
    replicas = np.zeros(300, dtype=int)
    replicas[41:43] = (1, 2)
    mem, disk = _both(tmp_path, starts, replicas)
    assert isinstance(disk, SpilledTable) and len(disk) == len(mem) == 300
    pd.testing.assert_frame_equal(disk.frame(), mem, check_exact=True)
    assert list(disk.columns) == list(mem.columns) and "queue_len" in disk and "x" not in disk
    for c in ("start_s", "batch_size"):
        pd.testing.assert_series_equal(disk[c], mem[c], check_exact=True)
    pd.testing.assert_frame_equal(disk[["flops", "replica"]], mem[["flops", "replica"]], check_exact=True)
    pd.testing.assert_series_equal(disk.iloc[137], mem.iloc[137], check_exact=True)
    pd.testing.assert_series_equal(disk.iloc[-1], mem.iloc[-1], check_exact=True)
    pd.testing.assert_frame_equal(disk.iloc[10:75], mem.iloc[10:75], check_exact=True)
    mask = (np.arange(300) % 7) == 3
    pd.testing.assert_frame_equal(disk.loc[mask, ["duration_s", "replica"]],
                                  mem.loc[mask, ["duration_s", "replica"]], check_exact=True)
    pd.testing.assert_frame_equal(disk.loc[mask], mem.loc[mask], check_exact=True)
    parts = list(disk.blocks(64, ["start_s"]))
    assert [len(p) for p in parts] == [64, 64, 64, 64, 44]
    assert np.array_equal(pd.concat(parts)["start_s"].to_numpy(), mem["start_s"].to_numpy())


@pytest.mark.parametrize("where", ["inside", "edge"])
def test_rows_out_of_order_are_sorted_in_memory_and_the_files_removed(tmp_path, where):
    rng = np.random.default_rng(2)
    if where == "inside":  # two rows swapped inside a block
        starts = np.arange(100.0)
        starts[[50, 51]] = starts[[51, 50]]
    else:  # each block of 16 in order, but the second block starts before the first ends
        starts = np.concatenate([np.arange(16.0), np.arange(84.0) + 10.5])
    rows = [_row(rng, float(t)) for t in starts]
    logs = StepLog(spill=tmp_path / "spill", spill_rows=16), StepLog()
    for log in logs:
        for row in rows:
            log.step(row)
    table, mem = (log.frame(release=True) for log in logs)
    assert isinstance(table, pd.DataFrame) and not (tmp_path / "spill").exists()
    pd.testing.assert_frame_equal(table, mem, check_exact=True)
    assert np.all(np.diff(table["start_s"].to_numpy()) >= 0)


def test_a_short_table_stays_in_memory(tmp_path):
    log = StepLog(spill=tmp_path / "spill", spill_rows=1000)
    _feed(log, np.arange(50.0), np.zeros(50, dtype=int))
    assert isinstance(log.frame(release=True), pd.DataFrame) and not (tmp_path / "spill").exists()


@pytest.mark.parametrize("parquet", [True, False])
def test_a_spilled_table_is_written_as_the_same_file(tmp_path, monkeypatch, parquet):
    import llmsim.experiment.results as results

    real = results.has_parquet
    monkeypatch.setattr(results, "has_parquet", lambda: parquet and real())
    monkeypatch.setattr(results, "WRITE_ROWS", 64)  # several row groups / chunks
    starts = np.cumsum(np.random.default_rng(3).random(300))
    mem, disk = _both(tmp_path, starts, np.zeros(300, dtype=int))
    a, b = write_table(mem, tmp_path / "mem"), write_table(disk, tmp_path / "disk")
    assert filecmp.cmp(a, b, shallow=False)


def test_a_long_run_through_the_runner_spills_and_gives_the_same_files(tmp_path, monkeypatch):
    from llmsim.experiment.runner import run_experiment

    exp = {"name": "spill", "model": "llama-3.1-8b", "hardware": "h100-sxm", "scheduler": {"kind": "vllm", "mode": "v1"},
           "workload": {"arrival": {"kind": "poisson", "rate_per_s": 8.0},
                        "input_len": {"kind": "uniform", "low": 64, "high": 900},
                        "output_len": {"kind": "uniform", "low": 8, "high": 80}},
           "stop": {"num_requests": 120, "warmup_requests": 20}}
    run_experiment(dict(exp), tmp_path / "mem")
    made = []
    monkeypatch.setattr(records, "SPILL_ROWS", 50)
    monkeypatch.setattr(records, "SpilledTable", lambda s: made.append(s.rows) or SpilledTable(s))
    run_experiment(dict(exp), tmp_path / "disk")
    assert made and made[0] > 200  # the step rows went to disk, in many blocks
    points = sorted((tmp_path / "mem" / "points").iterdir())
    for p in points:
        q = tmp_path / "disk" / "points" / p.name
        assert sorted(x.name for x in q.iterdir()) == sorted(x.name for x in p.iterdir())  # scratch removed
        for f in p.iterdir():
            assert filecmp.cmp(f, q / f.name, shallow=False), f.name


def test_reading_a_column_that_is_not_there_names_it(tmp_path):
    s = spill.ColumnSpill(tmp_path / "s", {"a": np.float64})
    s.write({"a": np.arange(3.0)})
    t = SpilledTable(s)
    with pytest.raises(KeyError, match="b"):
        t["b"]
    with pytest.raises(IndexError):
        t.iloc[3]


def test_views_and_masked_reads_of_a_spilled_table_read_it_a_block_at_a_time(tmp_path, monkeypatch):
    import llmsim.metrics.window as window

    starts = np.cumsum(np.random.default_rng(4).random(300))
    mem, disk = _both(tmp_path, starts, np.zeros(300, dtype=int))
    monkeypatch.setattr(spill, "READ_ROWS", 37)  # masked reads over many blocks
    mask = np.random.default_rng(5).random(300) < 0.4
    pd.testing.assert_frame_equal(disk.loc[mask], mem.loc[mask], check_exact=True)
    part = disk.view(50, 130)
    assert isinstance(part, SpilledTable) and len(part) == 80 and len(disk.view(290, 400)) == 10
    pd.testing.assert_frame_equal(part.frame(), mem.iloc[50:130], check_exact=True)
    pd.testing.assert_frame_equal(part.view(10, 20).frame(), mem.iloc[60:70], check_exact=True)
    pd.testing.assert_frame_equal(part.loc[mask[50:130]], mem.iloc[50:130].loc[mask[50:130]], check_exact=True)
    monkeypatch.setattr(window, "ROW_BLOCK", 64)
    blocks = list(window.Rows(disk, mask).blocks())
    assert all(isinstance(b._df, SpilledTable) for b in blocks)  # views: only asked-for columns are read
    assert np.array_equal(np.concatenate([b["flops"] for b in blocks]), mem["flops"].to_numpy()[mask])


def _interleaved(seed: int, streams: int = 5, per: int = 120, out_of_order: bool = False):
    """Rows of ``streams`` (replica, engine) streams, each in order of start (with ties inside a stream and
    across streams), logged interleaved as an event loop logs them (a stream's rows in its own order)."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(streams):
        starts = np.round(np.cumsum(rng.random(per)), 1)  # rounded: equal starts within and across streams
        starts[per // 2] = starts[per // 2 - 1]
        rows.append([(s // 2, s % 2, float(t)) for t in starts])
    if out_of_order:
        rows[2][30], rows[2][31] = rows[2][31], rows[2][30]
    order, heads = [], [0] * streams
    while len(order) < streams * per:  # a random interleaving keeping each stream's order
        s = int(rng.choice([i for i in range(streams) if heads[i] < per]))
        order.append(rows[s][heads[s]])
        heads[s] += 1
    out = []
    for replica, engine, start in order:
        ints = rng.integers(0, 500, size=10)
        out.append((replica, engine, start, float(rng.random()), *map(int, ints), float(rng.random() * 1e12),
                    float(rng.random() * 1e9)))
    return out


@pytest.mark.parametrize("window", [3, 64, 1 << 18])
def test_interleaved_engines_are_merged_from_disk_into_the_in_memory_order(tmp_path, monkeypatch, window):
    monkeypatch.setattr(spill, "READ_ROWS", window)  # many merge rounds (3 rows: one per stream per round)
    rows = _interleaved(4)
    mem, disk = StepLog(), StepLog(spill=tmp_path / "spill", spill_rows=16)
    for log in (mem, disk):
        for i, row in enumerate(rows):
            if i % 7 == 3:  # some rows as one-row runs, as collapsed decode runs log them
                cols = dict(zip(STEP_COLUMNS, row, strict=True))
                cols["start_s"], cols["duration_s"] = np.array([row[2]]), np.array([row[3]])
                log.run(cols)
            else:
                log.step(row)
    table, ref = disk.frame(release=True), mem.frame(release=True)
    assert isinstance(table, SpilledTable) and len(table) == len(rows)
    assert sorted(p.name for p in (tmp_path / "spill").iterdir()) == ["merged"]  # the streams' files removed
    pd.testing.assert_frame_equal(table.frame(), ref, check_exact=True)
    keys = ref[["start_s", "replica", "engine"]].to_numpy()
    assert len({tuple(k) for k in keys}) < len(keys)  # the case has equal keys (kept in the order logged)


def test_an_engine_out_of_order_among_several_is_sorted_in_memory_and_the_files_removed(tmp_path):
    rows = _interleaved(5, out_of_order=True)
    mem, disk = StepLog(), StepLog(spill=tmp_path / "spill", spill_rows=16)
    for log in (mem, disk):
        for row in rows:
            log.step(row)
    table, ref = disk.frame(release=True), mem.frame(release=True)
    assert isinstance(table, pd.DataFrame) and not (tmp_path / "spill").exists()
    pd.testing.assert_frame_equal(table, ref, check_exact=True)


def test_a_cluster_run_through_the_runner_spills_per_replica_and_gives_the_same_files(tmp_path, monkeypatch):
    from llmsim.experiment.runner import run_experiment

    exp = {"name": "spill2", "model": "llama-3.1-8b", "hardware": "h100-sxm", "scheduler": {"kind": "vllm", "mode": "v1"},
           "layout": {"replicas": 3}, "router": {"kind": "round_robin"},
           "workload": {"arrival": {"kind": "poisson", "rate_per_s": 20.0},
                        "input_len": {"kind": "uniform", "low": 64, "high": 900},
                        "output_len": {"kind": "uniform", "low": 8, "high": 80}},
           "stop": {"num_requests": 150, "warmup_requests": 20}}
    run_experiment(dict(exp), tmp_path / "mem")
    made = []
    monkeypatch.setattr(records, "SPILL_ROWS", 40)
    monkeypatch.setattr(spill, "READ_ROWS", 50)
    monkeypatch.setattr(records, "merge_streams", lambda streams, *a, **k: made.append(len(streams))
                        or spill.merge_streams(streams, *a, **k))
    run_experiment(dict(exp), tmp_path / "disk")
    assert made == [3]  # three replicas' rows went to disk and were merged
    for p in sorted((tmp_path / "mem" / "points").iterdir()):
        q = tmp_path / "disk" / "points" / p.name
        assert sorted(x.name for x in q.iterdir()) == sorted(x.name for x in p.iterdir())  # scratch removed
        for f in p.iterdir():
            assert filecmp.cmp(f, q / f.name, shallow=False), f.name
