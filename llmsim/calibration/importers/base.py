"""What every importer shares: the ``Imported`` result, a CSV reader whose errors name file, line and column,
plausibility checks against the hardware, and the merge of several imports (``PATH::class/dtype`` selectors).

An importer turns someone else's kernel timings into llmsim ``Measurement`` rows; from there on an import is
fitted exactly like a ``llmsim calibrate --device`` run. Bad input raises ``ConfigError`` with the message
``FILE: line N: column C: what was expected`` (the CLI prints it as one ``error:`` line and exits 2).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from llmsim.calibration.measurements import Case, Measurement
from llmsim.errors import ConfigError
from llmsim.registry import Registry
from llmsim.specs import HardwareSpec

# A measured kernel faster than this fraction of its unit-efficiency roofline (datasheet peak FLOP/s, and HBM
# bandwidth for operands larger than the L2 cache) is physically impossible on that GPU: the time unit is
# wrong, or the data belong to another GPU. Operands that fit in L2 may stream faster than HBM (benchmarks
# that cycle a few weight copies keep them there), so only their FLOPs are checked.
MIN_ROOFLINE_FRACTION = 0.5


@dataclass
class Imported:
    """Measurements read from one or more files, with where they came from."""

    measurements: list[Measurement] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)  # one line per import: format, path, what it holds
    device: str = ""  # GPU name recorded in the data, if any
    notes: list[str] = field(default_factory=list)
    launch_included: bool = False  # True when timings include a kernel-launch gap (eager timing)


ImporterFn = Callable[[Path, HardwareSpec], Imported]
IMPORTERS: Registry[Imported] = Registry("import format")


def row_error(path: Path | str, line: int, column: str, expected: str) -> ConfigError:
    return ConfigError(f"{path}: line {line}: column {column!r}: {expected}")


class Rows:
    """``csv.DictReader`` over one file that checks the header and converts cells with located errors."""

    def __init__(self, path: Path, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> None:
        self.path = path
        try:
            self._fh = path.open(newline="")
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
        self._reader = csv.DictReader(self._fh)
        header = self._reader.fieldnames or []
        missing = [c for c in required if c not in header]
        if missing:
            self._fh.close()
            raise ConfigError(f"{path}: line 1: missing column(s) {', '.join(missing)} (header has: "
                              f"{', '.join(header) or 'nothing'})")
        self.header = header
        self.line = 1

    def __iter__(self) -> Iterator[dict[str, str]]:
        with self._fh:
            for row in self._reader:
                self.line = self._reader.line_num
                yield row

    def cell(self, row: dict[str, str], column: str) -> str:
        value = row.get(column)
        if value is None or value.strip() == "":
            raise row_error(self.path, self.line, column, "expected a value, found an empty cell")
        return value.strip()

    def int(self, row: dict[str, str], column: str) -> int:
        text = self.cell(row, column)
        try:
            value = int(text)
        except ValueError:
            try:
                f = float(text)
            except ValueError:
                f = math.nan
            if not f.is_integer():
                raise row_error(self.path, self.line, column, f"expected a positive integer, got {text!r}") from None
            value = int(f)
        if value < 1:
            raise row_error(self.path, self.line, column, f"expected a positive integer, got {text!r}")
        return value

    def seconds(self, row: dict[str, str], column: str, scale: float) -> float:
        """A positive finite time in the column's unit (``scale`` seconds per unit)."""
        text = self.cell(row, column)
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value > 0):
            raise row_error(self.path, self.line, column, f"expected a positive time, got {text!r}")
        return value * scale


def check_plausible(m: Measurement, hw: HardwareSpec, path: Path | str, line: int, column: str) -> str | None:
    """Raise for a dtype the GPU lacks or a group larger than its node; return a message (None if fine) when
    the time is faster than the GPU can run the shape (see ``MIN_ROOFLINE_FRACTION``)."""
    op = m.operator
    if not hw.supports(op.compute_dtype) and op.compute_dtype != "fp32":
        raise row_error(path, line, "dtype", f"{hw.name} has no {op.compute_dtype} tensor cores; these rows "
                        "belong to another GPU (check --hardware)")
    if m.case.op_class == "allreduce":
        if m.case["ranks"] > hw.gpus_per_node:
            raise row_error(path, line, "ranks", f"{m.case['ranks']} GPUs exceed the {hw.gpus_per_node} of one "
                            f"{hw.name} node")
        return None
    if m.case.op_class == "moe":
        return None  # its roofline is checked through the cost model's grouped GEMMs when fitted
    dtype = op.compute_dtype if hw.supports(op.compute_dtype) else "bf16"
    bytes_ = float(op.hbm_bytes)
    memory = bytes_ / hw.hbm_bytes_per_s if bytes_ > (hw.l2_bytes or 0.0) else 0.0
    roof = max(float(op.flops) / hw.peak_flops(dtype), memory)
    if m.median_s < MIN_ROOFLINE_FRACTION * roof:
        return (f"{m.median_s:.3g} s is {roof / m.median_s:.1f}x faster than {hw.name}'s peak allows for this shape "
                f"({roof:.3g} s): wrong time unit, or data of another GPU (check --hardware)")
    return None


