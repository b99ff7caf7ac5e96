"""Step times with speculative decoding: a ``StepTimer`` that also prices verification steps.

A verification row is just a sequence with ``1 + positions`` new tokens on top of its cached context (the
target's forward over the last token and the drafts), all of whose positions are sampled (the LM head and
the sampler run on every one: ``emits`` counts), plus the proposer's GPU time for the step, serial with it
(vLLM v1 proposes right after sampling in the same ``execute_model``). A batch whose rows all verify the
same number of drafts is a uniform decode batch, replayed as a full CUDA graph (vLLM
``vllm/v1/cudagraph_dispatcher.py``: ``uniform_decode_query_len = 1 + num_speculative_tokens``). Plans without
verification rows are timed by the plain ``StepTimer``.
"""

from __future__ import annotations

import numpy as np

from llmsim.sched.plan import Plan
from llmsim.sim.timer import StepTime, StepTimer
from llmsim.speculative.lines import UniformLines


class SpecStepTimer(StepTimer):
    """``proposer``: the deployment's bound proposer (prices drafting)."""

    def __init__(self, *args, proposer=None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.proposer = proposer
        self.lines = UniformLines(self.cm, self.max_context)
        self._estimates: dict[tuple[int, int, int], float] = {}

    def step(self, plan: Plan) -> StepTime:
        verify = getattr(plan, "verify", None)
        if not verify:
            return super().step(plan)
        target = self._verify_cost(plan)
        seqs = plan.seqs
        idx = [i for i, _, _ in verify]
        ctx = np.fromiter((seqs[i].num_computed for i in idx), dtype=np.int64, count=len(idx))
        last = np.fromiter((plan.spec.last_new.get(seqs[i].key, 1) for i in idx), dtype=np.int64, count=len(idx))
        draft_s = self.proposer.cost_s(ctx, last, max(d for _, d, _ in verify))
        plan.spec.proposer_s += draft_s
        stages = (*target.stage_s[:-1], target.stage_s[-1] + draft_s)
        return StepTime(target.gpu_s + draft_s, stages, target.flops, target.hbm_bytes)

    def _verify_cost(self, plan: Plan) -> StepTime:
        verify = plan.verify
        n = plan.tokens[verify[0][0]]
        if len(verify) == len(plan.seqs) and all(plan.tokens[i] == n for i, _, _ in verify):
            b = len(verify)  # uniform: every row verifies the same number of drafts
            launch = self.runtime.launch_mode(b * n + plan.num_pad, True)
            ctx_sum = float(sum(s.num_computed for s in plan.seqs))
            out = self.lines.cost(n, b, ctx_sum, n, launch, plan.num_pad)
            stages = out[:-2]
            return StepTime(float(sum(stages)), stages, out[-2], out[-1])
        self.num_calls += 1
        new, ctx, emits = [], [], []
        verifying = {i for i, _, _ in plan.verify}
        for i, (seq, n) in enumerate(zip(plan.seqs, plan.tokens, strict=True)):
            c = seq.num_computed
            new.append(n)
            ctx.append(c)
            emits.append(n if i in verifying else int(c + n == seq.num_tokens))  # verified: every position sampled
        new += [1] * plan.num_pad
        ctx += [0] * plan.num_pad
        emits += [0] * plan.num_pad
        verify_n = {plan.tokens[i] for i, _, _ in plan.verify}
        uniform = len(plan.verify) == len(plan.seqs) and len(verify_n) == 1
        launch = self.runtime.launch_mode(sum(new), uniform)
        c = self.cm.step_time(new, ctx, np.asarray(emits, dtype=np.int64), launch=launch)
        stages = tuple(float(s) for s in c.stage_s)
        return StepTime(float(sum(stages)), stages, float(c.flops), float(c.hbm_bytes))

    def estimate_s(self, batch: int, k: int, ctx: float) -> float:
        """Predicted GPU seconds of a step of ``batch`` decoding sequences of context ``ctx`` verifying ``k``
        drafts each (k = 0: a plain decode step), proposer included; for adaptive k."""
        key = (batch, k, int(ctx))
        hit = self._estimates.get(key)
        if hit is None:
            positions = self.proposer.verify_positions(k) if k else 0
            c = np.full(batch, int(ctx), dtype=np.int64)
            n = np.full(batch, 1 + positions, dtype=np.int64)
            launch = self.runtime.launch_mode(int(n.sum()), True)
            cost = self.cm.step_time(n, c, n, launch=launch)
            hit = float(sum(cost.stage_s)) + self.proposer.cost_s(c, np.ones(batch, dtype=np.int64), k)
            self._estimates[key] = hit
        return hit
