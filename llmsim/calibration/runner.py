"""Run a calibration sweep: probe the device (launch overhead; on a CPU its peaks), plan, announce the
duration, then time every case with a progress bar."""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from llmsim.calibration.environment import base_profile_for, cpu_cache_bytes, describe
from llmsim.calibration.kernels import KernelFactory
from llmsim.calibration.measurements import OP_CLASSES, Case, Measurement
from llmsim.calibration.plan import Grids, build_cases, case_call_s, case_total_s, eta_text, grids_for, prune
from llmsim.calibration.profile import cpu_base_dict
from llmsim.calibration.timing import Harness
from llmsim.errors import ConfigError
from llmsim.specs import HardwareSpec, ModelSpec, hardware_from_dict, load_hardware


@dataclass(frozen=True, slots=True)
class Options:
    """What ``llmsim calibrate`` was asked to do."""

    device: str
    models: list[ModelSpec]
    tps: list[int]
    dtypes: list[str]
    quick: bool = False
    max_m: int | None = None
    repeats: int | None = None
    base: str | None = None
    threads: int | None = None
    progress: bool = True
    argv: list[str] | None = None


@dataclass
class Run:
    """Everything a sweep produced: environment, base profile (as YAML data), measurements and notes."""

    env: dict[str, Any]
    base: dict[str, Any]
    base_name: str
    grids: Grids
    launch_s: float
    measurements: list[Measurement] = field(default_factory=list)
    probes: list[Measurement] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    planned_s: float = 0.0
    wall_s: float = 0.0

    @property
    def base_hw(self) -> HardwareSpec:
        return hardware_from_dict(self.base, source=self.base_name)


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _measure(harness: Harness, factory: KernelFactory, case: Case) -> Measurement:
    fn, context = factory.build(case)
    t = harness.time(fn, context)
    torch_dtype = "float32" if case.kind == "softmax" or case.op_class == "launch" else \
        str(factory.dtype(case.dtype)).removeprefix("torch.")
    return Measurement(case, t.median_s, t.spread, t.samples, t.calls_per_sample, torch_dtype)


def _measure_prefill_fallback(harness: Harness, factory: KernelFactory, case: Case, notes: list[str]) -> Measurement:
    """Measure; if FlashAttention refuses grouped K/V for prefill, repeat K/V per query head from then on."""
    try:
        return _measure(harness, factory, case)
    except RuntimeError as exc:
        if case.op_class != "attn_prefill" or factory.device != "cuda" or factory.expand_gqa \
                or case["kv_heads"] == case["heads"]:
            raise
        factory.expand_gqa = True
        notes.append(f"FlashAttention refused enable_gqa ({str(exc).splitlines()[0][:100]}); GQA prefill timed "
                     "with K/V repeated per query head (compute-bound, so nearly the same time)")
        return _measure(harness, factory, case)


def _cpu_base(harness: Harness, factory: KernelFactory, opts: Options, env: dict, run_probe) -> dict:
    """A CPU 'profile' from measured peaks: GEMM FLOP/s per dtype at a large square shape, copy bandwidth."""
    size = 1024 if opts.max_m else 2048
    peaks = {}
    for dtype in ("fp32", "bf16"):
        m = run_probe(Case.make("peak_gemm", "peak", dtype, m=size, n=size, k=size))
        peaks[dtype] = float(m.operator.flops) / m.median_s
    rows = max(1, int(4 * env["llc_bytes"] / (2 * 4096 * 2)))  # copy well beyond the last-level cache
    copy = run_probe(Case.make("elementwise", "copy", "bf16", rows=rows, width=4096))
    return cpu_base_dict(env, peaks, float(copy.operator.hbm_bytes) / copy.median_s)


def _base(torch: Any, opts: Options, env: dict, probe) -> tuple[dict, str]:
    from llmsim.calibration.profile import profile_yaml_data  # noqa: PLC0415

    if opts.device == "cpu" and not opts.base:
        return probe(), "measured CPU peaks"
    name = opts.base or base_profile_for(env["name"])
    if not name:
        raise ConfigError(f"no shipped profile matches GPU {env['name']!r}; pass --base NAME (a hardware profile)")
    return profile_yaml_data(load_hardware(name)), name


