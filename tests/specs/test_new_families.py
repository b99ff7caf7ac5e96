"""DeepSeek-V3/R1, Llama 4 Scout/Maverick, Qwen3-MoE, gpt-oss: parameter counts and KV bytes per token against
published figures and hand calculations; their cost and memory on the roofline; unsupported architectures."""

import json
import math

import pytest

from llmsim.cli import main
from llmsim.cost import CostModel
from llmsim.cost.memory import plan_memory
from llmsim.errors import ConfigError
from llmsim.specs import ParallelLayout, Precision, load_hf_config, load_model

# Published totals (billions). DeepSeek-V3 technical report (arXiv 2412.19437, Sec. 1/4.2): 671B total, 37B
# activated; HF model card: 685B with the 14B multi-token-prediction module. Meta Llama 4 model cards:
# Scout 109B total / 17B active, Maverick 400B / 17B, both counting the vision encoder. Qwen3 technical report
# (arXiv 2505.09388, Table 2) and model cards: 235B / 22B activated, 30.5B / 3.3B. OpenAI gpt-oss model card
# (arXiv 2508.10925, Table 1): 116.83B total / 5.13B active, 20.91B / 3.61B; its active count leaves out the
# embedding (it counts the unembedding).
TOTAL_B = {"deepseek-v3": 671.0, "deepseek-r1": 671.0, "qwen3-235b-a22b": 235.0, "qwen3-30b-a3b": 30.5,
           "gpt-oss-120b": 116.83, "gpt-oss-20b": 20.91}
LLAMA4_TOTAL_B = {"llama-4-scout": 109.0, "llama-4-maverick": 400.0}


@pytest.mark.parametrize("name", sorted(TOTAL_B))
def test_total_params_within_one_percent(name):
    assert load_model(name).param_count() / 1e9 == pytest.approx(TOTAL_B[name], rel=0.01)


def _vision_params(cfg: dict) -> float:
    """Llama 4's vision encoder from its vision_config: per layer 4 h^2 attention and 2 h f MLP."""
    v = cfg["vision_config"]
    h, f = v["hidden_size"], v["intermediate_size"]
    return v["num_hidden_layers"] * (4 * h * h + 2 * h * f)


@pytest.mark.parametrize("name", sorted(LLAMA4_TOTAL_B))
def test_llama4_total_with_its_vision_encoder_within_one_percent(name):
    from llmsim.specs.catalog import MODELS_DIR

    cfg = json.loads((MODELS_DIR / f"{name}.json").read_text())
    total = load_model(name).param_count() + _vision_params(cfg)
    assert total / 1e9 == pytest.approx(LLAMA4_TOTAL_B[name], rel=0.01)
    assert load_model(name).param_count(active=True) / 1e9 == pytest.approx(17.0, rel=0.015)


@pytest.mark.parametrize(("name", "active_b"), [("qwen3-235b-a22b", 22.0), ("qwen3-30b-a3b", 3.3)])
def test_qwen3_moe_active(name, active_b):
    assert load_model(name).param_count(active=True) / 1e9 == pytest.approx(active_b, rel=0.02)  # published 1 digit


@pytest.mark.parametrize(("name", "active_b"), [("gpt-oss-120b", 5.13), ("gpt-oss-20b", 3.61)])
def test_gpt_oss_active_without_the_embedding(name, active_b):
    m = load_model(name)
    assert (m.param_count(active=True) - m.embedding_params()) / 1e9 == pytest.approx(active_b, rel=0.01)


def test_deepseek_v3_by_hand():
    m = load_model("deepseek-v3")
    h = 7168
    attn = h * 1536 + 1536 + 1536 * 128 * 192 + h * 576 + 512 + 512 * 128 * 256 + 128 * 128 * h
    assert m.attention_params_per_layer() == attn == 187_107_328
    dense, expert = 3 * h * 18432, 3 * h * 2048
    moe = 256 * expert + expert + 256 * h + 256  # routed, shared, router and its correction bias
    total = 2 * 129280 * h + 61 * (attn + 2 * h) + 3 * dense + 58 * moe + h
    assert m.param_count() == total
    assert m.first_dense_layers == 3 and m.num_moe_layers == 58 and m.mtp_layers == 1
    assert (m.param_count() + m.mtp_params()) / 1e9 == pytest.approx(685, rel=0.01)  # HF: 671B + 14B MTP
    assert m.param_count(active=True) / 1e9 == pytest.approx(37, rel=0.02)  # 37.55 with the embedding


