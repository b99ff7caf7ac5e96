"""Results directory layout, atomic writes, and reading results back (for plots, compare, notebooks).

    DIR/experiment.yaml          the experiment as given
    DIR/points.json              every (sweep point x seed): id, seed, sweep values, resolved config
    DIR/points/ID/summary.json   one point's summary (written last: its presence marks the point done)
    DIR/points/ID/requests.parquet|csv, steps.parquet|csv
    DIR/summary.parquet|csv      one row per point x seed (sweep values as columns)
    DIR/summary.json             the experiment's headline: goodput and capacity per configuration
    DIR/run.log
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from llmsim.errors import ConfigError
from llmsim.experiment.fastcsv import write_csv
from llmsim.metrics.spill import SPILL_DIR, SpilledTable

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence


def has_parquet() -> bool:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


OUTPUT_FILES = ("experiment.yaml", "points.json", "summary.json", "summary.csv", "summary.parquet",
                "requests.csv", "requests.parquet", "steps.csv", "steps.parquet")
# what mkstemp(prefix=".NAME.") leaves behind when a write is killed: ".steps.csv.k2j_8xq1"
_PARTIAL = re.compile(r"^\.(" + "|".join(re.escape(n) for n in OUTPUT_FILES) + r")\.[A-Za-z0-9_]{8}$")


def remove_partial_files(directory: Path) -> list[Path]:
    """Delete the hidden temporary files of writes that were killed (``kill -9`` mid-write) in a results
    directory and its points, and the step-row scratch directories (``SPILL_DIR``) of points killed while
    they ran; only names this module's atomic writes and the runner produce are touched."""
    removed = []
    for folder in [directory, *sorted((directory / "points").glob("*"))]:
        if not folder.is_dir():
            continue
        if (folder / SPILL_DIR).is_dir():  # the step rows of a point killed while it ran
            shutil.rmtree(folder / SPILL_DIR, ignore_errors=True)
            removed.append(folder / SPILL_DIR)
        for p in folder.iterdir():
            if _PARTIAL.match(p.name) and p.is_file():
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed


