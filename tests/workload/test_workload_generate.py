import dataclasses
from pathlib import Path

import numpy as np
import pytest

from llmsim.errors import ConfigError
from llmsim.workload import WorkloadSpec, generate_requests, load_workload

REPO = Path(__file__).resolve().parents[2]
CHAT = {
    "description": "test chat",
    "arrival": {"kind": "poisson", "rate_per_s": 10.0},
    "input_len": {"kind": "lognormal", "mean": 800, "sigma": 0.8, "min": 4, "max": 8000},
    "output_len": {"kind": "exponential", "mean": 200, "max": 2000},
}


def make_spec(**overrides) -> WorkloadSpec:
    return load_workload({**CHAT, **overrides}, where="test.yaml")


def gen(spec, seed=0, **kw):
    return list(generate_requests(spec, np.random.default_rng(seed), **kw))


def test_ids_order_and_count():
    reqs = gen(make_spec(), num_requests=5000)
    assert [r.id for r in reqs] == list(range(5000))
    t = np.array([r.arrival_s for r in reqs])
    assert np.all(np.diff(t) >= 0)
    assert len(t) / t[-1] == pytest.approx(10, rel=0.05)


def test_same_seed_identical_requests():
    assert gen(make_spec(), 3, num_requests=2000) == gen(make_spec(), 3, num_requests=2000)
    assert gen(make_spec(), 3, num_requests=50) != gen(make_spec(), 4, num_requests=50)


def test_is_a_lazy_generator():
    stream = generate_requests(make_spec(), np.random.default_rng(0), duration_s=1e9)
    first = next(stream)
    assert first.id == 0


def test_duration_cut():
    reqs = gen(make_spec(), duration_s=30.0)
    assert reqs[-1].arrival_s < 30.0 and len(reqs) == pytest.approx(300, rel=0.2)


def test_spec_defaults_for_count_and_duration():
    assert len(gen(make_spec(num_requests=77))) == 77
    with pytest.raises(ConfigError, match="give num_requests or duration_s"):
        gen(make_spec())


def test_max_context_clips_prompt_then_output():
    reqs = gen(make_spec(), num_requests=5000, max_context=1024)
    assert max(r.input_tokens for r in reqs) == 1023
    assert all(r.input_tokens + r.output_tokens <= 1024 for r in reqs)
    assert any(r.output_tokens == 1 for r in reqs)


def test_output_length_exact_with_fixed():
    spec = make_spec(output_len={"kind": "fixed", "value": 64})
    assert {r.output_tokens for r in gen(spec, num_requests=100)} == {64}


def test_correlation_between_input_and_output():
    from llmsim.workload.lengths import normal_score_correlation

    reqs = gen(make_spec(correlation=0.7), num_requests=20_000)
    inp = np.array([r.input_tokens for r in reqs])
    out = np.array([r.output_tokens for r in reqs])
    assert normal_score_correlation(inp, out) == pytest.approx(0.7, abs=0.03)


def test_classes_shares_priorities_and_lengths():
    spec = make_spec(
        classes=[
            {"name": "interactive", "share": 3, "priority": 0},
            {"name": "batch", "share": 1, "priority": 2, "input_len": {"kind": "fixed", "value": 4000}},
        ]
    )
    reqs = gen(spec, num_requests=20_000)
    batch = [r for r in reqs if r.slo_class == "batch"]
    assert len(batch) / len(reqs) == pytest.approx(0.25, abs=0.01)
    assert {r.priority for r in batch} == {2} and {r.input_tokens for r in batch} == {4000}
    assert {r.priority for r in reqs if r.slo_class == "interactive"} == {0}


def test_batch_arrivals_need_a_count():
    spec = make_spec(arrival={"kind": "batch"})
    assert {r.arrival_s for r in gen(spec, num_requests=10)} == {0.0}
    with pytest.raises(ConfigError, match="give num_requests"):
        gen(spec, duration_s=10)


def test_closed_loop_spec_and_placeholder_arrivals():
    spec = make_spec(arrival={"kind": "closed_loop", "users": 8, "think_time_s": 1.0})
    assert spec.arrival is None and spec.closed_loop.users == 8
    reqs = gen(spec, num_requests=10)
    assert [r.id for r in reqs] == list(range(10)) and {r.arrival_s for r in reqs} == {0.0}
    # the simulator stamps arrivals itself
    assert dataclasses.replace(reqs[3], arrival_s=12.5).arrival_s == 12.5


def test_finite_stages_end_on_their_own():
    spec = make_spec(arrival={"kind": "stages", "stages": [{"rate_per_s": 5, "duration_s": 20}]})
    reqs = gen(spec)
    assert reqs[-1].arrival_s < 20 and len(reqs) == pytest.approx(100, rel=0.35)


