import re

import numpy as np
import pytest

from llmsim.errors import ConfigError
from llmsim.workload import load_trace
from llmsim.workload.trace_formats import detect_format, parse_timestamp_s


def test_azure_2023_schema(fixture_path):
    t = load_trace(fixture_path("azure2023.csv"))
    assert t.format == "azure" and len(t) == 8 and not t.malformed
    assert t.arrival_s[0] == 0.0
    assert t.arrival_s[1] == pytest.approx(50.9951690 - 46.6805900, abs=1e-6)
    assert t.arrival_s[-1] == pytest.approx(62.1234567 - 46.6805900, abs=1e-6)  # all 7 decimals kept
    assert list(t.input_tokens[:2]) == [374, 396] and list(t.output_tokens[:2]) == [44, 109]
    assert t.hash_ids is None


def test_azure_2024_schema_with_utc_offsets(fixture_path):
    t = load_trace(fixture_path("azure2024.csv"))
    assert len(t) == 5
    assert t.arrival_s[1] == pytest.approx(0.502, abs=1e-6)
    # "02:00:03.25+02:00" is the same instant as "00:00:03.25+00:00"
    assert t.arrival_s[3] == pytest.approx(t.arrival_s[4]) == pytest.approx(3.24007, abs=1e-6)


def test_timestamp_parser():
    assert parse_timestamp_s("1970-01-01 00:00:01.5") == 1.5
    assert parse_timestamp_s("1970-01-01T01:00:00Z") == 3600
    assert parse_timestamp_s("1970-01-01 01:00:00-01:00") == 7200
    assert parse_timestamp_s("12.25") == 12.25
    with pytest.raises(ValueError):
        parse_timestamp_s("noon")


def test_azure_malformed_rows_are_counted_with_line_numbers(fixture_path):
    t = load_trace(fixture_path("azure_malformed.csv"))
    assert len(t) == 2 and t.rows_read == 7
    lines = {m.line: m.reason for m in t.malformed}
    assert sorted(lines) == [3, 4, 5, 6, 7]
    assert "TIMESTAMP" in lines[3]
    assert "expected 3 fields, got 2" in lines[4]
    assert "ContextTokens is not a number" in lines[5]
    assert "output tokens must be >= 1" in lines[6]
    assert "not an integer" in lines[7]
    report = t.malformed_report()
    assert "skipped 5 malformed row(s) of 7" in report and "line 4:" in report


def test_strict_fails_on_first_malformed_row(fixture_path):
    with pytest.raises(ConfigError, match=r"azure_malformed\.csv:3: malformed row: bad TIMESTAMP"):
        load_trace(fixture_path("azure_malformed.csv"), strict=True)


def test_mooncake(fixture_path):
    t = load_trace(fixture_path("mooncake.jsonl"))
    assert t.format == "mooncake" and len(t) == 7
    assert list(t.arrival_s) == [0, 0, 3, 3, 6, 6, 9]
    assert t.hash_ids[3] == (0, 1, 2, 5) and t.chunk_tokens == 512
    reqs = list(t.requests())
    assert reqs[3].prefix_hashes == (0, 1, 2, 5) and reqs[6].id == 6


def test_mooncake_malformed(fixture_path):
    t = load_trace(fixture_path("mooncake_malformed.jsonl"))
    assert len(t) == 2
    lines = {m.line: m.reason for m in t.malformed}
    assert sorted(lines) == [2, 3, 4, 5, 6]
    assert "invalid JSON" in lines[2] and "missing field 'input_length'" in lines[3]
    assert "JSON object" in lines[4] and "input tokens" in lines[5] and "hash id" in lines[6]


def test_burstgpt_failed_requests_and_model_filter(fixture_path):
    t = load_trace(fixture_path("burstgpt.csv"))
    assert t.format == "burstgpt" and len(t) == 4
    assert {m.line for m in t.malformed} == {3, 6}
    assert list(t.arrival_s) == [0, 113, 135, 195]
    gpt4 = load_trace(fixture_path("burstgpt.csv"), model="GPT-4")
    assert list(gpt4.input_tokens) == [417, 95]


def test_lengths_csv(fixture_path):
    t = load_trace(fixture_path("lengths.csv"))
    assert t.format == "lengths_csv" and t.arrival_s is None and len(t) == 5
    assert list(t.output_tokens) == [918, 905, 300, 12, 40]
    bad = load_trace(fixture_path("lengths_malformed.csv"))
    assert len(bad) == 1 and {m.line for m in bad.malformed} == {3, 4, 5}


def test_generic_csv_with_column_mapping(fixture_path):
    cols = {
        "arrival_s": "t_ms",
        "input_tokens": "prompt",
        "output_tokens": "completion",
        "hash_ids": "blocks",
    }
    t = load_trace(fixture_path("generic.csv"), format="csv", columns=cols, time_unit="ms", block_tokens=256)
    assert list(t.arrival_s) == [0, 0.25, 0.25, 1.0]
    assert t.hash_ids[3] == (1, 3, 5) and t.chunk_tokens == 256
    with pytest.raises(ConfigError, match="missing column"):
        load_trace(fixture_path("generic.csv"), format="csv")
    with pytest.raises(ConfigError, match="unknown field"):
        load_trace(fixture_path("generic.csv"), format="csv", columns={"arrival": "t_ms"})


