"""Local worker processes for sweep points (``llmsim run --jobs N``).

On Ctrl-C (or any error) the parent terminates its workers at once instead of waiting for the points they
are running; it then says how to resume. Workers also die with their parent however it dies, ``kill -9``
included: on Linux the kernel signals them (``PR_SET_PDEATHSIG``), and everywhere a watcher thread exits the
worker once its parent or the main process is gone (under the forkserver and spawn start methods the parent
is a helper that can outlive the main process).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>: signals us when our parent (thread) dies
PARENT_POLL_S = 0.5


def _init_worker(main_pid: int, progress_queue=None) -> None:
    if progress_queue is not None:  # progress inside each point goes back to the parent's view
        from llmsim.experiment.progress import queue_sink

        queue_sink(progress_queue)
    # The parent is the main process (fork) or a fork server that exits with it (forkserver, spawn helpers).
    parent_pid = os.getppid()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):  # without prctl the watcher below still covers it
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))
    if parent_pid == 1 or not _alive(main_pid):  # orphaned before prctl took effect
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid, main_pid), daemon=True,
                     name="llmsim-parent-watch").start()


def _watch_parent(parent_pid: int, main_pid: int) -> None:
    """Exit once the parent is gone, or the main process (a fork server's parent outlives nothing)."""
    while os.getppid() == parent_pid and _alive(main_pid):
        time.sleep(PARENT_POLL_S)
    os._exit(1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_in_processes(todo: list, out_dir: Path | None, jobs: int, fn: Callable,
                     on_done: Callable[[object, tuple], None], progress_queue=None,
                     on_wait: Callable[[], None] | None = None) -> None:
    """Run ``fn(point, out_dir)`` for every point on ``jobs`` processes; ``on_done`` as each one finishes,
    ``on_wait`` about every 0.2 s while waiting (to drain ``progress_queue``, which the workers report into).
    On any exception (Ctrl-C included) the workers are terminated at once and the exception propagates."""
    pool = ProcessPoolExecutor(max_workers=jobs, initializer=_init_worker,
                               initargs=(os.getpid(), progress_queue))
    try:
        pending: dict[Future, object] = {pool.submit(fn, p, out_dir): p for p in todo}
    except BaseException:
        terminate(pool)
        raise
    rank = {id(p): i for i, p in enumerate(todo)}
    try:
        while pending:
            done, _ = wait(pending, timeout=0.2 if on_wait is not None else None, return_when=FIRST_COMPLETED)
            if on_wait is not None:
                on_wait()
            for fut in sorted(done, key=lambda f: rank[id(pending[f])]):
                on_done(pending.pop(fut), fut.result())
    except BaseException:
        terminate(pool)
        raise
    pool.shutdown()


def terminate(pool: ProcessPoolExecutor) -> None:
    """Stop a pool now: cancel what has not started and kill the workers running points."""
    procs = list((getattr(pool, "_processes", None) or {}).values())  # Python < 3.14 has no public handle
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(timeout=2.0)
        if p.is_alive():
            p.kill()
            p.join(timeout=2.0)