def _warm_gpu(torch: Any, seconds: float = 2.0) -> None:
    """Large GEMMs for a couple of seconds first, so clocks and temperature are at their working point."""
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for _ in range(10):
            a @ a
        torch.cuda.synchronize()


def _dtypes(torch: Any, opts: Options, env: dict, notes: list[str]) -> list[str]:
    out = []
    for d in opts.dtypes:
        if d == "fp8" and (opts.device == "cpu" or float(env.get("compute_capability", "0")) < 8.9):
            notes.append(f"fp8 GEMMs skipped: torch._scaled_mm needs an sm_89+ GPU (this is {env['name']})")
            continue
        out.append(d)
    if not out:
        raise ConfigError("none of the requested --dtypes can run on this device")
    return out


def calibrate(torch: Any, opts: Options) -> Run:
    """Probe, plan and measure; returns the raw results (fitting and writing happen in the caller)."""
    start = time.perf_counter()
    if opts.threads and opts.device == "cpu":
        torch.set_num_threads(opts.threads)
    env = describe(torch, opts.device, opts.argv)
    grids = grids_for(opts.device, opts.quick, opts.max_m, opts.repeats)
    harness = Harness(torch, opts.device, min_repeats=grids.min_repeats, max_repeats=grids.max_repeats,
                      target_spread=grids.target_spread, min_sample_s=grids.min_sample_s)
    cache = float(env.get("l2_bytes", 0.0)) if opts.device == "cuda" else cpu_cache_bytes()
    mem_cap = 0.2 * float(env["memory_bytes"]) if opts.device == "cuda" else 2e9
    factory = KernelFactory(torch, "cuda" if opts.device == "cuda" else "cpu", cache or 50e6, mem_cap)
    probes: list[Measurement] = []

    def run_probe(case: Case) -> Measurement:
        probes.append(_measure(harness, factory, case))
        return probes[-1]

    if opts.device == "cuda":
        _warm_gpu(torch)
    launch = run_probe(Case.make("launch", "tiny_copy", "fp32")).median_s
    base, base_name = _base(torch, opts, env, lambda: _cpu_base(harness, factory, opts, env, run_probe))
    run = Run(env, base, base_name, grids, launch, probes=probes)
    dtypes = _dtypes(torch, opts, env, run.notes)
    cases, dropped, run.planned_s = prune(build_cases(opts.models, opts.tps, dtypes, grids), run.base_hw,
                                          launch, grids)
    if dropped:
        run.notes.append(f"{len(dropped)} cases skipped to keep the sweep within {grids.budget_s:.0f} s and "
                         f"{grids.max_call_s * 1e3:.0f} ms per call; the fit holds the edge ratio beyond the "
                         "measured range")
    if opts.device == "cpu":
        run.notes.append("all-reduce not measured: a CPU run has no NCCL; the links are placeholders")
    elif torch.cuda.device_count() < 2:
        run.notes.append("all-reduce not measured: one GPU visible (NCCL needs two or more); the profile keeps "
                         "the interconnect figures of its base")
    say(f"calibrating {env['name']} ({opts.device}): {len(cases)} kernel shapes, about "
        f"{eta_text(run.planned_s)} (estimate from the {base_name} roofline)")
    run.measurements = _sweep(harness, factory, cases, run, opts)
    run.measurements = retime_outliers(run.measurements, lambda c: _measure(harness, factory, c), run.notes)
    run.measurements += [p for p in probes if p.case.op_class in OP_CLASSES]  # the CPU copy probe is data too
    if opts.device == "cuda" and torch.cuda.device_count() >= 2:
        run.measurements += _allreduce(torch, opts, run)
    run.wall_s = time.perf_counter() - start
    return run


