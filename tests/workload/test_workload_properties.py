"""Invariants of generated traffic, over randomly drawn workload specs (hypothesis)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmsim.workload import generate_requests, load_workload

ARRIVALS = [
    {"kind": "poisson", "rate_per_s": 5.0},
    {"kind": "gamma", "rate_per_s": 2.0, "cv": 4.0},
    {"kind": "weibull", "rate_per_s": 1.0, "shape": 0.5},
    {"kind": "constant", "rate_per_s": 3.0},
    {"kind": "bursty", "on_rate_per_s": 30.0, "mean_on_s": 1.0, "mean_off_s": 5.0, "on_cv": 2.0},
    {
        "kind": "stages",
        "repeat": True,
        "stages": [{"rate_per_s": 4, "duration_s": 5}, {"rate_per_s": 0, "duration_s": 5}],
    },
    {"kind": "diurnal", "mean_rate_per_s": 2.0, "period_s": 100.0, "amplitude": 1.0},
    {"kind": "batch"},
]
PREFIXES = [
    None,
    {"kind": "shared_system_prompt", "groups": 3, "tokens": 700, "skew": 1.0},
    {
        "kind": "multi_turn",
        "sessions": 3,
        "turns": {"kind": "uniform", "low": 1, "high": 6},
        "system_tokens": 1024,
    },
]


@settings(max_examples=40, deadline=None)
@given(
    arrival=st.sampled_from(ARRIVALS),
    prefix=st.sampled_from(PREFIXES),
    chunk=st.sampled_from([16, 512]),
    max_context=st.sampled_from([None, 2, 600, 4096]),
    n=st.integers(0, 300),
    seed=st.integers(0, 2**32 - 1),
)
def test_generated_requests_are_well_formed(arrival, prefix, chunk, max_context, n, seed):
    mapping = {
        "arrival": arrival,
        "input_len": {"kind": "lognormal", "median": 300, "sigma": 1.5},
        "output_len": {"kind": "pareto", "alpha": 1.2, "scale": 20},
        "correlation": 0.5,
        "prefix_chunk_tokens": chunk,
    }
    if prefix:
        mapping["prefix"] = prefix
    spec = load_workload(mapping)
    reqs = list(generate_requests(spec, np.random.default_rng(seed), num_requests=n, max_context=max_context))
    assert [r.id for r in reqs] == list(range(n))
    arrivals = np.array([r.arrival_s for r in reqs])
    assert np.all(np.diff(arrivals) >= 0) and np.all(arrivals >= 0)
    for r in reqs:
        if max_context is not None:
            assert r.input_tokens + r.output_tokens <= max_context
        if prefix:
            assert len(r.prefix_hashes) == -(-r.input_tokens // chunk)
    again = list(
        generate_requests(spec, np.random.default_rng(seed), num_requests=n, max_context=max_context)
    )
    assert again == reqs


def test_llmsim_cli_runs_the_workload_commands(fixture_path, capsys):
    cli = pytest.importorskip("llmsim.cli")
    assert cli.main(["workload", "describe", str(fixture_path("mooncake.jsonl")), "--json"]) == 0
    assert '"prefix_hit_share"' in capsys.readouterr().out
    assert cli.main(["workload", "describe", str(fixture_path("azure_malformed.csv")), "--strict"]) == 2
    assert "azure_malformed.csv:3: malformed row" in capsys.readouterr().err
