"""``CostModel.step_time(batch) -> StepCost``: the time of one batch step of a replica, with its breakdown.

Pure and deterministic: same inputs, same output. The per-layer operators are timed once and multiplied
by the layers of each pipeline stage; collectives and pipeline sends are added per layer / per stage.

Kernel launches (``launch``): the CPU issues kernels ahead of the GPU, so a stage takes the longer of its
GPU work and the CPU time to issue its eagerly launched kernels (``max(GPU, launches)``: launch cost shows
only when kernels are shorter than their launch). ``eager`` launches every kernel; ``piecewise`` (vLLM's
piecewise CUDA graphs) replays one graph per layer piece and launches only the attention kernels eagerly;
``full`` replays one captured graph for the whole step (no per-kernel launch cost).

Power cap (``HardwareSpec.power_cap_w`` below the TDP, set by the profile or an experiment's ``cost:``
block): the step is first timed at full clocks; its GPUs' power over it (``llmsim.cost.energy``: activity
from its FLOPs and bytes over its GPU seconds, on ``tp x pp`` GPUs) sets the SM clock ratio ``r``, the
highest whose power over the lengthened step meets the cap (``energy.cap_clock``), and the step's
compute-bound kernel time then takes ``1/r`` longer while its HBM-bound kernel time, collectives and
launches do not (``apply_power_cap``). With pipeline stages the added time is shared between the stages
in proportion to their time (a stage's compute share is not tracked separately). Without a cap nothing
changes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from llmsim.cost.collectives import alltoall_s, moe_alltoall_s, p2p_s
from llmsim.cost.layers import first_stage_operators, last_stage_operators, layer_operators
from llmsim.cost.operators import BatchFeatures, Operator, batch_features, chunked_features, useful_flops
from llmsim.cost.roofline import OperatorTimer, OpTime, RooflineTimer
from llmsim.errors import InfeasibleError
from llmsim.specs import HardwareSpec, ModelSpec, ParallelLayout, Precision


@dataclass(frozen=True, slots=True)
class StepCost:
    """Seconds of one step. ``total_s = sum(stage_s) + overhead_s`` and
    ``total_s = compute_s + memory_s + comm_s + launch_s + overhead_s`` (each operator counted on the side of
    the roofline that bounds it; ``launch_s`` is the kernel-issue time the GPU work does not hide).
    ``overhead_s`` is the hardware profile's per-step CPU cost (the generic engine's); engine profiles
    replace it with their own CPU model (``llmsim.engines``) and use ``stage_s`` only."""

    total_s: float
    stage_s: tuple[float, ...]
    compute_s: float
    memory_s: float
    comm_s: float
    launch_s: float
    overhead_s: float
    flops: float
    hbm_bytes: float


@dataclass(frozen=True, slots=True)
class OpCost:
    """One row of the per-operator breakdown: ``count`` executions per step on the slowest GPU's path."""

    name: str
    op_class: str
    where: str  # "layer", "first_stage", "last_stage", "pipeline"
    count: int
    flops: float
    hbm_bytes: float
    time_s: float
    launch_s: float
    bound: str
    source: str


def stage_layer_counts(num_layers: int, pp: int) -> tuple[int, ...]:
    """Layers per pipeline stage, as even as possible; earlier stages take the remainder."""
    base, extra = divmod(num_layers, pp)
    return tuple(base + (1 if i < extra else 0) for i in range(pp))


