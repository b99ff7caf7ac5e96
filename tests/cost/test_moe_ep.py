"""Expert parallelism: all-to-all by hand, expert load (skew, popularity, capacity), memory per EP rank,
mixed dense/MoE layers, and bad EP input from the YAML and the CLI (exit 2 naming the field)."""

import json

import pytest
import yaml

from llmsim.cli import main
from llmsim.cost import CostModel
from llmsim.cost.collectives import moe_alltoall_s, ranks_per_token
from llmsim.cost.memory import stage_weight_bytes
from llmsim.errors import ConfigError, InfeasibleError
from llmsim.specs import ModelSpec, ParallelLayout, Precision, load_model
from llmsim.specs.moe import MoERouting

BF16 = Precision.parse("bf16")


def test_ranks_per_token_by_hand():
    # Mixtral: 8 experts over 8 ranks, one each: top-2 always lands on 2 distinct ranks
    assert ranks_per_token(8, 2, 8) == pytest.approx(2.0)
    # DeepSeek-V3: 256 experts, 32 per rank over 8 ranks, top-8: P(a rank is missed) = prod (224-i)/(256-i)
    miss = 1.0
    for i in range(8):
        miss *= (224 - i) / (256 - i)
    assert ranks_per_token(256, 8, 8) == pytest.approx(8 * (1 - miss))
    assert 5.0 < ranks_per_token(256, 8, 8) < 5.5


def test_alltoall_dispatch_by_hand(test_hw):
    # 4096 tokens, 512 per rank, 2 ranks each, h=6144 bf16: 512*2*6144*2 B per rank, 7/8 of it leaves the rank
    # over NVLink (400 GB/s x comm efficiency 0.5), plus 7 messages of 5 us.
    payload = 512 * 2 * 6144 * 2
    expected = 7 / 8 * payload / (400e9 * 0.5) + 7 * 5e-6
    assert moe_alltoall_s(test_hw, 4096, 6144, 2.0, 8, 2, 8) == pytest.approx(expected)
    # the busiest rank receives 1.5x its share: the collective waits for it
    assert moe_alltoall_s(test_hw, 4096, 6144, 2.0, 8, 2, 8, 1.5) == pytest.approx(
        7 / 8 * 1.5 * payload / (400e9 * 0.5) + 7 * 5e-6)


def test_alltoall_layout_replaces_the_moe_allreduce(test_hw):
    m = load_model("mixtral-8x22b")
    rows = {r.name: r for r in CostModel(m, test_hw, ParallelLayout(tp=8, ep=8, ep_comm="alltoall"))
            .operator_costs([4096], [0])}
    assert "mlp_allreduce" not in rows and "attn_allreduce" in rows
    one = moe_alltoall_s(test_hw, 4096, 6144, 2.0, 8, 2, 8)
    assert rows["moe_dispatch"].time_s == pytest.approx(56 * one)  # 56 MoE layers
    assert rows["moe_combine"].time_s == pytest.approx(56 * one)
    vllm = {r.name for r in CostModel(m, test_hw, ParallelLayout(tp=8, ep=8)).operator_costs([4096], [0])}
    assert "mlp_allreduce" in vllm and "moe_dispatch" not in vllm  # vLLM with one DP rank: all-reduce


