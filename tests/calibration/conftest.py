"""One real CPU calibration (a tiny model, a few seconds) shared by the pipeline tests."""

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")

TINY_MODEL = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 256, "intermediate_size": 512,
    "num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": 2, "vocab_size": 1024,
    "max_position_embeddings": 4096, "head_dim": 64,
}


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "tiny.json"
    path.write_text(json.dumps(TINY_MODEL))
    return path


@pytest.fixture(scope="session")
def cpu_run(tmp_path_factory, tiny_model_path):
    """`llmsim calibrate --device cpu` for real on a tiny sweep; returns (exit code, profile path, data dir)."""
    from llmsim.cli import main

    root = tmp_path_factory.mktemp("calibration")
    out, data = root / "profiles" / "tiny-cpu.yaml", root / "data"
    code = main(["calibrate", "--device", "cpu", "--models", str(tiny_model_path), "--max-m", "32",
                 "--repeats", "3", "--threads", "1", "--out", str(out), "--data-dir", str(data), "--no-progress"])
    return code, out, data
