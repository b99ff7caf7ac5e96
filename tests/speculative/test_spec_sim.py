"""Speculative decoding in the simulator: exact output lengths, tokens per step against the geometric
formula, blocks conserved through rejections and preemptions, seeded draws, and the cost of a
verification step by hand."""

import numpy as np
import pytest

from llmsim.cost import CostModel
from llmsim.sched.plan import Plan
from llmsim.sched.seq import Seq
from llmsim.sim import simulate
from llmsim.sim.setup import deployment
from llmsim.sim.spec_timer import SpecStepTimer
from llmsim.specs import ParallelLayout, Precision, load_hardware, load_model
from llmsim.speculative import SpecPlan, Speculator, parse_speculative
from llmsim.workload.request import Request

SPEC_NGRAM = {"proposer": "ngram", "acceptance": 0.7, "num_speculative_tokens": 4}


def _run(reqs, speculative, **kw):
    return simulate(reqs, model="llama-3.1-8b", hardware="h100-sxm", speculative=speculative,
                    check_invariants=True, **kw)


def _reqs(n=30, rate=20.0, seed=1, max_out=90):
    rng = np.random.default_rng(seed)
    outs = rng.integers(1, max_out, n)
    return [Request(i, i / rate, int(rng.integers(20, 300)), int(outs[i])) for i in range(n)]


@pytest.mark.parametrize("proposer", [
    SPEC_NGRAM,
    {"proposer": {"kind": "eagle"}, "num_speculative_tokens": 5},
    {"proposer": {"kind": "medusa", "tree_width": 2}, "num_speculative_tokens": 3},
])
def test_every_request_emits_exactly_its_output_length(proposer):
    reqs = _reqs()
    res = _run(reqs, proposer)
    done = res.requests.sort_values("id")
    assert (done["status"] == "finished").all()
    assert done["emitted_tokens"].tolist() == [r.output_tokens for r in reqs]
    assert res.info["kv_blocks_allocated"] == res.info["kv_blocks_freed"]
    assert res.info["spec_verify_rows"] > 0


def test_tokens_per_step_follow_the_geometric_formula_on_a_long_run():
    reqs = [Request(i, 0.0, 100, 6000) for i in range(4)]
    res = _run(reqs, SPEC_NGRAM)
    # alpha 0.7, k 4: 1 + 0.7 + 0.49 + 0.343 + 0.2401 = 2.7731 tokens per verification
    assert res.info["spec_tokens_per_step"] == pytest.approx(2.7731, rel=0.01)
    assert res.info["spec_acceptance_rate"] == pytest.approx(1.7731 / 4, rel=0.01)


def test_same_seed_same_run_other_seed_other_draws():
    reqs = _reqs(n=15)
    a, b, c = (_run(reqs, SPEC_NGRAM, seed=s) for s in (7, 7, 8))
    assert a.requests["finish_s"].tolist() == b.requests["finish_s"].tolist()
    assert a.info["spec_accepted_tokens"] == b.info["spec_accepted_tokens"]
    assert a.info["spec_accepted_tokens"] != c.info["spec_accepted_tokens"]


def test_blocks_are_conserved_through_rejections_and_preemptions():
    reqs = [Request(i, 0.0, 200, 150) for i in range(12)]
    res = _run(reqs, SPEC_NGRAM, kv={"num_blocks": 60})  # 960 tokens for 12 x 350: must preempt
    assert (res.requests["status"] == "finished").all()
    assert res.requests["preemptions"].sum() > 0
    assert (res.requests["emitted_tokens"] == 150).all()
    assert res.info["kv_blocks_allocated"] == res.info["kv_blocks_freed"]


def test_speculation_turns_off_above_the_batch_threshold():
    reqs = [Request(i, 0.0, 50, 40) for i in range(8)]
    off = _run(reqs, {**SPEC_NGRAM, "disable_by_batch_size": 4})
    on = _run(reqs, SPEC_NGRAM)
    assert off.info["spec_verify_rows"] < on.info["spec_verify_rows"]
    assert (off.requests["emitted_tokens"] == 40).all()


