"""``llmsim sensitivity``: one-at-a-time perturbation of the uncertain inputs, ranked by effect (tornado).

Each input is set to the low and the high end of its stated uncertainty, all else as configured, and one
point of the experiment is simulated at each end with the same seed (common random numbers: the arrival
and length draws are the same, so the difference is the input's). Inputs and their uncertainty:

- ``kernel_time``: every kernel's GPU time x (1 -/+ u): u = 10 % on a calibrated hardware profile (the
  held-out p90 kernel errors of ``calibration/h100-sxm-calibrated/report.md`` are 6-14 % for GEMM and
  attention), 50 % on a datasheet one (35-68 % before calibration, same report);
- ``engine_cpu``: the engine profile's CPU seconds per step (``cpu.step_s``, ``cpu.per_seq_s``,
  ``cpu.per_token_s``) x (1 -/+ 50 %): the fit identifies them mostly from four per-request runs;
- ``frontend``: the profile's front-end seconds (``frontend.request_s``, ``frontend.token_s``) x
  (1 -/+ 20 %): the spread of measured-minus-predicted TTFT it was fitted from;
- ``arrival_cv``: the coefficient of variation of the inter-arrival gaps -/+ 0.25 (Poisson -> gamma with
  cv 0.75 / 1.25; constant-rate senders show some jitter, so 0 -> 0.25 on the high side only);
- ``input_len``, ``output_len``: the mean prompt / output length x (1 -/+ 10 %).

An input that does not apply to the experiment (a trace workload, a closed loop) is listed as skipped.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from llmsim.errors import ConfigError

KERNEL_U = {True: 0.10, False: 0.50}  # calibrated profile or not
ENGINE_CPU_U = 0.5
FRONTEND_U = 0.2
ARRIVAL_CV_U = 0.25
LENGTH_U = 0.10


@dataclass(frozen=True)
class Effect:
    name: str
    uncertainty: str
    low: float | None  # the metric at the low / high end (None: the input does not apply)
    high: float | None
    skipped: str = ""

    def swing(self, base: float) -> float:
        """Largest relative move of the metric from its base value."""
        if self.low is None or self.high is None or not base:
            return -1.0
        return max(abs(self.low - base), abs(self.high - base)) / abs(base)


@dataclass(frozen=True)
class Sensitivity:
    metric: str
    base: float
    effects: tuple[Effect, ...]  # ranked, largest swing first; skipped inputs last


class _ScaledCost:
    """A cost model whose GPU (kernel) seconds are ``factor`` times the wrapped one's; CPU overhead kept."""

    def __init__(self, inner, factor: float) -> None:
        self._inner, self._f = inner, factor

    def __getattr__(self, name: str):
        return getattr(self._inner, name)

    def step_time(self, *args, **kwargs):
        c = self._inner.step_time(*args, **kwargs)
        f = self._f
        stages = tuple(s * f for s in c.stage_s)
        return replace(c, total_s=sum(stages) + c.overhead_s, stage_s=stages, compute_s=c.compute_s * f,
                       memory_s=c.memory_s * f, comm_s=c.comm_s * f, launch_s=c.launch_s * f)

    def decode_run(self, *args, **kwargs):
        return self._inner.decode_run(*args, **kwargs) * self._f


def _scale_kernels(factor: float) -> Callable:
    def transform(cluster):
        pools = tuple(replace(p, deployment=replace(p.deployment, cost_model=_ScaledCost(p.deployment.cost_model,
                                                                                           factor)))
                      for p in cluster.pools)
        return replace(cluster, pools=pools)
    return transform


def _engine_spec(cfg, block: str, keys: tuple[str, ...], factor: float):
    from llmsim.engines import load_engine

    spec = cfg.engine
    profile = load_engine(spec)
    base = dict(spec) if isinstance(spec, dict) else {"name": spec or profile.name}
    costs = getattr(profile, block)
    base[block] = {**(base.get(block) or {}), **{k: getattr(costs, k) * factor for k in keys}}
    return base


def _workload(point) -> tuple[dict, Path]:
    from llmsim.experiment.sweep import resolve_workload_ref
    from llmsim.yamlio import load_yaml

    wl = point.config.workload
    if isinstance(wl, str):
        path = resolve_workload_ref(wl, point.base_dir, point.where)
        return copy.deepcopy(load_yaml(path, "workload")), path.parent
    return copy.deepcopy(wl), point.workload_dir


def _with(point, **update):
    return replace(point, config=point.config.model_copy(update=update))


def _arrival(arr: dict, side: int) -> dict | None:
    kind = arr.get("kind")
    if kind in ("poisson", "gamma", "constant"):
        cv = 1.0 if kind == "poisson" else 0.0 if kind == "constant" else \
            arr.get("cv", 1.0 / math.sqrt(arr["shape"]) if arr.get("shape") else 1.0)
        return {"kind": "gamma", "rate_per_s": arr["rate_per_s"], "cv": max(0.0, cv + side * ARRIVAL_CV_U)}
    if kind in ("stages", "bursty", "diurnal") and "cv" in arr:
        return {**arr, "cv": max(0.0, float(arr["cv"]) + side * ARRIVAL_CV_U)}
    return None


def _length(dist: dict, factor: float) -> dict | None:
    if dist.get("kind") == "fixed":
        return {**dist, "value": max(1, int(round(dist["value"] * factor)))}
    if "mean" in dist:
        return {**dist, "mean": dist["mean"] * factor}
    if dist.get("kind") == "empirical" and dist.get("values"):
        return {**dist, "values": [max(1, int(round(v * factor))) for v in dist["values"]]}
    return None


