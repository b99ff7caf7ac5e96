"""Benchmark-result parsers on small files written here: the public formats' structure, invented numbers."""

import json

import pytest

from llmsim.cli import main
from llmsim.errors import ConfigError
from llmsim.trust.benchfiles import load_bench_file

# vllm bench serve --save-result (vllm/benchmarks/serve.py): main()'s setup keys merged with benchmark()'s
VLLM = {
    "date": "20260101-120000", "endpoint_type": "vllm", "backend": "vllm", "label": None,
    "model_id": "meta-llama/Llama-3.1-8B-Instruct", "tokenizer_id": "meta-llama/Llama-3.1-8B-Instruct",
    "num_prompts": 200, "request_rate": 4.0, "burstiness": 4.0, "max_concurrency": None,
    "duration": 51.2, "completed": 198, "failed": 2, "total_input_tokens": 101376, "total_output_tokens": 25344,
    "request_throughput": 3.867, "request_goodput": None, "output_throughput": 495.0,
    "total_token_throughput": 2475.0, "max_output_tokens_per_s": 640.0, "max_concurrent_requests": 12,
    "mean_ttft_ms": 42.0, "median_ttft_ms": 40.0, "std_ttft_ms": 5.0, "p99_ttft_ms": 80.0,
    "mean_tpot_ms": 9.0, "median_tpot_ms": 8.8, "std_tpot_ms": 0.4, "p99_tpot_ms": 11.0,
    "mean_itl_ms": 9.1, "median_itl_ms": 8.7, "std_itl_ms": 1.0, "p99_itl_ms": 20.0, "p99.9_itl_ms": 31.0,
    "mean_e2el_ms": 1200.0, "median_e2el_ms": 1180.0, "std_e2el_ms": 60.0, "p99_e2el_ms": 1400.0,
    "probe_median_e2el_ms": 999.0,
}


def _dist(mean, median, p90, p99, count=100):
    pct = {k: 0.0 for k in ("p001", "p01", "p05", "p10", "p25", "p75", "p95", "p999")}
    pct.update(p50=median, p90=p90, p99=p99)
    summary = {"mean": mean, "median": median, "mode": median, "variance": 1.0, "std_dev": 1.0, "min": 0.0,
               "max": p99 * 2, "count": count, "total_sum": mean * count, "percentiles": pct}
    return {"successful": summary, "incomplete": None, "errored": None, "total": summary}


def _guidellm_bench(strategy, ttft_ms):
    return {
        "type_": "generative_benchmark",
        "config": {"run_id": "x", "run_index": 0, "strategy": strategy, "constraints": {}, "profile": {},
                   "requests": {}, "backend": {}, "environment": {}},
        "duration": 60.0,
        "metrics": {
            "request_totals": {"successful": 300, "incomplete": 0, "errored": 3, "total": 303},
            "requests_per_second": _dist(5.0, 5.0, 6.0, 7.0),
            "request_latency": _dist(2.0, 1.9, 2.5, 3.0),
            "time_to_first_token_ms": _dist(ttft_ms, ttft_ms - 2, ttft_ms + 10, ttft_ms + 30),
            "time_per_output_token_ms": _dist(99.0, 99.0, 99.0, 99.0),  # includes TTFT: must not be read
            "inter_token_latency_ms": _dist(7.0, 6.9, 7.5, 8.0),
            "prompt_token_count": _dist(512.0, 512.0, 512.0, 512.0),
            "output_token_count": _dist(256.0, 256.0, 256.0, 256.0),
        },
    }


GUIDELLM = {"args": {"model": "Qwen/Qwen2.5-7B-Instruct"}, "benchmarks": [
    _guidellm_bench({"type_": "synchronous"}, 30.0),
    _guidellm_bench({"type_": "constant", "rate": 5.0}, 45.0),
    _guidellm_bench({"type_": "poisson", "rate": 7.5}, 60.0),
    _guidellm_bench({"type_": "concurrent", "streams": 16}, 70.0),
]}


def _ip_dist(mean, median, p90, p99):
    return {"mean": mean, "min": 0.0, "p0.1": 0.0, "p1": 0.0, "p5": 0.0, "p10": 0.0, "p25": 0.0, "median": median,
            "p75": 0.0, "p90": p90, "p95": 0.0, "p99": p99, "p99.9": 0.0, "max": p99 * 2}