def test_adaptive_k_speculates_less_at_large_batches():
    small = _run([Request(0, 0.0, 100, 300)], {"proposer": "eagle", "adaptive": True, "num_speculative_tokens": 6})
    big = _run([Request(i, 0.0, 100, 300) for i in range(200)],
               {"proposer": "eagle", "adaptive": True, "num_speculative_tokens": 6})
    # one sequence is memory-bound: 7 positions cost about what 1 does, so a deep k pays (up to the head's
    # own cost per draft pass); 200 sequences x 7 positions are compute-bound, where each extra position costs
    # nearly a full token
    assert small.info["spec_mean_k"] > 4
    assert big.info["spec_mean_k"] < 3
    assert (big.requests["emitted_tokens"] == 300).all()


def test_verification_step_flops_by_hand():
    # Llama-3.1-8B verifying k = 3 drafts over 4 positions on 100 cached tokens, tp 1.
    model, hw = load_model("llama-3.1-8b"), load_hardware("h100-sxm")
    cm = CostModel(model, hw, ParallelLayout(), Precision.parse("bf16"))
    rows = cm.operator_costs([4], [100], np.array([4]))
    gemm = sum(r.flops for r in rows if r.op_class == "gemm")
    attn = sum(r.flops for r in rows if r.op_class.startswith("attn"))
    h, kv, ffn, vocab, layers = 4096, 1024, 14336, 128256, 32
    per_token_linear = h * h + 2 * h * kv + h * h + h * 2 * ffn + ffn * h  # q, k, v, o, gate_up, down
    lm_head = 2 * 4 * h * vocab  # every one of the 4 positions is sampled
    assert gemm == pytest.approx(layers * 2 * 4 * per_token_linear + lm_head, rel=1e-9)
    pairs = 101 + 102 + 103 + 104  # causal (query, key) pairs of the 4 new tokens over 100 cached
    assert attn == pytest.approx(layers * 4 * 32 * 128 * pairs, rel=1e-9)


def test_timer_samples_every_verified_position():
    # One sequence, 100 tokens cached, verifying k = 4 drafts: a 5-token forward whose LM head runs on all 5
    # positions. Against a 5-token prompt chunk (LM head on its last position only) the difference is 4
    # LM-head rows, 2 x 4 x hidden x vocab FLOPs (final norm and sampling add < 0.2 % to that).
    dep = deployment("llama-3.1-8b", "h100-sxm", None, None, {"kind": "vllm"}, None, None, None)
    cfg = parse_speculative(SPEC_NGRAM)
    timer = SpecStepTimer(dep.cost_model, dep.runtime, None, proposer=cfg.proposer)
    seq = Seq(Request(0, 0.0, 100, 50))
    seq.num_computed, seq.num_tokens, seq.num_emitted = 100, 105, 1  # last token + 4 drafts scheduled
    plan = Plan()
    plan.add(seq, 5)
    seq.num_tokens = 101
    verify = timer.step(SpecPlan.of(plan, [(0, 4, 4)], Speculator(cfg)))
    chunk = dep.cost_model.step_time([5], [100], [True])
    assert verify.flops - chunk.flops == pytest.approx(2 * 4 * 4096 * 128256, rel=2e-3)
    assert verify.gpu_s > sum(chunk.stage_s)


def test_uniform_lines_equal_the_exact_cost():
    # the banded interpolation must return what the cost model computes, also where the tile-quantised
    # prefill attention makes the cost a staircase (those bands fall back to exact)
    from llmsim.speculative.lines import UniformLines

    cm = CostModel(load_model("llama-3.1-8b"), load_hardware("h100-sxm"), ParallelLayout(), Precision.parse("bf16"))
    lines = UniformLines(cm)
    for batch, mean in ((1, 700), (8, 1500), (64, 3000), (64, 90_000)):
        s = batch * mean + 3
        base, extra = divmod(s, batch)
        ctx = [base + 1] * extra + [base] * (batch - extra)
        exact = cm.step_time([4] * batch, ctx, np.full(batch, 4), launch="full")
        assert lines.seconds(4, batch, s, 4, "full") == pytest.approx(sum(exact.stage_s), rel=1e-9)