def test_shared_system_prompt_prefix_ids():
    from llmsim.workload.describe import prefix_hit_share
    from llmsim.workload.traces import TraceData

    spec = make_spec(prefix={"kind": "shared_system_prompt", "groups": 4, "tokens": 1024})
    reqs = gen(spec, num_requests=2000)
    assert all(r.input_tokens >= 1024 + 4 for r in reqs)
    firsts = {r.prefix_hashes[:64] for r in reqs}
    assert len(firsts) == 4  # one shared 64-block (16 tokens each, the default) prefix per group
    assert all(len(r.prefix_hashes) == -(-r.input_tokens // 16) for r in reqs)
    trace = TraceData(
        "g",
        "gen",
        np.array([r.input_tokens for r in reqs]),
        np.array([r.output_tokens for r in reqs]),
        None,
        tuple(r.prefix_hashes for r in reqs),
        chunk_tokens=16,
    )
    # every request but the first of each group hits exactly its 1024 system tokens
    expected = 1024 * (2000 - 4) / trace.input_tokens.sum()
    assert prefix_hit_share(trace) == pytest.approx(expected)


def test_multi_turn_later_turns_carry_earlier_turns():
    spec = make_spec(
        prefix={"kind": "multi_turn", "sessions": 8, "turns": 4, "system_tokens": 512}, max_context=100_000
    )
    reqs = gen(spec, num_requests=3000)
    by_session: dict[int, list] = {}
    for r in reqs:
        by_session.setdefault(r.session_id, []).append(r)
    assert max(len(v) for v in by_session.values()) == 4
    for turns in by_session.values():
        assert turns[0].prefix_hashes[0] == 0  # the shared system prompt block
        for prev, nxt in zip(turns, turns[1:], strict=False):
            history = prev.input_tokens + prev.output_tokens
            assert nxt.input_tokens > history
            full = history // 16  # 16-token prefix ids (the default)
            # all full blocks of the previous prompt + answer are shared with the next turn
            assert (
                nxt.prefix_hashes[: prev.input_tokens // 16]
                == prev.prefix_hashes[: prev.input_tokens // 16]
            )
            assert len(nxt.prefix_hashes) >= full


def test_multi_turn_respects_context():
    spec = make_spec(prefix={"kind": "multi_turn", "sessions": 2, "turns": 50})
    reqs = gen(spec, num_requests=2000, max_context=8192)
    assert all(r.input_tokens + r.output_tokens <= 8192 for r in reqs)
    assert all(len(r.prefix_hashes) == -(-r.input_tokens // 16) for r in reqs)


def test_trace_replay(fixture_path):
    spec = load_workload({"trace": {"path": "mooncake.jsonl", "speed": 2.0}}, base_dir=fixture_path(""))
    reqs = gen(spec)
    assert [r.arrival_s for r in reqs] == [0, 0, 1.5, 1.5, 3, 3, 4.5]
    assert reqs[3].prefix_hashes == (0, 1, 2, 5)
    assert len(gen(spec, duration_s=2.0)) == 4
    clipped = gen(spec, max_context=1000)
    assert clipped[3].input_tokens == 999 and clipped[3].prefix_hashes == (0, 1)


def test_lengths_resampled_from_a_length_only_trace(fixture_path):
    spec = load_workload(
        {
            "arrival": {"kind": "poisson", "rate_per_s": 1},
            "lengths": {"kind": "trace", "path": "lengths.csv"},
        },
        base_dir=fixture_path(""),
    )
    pairs = {(r.input_tokens, r.output_tokens) for r in gen(spec, num_requests=500)}
    assert pairs == {(74, 918), (290, 905), (1200, 300), (3000, 12), (18, 40)}


@pytest.mark.parametrize(
    ("mapping", "fragment"),
    [
        ({**CHAT, "arival": {}}, "test.yaml: unknown key(s) arival"),
        ({k: v for k, v in CHAT.items() if k != "arrival"}, "test.yaml: expected an 'arrival' block"),
        ({k: v for k, v in CHAT.items() if k != "output_len"}, "expected 'output_len'"),
        ({**CHAT, "arrival": {"kind": "gamma", "rate_per_s": 1, "cv": -1}}, "test.yaml: arrival: "),
        ({**CHAT, "input_len": {"kind": "lognormal", "mean": 1}}, "test.yaml: input_len: "),
        ({**CHAT, "correlation": 2}, "test.yaml: correlation: expected a number"),
        (
            {**CHAT, "classes": [{"name": "a", "share": 1, "prio": 1}]},
            "test.yaml: classes[0]: unknown key(s) prio",
        ),
        ({**CHAT, "classes": [{"name": "a", "share": 0}]}, "test.yaml: classes[0].share"),
        ({**CHAT, "prefix": {"kind": "multi_turn", "turns": 0}}, "test.yaml: prefix: "),
        (
            {**CHAT, "prefix": {"kind": "multi_turn", "turns": {"kind": "fixed"}}},
            "test.yaml: prefix: turns: ",
        ),
        ({**CHAT, "lengths": {"path": "x.csv"}}, "give either 'lengths' or"),
        ({"trace": {"path": "x.csv"}, "arrival": {"kind": "batch"}}, "test.yaml: trace: a replayed trace"),
        ({**CHAT, "num_requests": 0}, "test.yaml: num_requests: expected an integer >= 1"),
    ],
)
def test_validation_messages_name_file_and_field(mapping, fragment):
    with pytest.raises(ConfigError) as err:
        load_workload(mapping, where="test.yaml")
    assert fragment in str(err.value)


def test_nested_where_for_experiment_files():
    with pytest.raises(ConfigError, match=r"^exp\.yaml: workload\.arrival: "):
        load_workload({**CHAT, "arrival": {"kind": "poisson"}}, where="exp.yaml: workload")


def test_yaml_file_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.yaml: no such workload file"):
        load_workload(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("arrival: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: line 2, column 1: not valid YAML"):
        load_workload(bad)


SHIPPED = sorted((REPO / "workloads").glob("*.yaml"))


def test_the_core_workloads_ship():
    names = {p.stem for p in SHIPPED}
    assert {
        "chat",
        "code_completion",
        "summarization",
        "reasoning",
        "multi_turn_chat",
        "mixed_priority",
    } <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_workloads_load_and_generate(path):
    spec = load_workload(path)
    assert spec.description and "\n" not in spec.description
    reqs = gen(spec, num_requests=2000)
    expected = 2000 if spec.trace is None else min(2000, len(spec.trace))
    assert len(reqs) == expected and [r.id for r in reqs[:3]] == [0, 1, 2]
    assert all(r.input_tokens >= 1 and r.output_tokens >= 1 for r in reqs)


def test_replay_example_matches_its_generator():
    """The shipped example trace is multi_turn_chat.yaml, seed 2026, saved with save_trace_jsonl."""
    replay = gen(load_workload(REPO / "workloads" / "replay_example.yaml"))
    original = gen(load_workload(REPO / "workloads" / "multi_turn_chat.yaml"), seed=2026, num_requests=400)
    assert [(r.input_tokens, r.output_tokens, r.prefix_hashes) for r in replay] == [
        (r.input_tokens, r.output_tokens, r.prefix_hashes) for r in original
    ]
    t0 = original[0].arrival_s
    assert [r.arrival_s for r in replay] == pytest.approx([r.arrival_s - t0 for r in original], abs=2e-6)


@pytest.mark.parametrize(
    "arrival",
    [
        {"kind": "gamma", "rate_per_s": 2.0, "cv": 3.0},
        {"kind": "weibull", "rate_per_s": 2.0, "shape": 0.7},
        {"kind": "bursty", "on_rate_per_s": 10.0, "mean_on_s": 2.0, "mean_off_s": 8.0},
        {
            "kind": "stages",
            "repeat": True,
            "stages": [{"rate_per_s": 1, "duration_s": 50}, {"rate_per_s": 3, "duration_s": 50}],
        },
        {"kind": "diurnal", "mean_rate_per_s": 2.0, "period_s": 600.0},
    ],
)
def test_with_rate_scales_load_and_keeps_shape(arrival):
    from llmsim.workload import with_rate

    base = make_spec(arrival=arrival)
    fast = with_rate(base, 8.0)
    assert fast.arrival.mean_rate_per_s == pytest.approx(8.0)
    t_base = np.array([r.arrival_s for r in gen(base, num_requests=40_000)])
    t_fast = np.array([r.arrival_s for r in gen(fast, num_requests=40_000)])
    # the slowest to average out is bursty: ~500 on/off cycles give a ~6% standard error on the rate
    assert len(t_fast) / t_fast[-1] == pytest.approx(8.0, rel=0.15)
    g_base, g_fast = np.diff(t_base), np.diff(t_fast)
    assert g_fast.std() / g_fast.mean() == pytest.approx(g_base.std() / g_base.mean(), rel=0.1)


def test_with_rate_on_replay_and_errors(fixture_path):
    from llmsim.workload import with_rate

    spec = load_workload({"trace": {"path": "mooncake.jsonl"}}, base_dir=fixture_path(""))
    faster = with_rate(spec, 7 / 9 * 3)  # the fixture has 7 requests over 9 s
    assert faster.trace.arrival_s[-1] == pytest.approx(3.0)
    with pytest.raises(ConfigError, match="batch workload has no arrival rate"):
        with_rate(make_spec(arrival={"kind": "batch"}), 1.0)
    with pytest.raises(ConfigError, match="closed-loop workload"):
        with_rate(make_spec(arrival={"kind": "closed_loop", "users": 2}), 1.0)


@pytest.mark.parametrize("prefix", [{"kind": "multi_turn", "skew": "high"},
                                    {"kind": "shared_system_prompt", "groups": 2, "tokens": 10, "skew": float("inf")}])
def test_prefix_skew_must_be_a_finite_number(prefix):
    with pytest.raises(ConfigError, match=r"^w\.yaml: prefix: 'skew' must be a finite number >= 0"):
        load_workload({**CHAT, "prefix": prefix}, where="w.yaml")
