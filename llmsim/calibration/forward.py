"""A random-weight Llama-architecture forward pass in plain torch, for validating step-time predictions.

Built from a ModelSpec (nothing downloaded): fused QKV and gate/up projections, RMSNorm, rotary
embeddings, GQA attention through ``scaled_dot_product_attention`` over a preallocated KV cache, SiLU-gated
MLP, final norm and LM head on each sequence's last position, greedy sampling. This is the work a serving
engine's model runner does in one step, without its scheduler; the comparison removes the cost model's
per-step CPU overhead accordingly.
"""

from __future__ import annotations

from typing import Any

from llmsim.errors import ConfigError
from llmsim.specs import ModelSpec

DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


class LlamaForward:
    """Weights and a KV cache for ``max_batch`` sequences of up to ``max_len`` tokens on ``device``."""

    def __init__(self, torch: Any, model: ModelSpec, device: str, dtype: str, max_batch: int, max_len: int,
                 seed: int = 0) -> None:
        if model.is_moe or not model.gated_mlp or model.norm != "rmsnorm" or model.learned_positions:
            raise ConfigError(f"validation forward pass supports dense Llama-style models; {model.name} is not")
        self.t, self.m, self.device = torch, model, device
        self.dtype = getattr(torch, DTYPES[dtype])
        gen = torch.Generator(device="cpu").manual_seed(seed)
        h, q, kv, f = model.hidden_size, model.q_size, model.kv_size, model.ffn_size

        def w(*shape):  # random weights, scaled so activations stay finite through the layers
            return (torch.randn(*shape, generator=gen) * shape[-1] ** -0.5).to(device=device, dtype=self.dtype)

        self.layers = [dict(qkv=w(q + 2 * kv, h), o=w(h, q), gate_up=w(2 * f, h), down=w(h, f),
                            n1=torch.ones(h, device=device, dtype=self.dtype),
                            n2=torch.ones(h, device=device, dtype=self.dtype))
                       for _ in range(model.num_layers)]
        self.embed = w(model.vocab_size, h)
        self.lm_head = w(model.vocab_size, h)
        self.norm = torch.ones(h, device=device, dtype=self.dtype)
        shape = (model.num_layers, max_batch, model.num_kv_heads, max_len, model.head_dim)
        self.k_cache = torch.zeros(shape, device=device, dtype=self.dtype)
        self.v_cache = torch.zeros(shape, device=device, dtype=self.dtype)
        inv = 1.0 / (10000.0 ** (torch.arange(0, model.head_dim, 2, device=device).float() / model.head_dim))
        pos = torch.arange(max_len, device=device).float()
        angles = torch.outer(pos, inv)
        self.cos, self.sin = angles.cos().to(self.dtype), angles.sin().to(self.dtype)

    def _rms(self, x, weight):
        var = x.float().pow(2).mean(-1, keepdim=True)
        return (x.float() * self.t.rsqrt(var + 1e-5)).to(self.dtype) * weight

    def _rotary(self, x, start: int):
        n = x.shape[-2]
        cos, sin = self.cos[start:start + n], self.sin[start:start + n]
        x1, x2 = x[..., ::2], x[..., 1::2]
        return self.t.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)

    def _attention(self, i: int, x, batch: int, start: int):
        m, t = self.m, self.t
        n = x.shape[1]
        qkv = x @ self.layers[i]["qkv"].T
        q, k, v = qkv.split([m.q_size, m.kv_size, m.kv_size], dim=-1)
        q = self._rotary(q.view(batch, n, m.num_heads, m.head_dim).transpose(1, 2), start)
        k = self._rotary(k.view(batch, n, m.num_kv_heads, m.head_dim).transpose(1, 2), start)
        v = v.view(batch, n, m.num_kv_heads, m.head_dim).transpose(1, 2)
        self.k_cache[i, :batch, :, start:start + n] = k
        self.v_cache[i, :batch, :, start:start + n] = v
        keys = self.k_cache[i, :batch, :, :start + n]
        values = self.v_cache[i, :batch, :, :start + n]
        out = t.nn.functional.scaled_dot_product_attention(q, keys, values, is_causal=start == 0 and n > 1,
                                                           enable_gqa=m.num_kv_heads != m.num_heads)
        return out.transpose(1, 2).reshape(batch, n, m.q_size) @ self.layers[i]["o"].T

    def step(self, tokens, start: int):
        """One forward step of ``tokens`` ([batch, n] ids) written after ``start`` cached positions;
        returns the greedy next token of each sequence."""
        batch = tokens.shape[0]
        x = self.embed[tokens]
        for i, layer in enumerate(self.layers):
            x = x + self._attention(i, self._rms(x, layer["n1"]), batch, start)
            gate, up = (self._rms(x, layer["n2"]) @ layer["gate_up"].T).chunk(2, dim=-1)
            x = x + (self.t.nn.functional.silu(gate) * up) @ layer["down"].T
        logits = self._rms(x[:, -1], self.norm) @ self.lm_head.T
        return logits.float().argmax(dim=-1)