def _file_mode() -> int:
    """The mode ``open()`` would give a new file (0o666 less the umask); ``mkstemp`` alone gives 0o600."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _atomic_file(path: Path, write) -> None:
    """``write(tmp)`` into a hidden temporary beside ``path``, then rename it to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    _atomic_file(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


WRITE_ROWS = 1 << 18  # rows per Parquet row group of a long table (each converted and written on its own)


def _parquet_in_groups(df: pd.DataFrame, tmp: str) -> None:
    """A table longer than ``WRITE_ROWS`` as consecutive row groups, each converted to Arrow and written
    before the next: the write holds one group's copy, not the whole table's. Same columns and types as
    ``to_parquet`` (one schema for the file, from the whole table)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.Schema.from_pandas(df, preserve_index=False)
    with pq.ParquetWriter(tmp, schema, compression="snappy") as writer:
        for a in range(0, len(df), WRITE_ROWS):
            part = pa.Table.from_pandas(df.iloc[a:a + WRITE_ROWS], schema=schema, preserve_index=False)
            writer.write_table(part, row_group_size=WRITE_ROWS)


def _blocks_parquet(table: SpilledTable, tmp: str) -> None:
    """A spilled table as ``_parquet_in_groups`` writes a DataFrame of the same rows, read a group at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.Schema.from_pandas(table.iloc[0:0], preserve_index=False)
    with pq.ParquetWriter(tmp, schema, compression="snappy") as writer:
        for part in table.blocks(WRITE_ROWS):
            writer.write_table(pa.Table.from_pandas(part, schema=schema, preserve_index=False),
                               row_group_size=WRITE_ROWS)


def _blocks_csv(table: SpilledTable, tmp: str) -> None:
    with open(tmp, "w", newline="") as f:
        for i, part in enumerate(table.blocks(WRITE_ROWS)):
            write_csv(part, f, header=i == 0)
        if not len(table):
            write_csv(table.iloc[0:0], f)


def _frame_csv(df: pd.DataFrame, tmp: str) -> None:
    with open(tmp, "w", newline="") as f:
        write_csv(df, f)


def write_table(df: pd.DataFrame | SpilledTable, path_stem: Path) -> Path:
    """Parquet when pyarrow is present, else CSV (``llmsim.experiment.fastcsv``: pandas' bytes, faster);
    written atomically and streamed (a long table is written in row groups, a CSV row chunks at a time, never
    as one text in memory; a spilled step table is read a group at a time). Returns the path written."""
    spilled = isinstance(df, SpilledTable)
    if has_parquet():
        path = path_stem.with_suffix(".parquet")
        if spilled:
            _atomic_file(path, lambda tmp: _blocks_parquet(df, tmp))
        elif len(df) > WRITE_ROWS:
            _atomic_file(path, lambda tmp: _parquet_in_groups(df, tmp))
        else:
            _atomic_file(path, lambda tmp: df.to_parquet(tmp, index=False))
        return path
    path = path_stem.with_suffix(".csv")
    _atomic_file(path, lambda tmp: _blocks_csv(df, tmp) if spilled else _frame_csv(df, tmp))
    return path


def read_table(path_stem: Path) -> pd.DataFrame:
    for suffix in (".parquet", ".csv"):
        p = path_stem.with_suffix(suffix)
        if p.is_file():
            return pd.read_parquet(p) if suffix == ".parquet" else pd.read_csv(p)
    raise ConfigError(f"{path_stem}: no .parquet or .csv table there")


def table_blocks(path_stem: Path, columns: Sequence[str], rows: int | None = None) -> Iterator[pd.DataFrame]:
    """The table's ``columns`` (those of them it has), ``rows`` (default ``WRITE_ROWS``) rows at a time
    (Parquet batches or CSV chunks): a pass over a long table that holds one block of it."""
    rows = rows or WRITE_ROWS
    p = path_stem.with_suffix(".parquet")
    if p.is_file():
        import pyarrow.parquet as pq

        f = pq.ParquetFile(p)
        have = [c for c in columns if c in f.schema_arrow.names]
        for batch in f.iter_batches(batch_size=rows, columns=have):
            yield batch.to_pandas()
        return
    p = path_stem.with_suffix(".csv")
    if not p.is_file():
        raise ConfigError(f"{path_stem}: no .parquet or .csv table there")
    header = pd.read_csv(p, nrows=0).columns
    have = [c for c in columns if c in header]
    with pd.read_csv(p, usecols=have, chunksize=rows) as chunks:
        for chunk in chunks:
            yield chunk[have]  # in the order asked (usecols keeps the file's)


def json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


@dataclass
class Results:
    """An experiment's results: the summary table, plus per-point request and step tables on demand."""

    summary: pd.DataFrame
    directory: Path | None = None
    _requests: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)
    _steps: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)
    _no_steps: set[str] | None = field(default=None, repr=False)  # points run with output.steps: false

    def requests(self, point_id: str) -> pd.DataFrame:
        if point_id not in self._requests and self.directory is not None:
            self._requests[point_id] = read_table(self.directory / "points" / point_id / "requests")
        return self._requests[point_id]

    def steps(self, point_id: str) -> pd.DataFrame:
        """The point's step table; a point that ran with ``output.steps: false`` (``points.json`` says so)
        has none: no rows. A table that should be there and is not is an error, as for requests."""
        if point_id not in self._steps and self.directory is not None:
            if not self._wrote_steps(point_id):
                from llmsim.metrics.records import empty_steps

                self._steps[point_id] = empty_steps()
            else:
                self._steps[point_id] = read_table(self.directory / "points" / point_id / "steps")
        return self._steps[point_id]

    def step_blocks(self, point_id: str, columns: Sequence[str]) -> Iterator[pd.DataFrame]:
        """The point's step table, ``columns`` only (those it has) and a block of rows at a time
        (``table_blocks``): what a pass over a long run's steps reads without holding the table. A table
        already read, or kept from the run, is sliced instead; a point without a step table yields nothing."""
        if point_id in self._steps or self.directory is None:
            yield from _slices(self._steps[point_id], columns)
        elif self._wrote_steps(point_id):
            yield from table_blocks(self.directory / "points" / point_id / "steps", columns)

    def request_blocks(self, point_id: str, columns: Sequence[str]) -> Iterator[pd.DataFrame]:
        """The point's requests table as ``step_blocks`` reads steps."""
        if point_id in self._requests or self.directory is None:
            yield from _slices(self._requests[point_id], columns)
        else:
            yield from table_blocks(self.directory / "points" / point_id / "requests", columns)

    def _wrote_steps(self, point_id: str) -> bool:
        if self._no_steps is None:  # read points.json once
            self._no_steps = set()
            index = self.directory / "points.json"
            try:
                points = json.loads(index.read_text()) if index.is_file() else []
            except (OSError, ValueError):
                points = []
            for p in points if isinstance(points, list) else []:
                output = ((p.get("config") or {}).get("output") or {}) if isinstance(p, dict) else {}
                if output.get("steps", True) is False:
                    self._no_steps.add(p.get("id"))
        return point_id not in self._no_steps

    @classmethod
    def load(cls, directory: str | Path) -> Results:
        directory = Path(directory)
        if not directory.is_dir():
            raise ConfigError(f"{directory}: no such results directory")
        try:
            summary = read_table(directory / "summary")
        except ConfigError:
            raise ConfigError(f"{directory}: not a results directory (no summary table; run `llmsim run` "
                              "first)") from None
        return cls(summary=summary, directory=directory)

    def experiment_summary(self) -> dict:
        """Goodput and capacity per configuration (what ``DIR/summary.json`` holds)."""
        from llmsim.experiment.report import experiment_summary

        return experiment_summary(self.summary)

    def sweep_columns(self) -> list[str]:
        return [c for c in self.summary.columns if c.startswith("sweep.")]


def load_points_index(directory: Path) -> list[dict]:
    path = directory / "points.json"
    return json.loads(path.read_text()) if path.is_file() else []


def _slices(table: pd.DataFrame, columns: Sequence[str]) -> Iterator[pd.DataFrame]:
    have = [c for c in columns if c in table.columns]
    for a in range(0, len(table), WRITE_ROWS):
        yield table.iloc[a:a + WRITE_ROWS][have]
