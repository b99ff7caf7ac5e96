"""Long-context KV: StreamingLLM window + sinks and H2O budgets cap a sequence's blocks and the keys its
queries read; 2/3/4-bit KV caches by their bytes and their dequantisation cost (by hand)."""

from __future__ import annotations

import json

import pytest
import yaml

from llmsim.cli import main
from llmsim.cost import CostModel
from llmsim.errors import ConfigError
from llmsim.kv import WindowedKV
from llmsim.sched.seq import Seq
from llmsim.specs import Precision, load_model
from llmsim.specs.precision import DTYPE_BYTES
from llmsim.workload.request import Request


def test_streaming_window_caps_blocks_per_sequence():
    kv = WindowedKV(100, 16, policy="streaming", window=60, sinks=4)  # 64 tokens: 4 blocks, +1 being filled
    seq = Seq(Request(1, 0.0, 40, 400))
    assert kv.allocate(seq, 40) and kv.held_blocks(seq) == 3
    assert kv.allocate(seq, 64) and kv.held_blocks(seq) == 4
    assert kv.allocate(seq, 65) and kv.held_blocks(seq) == 5
    assert kv.allocate(seq, 440) and kv.held_blocks(seq) == 5  # never more
    assert kv.fits_ever(Seq(Request(2, 0.0, 10_000, 100_000)))
    kv.free(seq)
    kv.check()


def test_h2o_budget_and_bad_policies():
    assert WindowedKV(10, 16, policy="h2o", budget=32).cap == 32
    with pytest.raises(ConfigError, match='"policy" must be one of streaming, h2o'):
        WindowedKV(10, 16, policy="lru")
    with pytest.raises(ConfigError, match='"window" must be an integer >= 1'):
        WindowedKV(10, 16, window=0)


def test_low_bit_kv_bytes_and_dequant_cost_by_hand(test_hw):
    assert DTYPE_BYTES["int2"] == 0.25 + 2 / 128 and DTYPE_BYTES["int3"] == 0.375 + 2 / 128
    m = load_model("llama-3.1-8b")
    assert m.kv_bytes_per_token(DTYPE_BYTES["int2"]) == pytest.approx(2 * 32 * 1024 * (0.25 + 2 / 128))
    rows = {r.name: r for r in CostModel(m, test_hw, precision=Precision.parse("bf16", "int2"))
            .operator_costs([1] * 4, [999] * 4)}
    # 4000 keys, K and V of 8 KV heads x 128, 4 fp32 operations each, per layer; on 60 TFLOP/s fp32
    assert rows["kv_dequant"].flops == 32 * 4 * 4000 * 2 * 1024
    assert rows["kv_dequant"].time_s == pytest.approx(32 * 4 * 4000 * 2 * 1024 / 60e12)
    assert rows["attn_decode"].hbm_bytes == pytest.approx(32 * (4000 * 2 * 1024 * DTYPE_BYTES["int2"]
                                                                + 4 * 4096 * 2 * 2))
    bf16 = {r.name for r in CostModel(m, test_hw).operator_costs([1], [10])}
    assert "kv_dequant" not in bf16


EXP = {"name": "lc", "model": "llama-3.1-8b", "hardware": "h100-sxm", "scheduler": {"kind": "vllm", "mode": "v0"},
       "workload": {"arrival": {"kind": "poisson", "rate_per_s": 1.0}, "input_len": {"kind": "fixed", "value": 6000},
                    "output_len": {"kind": "fixed", "value": 64}},
       "stop": {"num_requests": 20}}


def _exp(tmp_path, capsys, data):
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    out = tmp_path / "res"
    code = main(["run", str(path), "--out", str(out), "--no-plots"])
    summary = json.loads(next((out / "points").rglob("summary.json")).read_text()) if code == 0 else None
    return code, capsys.readouterr().err, path, summary


def test_windowed_experiment_reads_fewer_keys(tmp_path, capsys):
    full = _exp(tmp_path / "full", capsys, {**EXP, "kv": {"kind": "paged"}})[3]
    window = _exp(tmp_path / "w", capsys, {**EXP, "kv": {"kind": "windowed", "window": 1020, "sinks": 4}})[3]
    # decode reads 1,024 keys instead of ~6,000 (prefill: the FlashAttention tile model costs a fresh prompt
    # as fully causal whatever the window, as for Mistral's)
    assert window["tpot_p50_s"] < full["tpot_p50_s"]
    code, err, path, _ = _exp(tmp_path / "bad", capsys, {**EXP, "kv": {"kind": "windowed", "window": -1}})
    assert code == 2 and err.startswith(f"error: {path}: kv") and '"window" must be an integer >= 1' in err, err
