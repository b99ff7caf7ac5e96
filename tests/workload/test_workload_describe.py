import json

import numpy as np
import pytest
from scipy import stats

from llmsim.workload import load_trace
from llmsim.workload.commands import main
from llmsim.workload.describe import describe_trace, format_summary, sparkline


def test_describe_matches_independent_statistics(fixture_path):
    import csv
    from datetime import datetime

    rows = list(csv.DictReader(fixture_path("azure2023.csv").open()))
    t = np.array([datetime.fromisoformat(r["TIMESTAMP"][:26]).timestamp() for r in rows])
    t = t - t[0]
    inp = np.array([int(r["ContextTokens"]) for r in rows])
    out = np.array([int(r["GeneratedTokens"]) for r in rows])
    s = describe_trace(load_trace(fixture_path("azure2023.csv")))
    gaps = np.diff(t)
    assert s.requests == 8
    assert s.duration_s == pytest.approx(t[-1], abs=1e-5)
    assert s.mean_rate_per_s == pytest.approx(8 / t[-1], rel=1e-6)
    assert s.interarrival_cv == pytest.approx(gaps.std() / gaps.mean(), rel=1e-5)
    assert s.input_tokens.p90 == pytest.approx(np.percentile(inp, 90))
    assert s.output_tokens.p50 == pytest.approx(np.median(out))
    assert s.output_tokens.max == out.max() and s.input_tokens.mean == pytest.approx(inp.mean())
    assert s.io_pearson == pytest.approx(np.corrcoef(inp, out)[0, 1])
    assert s.io_spearman == pytest.approx(stats.spearmanr(inp, out).statistic)
    assert s.rate_bin_s == 1.0 and sum(s.rate_per_s) * s.rate_bin_s == 8
    assert s.prefix_hit_share is None


def test_prefix_reuse_by_hand(fixture_path):
    s = describe_trace(load_trace(fixture_path("mooncake.jsonl")))
    # hits: row 2 blocks 0,1; row 3 block 0; row 4 blocks 0,1,2; row 7 block 7 (see the fixture)
    assert s.prefix_hit_share == pytest.approx((1024 + 512 + 1536 + 512) / 7084)
    assert s.tied_arrival_share == pytest.approx(3 / 6)


def test_table_and_sparkline(fixture_path):
    text = format_summary(describe_trace(load_trace(fixture_path("mooncake.jsonl"))))
    for key in (
        "requests",
        "mean rate",
        "inter-arrival CV",
        "rate per",
        "input tokens",
        "prefix reuse",
        "tied arrivals",
    ):
        assert key in text
    assert sparkline([0, 1, 2]) == "▁▅█" and sparkline([0, 0]) == "▁▁"


def test_describe_command_json(fixture_path, capsys):
    assert main(["describe", str(fixture_path("azure_malformed.csv")), "--json"]) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert data["requests"] == 2 and data["malformed_rows"] == 5
    assert data["malformed"][0] == {"line": 3, "reason": "bad TIMESTAMP 'yesterday at noon'"}
    assert "skipped 5 malformed" in captured.err


def test_describe_command_table_length_only(fixture_path, capsys):
    assert main(["describe", str(fixture_path("lengths.csv"))]) == 0
    out = capsys.readouterr().out
    assert "lengths_csv" in out and "duration" in out


def test_real_mooncake_prefix_reuse_is_about_37_percent(real_trace):
    s = describe_trace(load_trace(real_trace("mooncake_conversation_trace.jsonl")))
    assert s.prefix_hit_share == pytest.approx(0.37, abs=0.01)
    assert s.tied_arrival_share > 0.8  # ~3 s quantised clock


def test_real_azure_burstiness(real_trace):
    code = describe_trace(load_trace(real_trace("azure2023_code.csv")))
    conv = describe_trace(load_trace(real_trace("azure2023_conv.csv")))
    assert code.interarrival_cv == pytest.approx(13, rel=0.05)
    assert conv.interarrival_cv == pytest.approx(1.1, abs=0.05)
    assert code.requests == 8819 and code.duration_s == pytest.approx(3436, abs=1)