INFERENCE_PERF = {
    "load_summary": {"count": 1200, "schedule_delay": _ip_dist(0.0004, 0.0004, 0.001, 0.002),
                     "send_duration": 120.0, "requested_rate": 10.0, "achieved_rate": 9.999},
    "successes": {
        "count": 1200,
        "latency": {"request_latency": _ip_dist(2.2, 2.1, 2.6, 3.1),
                    "normalized_time_per_output_token": _ip_dist(0.01, 0.01, 0.01, 0.01),
                    "time_per_output_token": _ip_dist(0.004, 0.004, 0.004, 0.004),
                    "time_to_first_token": _ip_dist(0.05, 0.045, 0.07, 0.12),
                    "inter_token_latency": _ip_dist(0.004, 0.0001, 0.008, 0.01)},
        "throughput": {"input_tokens_per_sec": 6000.0, "output_tokens_per_sec": 2000.0,
                       "total_tokens_per_sec": 8000.0, "requests_per_sec": 9.95},
        "prompt_len": _ip_dist(600.0, 600.0, 610.0, 615.0),
        "output_len": _ip_dist(201.0, 201.0, 201.0, 201.0),
    },
    "failures": {"count": 0, "request_latency": None, "prompt_len": None},
}


def _write(tmp_path, name, data):
    p = tmp_path / name
    p.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return p


def test_vllm_bench_serve(tmp_path):
    (r,) = load_bench_file(_write(tmp_path, "vllm.json", VLLM))
    assert r.source == "vllm" and r.model == "meta-llama/Llama-3.1-8B-Instruct"
    assert (r.arrival, r.rate_per_s, r.cv) == ("gamma", 4.0, pytest.approx(0.5))  # cv = 1 / sqrt(shape 4)
    assert (r.num_requests, r.failed) == (200, 2)
    assert r.input_len_mean == pytest.approx(101376 / 198) and r.output_len_mean == pytest.approx(25344 / 198)
    m = r.metrics
    assert m["ttft_mean_s"] == pytest.approx(0.042) and m["ttft_p50_s"] == pytest.approx(0.040)
    assert m["ttft_p99_s"] == pytest.approx(0.080) and m["tpot_p99_s"] == pytest.approx(0.011)
    assert m["e2e_mean_s"] == pytest.approx(1.2) and m["itl_p99_9_s"] == pytest.approx(0.031)
    assert m["throughput_rps"] == pytest.approx(3.867) and m["output_tokens_per_s"] == pytest.approx(495.0)
    assert not any("probe" in k or "std" in k for k in m)


def test_vllm_rate_inf_and_concurrency_and_jsonl(tmp_path):
    a = {**VLLM, "request_rate": "inf", "max_concurrency": 8, "burstiness": 1.0}
    b = {**VLLM, "request_rate": 2.0, "burstiness": 1.0, "input_lens": [100, 200], "output_lens": [10, 20]}
    runs = load_bench_file(_write(tmp_path, "v.jsonl", json.dumps(a) + "\n" + json.dumps(b) + "\n"))
    assert (runs[0].arrival, runs[0].concurrency) == ("closed_loop", 8)
    assert (runs[1].arrival, runs[1].cv) == ("poisson", 1.0)
    assert runs[1].input_lens == (100, 200) and runs[1].output_lens == (10, 20)
    (c,) = load_bench_file(_write(tmp_path, "b.json", {**VLLM, "request_rate": "inf"}))
    assert c.arrival == "batch"


def test_guidellm_report(tmp_path):
    runs = load_bench_file(_write(tmp_path, "benchmarks.json", GUIDELLM))
    assert [(r.arrival, r.rate_per_s, r.concurrency) for r in runs] == [
        ("closed_loop", None, 1), ("constant", 5.0, None), ("poisson", 7.5, None), ("closed_loop", None, 16)]
    r = runs[1]
    assert r.model == "Qwen/Qwen2.5-7B-Instruct" and (r.num_requests, r.failed) == (303, 3)
    assert r.metrics["ttft_mean_s"] == pytest.approx(0.045) and r.metrics["ttft_p99_s"] == pytest.approx(0.075)
    assert r.metrics["tpot_mean_s"] == pytest.approx(0.007)  # inter_token_latency_ms, not time_per_output_token
    assert r.metrics["e2e_p90_s"] == pytest.approx(2.5) and r.metrics["throughput_rps"] == pytest.approx(5.0)
    assert (r.input_len_mean, r.output_len_mean) == (512.0, 256.0)


