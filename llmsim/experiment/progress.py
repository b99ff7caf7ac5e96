"""Progress of a run on stderr: sweep points done, and inside each running point the requests issued and
the simulated time reached (a 200k-request point is minutes of work).

Points report through a process-global sink: the request stream is wrapped by ``track`` (it counts requests
as the simulator pulls them, which happens in simulated-time order); the sink is the live display itself
when points run in this process, or a queue the runner drains when they run in worker processes. Wall time
only paces the reports; it never reaches the simulation, whose results stay byte-identical.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator

Sink = Callable[[str, int, int | None, float], None]  # (point id, requests issued, total or None, sim time)
_sink: Sink | None = None
REPORT_EVERY_S = 0.25


def set_sink(sink: Sink | None) -> None:
    global _sink
    _sink = sink


def queue_sink(queue) -> None:
    """Worker-process initializer: report into ``queue`` (a multiprocessing queue the runner drains)."""
    set_sink(lambda pid, done, total, t: queue.put((pid, done, total, t)))


def track(requests: Iterable, point_id: str, total: int | None) -> Iterator:
    """Yield ``requests`` unchanged, reporting progress to the sink (a no-op without one)."""
    sink = _sink
    if sink is None:
        yield from requests
        return
    last = 0.0
    done = 0
    t = 0.0
    for req in requests:
        done += 1
        t = req.arrival_s
        if done & 63 == 0 and time.monotonic() - last >= REPORT_EVERY_S:
            last = time.monotonic()
            sink(point_id, done, total, t)
        yield req
    sink(point_id, done, total, t)


class ProgressView:
    """The live display on stderr: one bar for the sweep, one line per running point."""

    def __init__(self, total_points: int) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TextColumn("{task.fields[extra]}"), TimeElapsedColumn(),
                             console=Console(stderr=True), transient=False)
        self._points = self._bar.add_task("sweep points", total=total_points, extra="")
        self._running: dict[str, int] = {}
        self._labels: dict[str, str] = {}
        self._finished: set[str] = set()
        self._bar.start()

    def label(self, point_id: str, text: str) -> None:
        self._labels[point_id] = text

    def update(self, point_id: str, done: int, total: int | None, sim_time_s: float) -> None:
        if point_id in self._finished:  # a late report from a worker
            return
        task = self._running.get(point_id)
        extra = f"requests, t = {sim_time_s:,.0f} s simulated"
        if task is None:
            name = f"  {self._labels.get(point_id, point_id)}"
            task = self._running[point_id] = self._bar.add_task(name, total=total, extra=extra)
        self._bar.update(task, completed=done, extra=extra)

    def point_done(self, point_id: str) -> None:
        self._finished.add(point_id)
        task = self._running.pop(point_id, None)
        if task is not None:
            self._bar.remove_task(task)
        self._bar.advance(self._points)

    def stop(self) -> None:
        self._bar.stop()
