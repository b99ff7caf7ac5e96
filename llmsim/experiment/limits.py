"""Size limits checked before anything runs: sweeps with too many points, runs too large for memory.

A run keeps one row per request and one per simulated step until it ends, so its memory grows with both.
The check here is a floor, not a forecast: every request costs at least ``REQUEST_ROW_BYTES`` and every
step at least ``STEP_ROW_BYTES``, the sizes of their rows as the tables hold them (``llmsim.metrics.records``:
a request's 11 floats, 10 8-byte counts and 5 shared text references, its phase included: 208 bytes; a
step's 4 floats and 12 4-byte counts: 80 bytes), and a step emits at most ``max_num_seqs`` tokens. A
whole process needs more (measured with ``/usr/bin/time``: a one-replica run of 1,000,000 requests with
Azure-conversation lengths, 6.4 million steps, peaked at about 1.2 GB). A run whose floor already exceeds
the memory this machine has free would be killed after hours, so it is refused before it starts.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from llmsim.errors import ConfigError

MAX_POINTS = 10_000  # sweep points x seeds in one experiment
REQUEST_ROW_BYTES = 208
STEP_ROW_BYTES = 80
SAMPLE_REQUESTS = 256  # drawn (with a fixed seed of their own) to estimate mean lengths


def check_sweep_size(grid: dict[str, list], zipped: dict[str, list], seeds: list[int], where: str) -> None:
    """Refuse a sweep whose expansion would be too long to even list, before building any point."""
    n = math.prod(len(v) for v in grid.values()) * (len(next(iter(zipped.values()))) if zipped else 1)
    total = n * len(seeds)
    if total > MAX_POINTS:
        raise ConfigError(f"{where}: sweep: {n:,} points x {len(seeds)} seed(s) = {total:,} runs; at most "
                          f"{MAX_POINTS:,} are allowed in one experiment (split it, or sweep fewer values)")


def available_memory_bytes() -> float | None:
    """Memory the OS could give this process now (MemAvailable), or None where it cannot tell."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024.0
    except OSError:
        pass
    try:
        return float(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def counted_requests(stop: Any, spec: Any) -> float:
    """Requests a run sees at most, for sure: the stop count, or a replayed trace's length if shorter."""
    n = math.inf if stop.num_requests is None else float(stop.num_requests)
    return min(n, float(len(spec.trace))) if spec.trace is not None else n


def expected_requests(stop: Any, spec: Any) -> float | None:
    """Requests a run will see: ``counted_requests``, capped by mean rate x duration where both are known."""
    n = counted_requests(stop, spec)
    if stop.duration_s is not None and spec.arrival is not None:
        rate = float(spec.arrival.mean_rate_per_s)
        if math.isfinite(rate):
            n = min(n, rate * stop.duration_s + 1.0)
    return n if math.isfinite(n) else None


def mean_output_tokens(spec: Any, max_context: int) -> float:
    """Mean output length over a small sample drawn with its own fixed seed (the run's draws are untouched)."""
    from llmsim.workload import generate_requests

    stream = generate_requests(spec, np.random.default_rng(12345), num_requests=SAMPLE_REQUESTS,
                               duration_s=None, max_context=max_context)
    outputs = [r.output_tokens for r in stream]
    return float(np.mean(outputs)) if outputs else 0.0


def check_run_size(where: str, stop: Any, spec: Any, max_num_seqs: int, max_context: int,
                   available: float | None = None) -> float | None:
    """Raise if the run's memory floor exceeds 90 % of the memory available; returns the expected requests."""
    counted = counted_requests(stop, spec)
    if stop.warmup_requests and stop.warmup_requests >= counted:
        raise ConfigError(f"{where}: stop.warmup_requests: {stop.warmup_requests} leaves nothing to summarise "
                          f"of the {counted:,.0f} requests in the trace; lower it")
    n = expected_requests(stop, spec)
    if n is None:
        return None
    available = available_memory_bytes() if available is None else available
    if available is None:
        return n
    per_request = REQUEST_ROW_BYTES + mean_output_tokens(spec, max_context) / max_num_seqs * STEP_ROW_BYTES
    floor = n * per_request
    if floor > 0.9 * available:
        field = "stop.num_requests" if stop.num_requests is not None and n >= stop.num_requests else \
            "stop.duration_s"
        fits = int(0.9 * available / per_request)
        raise ConfigError(f"{where}: {field}: {n:,.0f} requests need at least {floor / 1e9:,.1f} GB for their "
                          f"records ({per_request / 1e3:.1f} kB each, steps included), but only "
                          f"{available / 1e9:.1f} GB is free here: at most about {fits:,} requests fit")
    return n
