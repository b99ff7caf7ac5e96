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
    first_dense_layers: int = 0  # leading dense layers before the MoE ones (DeepSeek first_k_dense_replace)
    moe_layer_step: int = 1  # every n-th layer is MoE, the others dense (Llama 4 interleave_moe_layer_step)
    router_bias: bool = False  # a bias on the router logits (DeepSeek-V3 e_score_correction_bias, gpt-oss)
    expert_bias: bool = False  # biases on the experts' linear layers (gpt-oss)
    o_bias: bool = False  # a bias on the attention output projection (gpt-oss)
    attention_sinks: bool = False  # one learned sink logit per head (gpt-oss; StreamingLLM's sink as a parameter)
    global_attention_every: int = 0  # with a sliding window: every n-th layer attends to everything (gpt-oss: 2)
    attention_chunk: int | None = None  # chunked local attention in the non-global layers (Llama 4: 8192)
    # Multi-head latent attention (DeepSeek-V2/V3): K and V are decompressed from a cached latent of
    # kv_lora_rank plus a shared rotary key of qk_rope_head_dim; head_dim is qk_nope + qk_rope.
    kv_lora_rank: int = 0
    q_lora_rank: int = 0
    qk_rope_head_dim: int = 0
    v_head_dim: int = 0
    expert_weight_bytes: float = 0.0  # routed experts stored in their own format (gpt-oss MXFP4); 0: the run's
    mtp_layers: int = 0  # multi-token-prediction modules (DeepSeek-V3 num_nextn_predict_layers), not in param_count
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
        if self.attention_chunk is not None and (self.attention_chunk <= 0 or self.sliding_window is not None):
            raise ConfigError(f"model {self.name}: attention_chunk must be positive, and not with a sliding_window")
        if self.num_experts:
            if not 0 < self.experts_per_token <= self.num_experts:
                raise ConfigError(f"model {self.name}: experts_per_token must be in 1..num_experts")
            if self.expert_ffn_size <= 0:
                raise ConfigError(f"model {self.name}: expert_ffn_size must be positive for an MoE model")
            if self.num_moe_layers == 0:
                raise ConfigError(f"model {self.name}: first_dense_layers and moe_layer_step leave no MoE layer")
        if self.moe_layer_step < 1 or self.first_dense_layers < 0 or self.global_attention_every < 0:
            raise ConfigError(f"model {self.name}: moe_layer_step must be >= 1, first_dense_layers and "
                              "global_attention_every >= 0")
        if self.is_mla and not 0 < self.qk_rope_head_dim < self.head_dim:
            raise ConfigError(f"model {self.name}: qk_rope_head_dim must be in 1..head_dim-1 for latent attention")

    # --- shapes -----------------------------------------------------------------------------------
    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank > 0

    def is_moe_layer(self, i: int) -> bool:
        """Layer ``i`` (0-based) runs experts: HF Llama4TextConfig.moe_layers = range(step-1, L, step);
        DeepSeek-V3 layers from first_k_dense_replace on."""
        return self.is_moe and i >= self.first_dense_layers and (i + 1) % self.moe_layer_step == 0

    @property
    def num_moe_layers(self) -> int:
        """Layers i >= first_dense_layers with (i + 1) % moe_layer_step == 0, in closed form (per step)."""
        if not self.is_moe:
            return 0
        step = self.moe_layer_step
        return max(0, self.num_layers // step - min(self.first_dense_layers, self.num_layers) // step)

    @property
    def num_window_layers(self) -> int:
        """Layers with a sliding window (all of them, unless every ``global_attention_every``-th is global)."""
        if self.sliding_window is None and self.attention_chunk is None:
            return 0
        g = self.global_attention_every
        return self.num_layers - (self.num_layers // g if g else 0)

    @property
    def value_head_dim(self) -> int:
        return self.v_head_dim or self.head_dim

    @property
    def kv_latent_size(self) -> int:
        """MLA: elements cached per token per layer (the compressed latent and the shared rotary key)."""
        return self.kv_lora_rank + self.qk_rope_head_dim

    @property
    def q_size(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        """Width of K (or V) for one token across all KV heads."""
        return self.num_kv_heads * self.head_dim

    @property
    def attention_kind(self) -> str:
        if self.is_mla:
            return "MLA"
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
        if self.is_mla:
            return self._mla_params()
        params = h * self.q_size + 2 * h * self.kv_size + self.q_size * h
        if self.qkv_bias or self.linear_bias:
            params += self.q_size + 2 * self.kv_size
        if self.linear_bias or self.o_bias:
            params += h
        if self.qk_norm:
            params += 2 * self.head_dim
        if self.attention_sinks:
            params += self.num_heads
        return params

    def _mla_params(self) -> int:
        """DeepSeek-V3 attention (modeling_deepseek.py DeepseekV3Attention): q_a (h x q_lora) + its RMSNorm +
        q_b (q_lora x heads*head_dim), or one q_proj without q_lora; kv_a_proj_with_mqa (h x (kv_lora + rope))
        + its RMSNorm; kv_b (kv_lora x heads*(nope + v)); o_proj (heads*v x h)."""
        h, n, r = self.hidden_size, self.num_heads, self.kv_lora_rank
        nope = self.head_dim - self.qk_rope_head_dim
        q = (h * self.q_lora_rank + self.q_lora_rank + self.q_lora_rank * self.q_size) if self.q_lora_rank \
            else h * self.q_size
        kv = h * self.kv_latent_size + r + r * n * (nope + self.value_head_dim)
        return q + kv + n * self.value_head_dim * h

    def norm_params_per_layer(self) -> int:
        return 2 * self.hidden_size * (2 if self.norm == "layernorm" else 1)

    def expert_params(self, ffn: int) -> int:
        """One expert of intermediate width ``ffn``: its linear layers and (gpt-oss) their biases."""
        mats = 3 if self.gated_mlp else 2
        bias = (ffn * (2 if self.gated_mlp else 1) + self.hidden_size) if self.expert_bias else 0
        return mats * self.hidden_size * ffn + bias

    def mlp_params_per_layer(self, active: bool = False, moe: bool | None = None) -> int:
        """One layer's MLP: the dense one, or (``moe``, default: whether the model is MoE) router, experts
        (``active``: top-k of them) and shared experts."""
        if not (self.is_moe if moe is None else moe):
            return self._mlp_params(self.ffn_size)
        routed = self.experts_per_token if active else self.num_experts
        params = self.hidden_size * self.num_experts + (self.num_experts if self.router_bias else 0)  # router
        params += routed * self.expert_params(self.expert_ffn_size)
        if self.num_shared_experts:
            shared_ffn = self.shared_expert_ffn_size or self.expert_ffn_size
            params += self.num_shared_experts * self._mlp_params(shared_ffn)
        return params

    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size + self.learned_positions * self.hidden_size

    def lm_head_params(self) -> int:
        return 0 if self.tied_embeddings else self.vocab_size * self.hidden_size

    def layer_params(self, active: bool = False, moe: bool | None = None) -> int:
        return (self.attention_params_per_layer() + self.norm_params_per_layer()
                + self.mlp_params_per_layer(active, moe))

    def linear_params(self, active: bool = False) -> int:
        """Parameters of every decoder layer's linear layers (attention, MLP, router), norms left out."""
        moe = self.num_moe_layers
        return (self.num_layers * self.attention_params_per_layer()
                + (self.num_layers - moe) * self.mlp_params_per_layer(active, moe=False)
                + moe * self.mlp_params_per_layer(active, moe=True))

    def param_count(self, active: bool = False) -> int:
        """Total parameters, or those touched per token (``active``: routed experts counted top-k). The
        multi-token-prediction modules are left out (``mtp_params``), as published counts do."""
        final_norm = self.hidden_size * (2 if self.norm == "layernorm" else 1)
        return (self.embedding_params() + self.linear_params(active) + self.num_layers * self.norm_params_per_layer()
                + final_norm + self.lm_head_params())

    def mtp_params(self) -> int:
        """DeepSeek-V3 multi-token prediction (modeling: one MTP module per ``num_nextn_predict_layers``): a
        decoder layer (MoE), enorm and hnorm, eh_proj (2h x h) and its own embedding and head copies as the
        checkpoint stores them (model.layers.61.embed_tokens / shared_head)."""
        if not self.mtp_layers:
            return 0
        h = self.hidden_size
        one = (self.layer_params(moe=self.is_moe) + 3 * h + 2 * h * h
               + self.vocab_size * h * 2)
        return self.mtp_layers * one

    # --- bytes ------------------------------------------------------------------------------------
    def weight_bytes(self, weight_dtype_bytes: float, embed_dtype_bytes: float = 2.0) -> float:
        """Weights in memory: linear layers in the weight dtype; embeddings, LM head and norms in 16 bit
        (quantisation schemes keep them unquantised)."""
        linear = self.linear_params()
        rest = self.param_count() - linear
        total = linear * weight_dtype_bytes + rest * embed_dtype_bytes
        if self.expert_weight_bytes and self.is_moe:
            experts = self.num_moe_layers * self.num_experts * self.expert_params(self.expert_ffn_size)
            total += experts * (self.expert_weight_bytes - weight_dtype_bytes)
        return total

    def expert_bytes(self, weight_dtype_bytes: float) -> float:
        """Bytes per routed-expert weight: the checkpoint's own format where it has one (MXFP4), else the run's."""
        return self.expert_weight_bytes or weight_dtype_bytes

    def kv_elements_per_token_per_layer(self, tp: int = 1) -> int:
        """KV-cache elements one GPU holds per token per layer: K and V of its KV heads (replicated when tp
        exceeds them), or with MLA the whole latent and rotary key on every GPU (vLLM replicates the MLA cache
        over TP ranks)."""
        if self.is_mla:
            return self.kv_latent_size
        return 2 * max(1, self.num_kv_heads // tp) * self.head_dim

    def kv_bytes_per_token(self, kv_dtype_bytes: float = 2.0) -> float:
        """K and V of one token over all layers (no sharding); with MLA the latent (kv_lora_rank +
        qk_rope_head_dim) per layer (DeepSeek-V2 paper, Table 1: (d_c + d_h^R) x l elements)."""
        return float(self.num_layers * self.kv_elements_per_token_per_layer() * kv_dtype_bytes)
