"""Run sweep points on a Dask cluster (``--executor dask``): identical results to local runs, since every
point depends only on its config and seed. Uses ``$LLMSIM_DASK_SCHEDULER`` (an address) when set, else
starts a local cluster of ``jobs`` worker processes."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path

from llmsim.errors import ConfigError

log = logging.getLogger("llmsim.run")


def run_on_dask(todo: list, out_dir: Path | None, jobs: int, fn: Callable, on_done: Callable) -> None:
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ConfigError("--executor dask needs dask.distributed: pip install -e '.[distributed]'") from None
    address = os.environ.get("LLMSIM_DASK_SCHEDULER")
    cluster = client = None
    futures: list = []
    try:
        if address:
            client = Client(address)
        else:
            # Its worker processes inherit SIGINT ignored (so Ctrl-C reaches this process only; one pressed
            # while the cluster starts, a few seconds, is lost) and keep their logs to themselves: a point that
            # fails raises here through its future; after Ctrl-C they only report the cluster going away.
            with _sigint_ignored(), _env(DASK_LOGGING__DISTRIBUTED="critical"):
                cluster = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True,
                                       dashboard_address=None)
            log.info("Dask cluster of %d workers started", jobs)
            client = Client(cluster)
        futures = [client.submit(fn, p, out_dir, key=f"point-{p.id}", pure=False) for p in todo]
        for p, fut in zip(todo, futures, strict=True):
            on_done(p, fut.result())
    except BaseException:
        logging.getLogger("distributed").setLevel(logging.CRITICAL)  # no shutdown chatter after Ctrl-C
        if client is not None:
            client.cancel(futures)
        raise
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()


@contextlib.contextmanager
def _env(**values: str):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _sigint_ignored():
    """SIGINT ignored inside the block, and so in the processes started there (an ignored signal stays
    ignored across exec). Main thread only: elsewhere signals cannot be changed, and this is a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
