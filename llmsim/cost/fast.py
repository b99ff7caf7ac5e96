"""Fast step cost: ``CostModel.step_time`` evaluated from tabulated operator times, equal to it bit for bit.

Every operator of a step but attention depends on one aggregate of the batch only: the GEMMs, norms,
activations, the KV-cache write, the collectives and the pipeline send on the number of tokens; the final
norm, LM head, sampling and logits gather on the number of sequences that sample. Their times (including a
calibrated profile's piecewise, shape-dependent corrections, which are functions of the same token count)
are tabulated per token count and per sampler count the first time one occurs, so a step times only its
one or two attention operators (from the batch's attention aggregates: prefill tokens, sequences, causal
(query, key) pairs and KV tokens; decode sequences and KV tokens) and what follows them on the KV tokens read
(a 2-4-bit cache's dequantisation), with the very timer the exact path uses.

The sums are then folded in exactly the order ``CostModel.step_time`` folds them (operators before
attention pre-folded per token count, the rest added one by one), so the result is the same float, not an
approximation: ``tests/cost/test_fast.py`` holds it equal on random batches of every policy, launch mode
and profile. Anything whose structure this module does not recognise falls back to the exact path.
The per-operator breakdown (``CostModel.operator_costs``) stays on the exact path.
"""

from __future__ import annotations

from llmsim.cost.collectives import alltoall_s, p2p_s
from llmsim.cost.layers import attention_kernels, first_stage_operators, last_stage_operators, layer_operators
from llmsim.cost.operators import BatchFeatures, ShardedShapes
from llmsim.cost.step import LAUNCH_MODES, CostModel, StepCost, _eager, apply_power_cap

ATTENTION_CLASSES = ("attn_prefill", "attn_decode")
KV_READ_OPS = ("kv_dequant",)  # after attention, timed on its KV tokens (a 2-4-bit cache's dequantisation)
MAX_ENTRIES = 65_536  # per table; a step's token counts are bounded by its budget, so this rarely clears


def _records(cm: CostModel, ops) -> list[tuple]:
    """Per operator: (kernel + comm s, launch s, eager when piecewise, is compute-bound, kernel s, flops, bytes)."""
    out = []
    for op in ops:
        t = cm.timer.time(op)
        out.append((t.kernel_s + t.comm_s, t.launch_s, _eager(op, "piecewise"), t.compute_s >= t.memory_s,
                    float(t.kernel_s), float(op.flops), float(op.hbm_bytes)))
    return out


def _fold(acc: list, recs, count: int, eager: str) -> None:
    """Continue the sums of ``CostModel.step_time`` over ``recs``: [gpu, issue, compute, memory, flops, bytes]."""
    gpu, issue, comp, mem, flops, hbm = acc
    for kc, launch_s, pw, is_compute, k, fl, hb in recs:
        gpu += kc
        if eager == "eager" or (pw and eager == "piecewise"):
            issue += launch_s
        if is_compute:
            comp += count * k
        else:
            mem += count * k
        flops += count * fl
        hbm += count * hb
    acc[:] = gpu, issue, comp, mem, flops, hbm


def _issues(piecewise_eager: bool, launch: str) -> bool:
    """Whether an operator's launch counts in ``_fold``'s issue sum under ``launch``."""
    return launch == "eager" or (piecewise_eager and launch == "piecewise")


def _probe(num_tokens: int, attention: bool) -> BatchFeatures:
    if attention:  # one two-token prompt chunk and one decode: both attention kernels present
        return BatchFeatures(num_tokens + 3, 2, 1, 2, 1, 3.0, 2.0, 1, 2.0)
    return BatchFeatures(num_tokens, 1, 0, 0, 0, 0.0, 0.0, 0, 0.0)