def check_layout(model: ModelSpec, layout: ParallelLayout, precision: Precision, hardware: HardwareSpec) -> None:
    """Raise InfeasibleError for splits a real engine refuses (vLLM's checks on heads, FFN and layers)."""
    tp, name = layout.tp, model.name
    if model.num_heads % tp:
        raise InfeasibleError(f"tp={tp} does not divide the {model.num_heads} attention heads of {name}")
    if model.num_kv_heads % tp and tp % model.num_kv_heads:
        raise InfeasibleError(f"tp={tp} neither divides nor is a multiple of the {model.num_kv_heads} KV heads "
                              f"of {name}")
    ffn = model.expert_ffn_size if model.is_moe else model.ffn_size
    if ffn % layout.expert_tp and (layout.ep == 1 or model.is_moe):
        raise InfeasibleError(f"tp={tp} does not divide the FFN size {ffn} of {name}"
                              + (f" (experts sharded {layout.expert_tp} ways with ep={layout.ep})"
                                 if layout.ep > 1 else ""))
    if model.is_moe and model.num_moe_layers < model.num_layers and model.ffn_size % tp:
        raise InfeasibleError(f"tp={tp} does not divide the dense layers' FFN size {model.ffn_size} of {name}")
    if layout.pp > model.num_layers:
        raise InfeasibleError(f"pp={layout.pp} exceeds the {model.num_layers} layers of {name}")
    if layout.ep > 1 and not model.is_moe:
        raise InfeasibleError(f"ep={layout.ep} needs an MoE model; {name} is dense")
    if layout.ep > 1 and model.num_experts % layout.ep:
        raise InfeasibleError(f"ep={layout.ep} does not divide the {model.num_experts} experts of {name}; "
                              f"use an ep that divides {model.num_experts}")
    if layout.ep_comm == "alltoall" and layout.ep != tp:
        raise InfeasibleError(f"ep={layout.ep}: all-to-all dispatch (ep_comm: alltoall) needs ep == tp ({tp})")
    if model.is_moe and layout.moe.popularity is not None:
        layout.moe.expert_loads(model.num_experts)  # one entry per expert
    if not hardware.supports(precision.compute):
        raise InfeasibleError(f"{hardware.name} has no {precision.compute} tensor cores; precision "
                              f"{precision.name} is not available there")


LAUNCH_MODES = ("eager", "piecewise", "full")
# Kernels vLLM's piecewise CUDA graphs leave outside the captured pieces: the attention custom op, which
# writes the KV cache and runs the attention kernel (vllm/compilation splitting ops, v0.15.1).
PIECEWISE_EAGER_CLASSES = frozenset({"attn_prefill", "attn_decode"})
PIECEWISE_EAGER_OPS = frozenset({"kv_cache_write"})


def _eager(op: Operator, launch: str) -> bool:
    if launch == "eager":
        return True
    if launch == "full":
        return False
    return op.op_class in PIECEWISE_EAGER_CLASSES or op.name in PIECEWISE_EAGER_OPS


def default_timer(hardware: HardwareSpec) -> OperatorTimer:
    if hardware.calibration:
        from llmsim.cost.calibrated import CalibratedTimer  # noqa: PLC0415 (optional part of cost/)

        return CalibratedTimer(hardware)
    return RooflineTimer(hardware)


