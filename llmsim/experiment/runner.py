"""Run an experiment: expand the sweep, run points (in parallel processes, or on Dask), write results.

Re-running the same command skips points whose ``summary.json`` exists, so a killed run resumes. Every file
is written atomically. The simulated clock is logical: results depend only on the config and the seed.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from queue import Empty
from typing import Any

import pandas as pd
import yaml

from llmsim.errors import ConfigError, Interrupted, LlmsimError
from llmsim.experiment import progress
from llmsim.experiment.config import ExperimentConfig, load_config, parse_config
from llmsim.experiment.point import preflight, run_point
from llmsim.experiment.progress import ProgressView
from llmsim.experiment.results import (
    Results,
    atomic_write_text,
    json_default,
    remove_partial_files,
    write_table,
)
from llmsim.experiment.sweep import Point, expand, values_label
from llmsim.experiment.workers import run_in_processes
from llmsim.metrics.spill import SPILL_DIR

EXECUTORS = ("local", "dask")
log = logging.getLogger("llmsim.run")


def _summary_row(point: Point, summary: Mapping[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"point_id": point.id, "seed": point.seed}
    row.update({f"sweep.{k}": (v if isinstance(v, int | float | str | bool) else json.dumps(v))
                for k, v in point.values.items()})
    row.update({"scheduler": point.config.scheduler.get("kind"), "model": point.config.model,
                "hardware": point.config.hardware, "tp": point.config.layout.tp, "pp": point.config.layout.pp,
                "replicas": point.config.layout.replicas})
    row.update(summary)
    return row


def _run_and_store(point: Point, out_dir: Path | None) -> tuple[dict, pd.DataFrame | None, pd.DataFrame | None]:
    """Run one point; with ``out_dir``, write its tables and then its summary (the completion marker). A long
    run's step rows go to a scratch directory in the point's directory while it runs
    (``llmsim.metrics.spill``), removed once its tables are written."""
    if out_dir is None:
        return _summarised(point, *run_point(point))
    pdir = out_dir / "points" / point.id
    spill = pdir / SPILL_DIR
    try:
        summary, requests, steps = _summarised(point, *run_point(point, steps_spill=spill))
        write_table(requests, pdir / "requests")
        if point.config.output.steps:
            write_table(steps, pdir / "steps")
        atomic_write_text(pdir / "summary.json", json.dumps(summary, indent=1, sort_keys=True, default=json_default))
    finally:
        shutil.rmtree(spill, ignore_errors=True)
    return summary, None, None


def _summarised(point: Point, summary: dict, requests: pd.DataFrame, steps) -> tuple[dict, pd.DataFrame, Any]:
    """The summary as JSON gives it back (the same types and key order whether fresh or read on a re-run),
    and no step rows for ``output.steps: false`` (the summary is made; they are let go)."""
    if not point.config.output.steps:
        from llmsim.metrics.records import empty_steps

        steps = empty_steps()
    return json.loads(json.dumps(summary, indent=1, sort_keys=True, default=json_default)), requests, steps


def _done_summary(point: Point, out_dir: Path | None) -> dict | None:
    if out_dir is None:
        return None
    path = out_dir / "points" / point.id / "summary.json"
    if not path.is_file():
        return None
    try:
        done = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        log.warning("%s: unreadable (%s); running point %s again", path, exc, point.id)
        return None
    return done if isinstance(done, dict) else None


def _write_index(points: list[Point], out_dir: Path, source_text: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "experiment.yaml", source_text)
    index = [{"id": p.id, "seed": p.seed, "values": p.values, "config": p.config.model_dump(mode="json")}
             for p in points]
    atomic_write_text(out_dir / "points.json", json.dumps(index, indent=1, default=json_default))


def _setup_log(out_dir: Path | None) -> logging.Handler | None:
    if out_dir is None:
        return None
    handler = logging.FileHandler(out_dir / "run.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return handler


def _execute(todo: list[Point], out_dir: Path | None, jobs: int, executor: str,
             on_done: Callable[[Point, tuple], None], view: ProgressView | None = None) -> None:
    if executor == "dask":
        from llmsim.experiment.dask_executor import run_on_dask

        run_on_dask(todo, out_dir, jobs, _run_and_store, on_done)
    elif jobs <= 1 or len(todo) <= 1:
        progress.set_sink(view.update if view is not None else None)
        try:
            for p in todo:
                on_done(p, _run_and_store(p, out_dir))
        finally:
            progress.set_sink(None)
    else:
        _execute_pool(todo, out_dir, jobs, on_done, view)


def _execute_pool(todo: list[Point], out_dir: Path | None, jobs: int, on_done: Callable[[Point, tuple], None],
                  view: ProgressView | None) -> None:
    """Worker processes (stopped at once on Ctrl-C, dying with a killed parent); their progress comes back
    through a queue drained while waiting for results."""
    queue = multiprocessing.get_context().Queue() if view is not None else None
    run_in_processes(todo, out_dir, jobs, _run_and_store, on_done,
                     progress_queue=queue, on_wait=(lambda: _drain(queue, view)) if queue is not None else None)


def _drain(queue, view: ProgressView | None) -> None:
    if queue is None or view is None:
        return
    while True:
        try:
            view.update(*queue.get_nowait())
        except Empty:
            return


def run_experiment(config: ExperimentConfig | Mapping | str | Path, out_dir: str | Path | None = None, *,
                   jobs: int = 1, executor: str = "local", progress: bool = False,
                   base_dir: str | Path | None = None, overrides: tuple[str, ...] = ()) -> Results:
    """Run every point of ``config`` (a path, a mapping or an ExperimentConfig). With ``out_dir`` results
    are written there (and finished points are skipped on re-runs); without, everything stays in memory.
    ``overrides``: ``KEY=VALUE`` strings, as ``llmsim run --set`` (see ``llmsim.experiment.overrides``);
    ``progress``: live progress on stderr."""
    if executor not in EXECUTORS:
        raise ConfigError(f"--executor: expected one of {', '.join(EXECUTORS)}, got {executor!r}")
    if jobs < 1:
        raise ConfigError(f"--jobs: must be a positive integer, got {jobs}")
    cfg, base, where, text = _coerce(config, base_dir, tuple(overrides))
    points = expand(cfg, base, where)
    notes = _preflight_all(points)
    out = Path(out_dir) if out_dir is not None else None
    handler = None
    try:
        if out is not None:
            _write_index(points, out, text)
        handler = _setup_log(out)
        for note in notes:
            log.warning("%s", note)
        return _run_points(points, out, jobs, executor, progress)
    except OSError as exc:  # an unwritable or full results directory: the user's to fix, not a crash
        if isinstance(exc, BrokenPipeError):
            raise
        where = exc.filename or out
        raise LlmsimError(f"{where}: cannot write results there ({exc.strerror or exc})") from None
    finally:
        if handler is not None:
            log.removeHandler(handler)
            handler.close()


def _preflight_all(points: list[Point]) -> list[str]:
    """Check every distinct point before any runs (a bad last point fails now, not after hours); returns
    the distinct warnings, in order."""
    checked: set[str] = set()
    notes: dict[str, None] = {}
    for p in points:
        key = json.dumps(p.config.model_dump(mode="json"), sort_keys=True)
        if key not in checked:
            checked.add(key)
            notes.update(dict.fromkeys(preflight(p)))
    return list(notes)


def _coerce(config, base_dir, overrides: tuple[str, ...] = ()) -> tuple[ExperimentConfig, Path, str, str]:
    if isinstance(config, ExperimentConfig):
        return config, Path(base_dir or "."), "<experiment>", yaml.safe_dump(config.model_dump(mode="json"))
    if isinstance(config, Mapping):
        from llmsim.experiment.overrides import apply_overrides

        data = apply_overrides(dict(config), overrides, "<experiment>")
        return (parse_config(data, "<experiment>"), Path(base_dir or "."), "<experiment>",
                yaml.safe_dump(dict(data), sort_keys=False))
    path = Path(config)
    cfg, base = load_config(path, tuple(overrides))
    if not overrides:
        return cfg, base, str(path), path.read_text()
    header = f"# {path} with --set {' --set '.join(overrides)}\n"  # what ran, so it can be re-run as is
    return cfg, base, str(path), header + yaml.safe_dump(cfg.model_dump(mode="json", exclude_defaults=True),
                                                         sort_keys=False)


def _run_points(points: list[Point], out: Path | None, jobs: int, executor: str, show_progress: bool) -> Results:
    summaries: dict[str, dict] = {}
    requests: dict[str, pd.DataFrame] = {}
    steps: dict[str, pd.DataFrame] = {}
    todo = []
    if out is not None:
        for stale in remove_partial_files(out):
            log.info("removed %s, left by an interrupted write", stale)
    for p in points:
        done = _done_summary(p, out)
        if done is not None:
            summaries[p.id] = done
        else:
            todo.append(p)
    log.info("%d points, %d already done, %d to run", len(points), len(summaries), len(todo))
    view = ProgressView(len(todo)) if show_progress and todo else None
    if view is not None:
        for p in todo:
            view.label(p.id, " ".join(filter(None, [values_label(p.values), f"seed={p.seed}"])))
    started = time.perf_counter()

    def on_done(p: Point, result: tuple) -> None:
        summaries[p.id] = result[0]
        if result[1] is not None:
            requests[p.id], steps[p.id] = result[1], result[2]
        log.info("point %s %s seed=%d done", p.id, p.values, p.seed)
        if view is not None:
            view.point_done(p.id)

    try:
        _execute(todo, out, jobs, executor, on_done, view)
    except KeyboardInterrupt:
        raise Interrupted(_interrupted_message(points, len(summaries), out)) from None
    finally:
        if view is not None:
            view.stop()
    log.info("ran %d points in %.1f s", len(todo), time.perf_counter() - started)
    table = pd.DataFrame([_summary_row(p, summaries[p.id]) for p in points])
    results = Results(summary=table, directory=out, _requests=requests, _steps=steps)
    if out is not None:
        write_table(table, out / "summary")
        atomic_write_text(out / "summary.json", json.dumps(results.experiment_summary(), indent=1,
                                                           default=json_default))
    return results


def _interrupted_message(points: list[Point], done: int, out: Path | None) -> str:
    """What was kept: on disk, the points whose summary.json exists (a worker may finish one as we stop)."""
    total = len(points)
    if out is not None:
        done = sum((out / "points" / p.id / "summary.json").is_file() for p in points)
    log.info("interrupted: %d of %d points done", done, total)
    if out is None:
        return f"interrupted: {done} of {total} points had finished; nothing was written"
    return (f"interrupted: {done} of {total} points are done and kept in {out}/; run the same command again to "
            "resume (finished points are skipped)")
