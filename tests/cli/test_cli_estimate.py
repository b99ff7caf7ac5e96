"""`llmsim estimate` end to end through main(): JSON keys, breakdown, one-line errors with exit code 2."""

import json

import pytest

from llmsim.cli import main

ARGS = ["estimate", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--batch-size", "4",
        "--input-len", "512", "--output-len", "64"]


def test_json_has_documented_keys(capsys):
    assert main([*ARGS, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("prefill_s", "ttft_s", "decode_step_s", "tpot_s", "e2e_s", "output_tokens_per_s"):
        assert out[key] > 0
    for key in ("weights_bytes", "kv_bytes_per_token", "kv_capacity_tokens", "fits", "max_batch_size"):
        assert key in out["memory"]
    assert out["memory"]["kv_bytes_per_token"] == 131072
    assert out["e2e_s"] == pytest.approx(out["prefill_s"] + 63 * out["decode_step_s"])


def test_breakdown_lists_operators(capsys):
    assert main([*ARGS, "--breakdown"]) == 0
    text = capsys.readouterr().out
    for name in ("qkv_proj", "attn_prefill", "attn_decode", "mlp_gate_up", "lm_head", "roofline"):
        assert name in text


def test_breakdown_json_rows_sum_to_stage_time(capsys):
    assert main([*ARGS, "--json", "--breakdown"]) == 0
    out = json.loads(capsys.readouterr().out)
    prefill_rows = sum(r["time_s"] for r in out["breakdown"]["prefill"])
    assert prefill_rows < out["prefill_s"]  # the rest is the per-step CPU overhead
    assert prefill_rows > 0.9 * out["prefill_s"]


@pytest.mark.parametrize(("extra", "message"), [
    (["--model", "nope"], "error: --model: unknown model 'nope'; valid:"),
    (["--hardware", "tpu-v9"], "error: --hardware: unknown hardware 'tpu-v9'; valid:"),
    (["--tp", "3"], "error: --tp: tp=3 does not divide"),
    (["--tp", "0"], "error: --tp: must be a positive integer, got 0"),
    (["--model", "llama-3.1-70b"], "does not fit"),
    (["--input-len", "0"], "error: --input-len: must be a positive integer, got 0"),
    (["--precision", "fp3"], "error: --precision: unknown 'fp3'"),
    (["--hardware", "a100-sxm-80gb", "--precision", "fp8"], "error: --precision: hardware a100-sxm-80gb has no fp8"),
    (["--block-size", "0"], "error: --block-size: must be a positive integer, got 0"),
    (["--gpu-memory-utilization", "1.5"], "error: --gpu-memory-utilization: must be in (0, 1], got 1.5"),
    (["--batch-size", "2000000"], "error: --batch-size: at most 1,000,000 sequences in one static batch"),
    (["--model", "mistral-7b", "--batch-size", "1000000", "--output-len", "100"],
     "error: --batch-size x --output-len: at most 20,000,000 for a sliding-window model"),
])
def test_bad_input_is_one_line_exit_2(capsys, extra, message):
    args = list(ARGS)
    for flag, value in zip(extra[::2], extra[1::2], strict=True):
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_malformed_config_json(tmp_path, capsys):
    bad = tmp_path / "config.json"
    bad.write_text('{"model_type": "llama"}')
    args = list(ARGS)
    args[args.index("--model") + 1] = str(bad)
    assert main(args) == 2
    assert "config.json" in capsys.readouterr().err


def test_models_and_hardware_listings(capsys):
    assert main(["models"]) == 0
    assert "mixtral-8x7b" in capsys.readouterr().out
    assert main(["hardware"]) == 0
    assert "h100-sxm" in capsys.readouterr().out