def aggregate_features(prefill, num_decode: int, decode_ctx_sum: int, num_emit: int,
                       window: int | None = None) -> BatchFeatures:
    """``batch_features`` of the batch ``StepTimer`` builds from a plan's aggregates (prompt chunks ``prefill``
    as (new, context) pairs with new > 1; ``num_decode`` one-token rows whose contexts, summing to
    ``decode_ctx_sum``, are spread as evenly as integers allow), in plain arithmetic. Every sum is of
    integers or half-integers far below 2**53, so it is exact in any order: the same floats."""
    p_tokens = p_kv = 0
    pairs = 0.0
    for new, ctx in prefill:
        p_tokens += new
        if window is None:
            pairs += new * ctx + new * (new + 1) / 2.0
            p_kv += ctx + new
            continue
        first, last = min(ctx + 1, window), min(ctx + new, window)
        ramp = min(max(window - ctx, 0), new)
        pairs += ramp * (first + min(ctx + ramp, window)) / 2.0 + (new - ramp) * last
        p_kv += min(ctx + new, window + new)
    dec = decode_ctx_sum + num_decode
    if window is not None and num_decode:
        base, extra = divmod(decode_ctx_sum, num_decode)
        dec = extra * min(base + 2, window) + (num_decode - extra) * min(base + 1, window)
    return BatchFeatures(p_tokens + num_decode, len(prefill) + num_decode, num_emit, p_tokens, len(prefill),
                         pairs, float(p_kv), num_decode, float(dec))


def _uniform_layers(cm: CostModel) -> bool:
    """Whether every decoder layer runs the same operators on the same attention features, as the tables
    here assume: not for layers mixed by kind (dense and MoE layers, ``Operator.layer_share`` < 1), global
    layers among windowed ones (gpt-oss), chunked local attention (Llama 4) or latent attention (DeepSeek's
    MLA). Those models take the exact path."""
    m = cm.model
    if m.first_dense_layers or m.moe_layer_step > 1 or m.global_attention_every or m.attention_chunk or m.kv_lora_rank:
        return False
    ops = layer_operators(m, cm.layout, cm.precision, _probe(1, True))
    return all(op.layer_share == 1.0 for op in ops)


