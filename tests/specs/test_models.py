"""Model specs: parameter counts against published figures, KV bytes by hand, HF config import."""

import json

import pytest

from llmsim.errors import ConfigError, UnknownNameError
from llmsim.specs import load_hf_config, load_model, model_names

# Published parameter counts (model cards / papers), in billions.
PUBLISHED_B = {
    "llama-2-7b": 6.74, "llama-2-13b": 13.02, "llama-2-70b": 68.98, "codellama-34b": 33.74,
    "llama-3.1-8b": 8.03, "llama-3.1-70b": 70.6, "llama-3.1-405b": 405.85, "mistral-7b": 7.24,
    "mixtral-8x7b": 46.7, "mixtral-8x22b": 140.6, "qwen2.5-7b": 7.61, "qwen2.5-72b": 72.7,
    "qwen3-14b": 14.8, "opt-13b": 12.85, "llama-3.2-1b": 1.23,
}


def test_all_required_models_ship():
    assert set(PUBLISHED_B) <= set(model_names())


@pytest.mark.parametrize("name", sorted(PUBLISHED_B))
def test_param_count_within_one_percent_of_published(name):
    params = load_model(name).param_count()
    assert params / 1e9 == pytest.approx(PUBLISHED_B[name], rel=0.01)


def test_mixtral_active_params():
    m = load_model("mixtral-8x7b")
    assert m.param_count(active=True) / 1e9 == pytest.approx(12.9, rel=0.01)
    assert m.param_count() / 1e9 == pytest.approx(46.7, rel=0.01)


def test_llama2_7b_by_hand():
    # embed + lm_head: 2 * 32000 * 4096; per layer: 4 * 4096^2 attention + 3 * 4096 * 11008 MLP + 2 * 4096 norms
    per_layer = 4 * 4096**2 + 3 * 4096 * 11008 + 2 * 4096
    expected = 2 * 32000 * 4096 + 32 * per_layer + 4096
    assert load_model("llama-2-7b").param_count() == expected


@pytest.mark.parametrize(("name", "kib"), [("llama-2-7b", 512), ("llama-3.1-8b", 128), ("llama-2-70b", 320)])
def test_kv_bytes_per_token_fp16(name, kib):
    assert load_model(name).kv_bytes_per_token(2.0) == kib * 1024


def test_kv_bytes_scale_with_dtype():
    m = load_model("llama-3.1-8b")
    assert m.kv_bytes_per_token(1.0) == 64 * 1024


def test_attention_kinds():
    assert load_model("llama-2-7b").attention_kind == "MHA"
    assert load_model("llama-3.1-8b").attention_kind == "GQA"


def test_shipped_details():
    assert load_model("mistral-7b").sliding_window == 4096
    assert load_model("qwen2.5-7b").qkv_bias and load_model("qwen2.5-7b").sliding_window is None
    assert load_model("qwen3-14b").qk_norm and load_model("qwen3-14b").head_dim == 128
    opt = load_model("opt-13b")
    assert opt.norm == "layernorm" and not opt.gated_mlp and opt.tied_embeddings


def _write(tmp_path, cfg):
    p = tmp_path / "config.json"
    p.write_text(json.dumps(cfg))
    return p


def test_import_qwen3_moe(tmp_path):
    cfg = {"model_type": "qwen3_moe", "num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4,
           "num_key_value_heads": 2, "head_dim": 16, "intermediate_size": 128, "moe_intermediate_size": 32,
           "num_experts": 8, "num_experts_per_tok": 2, "vocab_size": 100, "max_position_embeddings": 512}
    m = load_hf_config(_write(tmp_path, cfg))
    assert m.is_moe and m.num_experts == 8 and m.expert_ffn_size == 32 and m.qk_norm
    # router 64*8 + 8 experts * 3*64*32
    assert m.mlp_params_per_layer() == 64 * 8 + 8 * 3 * 64 * 32


