"""Time and peak memory to generate 1,000,000 requests from workloads/chat.yaml.

Run: ``python benchmarks/workload_gen.py [--workload PATH] [-n N]``. Two passes each: streaming (requests
consumed and dropped, the simulator's way) and materialised (kept in a list). Timing passes run without
tracemalloc, which slows allocation; memory passes run with it.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from collections import deque
from pathlib import Path

import numpy as np

from llmsim.workload import generate_requests, load_workload

REPO = Path(__file__).resolve().parents[1]


def _consume(spec, n: int, keep: bool):
    stream = generate_requests(spec, np.random.default_rng(0), num_requests=n)
    if keep:
        return list(stream)
    deque(stream, maxlen=0)
    return None


def _timed(spec, n: int, keep: bool) -> float:
    start = time.perf_counter()
    _consume(spec, n, keep)
    return time.perf_counter() - start


def _peak_mib(spec, n: int, keep: bool) -> float:
    tracemalloc.start()
    result = _consume(spec, n, keep)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    del result
    return peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", default=str(REPO / "workloads" / "chat.yaml"))
    parser.add_argument("-n", type=int, default=1_000_000)
    args = parser.parse_args()
    spec = load_workload(args.workload)
    print(f"workload: {args.workload}  requests: {args.n:,}")
    for keep, label in ((False, "streamed"), (True, "kept in a list")):
        seconds = _timed(spec, args.n, keep)
        peak = _peak_mib(spec, args.n, keep)
        print(
            f"  {label:<15} {seconds:6.2f} s  ({args.n / seconds / 1e6:.2f} M req/s)  peak traced memory {peak:8.1f} MiB"
        )


if __name__ == "__main__":
    main()