class FastStepCost:
    """``step_time(features, launch)`` equal to ``CostModel.step_time`` of a batch with those features.
    ``exact`` is False when the operator structure is not the one tabulated here (then every call goes to
    the exact path, which needs the batch itself: ``CostModel.step_time``)."""

    def __init__(self, cm: CostModel) -> None:
        self.cm = cm
        self.num_layers = cm.model.num_layers
        self._sh = ShardedShapes.of(cm.model, cm.layout)
        self._tokens: dict[int, tuple] = {}
        self._emits: dict[int, tuple] = {}
        self._lean: dict[int, tuple] = {}
        self._lean_e: dict[int, tuple] = {}
        self._split = self._attention_slot() if _uniform_layers(cm) else None
        self.exact = self._split is not None
        self._kv_ops = self._kv_read_ops() if self.exact else 0

    def _attention_slot(self) -> int | None:
        """Index in a layer's operator list where attention goes, if the list is the token-only list with the
        attention operators inserted there (and nothing else differs)."""
        cm = self.cm
        with_attn = layer_operators(cm.model, cm.layout, cm.precision, _probe(1, True))
        plain = layer_operators(cm.model, cm.layout, cm.precision, _probe(4, False))
        idx = [i for i, op in enumerate(with_attn) if op.op_class in ATTENTION_CLASSES]
        if len(idx) != 2 or idx[1] != idx[0] + 1:
            return None
        rest = [op.name for op in with_attn if op.op_class not in ATTENTION_CLASSES]
        return idx[0] if rest == [op.name for op in plain] else None

    def _kv_read_ops(self) -> int:
        """How many operators right after attention depend on the KV tokens read (``KV_READ_OPS``): they are
        timed with the attention of each step, not tabulated on the token count."""
        cm = self.cm
        ops = layer_operators(cm.model, cm.layout, cm.precision, _probe(1, True))[self._split + 2:]
        n = 0
        while n < len(ops) and ops[n].name in KV_READ_OPS:
            n += 1
        return n

    # --- tables --------------------------------------------------------------------------------------
    def _per_tokens(self, t: int) -> tuple:
        hit = self._tokens.get(t)
        if hit is None:
            cm, split = self.cm, self._split
            f = _probe(t, False)
            recs = _records(cm, layer_operators(cm.model, cm.layout, cm.precision, f))
            pre, post = recs[:split], recs[split + self._kv_ops:]  # the KV-read operators: per step
            folds = {}
            for launch in LAUNCH_MODES:
                acc = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
                _fold(acc, pre, self.num_layers, launch)
                folds[launch] = tuple(acc)
            comm = sum(c[2] for c in cm._comm_ops(f))
            first = _records(cm, first_stage_operators(cm.model, cm.precision, f))
            send = p2p_s(cm.hardware, t * cm.model.hidden_size * cm.precision.act_bytes, cm.layout.tp, cm.layout.pp)
            hit = (folds, post, comm, first, send)
            if len(self._tokens) >= MAX_ENTRIES:
                self._tokens.clear()
            self._tokens[t] = hit
        return hit

    def _per_emits(self, e: int) -> tuple:
        hit = self._emits.get(e)
        if hit is None:
            cm = self.cm
            f = BatchFeatures(max(e, 1), max(e, 1), e, 0, 0, 0.0, 0.0, 0, 0.0)
            last = _records(cm, last_stage_operators(cm.model, cm.layout, cm.precision, f))
            tp = cm.layout.tp
            gather = alltoall_s(cm.hardware, e * cm.model.vocab_size * 4.0, tp) if tp > 1 and e else 0.0
            hit = (last, gather)
            if len(self._emits) >= MAX_ENTRIES:
                self._emits.clear()
            self._emits[e] = hit
        return hit

    def _lean_tokens(self, t: int) -> tuple:
        """``_per_tokens`` as ``stage_times`` reads it: per launch mode the pre-attention sums (GPU, issue,
        FLOPs, bytes) and the terms the operators after attention add to each (in their order), and the
        first stage's sums (it starts from zero) and terms."""
        hit = self._lean.get(t)
        if hit is None:
            folds, post, comm, first, send = self._per_tokens(t)
            n = self.num_layers
            by_launch = {}
            for launch in LAUNCH_MODES:
                g, i, _, _, fl, hb = folds[launch]
                issue = tuple(r[1] for r in post if _issues(r[2], launch))
                acc = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
                _fold(acc, first, 1, launch)
                by_launch[launch] = ((g, i, fl, hb), issue, (acc[0], acc[1]))
            hit = (by_launch, tuple(r[0] for r in post), tuple(n * r[5] for r in post),
                   tuple(n * r[6] for r in post), comm, tuple(1 * r[5] for r in first),
                   tuple(1 * r[6] for r in first), send)
            if len(self._lean) >= MAX_ENTRIES:
                self._lean.clear()
            self._lean[t] = hit
        return hit

    def _lean_emits(self, e: int) -> tuple:
        """``_per_emits`` as ``stage_times`` reads it: per launch mode the last stage's (GPU, issue) sums, and
        the FLOPs and bytes terms of its operators, and the logits gather."""
        hit = self._lean_e.get(e)
        if hit is None:
            last, gather = self._per_emits(e)
            by_launch = {}
            for launch in LAUNCH_MODES:
                acc = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
                _fold(acc, last, 1, launch)
                by_launch[launch] = (acc[0], acc[1])
            hit = (by_launch, tuple(1 * r[5] for r in last), tuple(1 * r[6] for r in last), gather)
            if len(self._lean_e) >= MAX_ENTRIES:
                self._lean_e.clear()
            self._lean_e[e] = hit
        return hit

    # --- evaluation ----------------------------------------------------------------------------------
    def stage_times(self, f: BatchFeatures, launch: str = "eager") -> tuple[tuple[float, ...], float, float]:
        """(``stage_s``, ``flops``, ``hbm_bytes``) of ``step_time(f, launch)``, the same floats, without the
        rest of its ``StepCost``: the simulator's per-step call. The sums run in ``step_time``'s order (the
        tabulated terms added with ``sum``, which on CPython < 3.12 adds floats one by one as a loop does;
        from 3.12 it compensates, which moves the last bits only)."""
        cm = self.cm
        if cm.power is not None or launch not in LAUNCH_MODES:  # the capped clock needs the whole cost
            c = self.step_time(f, launch)
            return tuple(float(s) for s in c.stage_s), float(c.flops), float(c.hbm_bytes)
        if f.num_seqs == 0:
            return (0.0,) * cm.layout.pp, 0.0, 0.0
        by_launch, post_gpu, post_flops, post_hbm, comm, first_flops, first_hbm, send = self._lean_tokens(
            f.num_tokens)
        (gpu, issue, flops, hbm), post_issue, first = by_launch[launch]
        last_by_launch, last_flops, last_hbm, gather = self._lean_emits(f.num_emit)
        n = self.num_layers
        eager, piecewise = launch == "eager", launch == "piecewise"
        timer = cm.timer
        for op in attention_kernels(cm.model, self._sh, cm.precision, f):  # the exact path's order
            t = timer.time(op)
            gpu += t.kernel_s + t.comm_s
            if eager or (piecewise and _eager(op, "piecewise")):
                issue += t.launch_s
            flops += n * float(op.flops)
            hbm += n * float(op.hbm_bytes)
        gpu = sum(post_gpu, gpu)
        issue = sum(post_issue, issue)
        flops = sum(last_flops, sum(first_flops, sum(post_flops, flops)))
        hbm = sum(last_hbm, sum(first_hbm, sum(post_hbm, hbm)))
        issue_layer = issue + cm.hardware.overheads.kernel_launch_s if piecewise else issue
        parts = self._stages(gpu + comm, issue_layer, first, last_by_launch[launch], gather, send)
        tp = cm.layout.tp
        return tuple(float(max(g, i)) for g, i in parts), tp * flops, tp * hbm

    def step_time(self, f: BatchFeatures, launch: str = "eager") -> StepCost:
        """``CostModel.step_time`` of a batch whose features are ``f`` (``CostModel.features``)."""
        cm = self.cm
        if launch not in LAUNCH_MODES:
            raise ValueError(f"launch must be one of {LAUNCH_MODES}, got {launch!r}")
        if f.num_seqs == 0:
            return StepCost(0.0, (0.0,) * cm.layout.pp, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
        folds, post, comm, first, send = self._per_tokens(f.num_tokens)
        last, gather = self._per_emits(f.num_emit)
        n_layers = self.num_layers
        attn = attention_kernels(cm.model, self._sh, cm.precision, f)  # the exact path's order
        acc = list(folds[launch])
        _fold(acc, _records(cm, attn), n_layers, launch)
        _fold(acc, post, n_layers, launch)
        gpu_layer = acc[0] + comm
        issue_layer = acc[1]
        if launch == "piecewise":
            issue_layer = issue_layer + cm.hardware.overheads.kernel_launch_s
        tail = [0.0, 0.0] + acc[2:]
        _fold(tail, first, 1, launch)
        k_first, i_first = tail[0], tail[1]
        tail[0] = tail[1] = 0.0
        _fold(tail, last, 1, launch)
        k_last, i_last = tail[0], tail[1]
        stage_parts = self._stages(gpu_layer, issue_layer, (k_first, i_first), (k_last, i_last), gather, send)
        stages = tuple(float(max(g, i)) for g, i in stage_parts)
        pp = cm.layout.pp
        overhead = cm.overhead_s(f.num_seqs)
        tp = cm.layout.tp
        cost = StepCost(
            total_s=sum(stages) + overhead,
            stage_s=stages,
            compute_s=tail[2],
            memory_s=tail[3],
            comm_s=n_layers * comm + gather + (pp - 1) * send,
            launch_s=float(sum(max(0.0, i - g) for g, i in stage_parts)),
            overhead_s=overhead,
            flops=tp * tail[4],
            hbm_bytes=tp * tail[5],
        )
        return cost if cm.power is None else apply_power_cap(cm, cost)  # the same function on the same floats

    def _stages(self, gpu_layer: float, issue_layer: float, first: tuple, last: tuple, gather: float,
                send: float) -> list[tuple]:
        """``CostModel._stage_parts`` from the folded per-layer and per-end sums."""
        out = []
        counts = self.cm.stage_layers
        for i, n in enumerate(counts):
            gpu, issue = n * gpu_layer, n * issue_layer
            if i == 0:
                gpu, issue = gpu + first[0], issue + first[1]
            if i == len(counts) - 1:
                gpu, issue = gpu + last[0] + gather, issue + last[1]
            else:
                gpu = gpu + send
            out.append((gpu, issue))
        return out
