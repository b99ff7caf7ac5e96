"""Mooncake JSONL written and read back: lengths, millisecond timestamps, and prefix sharing preserved."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from llmsim.errors import ConfigError
from llmsim.workload import generate_requests, load_workload
from llmsim.workload.request import Request
from llmsim.workload.trace_formats import mooncake_records, write_mooncake
from llmsim.workload.traces import load_trace

REPO = Path(__file__).resolve().parents[2]


def test_records_by_hand():
    reqs = [Request(0, 0.0, 1000, 10, prefix_hashes=(7,)), Request(1, 0.0126, 600, 5),
            Request(2, 1.5, 513, 3, prefix_hashes=(7, 9))]
    assert mooncake_records(reqs) == [
        {"timestamp": 0, "input_length": 1000, "output_length": 10, "hash_ids": [7, 10]},  # 2 blocks, 1 own
        {"timestamp": 13, "input_length": 600, "output_length": 5, "hash_ids": [11, 12]},  # fresh: no sharing
        {"timestamp": 1500, "input_length": 513, "output_length": 3, "hash_ids": [7, 9]},
    ]
    with pytest.raises(ConfigError, match="64-token blocks, not the trace's 512"):
        mooncake_records([Request(0, 0.0, 100, 1, prefix_hashes=(1,), prefix_chunk_tokens=64)])


def _signature(hashes):
    """Which requests share which leading blocks, independent of the ids' values."""
    first_seen: dict[int, int] = {}
    return [tuple(first_seen.setdefault(h, i) for h in row) for i, row in enumerate(hashes)]


def test_round_trip_keeps_lengths_times_and_sharing(tmp_path):
    spec = load_workload(REPO / "workloads" / "multi_turn_chat.yaml")
    reqs = list(generate_requests(spec, np.random.default_rng(3), num_requests=200))
    chunk = reqs[0].prefix_chunk_tokens
    path = tmp_path / "trace.jsonl"
    assert write_mooncake(reqs, path, block_tokens=chunk) == 200
    assert json.loads(path.read_text().splitlines()[0]).keys() == {"timestamp", "input_length", "output_length",
                                                                  "hash_ids"}
    back = load_trace(path, block_tokens=chunk)
    assert back.format == "mooncake" and len(back) == 200
    assert list(back.input_tokens) == [r.input_tokens for r in reqs]
    assert list(back.output_tokens) == [r.output_tokens for r in reqs]
    t0 = reqs[0].arrival_s
    assert np.allclose(back.arrival_s, [r.arrival_s - t0 for r in reqs], atol=1e-3)  # millisecond stamps
    own = [r.prefix_hashes + (None,) * (-(-r.input_tokens // chunk) - len(r.prefix_hashes)) for r in reqs]
    fresh = iter(range(-1, -10**9, -1))
    own = [tuple(h if h is not None else next(fresh) for h in row) for row in own]
    assert _signature(back.hash_ids) == _signature(own)


def test_trace_command_writes_the_point_as_simulated(tmp_path, capsys):
    from llmsim.cli import main

    out = tmp_path / "qs.jsonl"
    exp = str(REPO / "experiments" / "quickstart.yaml")
    assert main(["trace", exp, "-o", str(out), "--point", "1", "--set", "stop={num_requests: 50}"]) == 0
    lines = out.read_text().splitlines()
    assert len(lines) == 50 and "50 requests" in capsys.readouterr().out
    assert main(["trace", exp, "-o", str(out), "--point", "99"]) == 2
    assert "--point: expected 0 to 11" in capsys.readouterr().err