def _workload_variant(point, key: str, side: int):
    wl, wdir = _workload(point)
    if key == "arrival":
        new = _arrival(wl.get("arrival") or {}, side)
    else:
        new = _length(wl.get(key) or {}, 1 + side * LENGTH_U)
    if new is None or "trace" in wl:
        return None
    wl[key] = new
    return replace(_with(point, workload=wl), workload_dir=wdir)


def variants(point) -> list[tuple[str, str, Callable[[int], tuple | None]]]:
    """(input, stated uncertainty, side -> (point, transform) or None when it does not apply)."""
    from llmsim.specs import load_hardware

    cfg = point.config
    calibrated = bool(load_hardware(cfg.hardware).calibration)
    ku = KERNEL_U[calibrated]
    return [
        ("kernel_time", f"x(1 ± {ku:.0%}) ({'calibrated' if calibrated else 'datasheet'} profile)",
         lambda s: (point, _scale_kernels(1 + s * ku))),
        ("engine_cpu", f"x(1 ± {ENGINE_CPU_U:.0%})", lambda s: (_with(point, engine=_engine_spec(
            cfg, "cpu", ("step_s", "per_seq_s", "per_token_s"), 1 + s * ENGINE_CPU_U)), None)),
        ("frontend", f"x(1 ± {FRONTEND_U:.0%})", lambda s: (_with(point, engine=_engine_spec(
            cfg, "frontend", ("request_s", "token_s"), 1 + s * FRONTEND_U)), None)),
        ("arrival_cv", f"± {ARRIVAL_CV_U:g}", lambda s: _pair(_workload_variant(point, "arrival", s))),
        ("input_len", f"x(1 ± {LENGTH_U:.0%})", lambda s: _pair(_workload_variant(point, "input_len", s))),
        ("output_len", f"x(1 ± {LENGTH_U:.0%})", lambda s: _pair(_workload_variant(point, "output_len", s))),
    ]


def _pair(p):
    return None if p is None else (p, None)


def metric_key(metric: str) -> str:
    return metric if metric.endswith("_s") or metric in ("throughput_rps", "output_tokens_per_s",
                                                          "slo_attainment") else f"{metric}_s"


def _value(point, metric: str, transform=None) -> float:
    from llmsim.experiment.point import run_point

    summary, _, _ = run_point(point, transform)
    if metric not in summary:
        raise ConfigError(f"--metric: {metric!r} is not a summary metric (e.g. ttft_p99, tpot_p50, e2e_mean, "
                          "throughput_rps)")
    v = summary[metric]
    return math.nan if v is None else float(v)


def sensitivity(experiment: str, metric: str, point: int = 0, overrides: tuple[str, ...] = (),
                params: Callable | None = None) -> Sensitivity:
    """Rank the inputs ``params(point)`` lists (default ``variants``) by their effect on ``metric``."""
    from llmsim.experiment.config import load_config
    from llmsim.experiment.sweep import expand

    cfg, base_dir = load_config(experiment, overrides)
    points = expand(cfg, base_dir, str(experiment))
    if not 0 <= point < len(points):
        raise ConfigError(f"--point: {experiment} has {len(points)} points (0-{len(points) - 1}), got {point}")
    pt = points[point]
    key = metric_key(metric)
    base = _value(pt, key)
    effects = []
    for name, unc, make in (params or variants)(pt):
        ends = [make(s) for s in (-1, 1)]
        if any(e is None for e in ends):
            effects.append(Effect(name, unc, None, None, "does not apply to this workload"))
            continue
        effects.append(Effect(name, unc, *(_value(p, key, t) for p, t in ends)))
    ranked = sorted(effects, key=lambda e: -e.swing(base))
    return Sensitivity(key, base, tuple(ranked))


def render(result: Sensitivity) -> str:
    from llmsim.experiment.report import fmt_num

    scale, unit = (1.0, "") if not result.metric.endswith("_s") else (1e3, " ms")
    lines = [f"{result.metric} = {fmt_num(result.base * scale)}{unit} as configured; each input at the ends of its "
             "uncertainty:", f"  {'input':<13}{'uncertainty':<34}{'low end':>11}{'high end':>11}{'swing':>9}"]
    for e in result.effects:
        if e.low is None:
            lines.append(f"  {e.name:<13}{e.uncertainty:<34}{'skipped: ' + e.skipped}")
            continue
        lines.append(f"  {e.name:<13}{e.uncertainty:<34}{fmt_num(e.low * scale):>11}{fmt_num(e.high * scale):>11}"
                     f"{e.swing(result.base):>9.1%}")
    return "\n".join(lines)


def tornado_plot(result: Sensitivity, path: str | Path) -> Path:
    """Horizontal bars from the base value to each end, largest effect on top."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [e for e in result.effects if e.low is not None][::-1]
    scale = 1e3 if result.metric.endswith("_s") else 1.0
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(shown) + 1.5))
    for i, e in enumerate(shown):
        for end, color in ((e.low, "tab:blue"), (e.high, "tab:red")):
            ax.barh(i, (end - result.base) * scale, left=result.base * scale, color=color, alpha=0.8)
    ax.axvline(result.base * scale, color="black", lw=1)
    ax.set_yticks(range(len(shown)), [f"{e.name}\n{e.uncertainty}" for e in shown], fontsize=8)
    ax.set_xlabel(f"{result.metric}{' (ms)' if scale != 1.0 else ''}  (blue: low end, red: high end)")
    ax.set_title(f"sensitivity of {result.metric}")
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
