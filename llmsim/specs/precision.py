"""Numeric formats of weights, activations and the KV cache, and the peak that a GEMM runs at."""

from __future__ import annotations

from dataclasses import dataclass

from llmsim.errors import ConfigError

# Bytes per element of each storage dtype. int4 packs two values per byte; group-wise scales add
# about 2 bytes per 128 weights (AWQ/GPTQ group size 128), folded in as 0.5 + 2/128.
DTYPE_BYTES: dict[str, float] = {
    "fp32": 4.0,
    "bf16": 2.0,
    "fp16": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "int4": 0.5 + 2.0 / 128,
    # low-bit KV caches (KIVI, arXiv 2402.02750; QServe): 2 or 3 bits per value plus a 16-bit scale per 128
    "int3": 0.375 + 2.0 / 128,
    "int2": 0.25 + 2.0 / 128,
}

# Named weight/activation schemes (as serving engines name them) -> (weight dtype, activation/compute dtype).
# Weight-only schemes dequantise to bf16 inside the kernel, so their GEMMs run at the bf16 peak.
PRECISIONS: dict[str, tuple[str, str]] = {
    "fp32": ("fp32", "fp32"),
    "bf16": ("bf16", "bf16"),
    "fp16": ("fp16", "fp16"),
    "fp8": ("fp8", "fp8"),  # W8A8 fp8 (Hopper/Ada/Blackwell/MI300 tensor cores)
    "w8a8-int8": ("int8", "int8"),  # SmoothQuant-style int8 GEMMs
    "int8": ("int8", "bf16"),  # weight-only int8 (W8A16)
    "int4": ("int4", "bf16"),  # weight-only int4 (W4A16, AWQ/GPTQ)
}

KV_DTYPES = ("fp32", "bf16", "fp16", "fp8", "int8", "int4", "int3", "int2")
# KV formats the attention kernel dequantises on CUDA cores (fp8 / int8 are converted natively or nearly so)
LOW_BIT_KV = ("int4", "int3", "int2")


@dataclass(frozen=True, slots=True)
class Precision:
    """Weights, GEMM-compute and KV-cache formats of a deployment.

    ``weights`` is the storage dtype of linear-layer weights; ``compute`` the dtype the GEMM runs in (which
    tensor-core peak applies); activations between kernels stay in 16 bit (``activations``) except fp32.
    """

    name: str = "bf16"
    kv_dtype: str = "bf16"

    def __post_init__(self) -> None:
        if self.name not in PRECISIONS:
            raise ConfigError(f"precision: unknown {self.name!r}; valid: {', '.join(PRECISIONS)}")
        if self.kv_dtype not in KV_DTYPES:
            raise ConfigError(f"kv_dtype: unknown {self.kv_dtype!r}; valid: {', '.join(KV_DTYPES)}")

    @property
    def weights(self) -> str:
        return PRECISIONS[self.name][0]

    @property
    def compute(self) -> str:
        return PRECISIONS[self.name][1]

    @property
    def activations(self) -> str:
        return "fp32" if self.name == "fp32" else ("fp16" if self.name == "fp16" else "bf16")

    @property
    def weight_bytes(self) -> float:
        return DTYPE_BYTES[self.weights]

    @property
    def act_bytes(self) -> float:
        return DTYPE_BYTES[self.activations]

    @property
    def kv_bytes(self) -> float:
        return DTYPE_BYTES[self.kv_dtype]

    @classmethod
    def parse(cls, name: str, kv_dtype: str | None = None) -> Precision:
        """Default KV dtype: the activation dtype (fp16/bf16), as engines do unless told otherwise."""
        if kv_dtype is None:
            kv_dtype = "fp16" if name == "fp16" else ("fp32" if name == "fp32" else "bf16")
        return cls(name=name, kv_dtype=kv_dtype)