class CostModel:
    """Step-time model of one replica (``layout.tp`` x ``layout.pp`` GPUs) of ``model`` on ``hardware``."""

    def __init__(self, model: ModelSpec, hardware: HardwareSpec, layout: ParallelLayout | None = None,
                 precision: Precision | None = None, timer: OperatorTimer | None = None) -> None:
        self.model = model
        self.hardware = hardware
        self.layout = layout or ParallelLayout()
        self.precision = precision or Precision.parse("bf16")
        check_layout(model, self.layout, self.precision, hardware)
        self.timer = timer or default_timer(hardware)
        self.stage_layers = stage_layer_counts(model.num_layers, self.layout.pp)
        self._window = model.sliding_window
        self._chunk = model.attention_chunk  # chunked local attention (Llama 4) instead of a window
        self._mixed_window = (model.sliding_window is not None or self._chunk is not None) and \
            0 < model.num_window_layers < model.num_layers
        self.power = capped_power_profile(hardware)

    # --- operators ---------------------------------------------------------------------------------
    def _comm_ops(self, f: BatchFeatures) -> list[tuple[str, str, float, str]]:
        """(name, class, seconds per average layer, source) of one layer's collectives: the TP all-reduces,
        timed by the operator timer (a calibrated profile has measured all-reduce curves), or with
        ``ep_comm: alltoall`` the MoE layers' dispatch and combine (``_moe_alltoall``)."""
        tp, act, h = self.layout.tp, self.precision.act_bytes, self.model.hidden_size
        payload = f.num_tokens * h * act
        if tp <= 1 or payload <= 0:
            return []
        ar = self.timer.time(Operator("allreduce", "allreduce", 0.0, 0.0, self.precision.activations,
                                      comm_bytes=payload, comm_ranks=tp))
        ops = [("attn_allreduce", "allreduce", float(ar.comm_s), ar.source)]
        moe_share = self.model.num_moe_layers / self.model.num_layers if self.model.is_moe else 0.0
        if self.layout.ep_comm == "alltoall" and moe_share:
            ops += self._moe_alltoall(f, moe_share)
            if moe_share < 1.0:
                ops.append(("mlp_allreduce", "allreduce", (1.0 - moe_share) * float(ar.comm_s), ar.source))
        else:
            ops.append(("mlp_allreduce", "allreduce", float(ar.comm_s), ar.source))
        return [op for op in ops if op[2] > 0]

    def _moe_alltoall(self, f: BatchFeatures, share: float) -> list[tuple[str, str, float, str]]:
        m, lay = self.model, self.layout
        one = share * moe_alltoall_s(self.hardware, f.num_tokens, m.hidden_size, self.precision.act_bytes,
                                     m.num_experts, m.experts_per_token, lay.ep,
                                     lay.moe.busiest_share(m.num_experts, lay.ep))
        return [("moe_dispatch", "alltoall", one, "roofline"), ("moe_combine", "alltoall", one, "roofline")]

    def _timed(self, ops: list[Operator]) -> list[tuple[Operator, OpTime]]:
        return [(op, self.timer.time(op)) for op in ops]

    def _parts(self, f: BatchFeatures):
        layer = self._timed(layer_operators(self.model, self.layout, self.precision, f))
        first = self._timed(first_stage_operators(self.model, self.precision, f))
        last = self._timed(last_stage_operators(self.model, self.layout, self.precision, f))
        comm = self._comm_ops(f)
        tp = self.layout.tp
        logits = f.num_emit * self.model.vocab_size * 4.0  # fp32 logits gathered from vocab-parallel shards
        gather = alltoall_s(self.hardware, logits, tp) if tp > 1 and f.num_emit else 0.0
        send = p2p_s(self.hardware, f.num_tokens * self.model.hidden_size * self.precision.act_bytes,
                     tp, self.layout.pp)
        return layer, first, last, comm, gather, send

    @staticmethod
    def _kernel(timed: list[tuple[Operator, OpTime]]):
        return sum(((t.kernel_s + t.comm_s) * op.layer_share for op, t in timed), 0.0)

    @staticmethod
    def _issue(timed: list[tuple[Operator, OpTime]], launch: str) -> float:
        """CPU seconds to issue the eagerly launched kernels of ``timed``."""
        return sum((t.launch_s * op.layer_share for op, t in timed if _eager(op, launch)), 0.0)

    def _stage_parts(self, parts, launch: str) -> list[tuple]:
        """Per pipeline stage: (GPU seconds, kernel-issue seconds)."""
        layer, first, last, comm, gather, send = parts
        gpu_layer = self._kernel(layer) + sum(c[2] for c in comm)
        issue_layer = self._issue(layer, launch)
        if launch == "piecewise":  # one graph replay per piece between attention calls
            issue_layer = issue_layer + self.hardware.overheads.kernel_launch_s
        out = []
        for i, n in enumerate(self.stage_layers):
            gpu, issue = n * gpu_layer, n * issue_layer
            if i == 0:
                gpu, issue = gpu + self._kernel(first), issue + self._issue(first, launch)
            if i == len(self.stage_layers) - 1:
                gpu, issue = gpu + self._kernel(last) + gather, issue + self._issue(last, launch)
            else:
                gpu = gpu + send
            out.append((gpu, issue))
        return out

    def _stage_times(self, parts, launch: str = "eager") -> list:
        # The CPU issues kernels ahead of the GPU: a stage lasts the longer of the two.
        return [np.maximum(gpu, issue) for gpu, issue in self._stage_parts(parts, launch)]

    def overhead_s(self, num_seqs: int) -> float:
        oh = self.hardware.overheads
        return oh.step_s + oh.per_seq_s * num_seqs

    # --- public API --------------------------------------------------------------------------------
    def features(self, new_tokens, context_tokens, emits=None) -> BatchFeatures:
        if self._chunk is not None:
            f = chunked_features(new_tokens, context_tokens, emits, self._chunk)
        else:
            f = batch_features(new_tokens, context_tokens, emits, self._window)
        if self._mixed_window:  # global layers see the whole context (gpt-oss)
            return replace(f, full=batch_features(new_tokens, context_tokens, emits, None))
        return f

    def step_time(self, new_tokens, context_tokens, emits=None, launch: str = "eager") -> StepCost:
        """Time of one step; per sequence ``new_tokens[i]`` computed on top of ``context_tokens[i]`` cached.
        ``emits`` marks the sequences that sample a token (default: all); ``launch`` is how the step's kernels
        are launched (``eager``, ``piecewise`` or ``full`` CUDA-graph replay, see the module docstring)."""
        if launch not in LAUNCH_MODES:
            raise ValueError(f"launch must be one of {LAUNCH_MODES}, got {launch!r}")
        f = self.features(new_tokens, context_tokens, emits)
        if f.num_seqs == 0:
            return StepCost(0.0, (0.0,) * self.layout.pp, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
        parts = self._parts(f)
        stage_parts = self._stage_parts(parts, launch)
        stages = tuple(float(max(g, i)) for g, i in stage_parts)
        layer, first, last, comm, gather, send = parts
        kernel = {"compute": 0.0, "memory": 0.0}
        flops = hbm = 0.0
        # Totals straight from the timed operators (no per-row objects: this runs once per simulated step).
        for timed, count in ((layer, self.model.num_layers), (first, 1), (last, 1)):
            for op, t in timed:
                n = count * op.layer_share
                kernel["compute" if t.compute_s >= t.memory_s else "memory"] += n * float(t.kernel_s)
                flops += n * float(useful_flops(op))  # MFU counts the uniform MoE share, not the busiest GPU
                hbm += n * float(op.hbm_bytes)
        comm_s = self.model.num_layers * sum(c[2] for c in comm) + gather + (self.layout.pp - 1) * send
        exposed_launch = float(sum(max(0.0, i - g) for g, i in stage_parts))
        overhead = self.overhead_s(f.num_seqs)
        tp = self.layout.tp  # operators are per GPU; the tp GPUs of a stage do the same work
        cost = StepCost(
            total_s=sum(stages) + overhead,
            stage_s=stages,
            compute_s=kernel["compute"],
            memory_s=kernel["memory"],
            comm_s=comm_s,
            launch_s=exposed_launch,
            overhead_s=overhead,
            flops=tp * flops,
            hbm_bytes=tp * hbm,
        )
        return cost if self.power is None else apply_power_cap(self, cost)

    def operator_costs(self, new_tokens, context_tokens, emits=None) -> list[OpCost]:
        """Per-operator breakdown of one step (times include each row's ``count``), per GPU."""
        return self._rows(self._parts(self.features(new_tokens, context_tokens, emits)))

    def _rows(self, parts) -> list[OpCost]:
        layer, first, last, comm, gather, send = parts
        rows: list[OpCost] = []
        for where, timed, count in (("layer", layer, self.model.num_layers), ("first_stage", first, 1),
                                    ("last_stage", last, 1)):
            rows += [OpCost(op.name, op.op_class, where, round(count * op.layer_share),
                            count * op.layer_share * float(op.flops), count * op.layer_share * float(op.hbm_bytes),
                            count * op.layer_share * float(t.total_s), count * op.layer_share * t.launch_s,
                            t.bound, t.source) for op, t in timed]
        rows += [OpCost(n, c, "layer", self.model.num_layers, 0.0, 0.0, self.model.num_layers * s, 0.0,
                        "comm", src) for n, c, s, src in comm]
        if gather:
            rows.append(OpCost("logits_gather", "alltoall", "last_stage", 1, 0.0, 0.0, gather, 0.0, "comm",
                               "roofline"))
        if send:
            rows.append(OpCost("pp_send", "p2p", "pipeline", self.layout.pp - 1, 0.0, 0.0,
                               (self.layout.pp - 1) * send, 0.0, "comm", "roofline"))
        return rows

    def decode_run(self, context_tokens, num_steps: int, launch: str = "eager") -> np.ndarray:
        """Stage seconds (shape ``(num_steps, pp)``) of ``num_steps`` consecutive pure-decode steps of this batch;
        step k sees ``context_tokens + k``. Exact, vectorised over steps (only decode attention varies)."""
        ctx = np.asarray(context_tokens, dtype=np.int64)
        if self.power is not None:  # each step's own clock under the cap: step by step, as step_time times it
            ones = np.ones_like(ctx)
            return np.array([self.step_time(ones, ctx + k, launch=launch).stage_s for k in range(num_steps)],
                            dtype=np.float64).reshape(num_steps, self.layout.pp)
        ks = np.arange(num_steps, dtype=np.float64)
        if self._chunk is not None:  # the new token at position ctx + k sees (ctx + k) mod chunk + 1 keys
            kv_sum = (((ctx[None, :] + ks[:, None].astype(np.int64)) % self._chunk) + 1).sum(axis=1).astype(np.float64)
        elif self._window is None:  # sum of (ctx + 1 + k) over sequences, without a (steps x seqs) matrix
            kv_sum = float(ctx.sum() + ctx.size) + ctx.size * ks
        else:
            kv_sum = np.minimum(ctx[None, :] + 1 + ks[:, None], self._window).sum(axis=1).astype(np.float64)
        f0 = self.features(np.ones_like(ctx), ctx)
        f = BatchFeatures(f0.num_tokens, f0.num_seqs, f0.num_emit, 0, 0, 0.0, 0.0, f0.decode_seqs, kv_sum)
        if self._mixed_window:
            full = float(ctx.sum() + ctx.size) + ctx.size * ks
            f = replace(f, full=replace(f, decode_kv_tokens=full))
        stages = self._stage_times(self._parts(f), launch)
        return np.stack([np.broadcast_to(np.asarray(s, dtype=np.float64), (num_steps,)) for s in stages], axis=1)

    def decode_run_s(self, context_tokens, num_steps: int, launch: str = "eager") -> np.ndarray:
        """Total seconds of each of ``num_steps`` consecutive decode steps (stages + per-step overhead)."""
        stages = self.decode_run(context_tokens, num_steps, launch)
        return stages.sum(axis=1) + self.overhead_s(len(np.atleast_1d(context_tokens)))


def capped_power_profile(hardware: HardwareSpec):
    """The power figures of a profile whose ``power_cap_w`` is below its TDP (``llmsim.cost.energy``);
    None without a binding cap (or without a TDP to cap below)."""
    cap = hardware.power_cap_w
    if not cap or hardware.tdp_w <= 0 or cap >= hardware.tdp_w:
        return None
    from llmsim.cost.energy import power_profile  # noqa: PLC0415

    return power_profile(hardware, float(cap))


def apply_power_cap(cm: CostModel, cost: StepCost) -> StepCost:
    """``cost`` (timed at full clocks) at the SM clock the cap allows (module docstring): compute-bound
    kernel seconds ``compute_s`` become ``compute_s / r``; the stages and the total grow by the difference."""
    from llmsim.cost.energy import activity, cap_clock, dynamic_w  # noqa: PLC0415

    gpu_s = float(sum(cost.stage_s))
    if gpu_s <= 0 or cost.compute_s <= 0:
        return cost
    profile = cm.power
    a_c, a_m = activity(cost.flops, cost.hbm_bytes, gpu_s, cm.layout.tp * cm.layout.pp,
                        cm.hardware.peak_flops(cm.precision.compute), cm.hardware.hbm_bytes_per_s,
                        profile.full_power_mfu)
    dyn_c, dyn_m = dynamic_w(profile, a_c, a_m)
    share = min(1.0, cost.compute_s / gpu_s)
    r = float(cap_clock(profile, share, dyn_c, dyn_m))
    if r >= 1.0:
        return cost
    extra = cost.compute_s * (1.0 / r - 1.0)
    stages = tuple(s + extra * (s / gpu_s) for s in cost.stage_s)
    return replace(cost, total_s=cost.total_s + extra, stage_s=stages, compute_s=cost.compute_s / r)
