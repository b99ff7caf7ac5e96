"""Fixtures for simulator tests: specs, a shared cost model, and a seeded request factory."""

from __future__ import annotations

import numpy as np
import pytest

from llmsim.cost import CostModel
from llmsim.specs import ParallelLayout, Precision, load_hardware, load_model
from llmsim.workload.request import Request

MODEL, HARDWARE = "llama-3.1-8b", "h100-sxm"


@pytest.fixture(scope="session")
def specs():
    return load_model(MODEL), load_hardware(HARDWARE)


@pytest.fixture(scope="session")
def cost_model(specs):
    model, hw = specs
    return CostModel(model, hw, ParallelLayout(), Precision.parse("bf16"))


def generate_requests(n: int, rate: float, seed: int = 0, mean_in: float = 300, mean_out: float = 60,
                      max_in: int = 2000, max_out: int = 400, cv: float = 1.0, prefix_groups: int = 0,
                      chunk: int = 64) -> list[Request]:
    """Gamma arrivals (``cv``) at ``rate`` req/s, lognormal lengths; ``prefix_groups`` > 0 gives requests
    one of that many shared system prompts (as prefix hash ids)."""
    rng = np.random.default_rng(seed)
    shape = 1.0 / cv**2
    gaps = rng.gamma(shape, 1.0 / (rate * shape), n)
    t = np.cumsum(gaps) - gaps[0]
    ins = np.clip(rng.lognormal(np.log(mean_in) - 0.5, 1.0, n), 1, max_in).astype(int)
    outs = np.clip(rng.lognormal(np.log(mean_out) - 0.5, 1.0, n), 1, max_out).astype(int)
    groups = rng.integers(0, max(prefix_groups, 1), n)
    reqs = []
    for i in range(n):
        hashes: tuple[int, ...] = ()
        if prefix_groups:
            shared = 4  # the first 4 chunks are the group's system prompt, the rest unique
            hashes = tuple(int(groups[i]) * 1000 + c if c < shared else 10**6 + i * 100 + c
                           for c in range(-(-int(ins[i]) // chunk)))
        reqs.append(Request(i, float(t[i]), int(ins[i]), int(outs[i]), prefix_hashes=hashes,
                            prefix_chunk_tokens=chunk))
    return reqs


@pytest.fixture(scope="session")
def make_requests():
    return generate_requests