def _allreduce(torch: Any, opts: Options, run: Run) -> list[Measurement]:
    """NCCL all-reduce over each TP degree the visible GPUs allow (all of them if no --tp asks for 2+)."""
    from llmsim.calibration.collectives import measure_allreduce  # noqa: PLC0415

    count = min(torch.cuda.device_count(), 8)
    worlds = sorted({t for t in opts.tps if 2 <= t <= count}) or [count]
    sizes = [1 << e for e in range(10, 29, 2 if opts.quick else 1)]
    out: list[Measurement] = []
    for world in worlds:
        say(f"all-reduce across {world} GPUs ({len(sizes)} sizes)")
        try:
            out += measure_allreduce(torch, world, sizes)
        except Exception as exc:  # noqa: BLE001 - a failed NCCL setup must not lose the sweep's data
            run.notes.append(f"all-reduce across {world} GPUs failed: {str(exc).splitlines()[0][:160]}")
    return out


def _sweep(harness: Harness, factory: KernelFactory, cases: list[Case], run: Run, opts: Options) -> list[Measurement]:
    """Time every case; the bar advances by each case's estimated seconds, so its ETA weighs big shapes."""
    from rich.console import Console  # noqa: PLC0415
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn  # noqa: PLC0415

    out: list[Measurement] = []
    failed: dict[str, int] = {}
    hw = run.base_hw
    weights = [case_total_s(*case_call_s(c, hw, run.launch_s), run.grids) for c in cases]
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), disable=not opts.progress, transient=False) as bar:
        task = bar.add_task("measuring", total=sum(weights))
        for i, (case, weight) in enumerate(zip(cases, weights, strict=True)):
            bar.update(task, description=f"{i + 1:>5}/{len(cases)} {case.op_class:<12} {case.kind:<12}")
            try:
                out.append(_measure_prefill_fallback(harness, factory, case, run.notes))
            except (RuntimeError, ValueError) as exc:  # unsupported kernel or out of memory: note, go on
                key = f"{case.op_class}/{case.kind}: {str(exc).splitlines()[0][:120]}"
                failed[key] = failed.get(key, 0) + 1
                if opts.device == "cuda":
                    factory.torch.cuda.empty_cache()
            bar.advance(task, weight)
    run.notes += [f"{n} case(s) failed, {key}" for key, n in failed.items()]
    return out


OUTLIER = 1.25  # re-time a point this much slower than its neighbours' trend or than a larger shape


def _suspects(row: list[tuple[int, Measurement]]) -> list[Measurement]:
    """Points of one swept row that stick out: above the log-log line through their two neighbours, or slower
    than a larger shape further along the row (a bigger kernel is never faster in the absence of noise)."""
    out = []
    times = [m.median_s for _, m in row]
    for i, (pos, m) in enumerate(row):
        later = min(times[i + 1:], default=math.inf)
        bumped = False
        if 0 < i < len(row) - 1:
            (p0, a), (p2, b) = row[i - 1], row[i + 1]
            x0, x1, x2 = math.log(p0), math.log(pos), math.log(p2)
            y0, y2 = math.log(a.median_s), math.log(b.median_s)
            bumped = math.log(m.median_s) - (y0 + (y2 - y0) * (x1 - x0) / (x2 - x0)) > math.log(OUTLIER)
        if bumped or m.median_s > OUTLIER * later:
            out.append(m)
    return out


def retime_outliers(measurements: list[Measurement], measure, notes: list[str]) -> list[Measurement]:
    """Re-time suspect points (see ``_suspects``) and keep the faster median: contention from other processes
    or an OS hiccup during a whole case only ever makes a kernel slower."""
    from llmsim.calibration.fit import sweep_rows  # noqa: PLC0415

    by_case = {m.case: m for m in measurements}
    retimed = 0
    for row in sweep_rows(measurements):
        for m in _suspects(row):
            try:
                again = measure(m.case)
            except (RuntimeError, ValueError):
                continue
            retimed += 1
            if again.median_s < by_case[m.case].median_s:
                by_case[m.case] = again
    if retimed:
        notes.append(f"{retimed} point(s) sticking out by more than {OUTLIER - 1:.0%} were re-timed "
                     "(the faster median kept)")
    return [by_case[m.case] for m in measurements]
