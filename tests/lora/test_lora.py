"""Multi-LoRA: batched kernel cost and adapter bytes by hand, GPU slots (LRU) with loads counted and timed,
vLLM's max_loras admission rule, bad lora: blocks (exit 2 naming the field), and a simulated run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from llmsim.cli import main
from llmsim.cost.lora import adapter_bytes, lora_kernels, lora_step_s, slots_bytes
from llmsim.errors import ConfigError
from llmsim.kv import PagedKV
from llmsim.lora import AdapterTable, LoraRuntime, lora_from_dict
from llmsim.sched import SCHEDULERS
from llmsim.sched.plan import Plan
from llmsim.sched.seq import Seq
from llmsim.specs import ParallelLayout, Precision, load_model
from llmsim.workload.request import Request

BF16 = Precision.parse("bf16")
M = load_model("llama-3.1-8b")


def test_shrink_and_expand_by_hand(test_hw):
    spec = lora_from_dict({"adapters": 2, "rank": [8, 16], "targets": ["q_proj"]})
    shrink, expand = lora_kernels(spec, M, ParallelLayout(), BF16, {0: 100, 1: 28})
    tr = 100 * 8 + 28 * 16  # token x rank
    assert shrink.flops == 2 * tr * 4096
    assert shrink.hbm_bytes == (4096 * 8 + 4096 * 16) * 2 + 128 * 4096 * 2 + tr * 4  # A of each, x, fp32 buffer
    assert expand.flops == 2 * tr * 4096
    assert expand.hbm_bytes == (8 * 4096 + 16 * 4096) * 2 + tr * 4 + 2 * 128 * 4096 * 2
    # test_hw: 1000 TFLOP/s x 0.8, 3 TB/s x 0.75; both kernels memory-bound here
    per_layer = shrink.hbm_bytes / (3e12 * 0.75) + expand.hbm_bytes / (3e12 * 0.75)
    assert lora_step_s(spec, M, ParallelLayout(), BF16, test_hw, {0: 100, 1: 28}) == pytest.approx(32 * per_layer)


def test_tp_shards_like_the_base_layer():
    spec = lora_from_dict({"adapters": 1, "rank": 16, "targets": ["q_proj", "o_proj"]})
    k = {x.name: x for x in lora_kernels(spec, M, ParallelLayout(tp=4), BF16, {0: 1})}
    assert k["q_proj_lora_expand"].flops == 2 * 16 * 1024  # column parallel: B's outputs over 4 GPUs
    assert k["o_proj_lora_shrink"].flops == 2 * 16 * 1024  # row parallel: A's inputs over 4 GPUs
    assert k["o_proj_lora_expand"].flops == 2 * 16 * 4096


def test_adapter_and_slot_bytes_by_hand():
    spec = lora_from_dict({"adapters": 3, "rank": 16, "max_loras": 4, "max_lora_rank": 64})
    per_layer = 16 * ((4096 + 4096) + 2 * (4096 + 1024) + (4096 + 4096))  # q, k, v, o
    assert adapter_bytes(spec, M, ParallelLayout(), BF16, 0) == 32 * per_layer * 2
    assert slots_bytes(spec, M, ParallelLayout(), BF16) == 4 * 32 * per_layer * 4 * 2  # 4 slots of rank 64


def _runtime(max_loras=2, n=4):
    spec = lora_from_dict({"adapters": n, "rank": 8, "max_loras": max_loras})
    table = AdapterTable(spec, np.random.default_rng(0))
    return LoraRuntime(spec, table, kernel_s=lambda tokens: 1e-4 * len(tokens), load_s=lambda a: 1e-3 * (a + 1))


def _plan(adapters, runtime):
    plan = Plan()
    for i, a in enumerate(adapters):
        seq = Seq(Request(1000 + i * 10 + a, 0.0, 10, 2))
        runtime.table._of[seq.key] = a
        plan.add(seq, 1)
    return plan


def test_slots_load_missing_adapters_and_evict_the_least_recent_unused():
    rt = _runtime(max_loras=2)
    assert rt.step_s(_plan([0], rt)) == pytest.approx((1e-4, 1e-3))  # adapter 0 copied in
    assert rt.step_s(_plan([1, 1], rt)) == pytest.approx((1e-4, 2e-3))
    assert rt.step_s(_plan([0, 1], rt)) == pytest.approx((2e-4, 0.0))  # both resident
    assert rt.step_s(_plan([2, 0], rt)) == pytest.approx((2e-4, 3e-3))  # evicts 1 (not used this step)
    assert rt.resident == [0, 2] or rt.resident == [2, 0]
    assert rt.num_loads == 3 and rt.load_s_total == pytest.approx(6e-3)
    with pytest.raises(RuntimeError, match="max_loras"):
        rt.step_s(_plan([1, 2, 3], rt))


def test_popularity_draws_follow_zipf():
    spec = lora_from_dict({"adapters": 10, "popularity": {"kind": "zipf", "alpha": 1.0}})
    w = 1 / np.arange(1, 11)
    assert spec.popularity == pytest.approx(tuple(w / w.sum()))
    table = AdapterTable(spec, np.random.default_rng(1))
    draws = np.array([table.adapter_of(k) for k in range(20_000)])
    assert np.bincount(draws, minlength=10) / 20_000 == pytest.approx(w / w.sum(), abs=0.01)
    assert table.adapter_of(5) == draws[5]  # stable per request


def test_scheduler_skips_a_request_whose_adapter_is_one_too_many():
    sched = SCHEDULERS.build({"kind": "vllm"})
    sched.bind(PagedKV(1000, 16))
    rt = _runtime(max_loras=1)
    sched.lora = rt
    seqs = [Seq(Request(i, 0.0, 32, 4)) for i in range(3)]
    for seq, a in zip(seqs, (0, 1, 0), strict=True):
        rt.table._of[seq.key] = a
        sched.add(seq)
    plan = sched.schedule()
    assert [s.id for s in plan.seqs] == [0, 2]  # request 1 (adapter 1) skipped, request 2 admitted
    assert [s.id for s in sched.waiting] == [1]  # back at the head of the queue
    sched.lora = None
    plan = sched.schedule()
    assert 1 in [s.id for s in plan.seqs]


@pytest.mark.parametrize(("block", "message"), [
    ({"adapters": 4, "rank": 0}, "lora.rank: must be a positive integer, got 0"),
    ({"adapters": 2, "popularity": [0.5, 0.4]}, "lora.popularity: the fractions must sum to 1"),
    ({"adapters": 2, "targets": ["qkv"]}, "lora.targets: qkv is not a target"),
    ({"adapters": 2, "max_loras": 0}, "lora.max_loras: must be a positive integer"),
    ({"adapters": 2, "colour": 1}, "lora.colour: unknown key"),
])
def test_bad_lora_blocks(block, message):
    with pytest.raises(ConfigError, match=message):
        lora_from_dict(block)


EXP = {"name": "lora", "model": "llama-3.1-8b", "hardware": "a100-sxm-80gb", "scheduler": {"kind": "vllm"},
       "workload": {"arrival": {"kind": "poisson", "rate_per_s": 4.0}, "input_len": {"kind": "fixed", "value": 128},
                    "output_len": {"kind": "fixed", "value": 16}},
       "stop": {"num_requests": 150}}


def _exp(tmp_path, capsys, data):
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    out = tmp_path / "res"
    code = main(["run", str(path), "--out", str(out), "--no-plots"])
    summary = json.loads(next((out / "points").rglob("summary.json")).read_text()) if code == 0 else None
    return code, capsys.readouterr().err, path, summary


def test_bad_lora_yaml_is_exit_2(tmp_path, capsys):
    code, err, path, _ = _exp(tmp_path, capsys, {**EXP, "lora": {"adapters": 4, "rank": 0}})
    assert code == 2 and err.startswith(f"error: {path}: lora.rank: must be a positive integer"), err
    code, err, path, _ = _exp(tmp_path / "moe", capsys, {**EXP, "model": "mixtral-8x7b",
                                                        "lora": {"adapters": 2, "targets": ["gate_proj"]}})
    assert code == 2 and "lora.targets: MLP targets on the MoE model" in err, err


def test_simulated_adapter_loads_are_counted_and_slow_the_run(tmp_path, capsys):
    one = _exp(tmp_path / "one", capsys, {**EXP, "lora": {"adapters": 1, "max_loras": 2}})[3]
    many = _exp(tmp_path / "many", capsys, {**EXP, "lora": {"adapters": 200, "max_loras": 2}})[3]
    assert one["lora_loads"] == 1  # loaded once, then resident
    assert many["lora_loads"] > 50 and many["lora_load_s"] > 0
    assert many["lora_distinct_per_step"] <= 2 + 1e-9  # never more than max_loras in a step
    assert many["ttft_p50_s"] > one["ttft_p50_s"]


def test_unified_paging_takes_kv_blocks_and_gives_them_back():
    from llmsim.lora.unified import UnifiedLoraRuntime

    spec = lora_from_dict({"adapters": 3, "rank": 8, "mode": "unified"})
    table = AdapterTable(spec, np.random.default_rng(0))
    # adapters of 2.5 blocks of 1 MB: 3 blocks each
    rt = UnifiedLoraRuntime(spec, table, lambda tokens: 0.0, lambda a: 1e-3, lambda a: 2.5e6, block_bytes=1e6)
    sched = SCHEDULERS.build({"kind": "vllm"})
    kv = PagedKV(20, 16)
    sched.bind(kv)
    sched.lora = rt
    rt.bind(sched)
    seqs = [Seq(Request(i, 0.0, 32, 2)) for i in range(3)]
    for seq, a in zip(seqs, (0, 1, 2), strict=True):
        table._of[seq.key] = a
        sched.add(seq)
    plan = sched.schedule()
    assert len(plan.seqs) == 3  # no per-step adapter limit
    assert kv.num_used_blocks == 3 * 3 + 3 * 2  # three adapters of 3 blocks, three prompts of 2
    assert rt.step_s(plan) == (0.0, pytest.approx(3e-3)) and rt.num_loads == 3
    emitted, finished = sched.commit(plan)
    while sched.running:
        p = sched.schedule()
        rt.step_s(p)
        sched.commit(p)
    rt.step_s(Plan())  # nobody runs: every adapter is evicted
    assert rt.resident == [] and kv.num_used_blocks == 0 and kv.num_allocated == kv.num_freed
    kv.check()


def test_unified_experiment_batches_many_adapters(tmp_path, capsys):
    block = {"adapters": 200, "max_loras": 2}
    busy = {**EXP["workload"], "arrival": {"kind": "poisson", "rate_per_s": 40.0}}
    slots = _exp(tmp_path / "slots", capsys, {**EXP, "workload": busy, "lora": block})[3]
    unified = _exp(tmp_path / "unified", capsys, {**EXP, "workload": busy, "lora": {**block, "mode": "unified"}})[3]
    assert unified["lora_distinct_per_step"] > 2  # not bound by max_loras
    assert unified["kv_blocks_allocated"] == unified["kv_blocks_freed"]
    assert unified["ttft_p50_s"] < slots["ttft_p50_s"]


def test_prefill_and_decode_pools_agree_on_each_request_adapter(tmp_path, capsys):
    from llmsim.experiment.cluster_build import build_cluster
    from llmsim.experiment.config import parse_config
    from llmsim.sim.cluster import _adapter_tables

    cfg = parse_config({**EXP, "lora": {"adapters": 50, "max_loras": 4},
                        "cluster": {"pools": {"p": {"role": "prefill"}, "d": {"role": "decode"}}}}, "x.yaml")
    cluster, _ = build_cluster(cfg, M, "x.yaml")
    tables = _adapter_tables(cluster, 0)
    assert len(tables) == 1  # one lora: block, one table for both pools
    code, err, _, summary = _exp(tmp_path, capsys, {**EXP, "lora": {"adapters": 50, "max_loras": 4},
                                                    "cluster": {"pools": {"p": {"role": "prefill"},
                                                                          "d": {"role": "decode"}}}})
    assert code == 0, err
    assert summary["lora_loads"] > 0
