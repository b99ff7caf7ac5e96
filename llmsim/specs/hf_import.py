"""Read a Hugging Face ``config.json`` (Llama / Llama 4 / Mistral / Mixtral / Qwen2 / Qwen3 (MoE) / DeepSeek-V3 /
gpt-oss / OPT families) into a ModelSpec; the MoE and latent-attention families' fields are in
``llmsim.specs.hf_families``.

Field names follow transformers' configuration classes (``LlamaConfig``, ``MixtralConfig``, ``OPTConfig``, ...).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from llmsim.errors import ConfigError
from llmsim.specs.hf_families import FAMILIES
from llmsim.specs.model import ModelSpec

ROTARY_FAMILIES = ("llama", "mistral", "mixtral", "qwen2", "qwen3", "qwen2_moe", "qwen3_moe", "llama4_text",
                   "deepseek_v3", "gpt_oss")
SUPPORTED = (*ROTARY_FAMILIES, "llama4", "opt")
MAX_CONFIG_BYTES = 16 << 20


def load_hf_config(path: str | Path, name: str | None = None) -> ModelSpec:
    """Load ``path`` (a config.json); errors name the file and the field."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_CONFIG_BYTES + 1)
        if len(raw) > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES >> 20} MiB; a config.json is a few kB")
        data = json.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory; expected a Hugging Face config.json") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid JSON (nested too deeply)") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object at the top level")
    try:
        return spec_from_hf(data, name or _default_name(path))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _default_name(path: Path) -> str:
    return path.stem if path.stem != "config" else path.parent.name or "model"


def _get(cfg: Mapping[str, Any], key: str, default: Any = ..., kind: type = int) -> Any:
    if key not in cfg or cfg[key] is None:
        if default is ...:
            raise ConfigError(f"missing field {key!r}")
        return default
    value = cfg[key]
    if kind is int and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
        raise ConfigError(f"field {key!r}: expected a positive integer, got {value!r}")
    if kind is bool and not isinstance(value, bool):
        raise ConfigError(f"field {key!r}: expected true or false, got {value!r}")
    return value


def _check_divides(heads: int, hidden: int) -> None:
    if hidden % heads:
        raise ConfigError(f"field 'num_attention_heads': {heads} does not divide hidden_size ({hidden}), so the "
                          "head size is not a whole number; fix it or give head_dim")


def spec_from_hf(cfg: Mapping[str, Any], name: str) -> ModelSpec:
    family = cfg.get("model_type")
    if family not in SUPPORTED:
        raise ConfigError(f"field 'model_type': {family!r} is not supported; supported: {', '.join(SUPPORTED)}")
    if family == "opt":
        return _opt_spec(cfg, name)
    if family == "llama4":  # the multimodal wrapper: the language model is in text_config
        text = cfg.get("text_config")
        if not isinstance(text, Mapping):
            raise ConfigError("field 'text_config': expected the language model's configuration (an object)")
        cfg, family = {**text, "model_type": "llama4_text"}, "llama4_text"
    hidden = _get(cfg, "hidden_size")
    heads = _get(cfg, "num_attention_heads")
    if "head_dim" not in cfg or cfg["head_dim"] is None:
        _check_divides(heads, hidden)
    head_dim = _get(cfg, "head_dim", hidden // heads)
    kv_heads = _get(cfg, "num_key_value_heads", heads)
    if heads % kv_heads:
        raise ConfigError(f"field 'num_key_value_heads': {kv_heads} does not divide num_attention_heads ({heads}); "
                          "each KV head serves a whole group of query heads")
    act = cfg.get("hidden_act", "silu")
    window = cfg.get("sliding_window")
    if family.startswith("qwen") and not cfg.get("use_sliding_window", False):
        window = None
    moe: dict[str, Any] = {}
    max_context = _get(cfg, "max_position_embeddings")
    ffn = _get(cfg, "intermediate_size")
    if family == "mixtral":
        moe = dict(num_experts=_get(cfg, "num_local_experts"), experts_per_token=_get(cfg, "num_experts_per_tok"),
                   expert_ffn_size=ffn)
    elif family in FAMILIES:
        moe = FAMILIES[family](cfg, _get)
    ffn = moe.pop("ffn_size", ffn)
    head_dim = moe.pop("head_dim", head_dim)
    return ModelSpec(
        name=name,
        family=family,
        num_layers=_get(cfg, "num_hidden_layers"),
        hidden_size=hidden,
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        ffn_size=ffn,
        vocab_size=_get(cfg, "vocab_size"),
        max_context=max_context,
        gated_mlp=act in ("silu", "swiglu", "gelu_pytorch_tanh", "gelu"),
        tied_embeddings=_get(cfg, "tie_word_embeddings", False, bool),
        # a window as long as the context (or longer) is no window at all
        sliding_window=window if isinstance(window, int) and 0 < window < max_context else None,
        qkv_bias=family in ("qwen2", "qwen2_moe") or bool(cfg.get("attention_bias", False)),
        qk_norm=family in ("qwen3", "qwen3_moe") or bool(cfg.get("use_qk_norm", False)),
        **moe,
    )


def _opt_spec(cfg: Mapping[str, Any], name: str) -> ModelSpec:
    hidden = _get(cfg, "hidden_size")
    if cfg.get("word_embed_proj_dim", hidden) != hidden:
        raise ConfigError("field 'word_embed_proj_dim': projected embeddings (OPT-350m) are not supported")
    max_pos = _get(cfg, "max_position_embeddings")
    heads = _get(cfg, "num_attention_heads")
    _check_divides(heads, hidden)
    return ModelSpec(
        name=name,
        family="opt",
        num_layers=_get(cfg, "num_hidden_layers"),
        hidden_size=hidden,
        num_heads=heads,
        num_kv_heads=heads,
        head_dim=hidden // heads,
        ffn_size=_get(cfg, "ffn_dim"),
        vocab_size=_get(cfg, "vocab_size"),
        max_context=max_pos,
        gated_mlp=False,
        tied_embeddings=_get(cfg, "tie_word_embeddings", True, bool),
        norm="layernorm",
        linear_bias=_get(cfg, "enable_bias", True, bool),
        learned_positions=max_pos + 2,  # OPTLearnedPositionalEmbedding offsets positions by 2
    )
