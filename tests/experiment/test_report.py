"""What `run` and `compare` print: 120 columns, units in headers, no scientific notation, short sweep
labels, verdicts and request counts; and the sweep's short labels."""

from __future__ import annotations

import pandas as pd
import pytest

from llmsim.experiment.report import (
    WIDTH,
    compare_text,
    experiment_summary,
    fmt_ms,
    fmt_num,
    headline,
    run_table,
    status_over_seeds,
)
from llmsim.experiment.sweep import rate_key, short_keys, value_label, values_label


def test_number_formats_never_use_scientific_notation():
    assert fmt_num(388_500.0) == "388,500" and fmt_num(12.345) == "12.3" and fmt_num(0.012345) == "0.0123"
    assert fmt_ms(388.5) == "388,500" and fmt_ms(0.0123) == "12.3" and fmt_ms(None) == "-"
    assert fmt_num(float("nan")) == "-" and fmt_num(0) == "0"


def test_short_labels():
    keys = ["sweep.layout.tp", "sweep.scheduler.chunk_size", "sweep.kv.chunk_size"]
    assert short_keys(keys) == {"sweep.layout.tp": "tp", "sweep.scheduler.chunk_size": "scheduler.chunk_size",
                                "sweep.kv.chunk_size": "kv.chunk_size"}
    assert value_label('{"kind": "vllm", "mode": "v0"}') == "vllm mode=v0"
    assert value_label(2.0) == "2" and value_label([1, 2.5]) == "1,2.5"
    assert values_label({"layout.tp": 2, "scheduler": {"kind": "sarathi", "chunk_size": 512}}) == \
        "tp=2, sarathi chunk_size=512"
    assert rate_key(["sweep.layout.tp", "sweep.workload.arrival.rate_per_s"]) == "sweep.workload.arrival.rate_per_s"
    assert rate_key(["sweep.workload.arrival.cv"]) is None


def summary(n_configs=2, rates=(2.0, 4.0), seeds=(0,)):
    rows = []
    for c in range(n_configs):
        for r in rates:
            for s in seeds:
                over = r == rates[-1] and c == 0
                rows.append({
                    "point_id": f"p{c}{r}{s}", "seed": s, "sweep.workload.arrival.rate_per_s": r,
                    "sweep.scheduler": f'{{"kind": "sarathi", "chunk_size": {256 * 2 ** c}, "max_num_seqs": 128}}',
                    "load_verdict": "overloaded" if over else "stable", "throughput_rps": r * (0.8 if over else 1),
                    "output_tokens_per_s": 400.0 * r, "ttft_p50_s": 388.5 if over else 0.05, "ttft_p99_s": 0.2,
                    "tpot_p50_s": 0.012, "tpot_p99_s": 0.02, "itl_p99_s": 0.03, "e2e_p50_s": 4.2,
                    "slo_attainment": 0.5 if over else 0.99, "slo_met": not over, "slo_target_attainment": 0.9,
                    "slo_ttft_s": 1.0, "slo_tpot_s": 0.05, "num_rejected": 61 if over else 0, "num_unfinished": 3,
                    "preemptions": 7, "num_gpus": 1})
    return pd.DataFrame(rows)


def test_run_table_fits_and_says_what_matters():
    text = run_table(summary())
    widest = max(len(line) for line in text.splitlines())
    assert widest <= WIDTH
    assert "TTFT ms" in text and "TPOT ms" in text and "E2E s" in text  # units in the headers
    assert "388,500" in text and "e+" not in text
    assert "OVERLOADED" in text and "61/3" in text  # verdict and rejected/unfinished counts
    # short labels, no JSON, and block fields that never vary (max_num_seqs) left out
    assert "sarathi chunk_size=256\n" in text and '{"kind"' not in text and "max_num_seqs" not in text
    assert "warning: OVERLOADED" in text


def test_run_table_with_long_labels_uses_a_legend():
    df = summary(n_configs=3)
    df["sweep.workload.input_len"] = [f'{{"kind": "lognormal", "mean": {1000 + i % 2}, "sigma": 1.2}}'
                                      for i in range(len(df))]
    text = run_table(df)
    assert max(len(line) for line in text.splitlines()) <= WIDTH
    assert text.startswith("configurations:") and "  A: " in text and "lognormal mean=1000" in text


def test_headline_names_goodput_and_capacity():
    exp = experiment_summary(summary(n_configs=1, rates=(2.0, 4.0, 6.0)))
    assert exp["configurations"][0]["goodput_rps"] == 4.0
    text = headline(exp)
    assert "TTFT <= 1 s, TPOT <= 50 ms on 90% of requests" in text
    assert "goodput >= 4 req/s (6 overloaded)" in text and "overloaded from 6" in text


def test_compare_aligns_runs_side_by_side():
    a, b = summary(n_configs=1, seeds=(0, 1)), summary(n_configs=1)
    b["ttft_p50_s"] = 0.07
    text = compare_text([a, b], ["a", "b"], ["status", "ttft_p50", "e2e_p50"])
    lines = text.splitlines()
    assert "TTFT p50 ms" in lines[0] and "E2E p50 s" in lines[0]
    assert lines[1].split()[1:3] == ["a", "b"]  # runs side by side under each metric
    row = next(line for line in lines if line.startswith("rate_per_s=2 "))  # the constant scheduler left out
    assert "50.0" in row and "70.0" in row  # ms, not s
    assert "OVERLOADED" in text


def test_compare_drops_metrics_that_do_not_fit_and_rejects_unknown_ones():
    runs = [summary(n_configs=2) for _ in range(4)]
    text = compare_text(runs, ["r1", "r2", "r3", "r4"])
    assert max(len(line) for line in text.splitlines()) <= WIDTH and "left out to fit" in text
    assert text.startswith("points:\n  A: rate_per_s=2, sarathi chunk_size=256")  # long labels: a legend
    from llmsim.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown metric"):
        compare_text(runs, ["r1", "r2", "r3", "r4"], ["bogus"])


def test_status_over_seeds():
    assert status_over_seeds(pd.Series(["stable", "overloaded"])) == "OVERLOADED 1/2"
    assert status_over_seeds(pd.Series(["stable", "stable"])) == "stable"
    assert status_over_seeds(pd.Series(["inconclusive", "stable"])) == "inconclusive 1/2"
