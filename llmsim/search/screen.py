"""Analytic screen: every valid candidate replica configuration, judged with bounds from the cost model.

A candidate is one replica configuration of one model: GPU type, TP x PP, precision and KV dtype, engine,
``max_num_batched_tokens`` / ``max_num_seqs``, and a role (``mixed`` for colocated serving, ``prefill`` /
``decode`` for a P/D split). The screen discards what cannot meet the SLOs, with the reason, using only
bounds that the simulator cannot beat:

- memory: the engine's own KV sizing (``llmsim.cost.memory.plan_memory`` at the engine profile's
  ``gpu_memory_utilization``): weights and activations that do not fit, or a KV cache too small for the
  requests;
- latency lower bounds: a request's TTFT is at least the GPU time of its whole prompt in one step, alone
  (no queueing, no batch-mates, no CPU overhead, no chunking); its TPOT and every inter-token gap at least
  one decode step of batch 1 at its prompt length (an E2E target is not screened). These rise with the prompt, so the SLO fails when the
  requests long enough to miss a bound are more than ``1 - attainment`` of the traffic (with a sampling
  margin of three standard errors of a verification run's attainment); a percentile target fails when the
  bound at that quantile of the lengths exceeds it.

It also computes, per candidate, a capacity upper bound (requests/s: the cheapest tokens there are,
``llmsim.sim.setup.capacity_tokens_per_s``, and decode at the largest batch the KV cache and
``max_num_seqs`` allow) and an SLO-aware capacity estimate (decode at the largest batch whose step meets
the TPOT target, prefill one prompt at a time, CPU overhead included), which the allocation ILP uses.
Bounds assume no prefix-cache hits and no speculative decoding (both would lower latency below them).
Per-base work (one cost model per model x GPU x TP x PP x precision) is shared by all knob values.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from llmsim.errors import LlmsimError
from llmsim.metrics.slo import percentile_key

ROLES = {"colocated": ("mixed",), "disaggregated": ("prefill", "decode")}


@dataclass(frozen=True, slots=True)
class Candidate:
    model: str  # the spec's model entry name
    hardware: str
    tp: int
    pp: int
    precision: str
    kv_dtype: str | None
    engine: str
    max_num_batched_tokens: int
    max_num_seqs: int
    role: str

    @property
    def gpus(self) -> int:
        return self.tp * self.pp

    @property
    def label(self) -> str:
        kv = f"/kv-{self.kv_dtype}" if self.kv_dtype else ""
        return (f"{self.model}:{self.role}:{self.hardware}:tp{self.tp}pp{self.pp}:{self.precision}{kv}:"
                f"{self.engine}:b{self.max_num_batched_tokens}:s{self.max_num_seqs}")


@dataclass(frozen=True, slots=True)
class Screened:
    """A candidate and the screen's verdict (``reason`` empty when kept) with its figures."""

    candidate: Candidate
    reason: str
    ttft_lb_s: float = math.nan
    tpot_lb_s: float = math.nan
    capacity_ub_rps: float = 0.0
    capacity_est_rps: float = 0.0
    usd_per_hour: float = 0.0
    tdp_w: float = 0.0
    kv_tokens: int = 0

    @property
    def kept(self) -> bool:
        return not self.reason


@dataclass(frozen=True)
class Lengths:
    """Sampled request lengths of one model's workload (the screen's view of its traffic)."""

    input: np.ndarray
    output: np.ndarray

    def __post_init__(self) -> None:
        totals = np.sort(self.input + self.output)
        object.__setattr__(self, "stats", (float(self.input.mean()), float(self.output.mean()),
                                           int(self.input.min()), totals))

    def share_longer_than(self, tokens: int) -> float:
        """Fraction of requests whose prompt plus output exceeds ``tokens``."""
        totals = self.stats[3]
        return 1.0 - np.searchsorted(totals, tokens, side="right") / len(totals)

    def quantile(self, q: float, weights: np.ndarray | None = None) -> float:
        """The ``q`` quantile of input lengths (weighted, e.g. by tokens, for per-token percentiles)."""
        order = np.argsort(self.input, kind="stable")
        w = np.ones(len(order)) if weights is None else np.asarray(weights, np.float64)[order]
        cum = np.cumsum(w) / w.sum()
        return float(self.input[order][min(len(order) - 1, int(np.searchsorted(cum, max(0.0, q))))])


@dataclass(frozen=True)
class Target:
    """One model's SLO as the screen reads it, and the sampling margin on attainment."""

    ttft_s: float | None
    tpot_s: float | None
    percentiles: dict
    attainment: float
    margin: float