def test_import_llama4_scout_text_config(tmp_path):
    text = {"model_type": "llama4_text", "num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4,
            "num_key_value_heads": 2, "head_dim": 16, "intermediate_size": 32, "intermediate_size_mlp": 128,
            "num_local_experts": 16, "num_experts_per_tok": 1, "interleave_moe_layer_step": 1,
            "use_qk_norm": True, "vocab_size": 100, "max_position_embeddings": 512}
    m = load_hf_config(_write(tmp_path, {"model_type": "llama4", "text_config": text}))
    assert m.is_moe and m.num_experts == 16 and m.experts_per_token == 1 and m.qk_norm
    assert m.num_shared_experts == 1 and m.shared_expert_ffn_size == 32 == m.expert_ffn_size
    # router 64*16 + 16 routed experts + 1 shared, each 3*64*32
    assert m.mlp_params_per_layer() == 64 * 16 + 17 * 3 * 64 * 32
    mav = load_hf_config(_write(tmp_path, {"model_type": "llama4", "text_config": {**text, "interleave_moe_layer_step": 2}}))
    assert mav.num_moe_layers == 1 and mav.ffn_size == 128  # layer 1 MoE, layer 0 a dense MLP of intermediate_size_mlp
    with pytest.raises(ConfigError, match="moe_layers"):
        load_hf_config(_write(tmp_path, {"model_type": "llama4", "text_config": {**text, "moe_layers": [0]}}))
    with pytest.raises(ConfigError, match="text_config"):
        load_hf_config(_write(tmp_path, {"model_type": "llama4"}))


def test_llama4_empty_no_rope_layers_means_the_default_pattern(tmp_path):
    """Published Scout FP8 checkpoints carry ``no_rope_layers: []``; Llama4TextConfig reads an empty list as
    the default (every 4th layer NoPE). An explicit irregular list is still refused."""
    text = {"model_type": "llama4_text", "num_hidden_layers": 8, "hidden_size": 64, "num_attention_heads": 4,
            "num_key_value_heads": 2, "head_dim": 16, "intermediate_size": 32, "num_local_experts": 4,
            "num_experts_per_tok": 1, "vocab_size": 100, "max_position_embeddings": 512,
            "attention_chunk_size": 64}
    for given in ([], None, [1, 1, 1, 0, 1, 1, 1, 0]):
        cfg = {**text, "no_rope_layers": given} if given is not None else text
        m = load_hf_config(_write(tmp_path, {"model_type": "llama4", "text_config": cfg}))
        assert m.attention_chunk == 64 and m.global_attention_every == 4
    with pytest.raises(ConfigError, match="no_rope_layers"):
        load_hf_config(_write(tmp_path, {"model_type": "llama4", "text_config": {**text, "no_rope_layers": [0] * 8}}))


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({"model_type": "gpt2"}, "model_type"),
        ({"model_type": "llama", "hidden_size": 64}, "num_attention_heads"),
        ({"model_type": "llama", "hidden_size": -1, "num_attention_heads": 2}, "hidden_size"),
    ],
)
def test_import_errors_name_the_field(tmp_path, cfg, message):
    with pytest.raises(ConfigError, match=message):
        load_hf_config(_write(tmp_path, cfg))


def test_import_bad_json_names_the_file(tmp_path):
    p = tmp_path / "config.json"
    p.write_text("{not json")
    with pytest.raises(ConfigError, match="config.json"):
        load_hf_config(p)


def test_unknown_model_lists_valid_names():
    with pytest.raises(UnknownNameError, match="llama-3.1-8b"):
        load_model("gpt-5")


LLAMA_TINY = {"model_type": "llama", "hidden_size": 4096, "num_attention_heads": 32, "num_key_value_heads": 8,
              "num_hidden_layers": 2, "intermediate_size": 11008, "vocab_size": 1000,
              "max_position_embeddings": 4096}


@pytest.mark.parametrize(("edit", "message"), [
    ({"num_attention_heads": 30}, r"field 'num_attention_heads': 30 does not divide hidden_size \(4096\)"),
    ({"num_key_value_heads": 5}, r"field 'num_key_value_heads': 5 does not divide num_attention_heads \(32\)"),
    ({"model_type": "opt", "num_attention_heads": 30, "ffn_dim": 16384},
     r"field 'num_attention_heads': 30 does not divide hidden_size"),
])
def test_import_rejects_heads_that_do_not_divide(tmp_path, edit, message):
    path = _write(tmp_path, {**LLAMA_TINY, **edit})
    with pytest.raises(ConfigError, match=rf"^{path}: {message}"):
        load_hf_config(path)


def test_explicit_head_dim_need_not_divide_hidden(tmp_path):
    m = load_hf_config(_write(tmp_path, {**LLAMA_TINY, "num_attention_heads": 40, "num_key_value_heads": 8,
                                         "head_dim": 128}))
    assert (m.num_heads, m.head_dim, m.q_size) == (40, 128, 5120)


def test_a_window_as_long_as_the_context_is_no_window(tmp_path):
    assert load_hf_config(_write(tmp_path, {**LLAMA_TINY, "sliding_window": 10**30})).sliding_window is None
    assert load_hf_config(_write(tmp_path, {**LLAMA_TINY, "sliding_window": 1024})).sliding_window == 1024
