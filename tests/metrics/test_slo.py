"""SLOs by hand: per-request attainment, percentile targets (ITL from the run's histogram), goodput."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from llmsim.metrics import LogHistogram, evaluate_slo, summarize
from llmsim.metrics.slo import check_slo_keys, percentile_key


def table(ttft, e2e, arrival=None, status=None) -> pd.DataFrame:
    n = len(ttft)
    return pd.DataFrame({"id": np.arange(n), "status": status or ["finished"] * n,
                         "arrival_s": arrival if arrival is not None else np.arange(n, dtype=float),
                         "ttft_s": ttft, "tpot_s": np.full(n, 0.02), "e2e_s": e2e})


def test_percentile_keys():
    assert percentile_key("itl_p99_s") == ("itl", 99.0)
    assert percentile_key("ttft_p99.9_s") == ("ttft", 99.9)
    for bad in ("itl_p100_s", "itl_p0_s", "queue_p99_s", "ttft_s", "ttft_p99"):
        assert percentile_key(bad) is None
    with pytest.raises(ValueError, match="queue_p99_s"):
        check_slo_keys({"queue_p99_s": 1.0})


def test_percentile_targets_and_goodput_by_hand():
    df = table(ttft=[0.1, 0.2, 0.3, 0.4, 2.0], e2e=[1.0, 1.0, 1.0, 1.0, 9.0])
    itl = LogHistogram()
    itl.add(np.r_[np.full(98, 0.01), np.full(2, 0.5)])  # a p99 stall of 500 ms
    out = evaluate_slo(df, df, {"ttft_s": 1.0, "ttft_p50_s": 0.3, "itl_p99_s": 0.1, "attainment": 0.8},
                       window_s=4.0, itl=itl)
    assert out["slo_attainment"] == pytest.approx(0.8)
    assert out["goodput_rps"] == pytest.approx(4 / 4.0)  # four requests meet TTFT <= 1 s in a 4 s window
    assert out["ttft_p50_s"] == pytest.approx(0.3) and out["slo_ttft_p50_s"] == 0.3
    assert out["itl_p99_s"] == pytest.approx(0.5, rel=0.01)
    assert out["slo_percentiles_met"] is False and out["slo_met"] is False  # the ITL tail misses
    relaxed = evaluate_slo(df, df, {"ttft_s": 1.0, "itl_p99_s": 1.0, "attainment": 0.8}, window_s=4.0, itl=itl)
    assert relaxed["slo_percentiles_met"] is True and relaxed["slo_met"] is True
    strict = evaluate_slo(df, df, {"ttft_s": 1.0, "attainment": 0.9}, window_s=4.0)
    assert strict["slo_met"] is False and "slo_percentiles_met" not in strict
    assert strict["slo_target_attainment"] == 0.9


def test_percentile_only_slo_has_no_attainment():
    df = table(ttft=[0.1, 0.2], e2e=[1.0, 2.0])
    out = evaluate_slo(df, df, {"e2e_p90_s": 3.0}, window_s=1.0)
    assert "slo_attainment" not in out and out["slo_met"] is True
    assert out["e2e_p90_s"] == pytest.approx(np.percentile([1.0, 2.0], 90))
    assert evaluate_slo(df, df, {"itl_p99_s": 3.0}, window_s=1.0)["slo_met"] is False  # no ITL data: not met


def test_summary_of_an_overloaded_run_never_meets_its_slo():
    from llmsim.metrics import Overload

    df = table(ttft=[0.1] * 50, e2e=[1.0] * 50).assign(finish_s=lambda d: d["arrival_s"] + 1.0)
    df = df.assign(input_tokens=10, output_tokens=5, queue_s=0.0, itl_max_s=0.01, preemptions=0, prefix_hit_tokens=0)
    steps = pd.DataFrame({c: [0.0] for c in ("start_s", "duration_s", "batch_size", "kv_blocks_used", "flops",
                                             "hbm_bytes", "prefill_tokens", "decode_tokens", "num_in_system")})
    steps = steps.assign(kv_blocks_total=1.0, duration_s=0.1)
    ok = summarize(df, steps, slo={"ttft_s": 1.0, "attainment": 0.9})
    assert ok["slo_met"] is True and ok["slo_attainment"] == 1.0
    over = summarize(df, steps, slo={"ttft_s": 1.0, "attainment": 0.9},
                     overload=Overload(True, "backlog grows", "overloaded"))
    assert over["slo_met"] is False and over["load_verdict"] == "overloaded"
