"""Run sweep points on a Dask cluster (``--executor dask``): identical results to local runs, since every
point depends only on its config and seed. Uses ``$LLMSIM_DASK_SCHEDULER`` (an address) when set, else
starts a local cluster of ``jobs`` worker processes."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from llmsim.errors import ConfigError


def run_on_dask(todo: list, out_dir: Path | None, jobs: int, fn: Callable, on_done: Callable) -> None:
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ConfigError("--executor dask needs dask.distributed: pip install -e '.[distributed]'") from None
    address = os.environ.get("LLMSIM_DASK_SCHEDULER")
    cluster = None
    if address:
        client = Client(address)
    else:
        cluster = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
    try:
        futures = [client.submit(fn, p, out_dir, key=f"point-{p.id}", pure=False) for p in todo]
        for p, fut in zip(todo, futures, strict=True):
            on_done(p, fut.result())
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