def test_acceptance_is_chosen_per_workload_class():
    # class "copy" accepts every draft, the rest none: 4 tokens per verification vs 1
    reqs = [Request(i, 0.0, 50, 41, slo_class="copy" if i % 2 else "chat") for i in range(4)]
    res = _run(reqs, {"proposer": "ngram", "acceptance": {"default": 0.0, "copy": 1.0}})
    # copy rows: 10 verifications of 3 drafts (40 tokens after the first); chat rows: 39 of 1 token + the
    # last, undrafted step; so 2 x 10 rows emit 40 and 2 x 39 rows emit 39
    assert res.info["spec_verify_rows"] == 2 * 10 + 2 * 39
    assert res.info["spec_emitted_tokens"] == 2 * 40 + 2 * 39
    assert (res.requests["emitted_tokens"] == 41).all()


def test_uniform_lines_are_exact_inside_a_key_tile_and_cheap():
    from llmsim.speculative.lines import UniformLines

    cm = CostModel(load_model("llama-3.1-8b"), load_hardware("h100-sxm"), ParallelLayout(), Precision.parse("bf16"))
    lines = UniformLines(cm)
    batch = 3
    for mean in range(509, 620, 7):  # crosses the key tiles ending at 512 - 4 and 640 - 4
        s = batch * mean + 1
        base, extra = divmod(s, batch)
        ctx = [base + 1] * extra + [base] * (batch - extra)
        exact = cm.step_time([4] * batch, ctx, np.full(batch, 4), launch="full")
        assert lines.seconds(4, batch, s, 4, "full") == pytest.approx(sum(exact.stage_s), rel=1e-9)
    assert lines.num_calls <= 3 * 4  # one power-of-two band and at most three key tiles, 3 points each


def test_a_tree_cut_by_the_budget_still_verifies_what_it_scheduled():
    # budget 17, two decoding sequences, a binary tree of depth 3 (14 nodes): the first takes its last token
    # + 14 nodes, the second 2 tokens (1 node, too few for a full level): it verifies no draft but must
    # still emit its token and keep its KV books straight
    from llmsim.kv import KV_MANAGERS
    from llmsim.sched import SCHEDULERS
    from llmsim.speculative import speculative_scheduler

    sched = SCHEDULERS.build({"kind": "vllm", "max_num_batched_tokens": 17, "cuda_graph": False})
    sched.bind(KV_MANAGERS.build({"kind": "paged"}, num_blocks=64))
    seqs = [Seq(Request(i, 0.0, 8, 25), key=i + 1) for i in range(2)]
    for seq in seqs:
        sched.add(seq)
    sched.commit(sched.schedule())  # both prompts in one step: each emits its first token
    cfg = parse_speculative({"proposer": {"kind": "medusa", "tree_width": 2}, "acceptance": 1.0})
    speculative_scheduler(sched, Speculator(cfg, np.random.default_rng(0)))
    plan = sched.schedule()
    assert plan.tokens == [15, 2] and [d for _, d, _ in plan.verify] == [3, 0]
    sched.commit(plan)
    assert [s.num_emitted for s in seqs] == [1 + 4, 1 + 1]  # all 3 levels accepted: 4 tokens; the cut one: 1
    assert all(s.num_computed == s.num_tokens - 1 for s in seqs)
    sched.check()


def test_sarathi_with_speculation_never_collapses_prompt_chunks(monkeypatch):
    """Each step chooses its drafts (``SpeculativeMixin.schedule``), so prompt-chunk steps are never collapsed
    into a run (``steady_chunks``); the run equals stepping one step at a time."""
    from llmsim.sim import replica as replica_module

    runs = []
    monkeypatch.setattr(replica_module.Replica, "_chunk_run", lambda self, eng, plan, chunks: runs.append(chunks))
    rng = np.random.default_rng(3)
    reqs = [Request(i, i / 4.0, int(rng.integers(600, 2500)), int(rng.integers(20, 120))) for i in range(20)]
    kw = dict(scheduler={"kind": "sarathi", "chunk_size": 256}, seed=5)
    step, run = (_run(reqs, SPEC_NGRAM, max_run_steps=m, **kw) for m in (1, 256))
    assert not runs
    assert run.info["spec_verify_rows"] == step.info["spec_verify_rows"] > 0
    assert run.requests["finish_s"].to_numpy() == pytest.approx(step.requests["finish_s"].to_numpy(), rel=1e-9)