def test_inference_perf_lifecycle_with_profile(tmp_path):
    results = tmp_path / "run" / "results"
    results.mkdir(parents=True)
    (tmp_path / "run" / "profile.yaml").write_text(
        "load: {type: constant, stages: [{rate: 10, duration: 120}]}\n"
        "server: {ignore_eos: true}\n"
        "data: {type: shared_prefix, shared_prefix: {num_unique_system_prompts: 4, num_users_per_system_prompt: 3,"
        " system_prompt_len: 100, question_len: 480, output_len: 250}}\n")
    (r,) = load_bench_file(_write(results, "stage_0_lifecycle_metrics.json", INFERENCE_PERF))
    assert (r.arrival, r.rate_per_s, r.cv, r.num_requests) == ("constant", 10.0, 0.0, 1200)
    assert r.output_len_mean == 250.0  # the profile's exact length (ignore_eos), not the client's count 201
    assert r.metrics["tpot_mean_s"] == pytest.approx((2.2 - 0.05) / 249)  # derived, not the chunk-level field
    assert r.metrics["ttft_p50_s"] == pytest.approx(0.045) and r.metrics["throughput_rps"] == pytest.approx(9.95)
    assert r.prefix["num_unique_system_prompts"] == 4


def test_inference_perf_without_profile_assumes_poisson(tmp_path):
    (r,) = load_bench_file(_write(tmp_path, "x_lifecycle_metrics.json", INFERENCE_PERF))
    assert r.arrival == "poisson" and r.output_len_mean == 201.0
    assert any("Poisson assumed" in n for n in r.notes)


@pytest.mark.parametrize("name,data,expect", [
    ("not.json", "{not json", "not JSON"),
    ("other.json", {"hello": 1}, "not a recognised benchmark result"),
    ("v1.json", {**VLLM, "completed": "many"}, "completed: expected a finite number"),
    ("v2.json", {**VLLM, "request_rate": -1.0}, "request_rate: expected a number > 0"),
    ("v3.json", {**VLLM, "max_concurrency": 0}, "max_concurrency: expected a positive integer"),
    ("v4.json", {**VLLM, "input_lens": [1, "x"]}, "input_lens: expected a list of token counts"),
    ("g1.json", {"benchmarks": []}, "benchmarks: empty"),
    ("g2.json", {"benchmarks": [{"config": {"strategy": {"type_": "constant"}}, "metrics": GUIDELLM["benchmarks"][0]
                                 ["metrics"]}]}, "benchmarks[0].config.strategy.rate: missing"),
    ("g3.json", {"benchmarks": [{"config": {"strategy": {"type_": "warp"}}, "metrics": GUIDELLM["benchmarks"][0]
                                 ["metrics"]}]}, "strategy.type_: expected synchronous"),
    ("g4.json", {"benchmarks": [{"config": {"strategy": {"type_": "synchronous"}}, "metrics": {}}]},
     "metrics.time_to_first_token_ms: missing"),
    ("i1.json", {**INFERENCE_PERF, "successes": {"count": 1}}, "successes.latency: missing"),
    ("i2.json", {**INFERENCE_PERF, "load_summary": {"count": 5, "requested_rate": None}},
     "load_summary.requested_rate: missing"),
])
def test_malformed_files_name_file_and_field(tmp_path, name, data, expect):
    path = _write(tmp_path, name, data)
    with pytest.raises(ConfigError, match=expect.replace("[", r"\[").replace("]", r"\]")) as exc:
        load_bench_file(path)
    assert str(path) in str(exc.value)


def test_cli_malformed_exit_2_with_file_and_field(tmp_path, capsys):
    path = _write(tmp_path, "bad.json", {**VLLM, "mean_ttft_ms": "fast"})
    code = main(["validate-run", str(path), "--model", "llama-3.1-8b", "--hardware", "h100-sxm"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and str(path) in err and "mean_ttft_ms" in err and "Traceback" not in err
    assert main(["validate-run", str(tmp_path / "absent.json"), "--model", "x", "--hardware", "y"]) == 2
    assert "cannot read" in capsys.readouterr().err
