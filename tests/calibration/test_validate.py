"""`llmsim validate` on the CPU, for real: a tiny random-weight Llama timed in torch vs the cost model."""

import json

import pandas as pd
import pytest

from llmsim.cli import main

pytest.importorskip("torch")

TINY = {"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 128, "num_attention_heads": 4,
        "num_key_value_heads": 2, "intermediate_size": 256, "vocab_size": 500, "max_position_embeddings": 1024}


def test_validate_cpu_writes_table_and_report(tmp_path, capsys):
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(TINY))
    out = tmp_path / "val"
    rc = main(["validate", "--device", "cpu", "--model", str(cfg), "--hardware", "h100-sxm", "--dtype", "fp32",
               "--quick", "--out-dir", str(out)])
    assert rc == 0
    df = pd.read_csv(out / "validation.csv")
    assert list(df["kind"]) == ["prefill", "prefill", "decode", "decode"]
    assert (df["measured_s"] > 0).all() and (df["predicted_s"] > 0).all()
    assert df["rel_err"].notna().all() and (df["sources"] == "roofline").all()  # h100-sxm: no calibration
    text = (out / "validation.md").read_text()
    assert "median abs error" in text and "| decode | 4 | 64 |" in text


def test_relative_error_and_report_by_hand():
    from llmsim.calibration.validate import relative_error, report

    assert relative_error(3e-3, 2e-3) == pytest.approx(0.5)  # 3 ms predicted for 2 ms measured: 50 % slow
    assert relative_error(1e-3, 2e-3) == pytest.approx(-0.5)
    df = pd.DataFrame([{"kind": "decode", "batch": 1, "length": 64, "measured_s": 2e-3, "predicted_s": 3e-3,
                        "sources": "roofline", "rel_err": 0.5},
                       {"kind": "decode", "batch": 4, "length": 64, "measured_s": 4e-3, "predicted_s": 3e-3,
                        "sources": "roofline", "rel_err": -0.25}])
    text = report(df, {"device": "cpu"}, "m", "h")
    assert "| decode | 1 | 64 | 2.000 | 3.000 | +50.0% | roofline |" in text
    assert "| decode | 2 | 37.5% | 50.0% |" in text  # median of 50 % and 25 %, max 50 %


def test_forward_pass_is_a_real_model():
    """Greedy decoding is deterministic for fixed weights, and the cache changes what comes next."""
    import torch

    from llmsim.calibration.forward import LlamaForward
    from llmsim.specs import spec_from_hf

    model = spec_from_hf(TINY, "tiny")
    fwd = LlamaForward(torch, model, "cpu", "fp32", max_batch=2, max_len=64)
    prompt = torch.randint(0, 500, (2, 16), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        first = fwd.step(prompt, 0)
        again = fwd.step(prompt, 0)
        assert torch.equal(first, again) and first.shape == (2,)
        nxt = fwd.step(first[:, None], 16)
        assert nxt.shape == (2,) and int(nxt.max()) < 500


def test_moe_models_are_refused(capsys):
    rc = main(["validate", "--device", "cpu", "--model", "mixtral-8x7b", "--hardware", "h100-sxm",
               "--quick", "--out-dir", "/nonexistent/never-written"])
    assert rc == 2
    assert "dense Llama-style" in capsys.readouterr().err


@pytest.mark.gpu
def test_validate_cuda_quick(tmp_path):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU visible")
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(TINY))
    rc = main(["validate", "--device", "cuda", "--model", str(cfg), "--hardware", "h100-sxm", "--quick",
               "--out-dir", str(tmp_path / "val")])
    assert rc == 0
    assert (pd.read_csv(tmp_path / "val" / "validation.csv")["measured_s"] > 0).all()