def test_kv_bytes_per_token_by_hand():
    # MLA (DeepSeek-V2 paper, Table 1): (d_c + d_h^R) x layers elements = (512 + 64) x 61 x 2 B
    assert load_model("deepseek-v3").kv_bytes_per_token(2.0) == 576 * 61 * 2 == 70_272
    assert load_model("llama-4-scout").kv_bytes_per_token(2.0) == 2 * 48 * 8 * 128 * 2
    assert load_model("qwen3-235b-a22b").kv_bytes_per_token(2.0) == 2 * 94 * 4 * 128 * 2
    assert load_model("gpt-oss-120b").kv_bytes_per_token(2.0) == 2 * 36 * 8 * 64 * 2


def test_mla_cache_is_replicated_over_tp():
    m = load_model("deepseek-v3")
    assert m.kv_elements_per_token_per_layer(8) == m.kv_elements_per_token_per_layer(1) == 576
    assert load_model("llama-4-scout").kv_elements_per_token_per_layer(8) == 2 * 128  # one KV head per GPU


def test_mla_decode_attention_by_hand(test_hw):
    m = load_model("deepseek-v3")
    ops = {r.name: r for r in CostModel(m, test_hw, ParallelLayout(tp=8, ep=8)).operator_costs([1] * 4, [999] * 4)}
    # 16 heads per GPU, 4000 latent tokens read at 576 x 2 B; QK over 576 and PV over 512 dims per head
    dec = ops["attn_decode"]
    assert dec.flops == pytest.approx(61 * 2 * 16 * (576 + 512) * 4000)
    assert dec.hbm_bytes == pytest.approx(61 * (4000 * 576 * 2 + 4 * 16 * (576 + 512) * 2))
    assert ops["mla_absorb_uk"].flops == pytest.approx(61 * 2 * 4 * 16 * 512 * 128)
    assert "kv_b_proj" not in ops  # decode never decompresses the latent
    pre = {r.name: r for r in CostModel(m, test_hw, ParallelLayout(tp=8)).operator_costs([100], [0])}
    assert pre["kv_b_proj"].flops == pytest.approx(61 * 2 * 100 * 16 * 256 * 512)
    assert pre["attn_prefill"].flops == pytest.approx(61 * 2 * 16 * (192 + 128) * 100 * 101 / 2)


def test_gpt_oss_half_its_layers_are_windowed(test_hw):
    m = load_model("gpt-oss-120b")
    assert m.sliding_window == 128 and m.num_window_layers == 18
    cm = CostModel(m, test_hw)
    rows = [r for r in cm.operator_costs([1], [10_000]) if r.name == "attn_decode"]
    assert sorted(r.count for r in rows) == [18, 18]
    kv = sorted(r.hbm_bytes for r in rows)  # 128 windowed keys vs 10,001 keys per layer, 8 KV heads of 64 dims
    assert kv[0] == pytest.approx(18 * (128 * 2 * 8 * 64 * 2 + 64 * 64 * 2 * 2))
    assert kv[1] == pytest.approx(18 * (10_001 * 2 * 8 * 64 * 2 + 64 * 64 * 2 * 2))
    ctx = [10, 5000]
    run = cm.decode_run_s(ctx, 5)
    loop = [cm.step_time([1, 1], [c + k for c in ctx]).total_s for k in range(5)]
    assert run == pytest.approx(loop, rel=1e-12)