class Plausibility:
    """Per file: impossible times are an error when more than ``MAX_BAD_FRACTION`` of the rows have them (a
    wrong unit or another GPU), else those rows are skipped with a note (a few bad rows in a large database)."""

    MAX_BAD_FRACTION = 0.1

    def __init__(self, hw: HardwareSpec, path: Path | str, column: str) -> None:
        self.hw, self.path, self.column = hw, path, column
        self.rows = 0
        self.bad: list[tuple[int, str]] = []

    def ok(self, m: Measurement, line: int) -> bool:
        self.rows += 1
        why = check_plausible(m, self.hw, self.path, line, self.column)
        if why:
            self.bad.append((line, why))
        return why is None

    def finish(self) -> list[str]:
        """Raise if too many rows were impossible; else notes about the skipped ones."""
        if not self.bad:
            return []
        line, why = self.bad[0]
        if len(self.bad) > self.MAX_BAD_FRACTION * self.rows:
            raise row_error(self.path, line, self.column, why)
        return [f"{Path(self.path).parent.name}/{Path(self.path).name}: {len(self.bad)} of {self.rows} rows skipped: "
                f"faster than {self.hw.name}'s peak allows (first: line {line}: {why})"]


@dataclass(frozen=True, slots=True)
class Selector:
    """``class`` or ``class/dtype`` items after ``::`` in an import path: which rows of the import to keep."""

    items: tuple[tuple[str, str | None], ...] = ()

    @classmethod
    def parse(cls, text: str, where: str) -> Selector:
        items = []
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            op_class, _, dtype = part.partition("/")
            items.append((op_class, dtype or None))
        if not items:
            raise ConfigError(f"{where}: expected class or class/dtype items after '::'")
        return cls(tuple(items))

    def keeps(self, case: Case) -> bool:
        return not self.items or any(c == case.op_class and (d is None or d == case.dtype) for c, d in self.items)


def split_spec(path_text: str) -> tuple[Path, Selector]:
    """``DIR::gemm/fp8,moe`` -> (DIR, selector)."""
    path, sep, select = path_text.partition("::")
    return Path(path), Selector.parse(select, path_text) if sep else Selector()


def merge(imports: list[Imported]) -> Imported:
    """Pool imports in order; a later import replaces an earlier one's rows of the same (class, dtype)."""
    out = Imported()
    for imp in imports:
        replaced = {(m.case.op_class, m.case.dtype) for m in imp.measurements}
        dropped = [m for m in out.measurements if (m.case.op_class, m.case.dtype) in replaced]
        if dropped:
            out.notes.append(f"{len(dropped)} rows of {', '.join(sorted('/'.join(k) for k in replaced))} from an "
                             "earlier import were replaced by a later one")
        out.measurements = [m for m in out.measurements if (m.case.op_class, m.case.dtype) not in replaced]
        out.measurements += imp.measurements
        out.files += imp.files
        out.sources += imp.sources
        out.notes += imp.notes
        out.device = out.device or imp.device
        out.launch_included = out.launch_included or imp.launch_included
    return out


def load_imports(specs: list[tuple[str, str]], hw: HardwareSpec) -> Imported:
    """Run each ``(format, PATH[::select])`` importer against ``hw`` and merge the results."""
    imports = []
    for fmt, path_text in specs:
        path, select = split_spec(path_text)
        if not path.exists():
            raise ConfigError(f"{path}: no such file or folder")
        imp = IMPORTERS.get(fmt)(path, hw)
        kept = [m for m in imp.measurements if select.keeps(m.case)]
        if not kept:
            raise ConfigError(f"{path_text}: nothing imported (no rows of a class llmsim fits"
                              f"{' matching the selector' if select.items else ''})")
        if select.items:
            imp.sources = [f"{src}; kept {len(kept)} rows of {path_text.partition('::')[2]}" for src in imp.sources]
        imp.measurements = kept
        imports.append(imp)
    return merge(imports)
