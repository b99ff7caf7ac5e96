"""Hugging Face ``config.json`` fields of the MoE and latent-attention families: DeepSeek-V3/R1, Llama 4
(Scout and Maverick), Qwen2/3-MoE and gpt-oss, as keyword arguments of ``ModelSpec``.

Field names follow transformers' configuration classes (``DeepseekV3Config``, ``Llama4TextConfig``,
``Qwen3MoeConfig``, ``GptOssConfig``) and the checkpoints' config.json files.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from llmsim.errors import ConfigError

# MXFP4 (OCP microscaling): 4-bit E2M1 values with one 8-bit E8M0 scale per 32 = 4.25 bits per weight.
MXFP4_BYTES = (4 + 8 / 32) / 8

Get = Callable[..., Any]


def _pattern(cfg: Mapping[str, Any], key: str, default: list[int], what: str, empty_is_default: bool = False) -> None:
    """An explicit list of layers must follow the regular pattern the spec can express. With
    ``empty_is_default`` an empty list means the default pattern (transformers: ``x if x else default``)."""
    given = cfg.get(key)
    if empty_is_default and not given:
        return
    if given is not None and list(given) != default:
        raise ConfigError(f"field {key!r}: only the regular pattern {what} is supported, got {given!r}")


def qwen_moe(cfg: Mapping[str, Any], get: Get) -> dict[str, Any]:
    """Qwen2-MoE / Qwen3-MoE: layer i is sparse when (i + 1) % decoder_sparse_step == 0 and it is not in
    mlp_only_layers (transformers Qwen3MoeDecoderLayer)."""
    step = get(cfg, "decoder_sparse_step", 1)
    if cfg.get("mlp_only_layers"):
        raise ConfigError("field 'mlp_only_layers': dense layers at chosen positions are not supported; only "
                          "decoder_sparse_step")
    moe = dict(num_experts=get(cfg, "num_experts"), experts_per_token=get(cfg, "num_experts_per_tok"),
               expert_ffn_size=get(cfg, "moe_intermediate_size"), moe_layer_step=step)
    shared = cfg.get("shared_expert_intermediate_size") or 0
    if shared:
        moe.update(num_shared_experts=1, shared_expert_ffn_size=shared)
    return moe


def llama4(cfg: Mapping[str, Any], get: Get) -> dict[str, Any]:
    """Llama 4 (Llama4TextConfig): routed experts of intermediate_size plus one shared expert of the same
    width in every MoE layer; with interleave_moe_layer_step n, layers n-1, 2n-1, ... are MoE
    (``moe_layers`` default) and the others dense MLPs of intermediate_size_mlp (Maverick: n = 2). Three
    layers in four attend within aligned chunks of attention_chunk_size tokens, the fourth (NoPE,
    ``no_rope_layers`` 0) to everything (transformers Llama4TextAttention). An empty ``no_rope_layers``
    (as in the published Scout FP8 checkpoints) means the default pattern: Llama4TextConfig sets
    ``no_rope_layers if no_rope_layers else [every no_rope_layer_interval-th layer NoPE]``."""
    step = get(cfg, "interleave_moe_layer_step", 1)
    layers = get(cfg, "num_hidden_layers")
    _pattern(cfg, "moe_layers", list(range(step - 1, layers, step)), "every interleave_moe_layer_step-th layer")
    ffn = get(cfg, "intermediate_size")
    chunk = get(cfg, "attention_chunk_size", 0) if cfg.get("attention_chunk_size") else None
    every = get(cfg, "no_rope_layer_interval", 4)
    if chunk:  # local attention in chunks on the RoPE layers; every n-th layer is a global NoPE layer
        _pattern(cfg, "no_rope_layers", [int((i + 1) % every != 0) for i in range(layers)],
                 "every no_rope_layer_interval-th layer NoPE", empty_is_default=True)
    return dict(num_experts=get(cfg, "num_local_experts"), experts_per_token=get(cfg, "num_experts_per_tok"),
                expert_ffn_size=ffn, num_shared_experts=1, shared_expert_ffn_size=ffn, moe_layer_step=step,
                ffn_size=get(cfg, "intermediate_size_mlp", ffn), attention_chunk=chunk,
                global_attention_every=every if chunk else 0)


def deepseek_v3(cfg: Mapping[str, Any], get: Get) -> dict[str, Any]:
    """DeepSeek-V3 / R1 (DeepseekV3Config): multi-head latent attention, n_routed_experts routed experts
    (top num_experts_per_tok) and n_shared_experts shared ones of moe_intermediate_size in every layer from
    first_k_dense_replace on; the first layers are dense MLPs of intermediate_size; num_nextn_predict_layers
    multi-token-prediction modules."""
    if get(cfg, "moe_layer_freq", 1) != 1:
        raise ConfigError("field 'moe_layer_freq': only 1 (every layer after first_k_dense_replace) is supported")
    nope, rope = get(cfg, "qk_nope_head_dim"), get(cfg, "qk_rope_head_dim")
    shared = get(cfg, "n_shared_experts", 0) if cfg.get("n_shared_experts") else 0
    expert = get(cfg, "moe_intermediate_size")
    return dict(num_experts=get(cfg, "n_routed_experts"), experts_per_token=get(cfg, "num_experts_per_tok"),
                expert_ffn_size=expert, num_shared_experts=shared, shared_expert_ffn_size=expert if shared else 0,
                first_dense_layers=cfg.get("first_k_dense_replace") or 0,
                router_bias=cfg.get("topk_method") == "noaux_tc",  # e_score_correction_bias
                kv_lora_rank=get(cfg, "kv_lora_rank"), q_lora_rank=cfg.get("q_lora_rank") or 0,
                qk_rope_head_dim=rope, v_head_dim=get(cfg, "v_head_dim"), head_dim=nope + rope,
                mtp_layers=cfg.get("num_nextn_predict_layers") or 0)


def gpt_oss(cfg: Mapping[str, Any], get: Get) -> dict[str, Any]:
    """gpt-oss (GptOssConfig): num_local_experts experts of intermediate_size (top num_experts_per_tok) with
    biases, a router with a bias, attention with biases and one learned sink per head, and layer_types
    alternating sliding_attention (window sliding_window) and full_attention. MXFP4 experts
    (quantization_config.quant_method) are stored at 4.25 bits per weight."""
    types = cfg.get("layer_types")
    layers = get(cfg, "num_hidden_layers")
    alternating = [("sliding_attention" if i % 2 == 0 else "full_attention") for i in range(layers)]
    if types is not None and list(types) != alternating:
        raise ConfigError("field 'layer_types': only sliding and full attention alternating, sliding first, "
                          "is supported")
    quant = cfg.get("quantization_config") or {}
    method = quant.get("quant_method") if isinstance(quant, Mapping) else None
    if method not in (None, "mxfp4"):
        raise ConfigError(f"field 'quantization_config.quant_method': {method!r} is not supported; mxfp4 or none")
    return dict(num_experts=get(cfg, "num_local_experts"), experts_per_token=get(cfg, "num_experts_per_tok"),
                expert_ffn_size=get(cfg, "intermediate_size"), expert_bias=True, router_bias=True,
                o_bias=bool(cfg.get("attention_bias", True)), attention_sinks=True, global_attention_every=2,
                expert_weight_bytes=MXFP4_BYTES if method == "mxfp4" else 0.0)


FAMILIES: dict[str, Callable[[Mapping[str, Any], Get], dict[str, Any]]] = {
    "qwen2_moe": qwen_moe, "qwen3_moe": qwen_moe, "llama4_text": llama4, "deepseek_v3": deepseek_v3,
    "gpt_oss": gpt_oss,
}
