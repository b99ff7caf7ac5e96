"""``llmsim validate-run``: simulate the load a real benchmark sent and compare, metric by metric.

The deployment (model, hardware, layout, engine profile, limits) comes from flags or a base experiment
YAML; the workload from the result file (``llmsim.trust.benchfiles``): the arrival process and rate (or
the concurrency of a closed loop), the request count, the prompt and output lengths (per request where the
file keeps them, else their means), and the shared-prefix structure where the generator's profile says it.
Per metric it prints predicted, measured, the error, the interval (``llmsim.trust.intervals``) and
whether the measurement falls inside; repeats of the same real run give the run-to-run spread (coefficient
of variation over the measured files) to compare the error with.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from llmsim.errors import ConfigError
from llmsim.trust.benchfiles import BenchRun

ORDER = ("ttft_mean_s", "ttft_p50_s", "ttft_p90_s", "ttft_p99_s", "tpot_mean_s", "tpot_p50_s", "tpot_p90_s",
         "tpot_p99_s", "itl_mean_s", "itl_p50_s", "itl_p90_s", "itl_p99_s", "e2e_mean_s", "e2e_p50_s", "e2e_p90_s",
         "e2e_p99_s", "throughput_rps", "output_tokens_per_s")
MIN_REQUESTS = 50


@dataclass(frozen=True)
class MetricCheck:
    metric: str
    predicted: float | None
    measured: float
    grade: str | None
    lo: float | None
    hi: float | None
    spread: float | None  # run-to-run coefficient of variation of the measurement (None: one run)

    @property
    def error(self) -> float | None:
        if self.predicted is None or not self.measured:
            return None
        return self.predicted / self.measured - 1.0

    @property
    def inside(self) -> bool | None:
        return None if self.lo is None or self.hi is None else self.lo <= self.measured <= self.hi


@dataclass(frozen=True)
class Validation:
    run: BenchRun
    verdict: str
    checks: tuple[MetricCheck, ...]
    notes: tuple[str, ...]


def _arrival(run: BenchRun) -> dict[str, Any]:
    if run.arrival == "batch":
        return {"kind": "batch"}
    if run.arrival == "closed_loop":
        return {"kind": "closed_loop", "users": int(run.concurrency or 1), "think_time_s": 0.0}
    if run.arrival == "gamma":
        return {"kind": "gamma", "rate_per_s": run.rate_per_s, "cv": run.cv}
    return {"kind": run.arrival, "rate_per_s": run.rate_per_s}


def _length(mean: float | None, values: Sequence[int], what: str, where: str) -> dict[str, Any]:
    if values:
        return {"kind": "empirical", "values": [max(1, int(v)) for v in values]}
    if mean is None or not mean > 0:
        raise ConfigError(f"{where}: no {what} lengths in the file: give --{what}-len")
    return {"kind": "fixed", "value": max(1, int(round(mean)))}


def workload_for(run: BenchRun, input_len: int | None = None, output_len: int | None = None) -> dict[str, Any]:
    """The workload block that sends what ``run`` sent (``input_len``/``output_len`` override the file)."""
    inputs = _length(input_len or run.input_len_mean, () if input_len else run.input_lens, "input", run.path)
    outputs = _length(output_len or run.output_len_mean, () if output_len else run.output_lens, "output", run.path)
    wl: dict[str, Any] = {"description": f"replay of {run.label} ({run.source})", "arrival": _arrival(run),
                          "input_len": inputs, "output_len": outputs}
    sp = run.prefix
    if sp.get("num_unique_system_prompts") and sp.get("system_prompt_len"):
        system = int(sp["system_prompt_len"])
        if inputs["kind"] == "fixed":
            inputs["value"] = max(1, inputs["value"] - system)  # the measured prompt includes the system prompt
        wl["prefix"] = {"kind": "prompt_pool", "groups": int(sp["num_unique_system_prompts"]),
                        "users_per_group": int(sp.get("num_users_per_system_prompt") or 1), "system_tokens": system}
    return wl


def experiment_for_run(run: BenchRun, base: Mapping[str, Any], seed: int = 0, scale: float = 1.0,
                       input_len: int | None = None, output_len: int | None = None) -> dict[str, Any]:
    """``base`` (model, hardware, layout, engine, limits) with the workload and stop of ``run``; ``scale``
    < 1 sends that fraction of the requests (the same load, a shorter run)."""
    cfg = copy.deepcopy(dict(base))
    for key in ("sweep", "stop", "workload", "seeds"):
        cfg.pop(key, None)
    for key in ("model", "hardware"):
        if not cfg.get(key):
            raise ConfigError(f"validate-run: --{key}: required (or a base --experiment that names it)")
    cfg["name"] = cfg.get("name") or f"validate-{run.label}"
    cfg["workload"] = workload_for(run, input_len, output_len)
    n = max(MIN_REQUESTS, int(round(run.num_requests * scale)))
    cfg["stop"] = {"num_requests": n}
    cfg["seeds"] = [seed]
    return cfg


def _spread(values: Sequence[float]) -> float | None:
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    return float(v.std(ddof=1) / v.mean()) if v.size >= 2 and v.mean() else None


def compare(run: BenchRun, summary: Mapping[str, Any], repeats: Sequence[BenchRun] = ()) -> tuple[MetricCheck, ...]:
    """One check per metric the file measured and llmsim predicts."""
    out = []
    for m in [k for k in ORDER if k in run.metrics] + sorted(set(run.metrics) - set(ORDER)):
        pred = summary.get(m)
        pred = float(pred) if pred is not None and math.isfinite(float(pred)) else None
        if m not in summary:
            continue
        lo, hi = summary.get(f"lo.{m}"), summary.get(f"hi.{m}")
        spread = _spread([run.metrics[m], *(r.metrics.get(m) for r in repeats)]) if repeats else None
        out.append(MetricCheck(m, pred, run.metrics[m], summary.get(f"grade.{m}"),
                               None if lo is None or _nan(lo) else float(lo),
                               None if hi is None or _nan(hi) else float(hi), spread))
    return tuple(out)


def _nan(x) -> bool:
    try:
        return not math.isfinite(float(x))
    except (TypeError, ValueError):
        return True


def validate(runs: Sequence[BenchRun], base: Mapping[str, Any], repeats: Sequence[Sequence[BenchRun]] = (),
             seed: int = 0, scale: float = 1.0, input_len: int | None = None,
             output_len: int | None = None) -> list[Validation]:
    """Simulate each measured load point of ``runs`` on ``base``; ``repeats[j][i]`` repeats ``runs[i]``."""
    import llmsim

    out = []
    for i, run in enumerate(runs):
        cfg = experiment_for_run(run, base, seed, scale, input_len, output_len)
        res = llmsim.run(cfg, progress=False)
        row = res.summary.iloc[0].to_dict()
        reps = [rep[i] for rep in repeats if i < len(rep)]
        notes = list(run.notes)
        if run.failed:
            notes.append(f"{run.failed} requests failed in the real run")
        out.append(Validation(run, str(row.get("load_verdict")), compare(run, row, reps), tuple(notes)))
    return out


def _ms(x: float | None, metric: str) -> str:
    from llmsim.experiment.report import fmt_num

    if x is None:
        return "-"
    return fmt_num(x) if metric in ("throughput_rps", "output_tokens_per_s") else fmt_num(x * 1e3)


def render(validations: Sequence[Validation], level: float) -> str:
    """The comparison tables (latencies in ms, throughputs per second)."""
    lines = []
    for v in validations:
        r = v.run
        load = f"{r.arrival} {r.rate_per_s:g} req/s" if r.rate_per_s else \
            (f"{r.concurrency} concurrent" if r.concurrency else r.arrival)
        lines.append(f"{r.label}: {r.source}, {r.num_requests} requests, {load}; llmsim load verdict: {v.verdict}")
        lines.append(f"  {'metric':<20}{'predicted':>11}{'measured':>11}{'error':>9}  {f'{level:.0%} interval':<21}"
                     f"{'inside':<8}{'grade':<7}run-to-run")
        for c in v.checks:
            band = f"{_ms(c.lo, c.metric)}-{_ms(c.hi, c.metric)}" if c.lo is not None else "-"
            err = f"{c.error:+.1%}" if c.error is not None else "-"
            inside = "-" if c.inside is None else ("yes" if c.inside else "NO")
            spread = f"±{c.spread:.1%}" if c.spread is not None else "-"
            lines.append(f"  {c.metric:<20}{_ms(c.predicted, c.metric):>11}{_ms(c.measured, c.metric):>11}{err:>9}  "
                         f"{band:<21}{inside:<8}{c.grade or '-':<7}{spread}")
        lines += [f"  note: {n}" for n in v.notes]
        lines.append("")
    lines.append("latencies in ms, throughput_rps in requests/s, output_tokens_per_s in tokens/s; error = predicted / "
                 "measured - 1; run-to-run = coefficient of variation over the measured files")
    return "\n".join(lines)
