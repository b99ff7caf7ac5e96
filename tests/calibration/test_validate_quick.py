"""`llmsim validate --device cpu --quick` is bounded: a toy model of the same architecture, progress lines,
seconds rather than the hours (and ~16 GB) the full llama-3.1-8b would take on one CPU thread."""

import subprocess
import sys

import pandas as pd
import pytest

from llmsim.calibration.validate import QUICK_CPU_MAX_PARAMS, quick_cpu_model
from llmsim.specs import load_model

pytest.importorskip("torch")


def test_quick_cpu_model_keeps_the_architecture_at_toy_size():
    big = load_model("llama-3.1-8b")  # 32 heads of 128 over 8 KV heads, MLP 14336 / hidden 4096 = 3.5
    small = quick_cpu_model(big)
    assert (small.num_layers, small.head_dim, small.num_heads, small.num_kv_heads) == (2, 128, 8, 2)
    assert (small.hidden_size, small.ffn_size, small.vocab_size) == (1024, 3584, 8192)  # 1024 x 3.5 = 3584
    assert small.attention_kind == "GQA" and small.param_count() <= QUICK_CPU_MAX_PARAMS
    mha = quick_cpu_model(load_model("llama-2-7b"))  # MHA stays MHA
    assert (mha.num_heads, mha.num_kv_heads, mha.hidden_size) == (4, 4, 512)
    assert quick_cpu_model(small) is small


def test_validate_cpu_quick_on_the_default_model_is_bounded(tmp_path):
    out = tmp_path / "val"
    proc = subprocess.run([sys.executable, "-m", "llmsim.cli", "validate", "--device", "cpu", "--quick",
                           "--hardware", "h100-sxm", "--out-dir", str(out)],
                          capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr
    assert "timing llama-3.1-8b-quick-cpu instead" in proc.stderr
    assert "[4/4] decode batch 4 x 64:" in proc.stderr  # progress, one line per point
    assert len(pd.read_csv(out / "validation.csv")) == 4
