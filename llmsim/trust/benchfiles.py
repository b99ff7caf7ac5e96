"""Parsers of real benchmark result files into one form: the load that was offered and what was measured.

Formats (detected from their keys; ``load_bench_file(path, fmt=...)`` forces one):

- ``vllm``: ``vllm bench serve --save-result`` JSON (one object, or one per line with ``--append-result``).
  Read from vllm-project/vllm ``vllm/benchmarks/serve.py`` (main, commit 009e6d4): ``benchmark()`` returns
  ``duration``, ``completed``, ``failed``, ``total_input_tokens``, ``total_output_tokens``,
  ``request_throughput``, ``output_throughput`` and, per metric ``ttft``/``tpot``/``itl``/``e2el``,
  ``mean_*_ms``, ``median_*_ms``, ``std_*_ms`` and ``p<P>_*_ms`` for each ``--metric-percentiles`` (default
  99); ``main`` adds ``model_id``, ``num_prompts``, ``request_rate`` (a number or ``"inf"``),
  ``burstiness`` (gamma shape of the gaps, 1 = Poisson) and ``max_concurrency``; ``--save-detailed`` keeps
  the per-request ``input_lens`` and ``output_lens``. TPOT there is (latency - TTFT) / (output - 1) per
  request, as llmsim's; ITL is the gap between streamed chunks.
- ``guidellm``: the report ``guidellm benchmark --output-path benchmarks.json`` writes
  (``GenerativeBenchmarksReport`` in vllm-project/guidellm ``src/guidellm/benchmark/schemas/generative/``):
  ``benchmarks[]`` with ``config.strategy`` (``type_`` synchronous / concurrent / throughput / constant /
  poisson, ``rate``, ``streams``) and ``metrics``: ``time_to_first_token_ms``, ``inter_token_latency_ms``
  (per request (last - first token) / (output - 1), i.e. TPOT), ``request_latency`` (s),
  ``prompt_token_count``, ``output_token_count``, ``requests_per_second``, ``output_tokens_per_second``,
  each a ``StatusDistributionSummary`` whose ``successful`` part has ``mean``, ``median``, ``count`` and
  ``percentiles`` ``p001`` ... ``p999``. Its ``time_per_output_token_ms`` includes the TTFT and is not read.
- ``inference-perf``: kubernetes-sigs/inference-perf ``*_lifecycle_metrics.json``: ``load_summary``
  (``count``, ``send_duration``, ``requested_rate``, ``achieved_rate``), ``successes`` (``count``,
  ``latency.request_latency`` / ``time_to_first_token`` in seconds with ``mean``, ``median``, ``p90``,
  ``p99`` ..., ``throughput.requests_per_sec`` / ``output_tokens_per_sec``, ``prompt_len``,
  ``output_len``) and ``failures``. Its per-token fields count streamed chunks, not tokens (see
  ``../shared/data/real_runs/README.md``), so TPOT is derived as (E2E mean - TTFT mean) / (output - 1). The
  lifecycle file does not say how requests were sent: a ``profile.yaml`` in the run folder (the
  generator's config, one level above ``results/``) supplies ``load.type`` and the ``shared_prefix`` data.

Every metric is stored under llmsim's summary name in seconds (``ttft_p99_s``, ...). Bad files raise
``ConfigError`` naming the file and the field.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmsim.errors import ConfigError

FORMATS = ("vllm", "guidellm", "inference-perf")
_VLLM_METRICS = {"ttft": "ttft", "tpot": "tpot", "itl": "itl", "e2el": "e2e"}


@dataclass(frozen=True)
class BenchRun:
    """One measured load point. ``arrival``: ``poisson``, ``gamma`` (``cv``), ``constant``, ``batch`` (all at
    once) or ``closed_loop`` (``concurrency`` users back to back); ``metrics``: summary names in seconds."""

    source: str
    path: str
    label: str
    model: str | None
    arrival: str
    rate_per_s: float | None
    cv: float | None
    concurrency: int | None
    num_requests: int
    failed: int
    duration_s: float | None
    input_len_mean: float | None
    output_len_mean: float | None
    metrics: dict[str, float]
    input_lens: tuple[int, ...] = ()
    output_lens: tuple[int, ...] = ()
    prefix: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


def _num(path: str, obj: Mapping, key: str, where: str = "", required: bool = True) -> float | None:
    """A finite number at ``obj[key]`` (``where`` is the dotted path to ``obj``)."""
    name = f"{where}.{key}" if where else key
    if not isinstance(obj, Mapping) or key not in obj or obj[key] is None:
        if required:
            raise ConfigError(f"{path}: {name}: missing (expected a number)")
        return None
    v = obj[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ConfigError(f"{path}: {name}: expected a finite number, got {v!r}")
    return float(v)


def _sub(path: str, obj: Any, key: str, where: str = "") -> Mapping:
    name = f"{where}.{key}" if where else key
    v = obj.get(key) if isinstance(obj, Mapping) else None
    if not isinstance(v, Mapping):
        raise ConfigError(f"{path}: {name}: missing or not an object")
    return v


def detect(data: Any) -> str | None:
    if isinstance(data, Mapping):
        if isinstance(data.get("benchmarks"), list):
            return "guidellm"
        if "load_summary" in data and "successes" in data:
            return "inference-perf"
        if "completed" in data and ("mean_ttft_ms" in data or "mean_e2el_ms" in data):
            return "vllm"
    return None


def _read(path: Path) -> list[Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        return [json.loads(text)]
    except json.JSONDecodeError as first:
        lines = [ln for ln in text.splitlines() if ln.strip()]
        if len(lines) > 1:  # vllm bench serve --append-result writes one object per line
            try:
                return [json.loads(ln) for ln in lines]
            except json.JSONDecodeError:
                pass
        raise ConfigError(f"{path}: not JSON (line {first.lineno}: {first.msg})") from None


def load_bench_file(path: str | Path, fmt: str = "auto") -> list[BenchRun]:
    """Every load point of a result file (a guidellm report or a JSON-lines vLLM file can hold several)."""
    p = Path(path)
    if fmt not in ("auto", *FORMATS):
        raise ConfigError(f"--format: expected auto or one of {', '.join(FORMATS)}, got {fmt!r}")
    docs = _read(p)
    out: list[BenchRun] = []
    for i, doc in enumerate(docs):
        kind = detect(doc) if fmt == "auto" else fmt
        if kind is None:
            raise ConfigError(
                f"{p}: not a recognised benchmark result{f' (line {i + 1})' if len(docs) > 1 else ''}: expected "
                "vllm bench serve JSON (completed, mean_ttft_ms, ...), a guidellm report (benchmarks[].metrics) or "
                "inference-perf lifecycle metrics (load_summary, successes)")
        if not isinstance(doc, Mapping):
            raise ConfigError(f"{p}: expected a JSON object at the top level, got {type(doc).__name__}")
        where = str(p) if len(docs) == 1 else f"{p} line {i + 1}"
        out += {"vllm": _vllm, "guidellm": _guidellm, "inference-perf": _inference_perf}[kind](where, doc, p)
    return out


def _vllm(where: str, d: Mapping, p: Path) -> list[BenchRun]:
    completed = int(_num(where, d, "completed"))
    duration = _num(where, d, "duration")
    metrics: dict[str, float] = {}
    for src, dst in _VLLM_METRICS.items():
        for key in d:
            stat = key[: -len(f"_{src}_ms")] if key.endswith(f"_{src}_ms") else ""
            name = "mean" if stat == "mean" else "p50" if stat == "median" else \
                stat.replace(".", "_") if re.fullmatch(r"p\d+(\.\d+)?", stat) else None
            if name is not None:  # mean, median and the --metric-percentiles (p99, p99.9 -> p99_9)
                metrics[f"{dst}_{name}_s"] = _num(where, d, key) / 1e3
    if not metrics:
        raise ConfigError(f"{where}: mean_ttft_ms: missing (expected latency fields *_ttft_ms / *_e2el_ms)")
    metrics["throughput_rps"] = _num(where, d, "request_throughput")
    out_tps = _num(where, d, "output_throughput", required=False)
    if out_tps is not None:
        metrics["output_tokens_per_s"] = out_tps
    rate, arrival, cv, conc, notes = _vllm_load(where, d)
    ins, outs = _lens(where, d, "input_lens"), _lens(where, d, "output_lens")
    total_in = _num(where, d, "total_input_tokens", required=False)
    total_out = _num(where, d, "total_output_tokens", required=False)
    return [BenchRun("vllm", where, str(d.get("label") or p.stem), d.get("model_id"), arrival, rate, cv, conc,
                     completed + int(_num(where, d, "failed", required=False) or 0),
                     int(_num(where, d, "failed", required=False) or 0), duration,
                     total_in / completed if total_in is not None and completed else None,
                     total_out / completed if total_out is not None and completed else None,
                     metrics, ins, outs, notes=notes)]


def _vllm_load(where: str, d: Mapping):
    raw = d.get("request_rate", "inf")
    conc = d.get("max_concurrency")
    if conc is not None and (isinstance(conc, bool) or not isinstance(conc, int) or conc < 1):
        raise ConfigError(f"{where}: max_concurrency: expected a positive integer or null, got {conc!r}")
    burst = _num(where, d, "burstiness", required=False)
    if burst is not None and burst <= 0:
        raise ConfigError(f"{where}: burstiness: expected a number > 0, got {burst!r}")
    if raw in ("inf", None) or (isinstance(raw, float) and math.isinf(raw)):
        return None, ("closed_loop" if conc else "batch"), None, conc, ()
    rate = _num(where, d, "request_rate")
    if rate <= 0:
        raise ConfigError(f"{where}: request_rate: expected a number > 0 or \"inf\", got {raw!r}")
    notes = (f"max_concurrency {conc} with a finite rate: llmsim sends at the rate, without the cap",) if conc else ()
    shape = 1.0 if burst is None else burst
    return rate, ("poisson" if shape == 1.0 else "gamma"), 1.0 / math.sqrt(shape), conc, notes


def _lens(where: str, d: Mapping, key: str) -> tuple[int, ...]:
    v = d.get(key)
    if v is None:
        return ()
    if not isinstance(v, list) or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in v):
        raise ConfigError(f"{where}: {key}: expected a list of token counts")
    return tuple(v)


def _dist(where: str, metrics: Mapping, key: str, scale: float, prefix: str, out: dict, required: bool) -> None:
    """Mean and percentiles of a guidellm ``StatusDistributionSummary`` (its ``successful`` part)."""
    name = f"metrics.{key}"
    if key not in metrics and not required:
        return
    succ = _sub(where, _sub(where, metrics, key, "metrics"), "successful", name)
    out[f"{prefix}_mean_s"] = _num(where, succ, "mean", f"{name}.successful") * scale
    pct = succ.get("percentiles") if isinstance(succ.get("percentiles"), Mapping) else {}
    med = _num(where, succ, "median", f"{name}.successful", required=False)
    if med is not None:
        out[f"{prefix}_p50_s"] = med * scale
    for src, dst in (("p90", "p90"), ("p99", "p99")):
        v = _num(where, pct, src, f"{name}.successful.percentiles", required=False)
        if v is not None:
            out[f"{prefix}_{dst}_s"] = v * scale


def _guidellm(where: str, d: Mapping, p: Path) -> list[BenchRun]:
    benches = d["benchmarks"]
    if not benches:
        raise ConfigError(f"{where}: benchmarks: empty (expected at least one benchmark)")
    runs = []
    for i, b in enumerate(benches):
        w = f"benchmarks[{i}]"
        m = _sub(where, b, "metrics", w)
        metrics: dict[str, float] = {}
        _dist(where, m, "time_to_first_token_ms", 1e-3, "ttft", metrics, True)
        _dist(where, m, "request_latency", 1.0, "e2e", metrics, True)
        _dist(where, m, "inter_token_latency_ms", 1e-3, "tpot", metrics, False)
        tput: dict[str, float] = {}
        _dist(where, m, "requests_per_second", 1.0, "rps", tput, False)
        if "rps_mean_s" in tput:
            metrics["throughput_rps"] = tput["rps_mean_s"]
        totals = m.get("request_totals") if isinstance(m.get("request_totals"), Mapping) else {}
        ok = int(_num(where, totals, "successful", f"{w}.metrics.request_totals", required=False) or 0)
        bad = int(_num(where, totals, "errored", f"{w}.metrics.request_totals", required=False) or 0)
        lens: dict[str, float] = {}
        _dist(where, m, "prompt_token_count", 1.0, "in", lens, False)
        _dist(where, m, "output_token_count", 1.0, "out", lens, False)
        arrival, rate, conc = _guidellm_strategy(where, b, w)
        dur = _num(where, b, "duration", w, required=False)
        runs.append(BenchRun("guidellm", where, f"{p.stem}[{i}] {arrival}{f' {rate:g}/s' if rate else ''}",
                             _guidellm_model(d), arrival, rate, 1.0 if arrival == "poisson" else None, conc,
                             ok + bad, bad, dur, lens.get("in_mean_s"), lens.get("out_mean_s"), metrics))
    return runs


def _guidellm_model(d: Mapping) -> str | None:
    args = d.get("args") if isinstance(d.get("args"), Mapping) else {}
    model = args.get("model")
    return model if isinstance(model, str) else None


def _guidellm_strategy(where: str, b: Mapping, w: str) -> tuple[str, float | None, int | None]:
    cfg = b.get("config") if isinstance(b.get("config"), Mapping) else b.get("args", {})
    strat = _sub(where, cfg, "strategy", f"{w}.config")
    kind = strat.get("type_", strat.get("type"))
    sw = f"{w}.config.strategy"
    if kind in ("constant", "poisson"):
        rate = _num(where, strat, "rate", sw)
        if rate <= 0:
            raise ConfigError(f"{where}: {sw}.rate: expected a number > 0, got {rate!r}")
        return kind, rate, None
    if kind == "synchronous":
        return "closed_loop", None, 1
    if kind in ("concurrent", "throughput"):
        key = "streams" if kind == "concurrent" else "max_concurrency"
        n = _num(where, strat, key, sw, required=kind == "concurrent")
        return ("closed_loop", None, int(n)) if n else ("batch", None, None)
    raise ConfigError(f"{where}: {sw}.type_: expected synchronous, concurrent, throughput, constant or poisson, "
                      f"got {kind!r}")


def _inference_perf(where: str, d: Mapping, p: Path) -> list[BenchRun]:
    load = _sub(where, d, "load_summary")
    succ = _sub(where, d, "successes")
    lat = _sub(where, succ, "latency", "successes")
    metrics: dict[str, float] = {}
    for key, prefix in (("time_to_first_token", "ttft"), ("request_latency", "e2e")):
        dist = _sub(where, lat, key, "successes.latency")
        w = f"successes.latency.{key}"
        metrics[f"{prefix}_mean_s"] = _num(where, dist, "mean", w)
        for src, dst in (("median", "p50"), ("p90", "p90"), ("p99", "p99")):
            v = _num(where, dist, src, w, required=False)
            if v is not None:
                metrics[f"{prefix}_{dst}_s"] = v
    out_len = _num(where, _sub(where, succ, "output_len", "successes"), "mean", "successes.output_len", required=False)
    tput = succ.get("throughput") if isinstance(succ.get("throughput"), Mapping) else {}
    rps = _num(where, tput, "requests_per_sec", "successes.throughput", required=False)
    if rps is not None:
        metrics["throughput_rps"] = rps
    in_len = _num(where, succ.get("prompt_len") or {}, "mean", "successes.prompt_len", required=False)
    rate = _num(where, load, "requested_rate", "load_summary")
    if rate <= 0:
        raise ConfigError(f"{where}: load_summary.requested_rate: expected a number > 0, got {rate!r}")
    failures = d.get("failures") if isinstance(d.get("failures"), Mapping) else {}
    failed = int(_num(where, failures, "count", "failures", required=False) or 0)
    arrival, prefix, notes = _inference_perf_profile(p)
    if prefix.get("ignore_eos") and isinstance(prefix.get("output_len"), int):  # exact lengths were asked for:
        out_len = float(prefix["output_len"])  # the client's own count under-counts for some tokenisers
        notes += ("output length from profile.yaml (ignore_eos)",)
    if out_len and out_len > 1:
        metrics["tpot_mean_s"] = (metrics["e2e_mean_s"] - metrics["ttft_mean_s"]) / (out_len - 1)
    return [BenchRun("inference-perf", where, p.stem, None, arrival, rate, 0.0 if arrival == "constant" else 1.0,
                     None, int(_num(where, load, "count", "load_summary")), failed,
                     _num(where, load, "send_duration", "load_summary", required=False), in_len, out_len, metrics,
                     prefix=prefix, notes=notes)]


def _inference_perf_profile(p: Path) -> tuple[str, dict, tuple[str, ...]]:
    """Load type and shared-prefix data from the generator's ``profile.yaml`` next to ``results/``."""
    import yaml

    for cand in (p.parent / "profile.yaml", p.parent.parent / "profile.yaml"):
        if cand.is_file():
            try:
                prof = yaml.safe_load(cand.read_text(encoding="utf-8")) or {}
            except yaml.YAMLError as exc:
                raise ConfigError(f"{cand}: not YAML ({exc})") from None
            load = prof.get("load") if isinstance(prof.get("load"), Mapping) else {}
            kind = load.get("type", "constant")
            data = prof.get("data") if isinstance(prof.get("data"), Mapping) else {}
            sp = data.get("shared_prefix") if isinstance(data.get("shared_prefix"), Mapping) else {}
            server = prof.get("server") if isinstance(prof.get("server"), Mapping) else {}
            prefix = {**sp, "ignore_eos": bool(server.get("ignore_eos"))} if sp else {}
            return ("constant" if kind == "constant" else "poisson"), prefix, (f"load and data from {cand}",)
    return "poisson", {}, ("no profile.yaml beside the results: load type unknown, Poisson assumed",)
