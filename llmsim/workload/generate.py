"""Turning a WorkloadSpec into a stream of Requests.

Requests are produced chunk by chunk (arrival times, classes, lengths and prefixes drawn with numpy, then
wrapped into ``Request`` objects), so a million requests stream in constant memory and take seconds.
All randomness comes from the one ``numpy.random.Generator`` passed in: same seed, same requests.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import fields, replace

import numpy as np

from llmsim.errors import ConfigError
from llmsim.workload.arrivals import CHUNK, Batch
from llmsim.workload.lengths import correlated_uniforms
from llmsim.workload.modulated import Bursty, Stage, Stages
from llmsim.workload.request import Request
from llmsim.workload.spec import TrafficClass, WorkloadSpec


def generate_requests(
    spec: WorkloadSpec,
    rng: np.random.Generator,
    num_requests: int | None = None,
    duration_s: float | None = None,
    max_context: int | None = None,
) -> Iterator[Request]:
    """Yield requests in arrival order with ids 0..N-1.

    Stops after ``num_requests`` requests or at the first arrival at or after ``duration_s`` (whichever comes
    first; each defaults to the spec's value). Lengths are clipped to ``max_context`` (default: the spec's):
    the prompt to ``max_context - 1`` tokens, then the output to what is left, as a serving engine would.
    For a closed-loop spec the requests carry ``arrival_s = 0.0``; the simulator sets the real arrival time
    (see ``ClosedLoop``), and without a request count the stream is endless, so consume it lazily.
    """
    num_requests = spec.num_requests if num_requests is None else num_requests
    duration_s = spec.duration_s if duration_s is None else duration_s
    max_context = spec.max_context if max_context is None else max_context
    _check_limits(spec, num_requests, duration_s, max_context)
    if spec.trace is not None:
        return _replay(spec, num_requests, duration_s, max_context)
    return _synthesise(spec, rng, num_requests, duration_s, max_context)


def _check_limits(
    spec: WorkloadSpec, n: int | None, duration_s: float | None, max_context: int | None
) -> None:
    if n is not None and n < 0:
        raise ConfigError(f"{spec.source}: num_requests must be >= 0, got {n}")
    if max_context is not None and max_context < 2:
        raise ConfigError(f"{spec.source}: max_context must be >= 2 tokens, got {max_context}")
    ends = spec.trace is not None or getattr(spec.arrival, "repeat", True) is False  # finite stages
    pulled = spec.closed_loop is not None  # the simulator pulls closed-loop requests as users free up
    if n is None and duration_s is None and not (ends or pulled):
        raise ConfigError(f"{spec.source}: give num_requests or duration_s (the arrival process never ends)")
    if isinstance(spec.arrival, Batch) and n is None:
        raise ConfigError(f"{spec.source}: arrival 'batch' puts every request at t = 0; give num_requests")


def _clip(inputs: np.ndarray, outputs: np.ndarray, max_context: int | None):
    if max_context is None:
        return inputs, outputs
    inputs = np.minimum(inputs, max_context - 1)
    return inputs, np.minimum(outputs, max_context - inputs)


def _replay(spec: WorkloadSpec, n: int | None, duration_s: float | None, max_context: int | None):
    trace = spec.trace
    inputs, outputs = _clip(trace.input_tokens, trace.output_tokens, max_context)
    chunk = trace.chunk_tokens
    for i in range(len(trace) if n is None else min(n, len(trace))):
        if duration_s is not None and trace.arrival_s[i] >= duration_s:
            return
        hashes = trace.hash_ids[i][: -(-int(inputs[i]) // chunk)] if trace.hash_ids is not None else ()
        yield Request(i, float(trace.arrival_s[i]), int(inputs[i]), int(outputs[i]), hashes, chunk)


def _arrival_chunks(spec: WorkloadSpec, rng: np.random.Generator) -> Iterator[np.ndarray]:
    if spec.closed_loop is not None:
        while True:
            yield np.zeros(CHUNK)
    yield from spec.arrival.chunks(rng)


def _synthesise(spec, rng, n: int | None, duration_s: float | None, max_context: int | None):
    prefix = spec.prefix.start(spec.prefix_chunk_tokens, max_context) if spec.prefix is not None else None
    classes = spec.classes or (TrafficClass("default", 1.0),)
    made = 0
    for times in _arrival_chunks(spec, rng):
        stop = False
        if duration_s is not None and spec.closed_loop is None:
            cut = int(np.searchsorted(times, duration_s, side="left"))
            stop, times = cut < len(times), times[:cut]
        if n is not None and len(times) >= n - made:
            stop, times = True, times[: n - made]
        if len(times):
            which = _pick_classes(classes, rng, len(times))
            inputs, outputs = _lengths(spec, classes, which, rng)
            yield from _wrap(spec, prefix, classes, which, times, inputs, outputs, made, rng, max_context)
            made += len(times)
        if stop:
            return


def _pick_classes(classes: tuple[TrafficClass, ...], rng: np.random.Generator, size: int) -> np.ndarray:
    if len(classes) == 1:
        return np.zeros(size, dtype=np.int64)
    shares = np.array([c.share for c in classes])
    return rng.choice(len(classes), size=size, p=shares / shares.sum())


def _lengths(spec: WorkloadSpec, classes, which: np.ndarray, rng: np.random.Generator):
    """Input and output tokens (before prefixes) for one chunk, class by class."""
    size = len(which)
    if spec.pairs is not None:
        pick = rng.integers(0, len(spec.pairs[0]), size)
        return spec.pairs[0][pick], spec.pairs[1][pick]
    inputs, outputs = np.empty(size, dtype=np.int64), np.empty(size, dtype=np.int64)
    for k, cls in enumerate(classes):
        mask = which == k
        m = int(mask.sum())
        if m == 0:
            continue
        u_in, u_out = correlated_uniforms(rng, m, spec.correlation)
        inputs[mask] = (cls.input_len or spec.input_len).ppf(u_in)
        outputs[mask] = (cls.output_len or spec.output_len).ppf(u_out)
    return inputs, outputs


def _wrap(
    spec, prefix, classes, which, times, inputs, outputs, first_id, rng, max_context
) -> Iterator[Request]:
    """Apply the prefix model and context clipping, then build the Request objects."""
    size, chunk = len(times), spec.prefix_chunk_tokens
    if prefix is not None:
        inputs, hashes, sessions = prefix.apply(inputs, outputs, rng)
    else:
        hashes, sessions = [()] * size, [None] * size
    inputs, outputs = _clip(inputs, outputs, max_context)
    names = [c.name for c in classes]
    prios = [c.priority for c in classes]
    for i, (t, inp, out, k) in enumerate(
        zip(times.tolist(), inputs.tolist(), outputs.tolist(), which.tolist(), strict=True)
    ):
        h = hashes[i]
        if len(h) * chunk >= inp + chunk:
            h = h[: -(-inp // chunk)]  # the prompt was truncated to the context: drop ids past its end
        yield Request(first_id + i, t, inp, out, h, chunk, sessions[i], prios[k], names[k])


_RATE_FIELDS = ("rate_per_s", "on_rate_per_s", "off_rate_per_s", "mean_rate_per_s")


def with_rate(spec: WorkloadSpec, rate_per_s: float) -> WorkloadSpec:
    """The same workload at another mean arrival rate, for load sweeps (goodput searches).

    Renewal processes keep their CV; bursty traffic is sped up as a whole (rates times k, on/off durations
    divided by k) so its gap distribution keeps its shape; stages and diurnal curves keep their timing and
    scale their rates; a replayed trace is sped up or slowed down. Batch and closed-loop workloads have no
    arrival rate to set.
    """
    if not rate_per_s > 0:
        raise ConfigError(f"{spec.source}: rate_per_s must be > 0, got {rate_per_s}")
    if spec.trace is not None:
        t = spec.trace.arrival_s
        factor = rate_per_s / (len(t) / t[-1]) if t[-1] > 0 else 1.0
        return replace(spec, trace=replace(spec.trace, arrival_s=t / factor))
    arrival = spec.arrival
    if arrival is None or not math.isfinite(arrival.mean_rate_per_s):
        kind = "closed-loop" if arrival is None else "batch"
        raise ConfigError(f"{spec.source}: a {kind} workload has no arrival rate to set")
    factor = rate_per_s / arrival.mean_rate_per_s
    if isinstance(arrival, Stages):
        stages = [Stage(s.rate_per_s * factor, s.duration_s) for s in arrival.stages]
        return replace(spec, arrival=Stages(stages, arrival.repeat, arrival.cv))
    if isinstance(arrival, Bursty):
        slower = {"mean_on_s": arrival.mean_on_s / factor, "mean_off_s": arrival.mean_off_s / factor}
        arrival = replace(arrival, **slower)
    names = {f.name for f in fields(arrival)}
    changes = {name: getattr(arrival, name) * factor for name in _RATE_FIELDS if name in names}
    return replace(spec, arrival=replace(arrival, **changes))
