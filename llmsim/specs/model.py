"""Transformer architecture of a decoder-only LLM, and the numbers derived from it."""

from __future__ import annotations

from dataclasses import dataclass

from llmsim.errors import ConfigError


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """Architecture of a decoder-only transformer (dense or mixture-of-experts).

    Sizes are counts, not bytes. ``ffn_size`` is the dense MLP's intermediate size; for MoE layers each
    expert has ``expert_ffn_size`` (and each shared expert ``shared_expert_ffn_size``).
    """

    name: str
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    ffn_size: int
    vocab_size: int
    max_context: int
    gated_mlp: bool = True
    tied_embeddings: bool = False
    sliding_window: int | None = None
    norm: str = "rmsnorm"  # or "layernorm" (weight and bias)
    qkv_bias: bool = False
    linear_bias: bool = False  # biases on every linear layer (OPT)
    qk_norm: bool = False  # per-head RMSNorm on q and k (Qwen3)
    learned_positions: int = 0  # rows of a learned position table (OPT); 0 means rotary
    num_experts: int = 0  # 0 = dense MLP in every layer
    experts_per_token: int = 0
    num_shared_experts: int = 0
    expert_ffn_size: int = 0
    shared_expert_ffn_size: int = 0
    family: str = "llama"

    def __post_init__(self) -> None:
        for field in ("num_layers", "hidden_size", "num_heads", "num_kv_heads", "head_dim", "ffn_size",
                      "vocab_size", "max_context"):
            value = getattr(self, field)
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"model {self.name}: {field} must be a positive integer, got {value!r}")
        if self.num_heads % self.num_kv_heads:
            raise ConfigError(f"model {self.name}: num_heads ({self.num_heads}) must be a multiple of "
                              f"num_kv_heads ({self.num_kv_heads})")
        if self.norm not in ("rmsnorm", "layernorm"):
            raise ConfigError(f"model {self.name}: norm must be 'rmsnorm' or 'layernorm', got {self.norm!r}")
        if self.sliding_window is not None and self.sliding_window <= 0:
            raise ConfigError(f"model {self.name}: sliding_window must be positive or null")
        if self.num_experts:
            if not 0 < self.experts_per_token <= self.num_experts:
                raise ConfigError(f"model {self.name}: experts_per_token must be in 1..num_experts")
            if self.expert_ffn_size <= 0:
                raise ConfigError(f"model {self.name}: expert_ffn_size must be positive for an MoE model")

    # --- shapes -----------------------------------------------------------------------------------
    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def q_size(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        """Width of K (or V) for one token across all KV heads."""
        return self.num_kv_heads * self.head_dim

    @property
    def attention_kind(self) -> str:
        if self.num_kv_heads == self.num_heads:
            return "MHA"
        return "MQA" if self.num_kv_heads == 1 else "GQA"

    # --- parameter counts -------------------------------------------------------------------------
    def _mlp_params(self, ffn: int) -> int:
        mats = 3 if self.gated_mlp else 2
        bias = (ffn * (2 if self.gated_mlp else 1) + self.hidden_size) if self.linear_bias else 0
        return mats * self.hidden_size * ffn + bias

    def attention_params_per_layer(self) -> int:
        h = self.hidden_size
        params = h * self.q_size + 2 * h * self.kv_size + self.q_size * h
        if self.qkv_bias or self.linear_bias:
            params += self.q_size + 2 * self.kv_size
        if self.linear_bias:
            params += h
        if self.qk_norm:
            params += 2 * self.head_dim
        return params

    def norm_params_per_layer(self) -> int:
        return 2 * self.hidden_size * (2 if self.norm == "layernorm" else 1)

    def mlp_params_per_layer(self, active: bool = False) -> int:
        if not self.is_moe:
            return self._mlp_params(self.ffn_size)
        routed = self.experts_per_token if active else self.num_experts
        params = self.hidden_size * self.num_experts  # router
        params += routed * self._mlp_params(self.expert_ffn_size)
        if self.num_shared_experts:
            shared_ffn = self.shared_expert_ffn_size or self.expert_ffn_size
            params += self.num_shared_experts * self._mlp_params(shared_ffn)
        return params

    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size + self.learned_positions * self.hidden_size

    def lm_head_params(self) -> int:
        return 0 if self.tied_embeddings else self.vocab_size * self.hidden_size

    def layer_params(self, active: bool = False) -> int:
        return self.attention_params_per_layer() + self.norm_params_per_layer() + self.mlp_params_per_layer(active)

    def param_count(self, active: bool = False) -> int:
        """Total parameters, or those touched per token (``active``: routed experts counted top-k)."""
        final_norm = self.hidden_size * (2 if self.norm == "layernorm" else 1)
        return (self.embedding_params() + self.num_layers * self.layer_params(active) + final_norm
                + self.lm_head_params())

    # --- bytes ------------------------------------------------------------------------------------
    def weight_bytes(self, weight_dtype_bytes: float, embed_dtype_bytes: float = 2.0) -> float:
        """Weights in memory: linear layers in the weight dtype; embeddings, LM head and norms in 16 bit
        (quantisation schemes keep them unquantised)."""
        linear = self.num_layers * (self.layer_params() - self.norm_params_per_layer())
        rest = self.param_count() - linear
        return linear * weight_dtype_bytes + rest * embed_dtype_bytes

    def kv_bytes_per_token(self, kv_dtype_bytes: float = 2.0) -> float:
        """K and V of one token over all layers (no sharding)."""
        return 2.0 * self.num_layers * self.kv_size * kv_dtype_bytes
