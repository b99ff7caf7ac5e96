"""Engine profiles: shipped profiles load, vLLM's defaults by GPU class, CUDA-graph limits, overrides, errors."""

from __future__ import annotations

import pytest

from llmsim.engines import capture_sizes, engine_names, load_engine, resolve_engine
from llmsim.errors import ConfigError, UnknownNameError
from llmsim.specs import load_hardware


def test_every_shipped_profile_loads_and_resolves():
    assert {"generic", "vllm-0.6", "vllm-0.10", "vllm-0.11", "vllm-0.15"} <= set(engine_names())
    for name in engine_names():
        p = load_engine(name)
        rt = resolve_engine(p, load_hardware("h100-sxm"))
        assert rt.block_size == 16 and rt.gpu_memory_utilization == 0.9


@pytest.mark.parametrize(("hardware", "context", "tokens", "seqs"), [
    ("h100-sxm", "server", 8192, 1024),  # >= 70 GiB and not an A100 (EngineArgs.get_batch_defaults)
    ("h100-sxm", "offline", 16384, 1024),
    ("h200", "server", 8192, 1024),
    ("a100-sxm-80gb", "server", 2048, 256),  # 80 GiB, but excluded by name
    ("a100-sxm-80gb", "offline", 8192, 256),
    ("l40s", "server", 2048, 256),  # 48 GB
    ("a10g", "server", 2048, 256),
])
def test_vllm_015_scheduler_defaults_by_gpu_class_and_usage_context(hardware, context, tokens, seqs):
    p = load_engine({"name": "vllm-0.15", "usage_context": context})
    block = resolve_engine(p, load_hardware(hardware)).scheduler_block
    assert (block["max_num_batched_tokens"], block["max_num_seqs"]) == (tokens, seqs)


def test_experiment_values_override_the_engine_defaults():
    p = load_engine("vllm-0.15")
    rt = resolve_engine(p, load_hardware("h100-sxm"), scheduler={"kind": "vllm", "max_num_seqs": 128,
                                                                  "max_num_batched_tokens": 2048})
    assert rt.scheduler_block["max_num_seqs"] == 128 and rt.scheduler_block["max_num_batched_tokens"] == 2048
    assert rt.kv_kind == "prefix" and rt.async_scheduling


@pytest.mark.parametrize(("seqs", "tokens", "limit"), [(128, 2048, 256), (300, 8192, 512), (1024, 8192, 512),
                                                      (128, 200, 200), (4, 2048, 8)])
def test_graph_capture_limit_is_min_of_twice_max_num_seqs_512_and_the_token_budget(seqs, tokens, limit):
    rt = resolve_engine(load_engine("vllm-0.15"), load_hardware("h100-sxm"),
                        scheduler={"max_num_seqs": seqs, "max_num_batched_tokens": tokens})
    assert rt.max_capture_size == limit
    assert rt.scheduler_block["max_capture_size"] == limit


def test_capture_size_lists_per_vllm_version():
    v1 = capture_sizes("v1", 512)
    assert v1[:4] == [1, 2, 4, 8] and v1[-3:] == [480, 496, 512] and 248 in v1 and 264 not in v1
    assert capture_sizes("v1", 200)[-1] == 200 and 204 not in capture_sizes("v1", 204)
    assert capture_sizes("v1_step8", 512)[-3:] == [496, 504, 512]
    assert capture_sizes("v0", 512)[-1] == 256
    assert capture_sizes("v1", 0) == []


def test_launch_mode_follows_the_dispatcher():
    p = load_engine("vllm-0.15")
    assert p.launch_mode(64, True, 256) == "full"
    assert p.launch_mode(64, False, 256) == "piecewise"
    assert p.launch_mode(300, True, 256) == "eager"
    assert load_engine("vllm-0.10").launch_mode(64, True, 256) == "piecewise"  # 0.10: piecewise only
    assert load_engine("vllm-0.6").launch_mode(64, False, 256) == "eager"  # v0: decode graphs only
    assert load_engine("generic").launch_mode(1, True, 256) == "eager"


def test_period_is_max_with_async_scheduling_and_sum_without():
    hw = load_hardware("h100-sxm")
    a = resolve_engine(load_engine("vllm-0.15"), hw)
    s = resolve_engine(load_engine("vllm-0.11"), hw)
    assert a.period_s(0.010, 0.004) == pytest.approx(0.010)
    assert a.period_s(0.003, 0.004) == pytest.approx(0.004)
    assert a.period_s(0.010, 0.004, after_idle=True) == pytest.approx(0.014)
    assert s.period_s(0.010, 0.004) == pytest.approx(0.014)


def test_overrides_are_merged_and_checked():
    p = load_engine({"name": "vllm-0.15", "cpu": {"step_s": 0.002}, "cuda_graphs": {"mode": "none"}})
    assert p.cpu.step_s == 0.002 and p.cuda_graphs.mode == "none"
    assert p.cuda_graphs.sizes == "v1"  # the rest of the block is kept
    with pytest.raises(ConfigError, match=r"cpu.*bogus"):
        load_engine({"name": "vllm-0.15", "cpu": {"bogus": 1}})
    with pytest.raises(ConfigError, match="cpu.step_s"):
        load_engine({"name": "vllm-0.15", "cpu": {"step_s": -1}})
    with pytest.raises(ConfigError, match="cuda_graphs.mode"):
        load_engine({"name": "vllm-0.15", "cuda_graphs": {"mode": "sometimes"}})
    with pytest.raises(ConfigError, match="unknown field.*scheduler"):
        load_engine({"name": "vllm-0.15", "scheduler": {"kind": "sarathi"}})
    with pytest.raises(UnknownNameError, match="vllm-0.15"):
        load_engine("vllm-9.9")


def test_an_engine_runs_only_its_own_scheduler():
    hw = load_hardware("h100-sxm")
    with pytest.raises(ConfigError, match="scheduler.kind"):
        resolve_engine(load_engine("vllm-0.15"), hw, scheduler={"kind": "sarathi"})
    with pytest.raises(ConfigError, match="scheduler.mode"):
        resolve_engine(load_engine("vllm-0.15"), hw, scheduler={"kind": "vllm", "mode": "v0"})
    assert resolve_engine(load_engine("generic"), hw, scheduler={"kind": "sarathi"}).scheduler_block == {
        "kind": "sarathi"}


def test_profile_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "mine.yaml"
    bad.write_text("name: mine\nfamily: vllm\nscheduler: {kind: vllm, mode: v1}\nasync_scheduling: maybe\n")
    with pytest.raises(ConfigError, match=r"mine\.yaml.*async_scheduling"):
        load_engine(str(bad))
    bad.write_text("name: mine\nfamily: vllm\nscheduler: {kind: vllm}\nfrontend: {request_ms: 3}\n")
    with pytest.raises(ConfigError, match=r"mine\.yaml.*frontend.*request_ms"):
        load_engine(str(bad))