def test_generic_jsonl_sorts_arrivals(fixture_path):
    t = load_trace(fixture_path("generic.jsonl"))
    assert t.format == "jsonl"
    assert list(t.input_tokens) == [20, 10, 30]
    assert t.arrival_s == pytest.approx([0, 0.4, 1.9])
    assert t.warnings == ("1 row(s) go back in time (first at line 2, 0.4 s before an earlier row); replayed "
                          "sorted by arrival time",)


@pytest.mark.parametrize(("name", "rows"), [
    ("t.jsonl", ['{"timestamp": 0, "input_length": 5, "output_length": 2}',
                 '{"timestamp": -2500, "input_length": 5, "output_length": 2}']),
    ("t.csv", ["arrival_s,input_tokens,output_tokens", "0.5,5,2", "1.0,5,2", "-1,5,2"]),
])
@pytest.mark.parametrize("strict", [False, True])
def test_negative_timestamps_are_refused_with_the_line(tmp_path, name, rows, strict):
    path = tmp_path / name
    path.write_text("\n".join(rows) + "\n")
    fmt = "mooncake" if name.endswith("jsonl") else "csv"
    line = 2 if fmt == "mooncake" else 4
    with pytest.raises(ConfigError, match=rf"^{path}:{line}: timestamp: must be >= 0 .*got -\d"):
        load_trace(path, format=fmt, strict=strict)


def test_azure_rows_out_of_order_are_named_by_line(tmp_path):
    path = tmp_path / "azure.csv"
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.0,10,2\n"
                    "2023-11-16 18:15:50.0,10,2\n2023-11-16 18:15:47.5,10,2\n")
    t = load_trace(path)
    assert t.arrival_s == pytest.approx([0, 1.5, 4.0])
    assert t.warnings and "first at line 4, 2.5 s before" in t.warnings[0]


def test_detect_format(fixture_path):
    expected = {
        "azure2023.csv": "azure",
        "mooncake.jsonl": "mooncake",
        "burstgpt.csv": "burstgpt",
        "lengths.csv": "lengths_csv",
        "generic.csv": "csv",
        "generic.jsonl": "jsonl",
    }
    for name, fmt in expected.items():
        assert detect_format(fixture_path(name)) == fmt


def test_window_speed_sample(fixture_path):
    path = fixture_path("azure2023.csv")
    full = load_trace(path)
    win = load_trace(path, start_s=4.0, end_s=10.0)
    keep = (full.arrival_s >= 4) & (full.arrival_s < 10)
    assert len(win) == keep.sum() and win.arrival_s == pytest.approx(full.arrival_s[keep] - 4.0)
    fast = load_trace(path, speed=2.0)
    assert fast.arrival_s == pytest.approx(full.arrival_s / 2)
    assert len(load_trace(path, max_requests=3)) == 3
    a, b = load_trace(path, sample=0.5, seed=3), load_trace(path, sample=0.5, seed=3)
    assert np.array_equal(a.input_tokens, b.input_tokens) and len(a) < len(full)


def test_spread_ties(fixture_path):
    t = load_trace(fixture_path("mooncake.jsonl"), spread_s=3.0, seed=1)
    assert np.all(np.diff(t.arrival_s) > 0) and t.arrival_s[-1] < 12
    assert "spread" in t.notes[0]


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"format": "parquet"}, "unknown trace format 'parquet'"),
        ({"end_s": 1.0, "start_s": 2.0}, "must be greater than start_s"),
        ({"speed": 0.0}, "speed: expected a finite number > 0, got 0.0"),
        ({"sample": 1.5}, "sample: expected a fraction in (0, 1], got 1.5"),
        ({"max_requests": float("nan")}, "max_requests: expected an integer >= 1, got nan"),
        ({"spread_s": float("inf")}, "spread_s: expected a finite number > 0, got inf"),
        ({"seed": -1}, "seed: expected an integer >= 0, got -1"),
        ({"strict": "yes"}, "strict: expected true or false, got 'yes'"),
        ({"start_s": -5}, "start_s: expected a finite number >= 0, got -5"),
        ({"colums": {}}, "unknown option(s) colums for trace format 'azure'"),
    ],
)
def test_bad_options(fixture_path, kwargs, fragment):
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        load_trace(fixture_path("azure2023.csv"), **kwargs)


def test_options_needing_timestamps_on_length_only_trace(fixture_path):
    with pytest.raises(ConfigError, match="needs arrival times"):
        load_trace(fixture_path("lengths.csv"), speed=2.0)


def test_missing_file():
    with pytest.raises(ConfigError, match="trace file not found"):
        load_trace("/nonexistent/trace.csv")


@pytest.mark.parametrize(
    ("name", "rows", "fmt"),
    [
        ("azure2023_code.csv", 8819, "azure"),
        ("azure2023_conv.csv", 19366, "azure"),
        ("mooncake_conversation_trace.jsonl", 12031, "mooncake"),
        ("mooncake_synthetic_trace.jsonl", 3993, "mooncake"),
        ("vidur_sharegpt_8k_llama2tok.csv", None, "lengths_csv"),
        ("vidur_arxiv_summarization_llama2tok.csv", None, "lengths_csv"),
        ("vidur_bwb_llama2tok.csv", None, "lengths_csv"),
    ],
)
def test_real_traces_load_cleanly(real_trace, name, rows, fmt):
    t = load_trace(real_trace(name))
    assert t.format == fmt and not t.malformed
    if rows is not None:
        assert len(t) == rows
    else:
        assert len(t) > 25_000