def enumerate_candidates(spec) -> list[Candidate]:
    """Every combination of the knobs for every model entry and GPU type."""
    k = spec.knobs
    roles = [r for mode in k.modes for r in ROLES[mode]]
    out = []
    for entry in spec.models:
        for hw, tp, pp, prec, kvd, eng, mnbt, mns, role in itertools.product(
                spec.gpus, k.tp, k.pp, k.precision, k.kv_dtype, k.engine, k.max_num_batched_tokens,
                k.max_num_seqs, roles):
            out.append(Candidate(entry.name, hw, tp, pp, prec, kvd, eng, mnbt, mns, role))
    return out


class _Base:
    """What every candidate sharing (model, GPU, TP, PP, precision, KV dtype) needs: the cost model and the
    kernel-time bounds at the lengths that decide the SLO."""

    def __init__(self, model, hardware, tp: int, pp: int, precision, timer, lengths: Lengths, target: Target):
        from llmsim.cost import CostModel
        from llmsim.specs import ParallelLayout

        self.model, self.hw, self.prec = model, hardware, precision
        self.layout = ParallelLayout(tp=tp, pp=pp)
        self.cm = CostModel(model, hardware, self.layout, precision, timer=timer)
        self.lengths, self.target = lengths, target
        self._cap: dict[int, float] = {}
        self._decode: dict[tuple[int, int, bool], float] = {}
        self._prefill: dict[int, float] = {}
        self.plans: dict[tuple, object] = {}
        q = max(0.0, target.attainment - target.margin)  # the request at this quantile must meet the bound
        self.l_attain = lengths.quantile(q)
        self.ttft_lb = self.prefill_s(self.l_attain)
        self.tpot_lb = self.decode_s(1, int(self.l_attain))

    def prefill_s(self, length: float) -> float:
        return float(sum(self.cm.step_time([int(length)], [0]).stage_s))

    def prefill_total_s(self, length: int) -> float:
        if length not in self._prefill:
            self._prefill[length] = self.cm.step_time([length], [0]).total_s
        return self._prefill[length]

    def decode_s(self, batch: int, context: int, total: bool = False) -> float:
        key = (batch, context, total)
        if key not in self._decode:
            cost = self.cm.step_time([1] * batch, [context] * batch)
            self._decode[key] = cost.total_s if total else float(sum(cost.stage_s))
        return self._decode[key]

    def capacity_tokens_per_s(self, budget: int) -> float:
        from llmsim.sim.setup import capacity_tokens_per_s

        n = max(8192, budget)
        if n not in self._cap:
            self._cap[n] = capacity_tokens_per_s(self.cm, budget)
        return self._cap[n]


def _latency_reason(base: _Base, role: str) -> str:
    """Why a role cannot meet the SLO on this base (empty if the bounds allow it)."""
    t = base.target
    lens = base.lengths
    if role != "decode" and t.ttft_s is not None and base.ttft_lb > t.ttft_s:
        return (f"TTFT lower bound {base.ttft_lb:.3g} s > {t.ttft_s:g} s for the {base.l_attain:.0f}-token prompt "
                f"at the {t.attainment - t.margin:.0%} length quantile")
    if role != "prefill" and t.tpot_s is not None and base.tpot_lb > t.tpot_s:
        return f"TPOT lower bound {base.tpot_lb:.3g} s > {t.tpot_s:g} s (decode step at batch 1)"
    for key, value in t.percentiles.items():
        metric, q = percentile_key(key)
        q /= 100
        if metric == "ttft" and role != "decode":
            bound = base.prefill_s(lens.quantile(q - t.margin))
        elif metric in ("tpot", "itl") and role != "prefill":
            weights = np.maximum(lens.output - 1, 0) if metric == "itl" else None
            bound = base.decode_s(1, int(lens.quantile(q - t.margin, weights)))
        else:
            continue
        if bound > value:
            return f"{key} lower bound {bound:.3g} s > {value:g} s"
    return ""