def test_popularity_sets_the_busiest_rank():
    pop = (0.3, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1)
    r = MoERouting(popularity=pop)
    assert r.busiest_share(8, 4) == pytest.approx((0.3 + 0.1) * 4)  # rank 0 holds experts 0 and 1
    assert r.busiest_share(8, 1) == 1.0
    capped = MoERouting(popularity=pop, capacity_factor=1.25)  # each expert takes at most 1.25/8 of the pairs
    assert capped.busiest_share(8, 4) == pytest.approx((1.25 / 8 + 0.1) * 4)
    assert capped.dropped_fraction(8, 4) == pytest.approx(0.3 - 1.25 / 8)
    assert MoERouting(skew=3.0, capacity_factor=1.5).busiest_share(8, 4) == 1.5
    assert MoERouting(skew=3.0, capacity_factor=1.5).dropped_fraction(8, 4) == pytest.approx((3.0 - 1.5) / 4)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"skew": 0.5}, "moe.skew: must be a finite number >= 1"),
    ({"popularity": (0.5, 0.4)}, "moe.popularity: the fractions must sum to 1"),
    ({"popularity": (1.5, -0.5)}, "moe.popularity: expected a list of non-negative numbers"),
    ({"capacity_factor": 0.5}, "moe.capacity_factor: must be a finite number >= 1"),
])
def test_bad_routing(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        MoERouting(**kwargs)


def test_step_waits_for_the_busiest_gpu(test_hw):
    m = load_model("mixtral-8x7b")
    times = [CostModel(m, test_hw, ParallelLayout(tp=4, ep=4, moe=MoERouting(skew=s))).step_time([2048], [0]).total_s
             for s in (1.0, 1.5, 2.0)]
    assert times[0] < times[1] < times[2]
    # without EP every GPU runs every expert's shard: the skew changes nothing
    flat = [CostModel(m, test_hw, ParallelLayout(tp=4, moe=MoERouting(skew=s))).step_time([2048], [0]).total_s
            for s in (1.0, 2.0)]
    assert flat[0] == flat[1]


def test_capacity_drops_work_without_ep(test_hw):
    m = load_model("mixtral-8x7b")
    pop = (0.3, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1)
    full = CostModel(m, test_hw, ParallelLayout(moe=MoERouting(popularity=pop))).operator_costs([4096], [0])
    capped = CostModel(m, test_hw, ParallelLayout(moe=MoERouting(popularity=pop, capacity_factor=1.0)))
    rows = {r.name: r for r in capped.operator_costs([4096], [0])}
    before = {r.name: r for r in full}["moe_experts"].flops
    # capacity 1/8 per expert: expert 0 keeps 0.125 of its 0.3, so 1 - 0.175 of the pairs run
    assert rows["moe_experts"].flops == pytest.approx(before * (1 - 0.175))


def test_weights_per_ep_rank_by_hand():
    m = load_model("mixtral-8x22b")
    h, f, layers = 6144, 16384, 56
    attn = (2 * h * h + 2 * h * 1024) / 8  # q, o and k, v sharded over 8 GPUs
    norms, router = 2 * h, 8 * h
    ep = stage_weight_bytes(m, ParallelLayout(tp=8, ep=8), BF16, layers, False, False)
    assert ep == pytest.approx(layers * ((attn + 1 * 3 * h * f) * 2 + (norms + router) * 2))  # one whole expert
    tp = stage_weight_bytes(m, ParallelLayout(tp=8), BF16, layers, False, False)
    assert tp == pytest.approx(ep)  # eight 1/8 shards weigh one whole expert
    hybrid = stage_weight_bytes(m, ParallelLayout(tp=8, ep=4), BF16, layers, False, False)
    assert hybrid == pytest.approx(ep)  # two experts, each sharded two ways


def _mixed(**kw) -> ModelSpec:
    base = dict(name="mix", num_layers=4, hidden_size=1024, num_heads=8, num_kv_heads=8, head_dim=128,
                ffn_size=4096, vocab_size=1000, max_context=4096, num_experts=8, experts_per_token=2,
                expert_ffn_size=512)
    return ModelSpec(**{**base, **kw})


def test_interleaved_dense_and_moe_layers(test_hw):
    m = _mixed(moe_layer_step=2)  # layers 1 and 3 MoE (HF Llama4TextConfig.moe_layers)
    assert [m.is_moe_layer(i) for i in range(4)] == [False, True, False, True]
    d = _mixed(first_dense_layers=1)
    assert d.num_moe_layers == 3
    dense_mlp, moe_mlp = 3 * 1024 * 4096, 8 * 3 * 1024 * 512 + 8 * 1024
    assert m.linear_params() - 4 * m.attention_params_per_layer() == 2 * dense_mlp + 2 * moe_mlp
    rows = {r.name: r for r in CostModel(m, test_hw).operator_costs([512], [0])}
    assert rows["moe_experts"].count == 2 and rows["mlp_gate_up"].count == 2
    all_moe = {r.name: r for r in CostModel(_mixed(), test_hw).operator_costs([512], [0])}
    assert rows["moe_experts"].time_s == pytest.approx(all_moe["moe_experts"].time_s / 2)
    # memory: two dense and two MoE layers' weights
    w = stage_weight_bytes(m, ParallelLayout(), BF16, 4, False, False, moe_layers=2)
    attn = 4 * 1024 * 1024
    assert w == pytest.approx(4 * (attn + 2 * 1024) * 2 + 2 * dense_mlp * 2 + 2 * (moe_mlp - 8 * 1024) * 2
                              + 2 * 8 * 1024 * 2)


def test_ep_must_divide_the_experts(test_hw):
    m = _mixed(num_heads=12, num_kv_heads=12, num_experts=8)
    with pytest.raises(InfeasibleError, match=r"^ep=3 does not divide the 8 experts"):
        CostModel(m, test_hw, ParallelLayout(tp=3, ep=3))
    with pytest.raises(ConfigError, match=r"^ep: .*must divide tp=8"):
        ParallelLayout(tp=8, ep=3)
    with pytest.raises(ConfigError, match="moe.popularity: 2 entries for a model with 8 experts"):
        CostModel(m, test_hw, ParallelLayout(moe=MoERouting(popularity=(0.5, 0.5))))


EXP = {"name": "ep", "model": "mixtral-8x7b", "hardware": "h100-sxm", "layout": {"tp": 8, "ep": 8},
       "workload": {"arrival": {"kind": "poisson", "rate_per_s": 4.0}, "input_len": {"kind": "fixed", "value": 100},
                    "output_len": {"kind": "fixed", "value": 10}}, "stop": {"num_requests": 20}}


def _run(tmp_path, capsys, data):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    code = main(["run", str(path), "--out", str(tmp_path / "res"), "--no-plots"])
    return code, capsys.readouterr().err, path


@pytest.mark.parametrize(("patch", "message"), [
    ({"layout": {"tp": 8, "ep": 3}}, "layout.ep: must divide tp=8"),
    ({"layout": {"tp": 4, "ep": 4, "ep_comm": "nccl"}}, "layout.ep_comm: input should be 'allreduce' or 'alltoall'"),
    ({"moe": {"popularity": [0.5, 0.4]}}, "moe.popularity: the fractions must sum to 1"),
    ({"moe": {"popularity": [0.5, 0.5]}}, "moe.popularity: 2 entries for a model with 8 experts"),
    ({"moe": {"skew": 0.5}}, "moe.skew: must be a finite number >= 1"),
])
def test_bad_ep_yaml_is_exit_2_naming_the_field(tmp_path, capsys, patch, message):
    code, err, path = _run(tmp_path, capsys, {**EXP, **patch})
    assert code == 2 and err.startswith(f"error: {path}: {message}"), err


def test_ep_not_dividing_experts_yaml(tmp_path, capsys):
    code, err, path = _run(tmp_path, capsys, {**EXP, "model": "llama-3.1-8b", "layout": {"tp": 2, "ep": 2}})
    assert code == 2 and err.startswith(f"error: {path}: layout.ep: ep=2 needs an MoE model"), err


def test_ep_experiment_runs(tmp_path, capsys):
    code, err, _ = _run(tmp_path, capsys, {**EXP, "layout": {"tp": 8, "ep": 8, "ep_comm": "alltoall"},
                                           "moe": {"skew": 1.3}})
    assert code == 0, err


def test_cli_estimate_ep(capsys):
    args = ["estimate", "--model", "mixtral-8x22b", "--hardware", "h100-sxm", "--batch-size", "8",
            "--input-len", "256", "--output-len", "8", "--tp", "8"]
    assert main([*args, "--ep", "8", "--moe-skew", "1.5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ep"] == 8 and out["moe_busiest_share"] == 1.5
    assert main([*args, "--ep", "3"]) == 2
    assert capsys.readouterr().err.startswith("error: --ep: ")
    assert main([*args, "--ep", "8", "--ep-comm", "x"]) == 2
    assert capsys.readouterr().err.startswith("error: --ep-comm: ")


def test_mixed_step_time_is_the_layer_weighted_mean(test_hw):
    # same attention in every layer: half the layers dense, half MoE -> the mean of the two models' stages
    mixed = CostModel(_mixed(moe_layer_step=2), test_hw).step_time([300, 1], [0, 50], launch="full")
    moe = CostModel(_mixed(), test_hw).step_time([300, 1], [0, 50], launch="full")
    dense = CostModel(_mixed(num_experts=0, experts_per_token=0, expert_ffn_size=0), test_hw).step_time(
        [300, 1], [0, 50], launch="full")
    assert mixed.stage_s[0] == pytest.approx((moe.stage_s[0] + dense.stage_s[0]) / 2)
    assert mixed.flops == pytest.approx((moe.flops + dense.flops) / 2)


def test_alltoall_across_nodes_uses_the_network(test_hw):
    # 16 ranks do not fit one 8-GPU node: the network link (50 GB/s x 0.5, 10 us per message)
    miss = 1.0
    for i in range(8):
        miss *= (240 - i) / (256 - i)  # 16 experts per rank
    per_token = 16 * (1 - miss)
    payload = 4096 / 16 * per_token * 7168 * 2
    expected = 15 / 16 * payload / (50e9 * 0.5) + 15 * 10e-6
    assert moe_alltoall_s(test_hw, 4096, 7168, 2.0, 256, 8, 16) == pytest.approx(expected)
    m = load_model("deepseek-v3")
    rows = {r.name: r for r in CostModel(m, test_hw, ParallelLayout(tp=16, ep=16, ep_comm="alltoall"))
            .operator_costs([4096], [0])}
    assert rows["moe_dispatch"].time_s == pytest.approx(58 * expected)  # the 58 MoE layers only
    # the 3 dense layers keep their MLP all-reduce (the same payload as attention's, once per layer)
    assert rows["mlp_allreduce"].time_s == pytest.approx(3 * rows["attn_allreduce"].time_s / 61)