def test_gpt_oss_120b_fits_one_80gb_gpu_in_mxfp4():
    m = load_model("gpt-oss-120b")
    # experts at 4.25 bits, the rest (attention, router, embeddings) in bf16
    experts = 36 * 128 * (3 * 2880 * 2880 + 3 * 2880)
    assert m.weight_bytes(2.0) == pytest.approx(experts * 4.25 / 8 + (m.param_count() - experts) * 2)
    from llmsim.specs import load_hardware

    plan = plan_memory(m, load_hardware("h100-sxm"), ParallelLayout(), Precision.parse("bf16"))
    assert plan.weights_bytes / 1e9 == pytest.approx(m.weight_bytes(2.0) / 1e9, rel=1e-9)
    assert plan.kv_capacity_tokens > 100_000


@pytest.mark.parametrize("name", ["deepseek-v3", "llama-4-maverick", "qwen3-235b-a22b", "gpt-oss-20b"])
def test_new_families_estimate(capsys, name):
    layout = ["--tp", "8", "--ep", "8"] if name != "gpt-oss-20b" else []
    prec = ["--precision", "fp8"] if name in ("deepseek-v3", "llama-4-maverick") else []
    code = main(["estimate", "--model", name, "--hardware", "h200" if name == "deepseek-v3" else "h100-sxm",
                 *layout, *prec, "--batch-size", "16", "--input-len", "512", "--output-len", "16", "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    est = json.loads(out.out)
    assert est["tpot_s"] > 0 and math.isfinite(est["ttft_s"])


def test_unsupported_architecture_lists_the_supported(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_type": "mamba", "hidden_size": 8}))
    with pytest.raises(ConfigError, match=r"field 'model_type': 'mamba' is not supported; supported: .*deepseek_v3.*"
                                          r"gpt_oss.*llama4"):
        load_hf_config(path)


@pytest.mark.parametrize(("patch", "field"), [
    ({"moe_layer_freq": 2}, "moe_layer_freq"),
    ({"kv_lora_rank": 0}, "kv_lora_rank"),
])
def test_bad_deepseek_fields(tmp_path, patch, field):
    from llmsim.specs.catalog import MODELS_DIR

    cfg = {**json.loads((MODELS_DIR / "deepseek-v3.json").read_text()), **patch}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match=f"field '{field}'"):
        load_hf_config(path)


def test_llama4_chunked_attention_by_hand():
    from llmsim.cost.operators import chunked_features

    # chunks of 4: a prompt of 6 on top of 3 cached tokens covers positions 3..8: keys 4, 1, 2, 3, 4, 1
    f = chunked_features([6, 1, 1], [3, 7, 9], None, 4)
    assert f.prefill_attn_pairs == 4 + 1 + 2 + 3 + 4 + 1
    assert f.prefill_kv_tokens == 9 - 0  # from the start of position 3's chunk (0) to position 8
    assert f.decode_kv_tokens == (7 % 4 + 1) + (9 % 4 + 1)


def test_llama4_scout_three_layers_in_four_attend_within_chunks(test_hw):
    m = load_model("llama-4-scout")
    assert m.attention_chunk == 8192 and m.num_window_layers == 36
    cm = CostModel(m, test_hw, ParallelLayout(tp=8))
    rows = sorted((r for r in cm.operator_costs([1], [20_000]) if r.name == "attn_decode"), key=lambda r: r.count)
    assert [r.count for r in rows] == [12, 36]
    # per GPU 5 query heads and one KV head of 128: chunked layers read 20,000 % 8192 + 1 = 3,617 keys, global 20,001
    assert rows[1].hbm_bytes == pytest.approx(36 * (3617 * 2 * 128 * 2 + 5 * 128 * 2 * 2))
    assert rows[0].hbm_bytes == pytest.approx(12 * (20_001 * 2 * 128 * 2 + 5 * 128 * 2 * 2))
    ctx = [100, 8190, 20_000]
    run = cm.decode_run_s(ctx, 6)
    loop = [cm.step_time([1, 1, 1], [c + k for c in ctx]).total_s for k in range(6)]
    assert run == pytest.approx(loop, rel=1e-12)