def _capacities(base: _Base, c: Candidate, kv_tokens: int) -> tuple[float, float]:
    """(upper bound, SLO-aware estimate) of requests per second of one replica in its role."""
    lens, t = base.lengths, base.target
    mean_in, mean_out, min_in, _ = lens.stats
    cap_tok = base.capacity_tokens_per_s(c.max_num_batched_tokens)
    b_max = max(1, min(c.max_num_seqs, int(kv_tokens // max(1.0, mean_in))))
    b_up = 1 << (b_max - 1).bit_length()  # B / t(B) rises with B: a larger batch keeps it an upper bound
    dec_ub = b_up / base.decode_s(b_up, min_in)
    ctx_mid = int(mean_in + mean_out / 2)
    limit = t.tpot_s or t.percentiles.get("itl_p99_s") or math.inf
    b_slo = 1  # the largest power of two <= b_max whose decode step, CPU overhead included, meets TPOT
    for b in (2**i for i in range(b_max.bit_length())):
        if base.decode_s(b, ctx_mid, total=True) <= limit:
            b_slo = b
    dec_est = b_slo / base.decode_s(b_slo, ctx_mid, total=True)
    prefill_est = 1.0 / base.prefill_total_s(int(mean_in))
    if c.role == "prefill":
        return cap_tok / mean_in, prefill_est
    if c.role == "decode":
        return min(cap_tok / mean_out, dec_ub / mean_out), dec_est / mean_out
    ub = min(cap_tok / (mean_in + mean_out), dec_ub / mean_out)
    return ub, 1.0 / (1.0 / prefill_est + mean_out / dec_est)


def screen(spec, candidates: list[Candidate], models: dict, hardware: dict, lengths: dict, targets: dict,
           engines: dict) -> list[Screened]:
    """Judge every candidate (see the module doc); ``models`` / ``hardware`` / ``engines``: name -> spec,
    profile (prices already overridden) and engine profile; ``lengths`` / ``targets``: per model entry."""
    from llmsim.cost.step import default_timer

    timers: dict[str, object] = {}
    bases: dict[tuple, _Base | str] = {}
    out = []
    for c in candidates:
        key = (c.model, c.hardware, c.tp, c.pp, c.precision, c.kv_dtype)
        if key not in bases:
            bases[key] = _make_base(key, spec, models, hardware, lengths, targets, timers, default_timer)
        base = bases[key]
        out.append(Screened(c, base) if isinstance(base, str) else _judge(base, c, engines[c.engine]))
    return out


def _make_base(key, spec, models, hardware, lengths, targets, timers, default_timer) -> _Base | str:
    from llmsim.specs import Precision

    name, hw_name, tp, pp, prec, kvd = key
    entry = next(m for m in spec.models if m.name == name)
    hw = hardware[hw_name]
    if tp * pp > hw.gpus_per_node * 8:
        return f"tp x pp = {tp * pp} GPUs per replica is more than 8 nodes of {hw_name}"
    try:
        precision = Precision.parse(prec, kvd)
        hw.peak_flops(precision.compute)
        if hw_name not in timers:
            timers[hw_name] = default_timer(hw)
        return _Base(models[entry.model], hw, tp, pp, precision, timers[hw_name], lengths[name], targets[name])
    except LlmsimError as exc:
        return f"invalid: {exc}"


def _judge(base: _Base, c: Candidate, engine) -> Screened:
    figures = {"usd_per_hour": base.hw.price_per_hour_usd * c.gpus, "tdp_w": base.hw.tdp_w * c.gpus}
    key = (c.engine, c.max_num_batched_tokens, c.max_num_seqs)
    if key not in base.plans:  # the roles of one knob setting share the engine's memory plan
        base.plans[key] = _memory_plan(base, c, engine)
    plan = base.plans[key]
    if isinstance(plan, str):
        return Screened(c, plan, **figures)
    lens, t = base.lengths, base.target
    too_long = lens.share_longer_than(plan.kv_capacity_tokens)
    reason = _latency_reason(base, c.role)
    if not reason and too_long > 1 - t.attainment + t.margin:
        reason = f"KV cache of {plan.kv_capacity_tokens} tokens holds only {1 - too_long:.0%} of the requests"
    ub, est = _capacities(base, c, plan.kv_capacity_tokens) if not reason else (0.0, 0.0)
    return Screened(c, reason, base.ttft_lb, base.tpot_lb, ub, est, kv_tokens=plan.kv_capacity_tokens, **figures)


def _memory_plan(base: _Base, c: Candidate, engine):
    """The KV plan the engine would make (its ``gpu_memory_utilization`` and block size), or why none fits."""
    from llmsim.cost.memory import plan_memory
    from llmsim.engines import resolve_engine

    sched = {"kind": "vllm", "max_num_batched_tokens": c.max_num_batched_tokens, "max_num_seqs": c.max_num_seqs}
    runtime = resolve_engine(engine, base.hw, sched, {}, None)
    try:
        return plan_memory(base.model, base.hw, base.layout, base.prec,
                           gpu_memory_utilization=runtime.gpu_memory_utilization,
                           max_num_batched_tokens=c.max_num_batched_tokens, max_num_seqs=c.max_num_seqs,
                           block_size=runtime.block_size)
    except LlmsimError as exc:
        return f"memory: {exc}"
