"""The speculative: block: every bad value names its field; a draft that cannot pair with the target is
refused; the CLI exits 2 with the file and the field."""

import pytest
import yaml

from llmsim.cli import main
from llmsim.errors import ConfigError
from llmsim.sim.setup import deployment
from llmsim.specs import ParallelLayout
from llmsim.speculative import attach_speculative, parse_speculative


@pytest.mark.parametrize(("block", "message"), [
    ({"proposer": "telepathy"}, "speculative.proposer: unknown proposer 'telepathy'; valid: draft_model, eagle"),
    ({"proposer": "eagle", "num_speculative_tokens": 0},
     "speculative.num_speculative_tokens: must be a positive integer, got 0"),
    ({"proposer": "eagle", "acceptance": 1.2}, "speculative.acceptance: must be a probability in [0, 1], got 1.2"),
    ({"proposer": "eagle", "acceptance": [0.8, -0.1]}, "speculative.acceptance[1]: must be a probability"),
    ({"proposer": "eagle", "acceptance": {"code": 0.9}}, "speculative.acceptance: a per-class mapping needs"),
    ({"proposer": "ngram"}, "speculative.acceptance: proposer ngram has no published default"),
    ({"proposer": "eagle", "k": 3}, "speculative: unknown key(s) k"),
    ({"proposer": {"kind": "eagle", "depth": 2}}, "speculative.proposer: proposer 'eagle': unknown key(s) depth"),
    ({"proposer": {"kind": "draft_model"}}, "speculative.proposer: model: a draft_model proposer needs"),
    ({"proposer": "eagle", "disable_by_batch_size": -1}, "speculative.disable_by_batch_size: must be a positive"),
])
def test_bad_blocks_name_the_field(block, message):
    with pytest.raises(ConfigError) as info:
        parse_speculative(block)
    assert message in str(info.value)


def test_defaults_come_with_their_source():
    cfg = parse_speculative({"proposer": "eagle"})
    assert cfg.num_speculative_tokens == 3
    assert "EAGLE" in cfg.acceptance["default"].source
    per_class = parse_speculative({"proposer": "ngram", "acceptance": {"default": 0.2, "code": [0.9, 0.7]}})
    assert per_class.model_for("code").per_position == (0.9, 0.7)
    assert per_class.model_for("chat").per_position == (0.2,)


def _dep(model, tp=1):
    return deployment(model, "h100-sxm", ParallelLayout(tp=tp), None, {"kind": "vllm"}, None, None, None)


def test_a_draft_with_another_vocabulary_is_refused():
    with pytest.raises(ConfigError, match=r"speculative.proposer.model: draft llama-2-7b has a vocabulary of "
                                          r"32000 tokens, target llama-3.1-8b has 128256"):
        attach_speculative(_dep("llama-3.1-8b"), {"proposer": {"kind": "draft_model", "model": "llama-2-7b"}})


def test_a_draft_the_target_layout_cannot_split_is_refused():
    # qwen2.5-7b (28 heads) under the 72B target's tp=8: same vocabulary, but 8 does not divide 28
    with pytest.raises(ConfigError, match=r"speculative.proposer.model: tp=8 does not divide the 28 attention"):
        attach_speculative(_dep("qwen2.5-72b", tp=8), {"proposer": {"kind": "draft_model", "model": "qwen2.5-7b"}})


def test_draft_weights_and_kv_shrink_the_cache():
    dep = _dep("llama-3.1-8b")
    spec = attach_speculative(dep, {"proposer": {"kind": "draft_model", "model": "llama-3.1-8b"}})
    # an identical draft: its weights leave (KV bytes - weights) for blocks twice as large
    bs = dep.kv_block["block_size"]
    kv_bytes = dep.kv_defaults["num_blocks"] * bs * dep.kv_bytes_per_token_replica
    weights = dep.model.weight_bytes(2.0)
    expected = int((kv_bytes - weights) // (2 * dep.kv_bytes_per_token_replica)) // bs
    assert spec.kv_defaults["num_blocks"] == expected
    assert attach_speculative(dep, {"proposer": "ngram", "acceptance": 0.3}).kv_defaults == dep.kv_defaults


@pytest.mark.parametrize(("block", "message"), [
    ({"proposer": {"kind": "draft_model", "model": "llama-2-7b"}},
     "speculative.proposer.model: draft llama-2-7b has a vocabulary"),
    ({"proposer": "oracle"}, "speculative.proposer: unknown proposer 'oracle'"),
    ({"proposer": "eagle", "num_speculative_tokens": 0}, "speculative.num_speculative_tokens: must be a positive"),
    ({"proposer": "ngram", "acceptance": 2}, "speculative.acceptance: must be a probability in [0, 1], got 2"),
])
def test_cli_exits_2_naming_file_and_field(tmp_path, capsys, block, message):
    data = {"model": "llama-3.1-8b", "hardware": "h100-sxm",
            "workload": {"arrival": {"kind": "poisson", "rate_per_s": 1.0},
                         "input_len": {"kind": "fixed", "value": 64}, "output_len": {"kind": "fixed", "value": 8}},
            "stop": {"num_requests": 5}, "speculative": block}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data))
    code = main(["run", str(path), "--out", str(tmp_path / "res"), "--no-plots"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"{path}: {message}" in err
    assert "Traceback" not in err


def test_cli_runs_speculation_with_parallel_sampling(tmp_path, capsys):
    data = {"model": "llama-3.1-8b", "hardware": "h100-sxm",
            "workload": {"arrival": {"kind": "poisson", "rate_per_s": 2.0},
                         "input_len": {"kind": "fixed", "value": 64}, "output_len": {"kind": "fixed", "value": 20}},
            "stop": {"num_requests": 6}, "sampling": {"n": 2},
            "speculative": {"proposer": "ngram", "acceptance": 0.5}}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["run", str(path), "--out", str(tmp_path / "res"), "--no-plots"]) == 0
    from llmsim.experiment.results import Results

    row = Results.load(tmp_path / "res").summary.iloc[0]
    assert row["sampling_parents"] == 6 and row["spec_verify_rows"] > 0
    assert row["spec_tokens_per_step"] > 1


def test_speculation_needs_an_iteration_level_scheduler():
    dep = deployment("llama-3.1-8b", "h100-sxm", ParallelLayout(), None, {"kind": "static"}, None, None, None)
    with pytest.raises(ConfigError, match="speculative: needs an iteration-level scheduler .* got scheduler.kind 'static'"):
        attach_speculative(dep, {"proposer": "eagle"})
