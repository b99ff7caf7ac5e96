"""Workload values that are well typed but absurd: refused by name, or generated in bounded time and memory."""

import time

import numpy as np
import pytest

from llmsim.errors import ConfigError
from llmsim.workload import generate_requests, load_workload

FIXED = {"kind": "fixed", "value": 50}
POISSON = {"kind": "poisson", "rate_per_s": 5.0}


@pytest.mark.parametrize(("patch", "message"), [
    ({"arrival": {"kind": "bursty", "on_rate_per_s": 1e9, "mean_on_s": 1.0, "mean_off_s": 1.0}},
     r"arrival: on_rate_per_s x mean_on_s must be <= 1e\+07 requests per sojourn, got 1e\+09"),
    ({"arrival": {"kind": "bursty", "on_rate_per_s": 1.0, "mean_on_s": 1.0, "mean_off_s": 1e12,
                  "off_rate_per_s": 1.0}}, r"arrival: off_rate_per_s x mean_off_s must be <= 1e\+07"),
    ({"arrival": {"kind": "bursty", "on_rate_per_s": 1.0, "mean_on_s": 1.0, "mean_off_s": 1.0, "on_cv": 1e15}},
     r"arrival: 'on_cv' must be <= 100"),
    ({"arrival": {"kind": "diurnal", "mean_rate_per_s": 1.0, "cv": 1e3}}, r"arrival: 'cv' must be <= 100"),
    ({"arrival": {"kind": "stages", "stages": [{"rate_per_s": 1.0, "duration_s": 5.0}], "cv": 500}},
     r"arrival: 'cv' must be <= 100"),
    ({"arrival": {"kind": "closed_loop", "users": 2, "think_cv": 1e6}}, r"arrival: 'think_cv' must be <= 100"),
    ({"prefix": {"kind": "shared_system_prompt", "groups": 10**9, "tokens": 100}},
     r"prefix: 'groups' must be at most 1,000,000"),
    ({"prefix": {"kind": "shared_system_prompt", "groups": 2, "tokens": 10**30}},
     r"prefix: 'tokens' must be at most 1,000,000,000"),
    ({"prefix": {"kind": "multi_turn", "sessions": 10**7}}, r"prefix: 'sessions' must be at most 1,000,000"),
    ({"classes": [{"name": "a", "share": float("inf")}, {"name": "b", "share": 1.0}]},
     r"classes\[0\]\.share: expected a number > 0\.0"),
])
def test_absurd_values_are_refused_by_name(patch, message):
    with pytest.raises(ConfigError, match=rf"^w\.yaml: {message}"):
        load_workload({"arrival": POISSON, "input_len": FIXED, "output_len": FIXED, **patch}, where="w.yaml")


@pytest.mark.parametrize("prefix", [{"kind": "shared_system_prompt", "groups": 2, "tokens": 10**8},
                                    {"kind": "multi_turn", "sessions": 4, "system_tokens": 10**8},
                                    {"kind": "shared_system_prompt", "groups": 2, "tokens": 100}])
def test_lengths_past_the_context_stay_cheap_with_a_prefix(prefix):
    # a billion-token prompt (or system prompt) is cut to the context: no ids are built past it
    spec = load_workload({"arrival": POISSON, "input_len": {"kind": "fixed", "value": 10**9}, "output_len": FIXED,
                          "prefix": prefix, "prefix_chunk_tokens": 16})
    t0 = time.perf_counter()
    reqs = list(generate_requests(spec, np.random.default_rng(0), num_requests=300, max_context=4096))
    assert time.perf_counter() - t0 < 5.0
    assert all(r.input_tokens == 4095 and r.output_tokens == 1 for r in reqs)
    assert max(len(r.prefix_hashes) for r in reqs) == 256  # ceil(4095 / 16)

