"""KV memory hierarchy (llmsim.kv.tiers): GPU evictions written to host then disk, host/disk hits loaded over
PCIe before prefill and timed by hand, block conservation per tier, host tier bounded by host memory."""

from __future__ import annotations

import pytest
import yaml

from llmsim.cli import main
from llmsim.errors import ConfigError
from llmsim.kv import KV_MANAGERS
from llmsim.kv.tiers import GIB, TieredPrefixKV
from llmsim.sched.seq import Seq
from llmsim.workload.request import Request

BLOCK_BYTES = GIB / 4  # 1 GiB of host memory holds 4 blocks
LINK = 25e9


def make_seq(i: int, hashes: tuple[int, ...], inp: int | None = None) -> Seq:
    inp = inp if inp is not None else 16 * len(hashes) + 1
    return Seq(Request(i, 0.0, inp, 4, prefix_hashes=hashes, prefix_chunk_tokens=16))


def make_kv(num_blocks=6, cpu_gb=1.0, disk_gb=0.0, **kw) -> TieredPrefixKV:
    return TieredPrefixKV(num_blocks, 16, cpu_gb=cpu_gb, disk_gb=disk_gb, block_bytes=BLOCK_BYTES,
                          link_bytes_per_s=LINK, link_latency_s=1e-5, disk_bytes_per_s=5e9, **kw)


def _run(kv, seq):
    hit = kv.match_prefix(seq)
    assert kv.allocate(seq, seq.num_tokens)
    seq.num_computed = seq.num_tokens
    seq.status = "finished"
    kv.free(seq)
    return hit


def test_evicted_blocks_go_to_host_and_come_back_over_pcie():
    kv = make_kv()
    a = make_seq(1, (10, 11, 12, 13))  # 4 prefix blocks + 1 own block
    assert _run(kv, a) == 0
    assert kv.take_load_s() == 0.0
    b = make_seq(2, (20, 21, 22, 23, 24))  # 6 blocks: reuses every free block, evicting a's cached ones
    _run(kv, b)
    assert kv.host.num_written == 4 and len(kv.host) == 4  # a's 4 prefix blocks (its own block has no hash)
    c = make_seq(3, (10, 11, 12, 13))
    assert kv.match_prefix(c) == 64  # all from host: the GPU copies are gone
    assert kv.allocate(c, c.num_tokens)
    assert kv.num_host_hit_tokens == 64 and kv.num_hit_tokens == 0
    assert kv.take_load_s() == pytest.approx(1e-5 + 4 * BLOCK_BYTES / LINK)  # one copy of 4 blocks
    assert kv.take_load_s() == 0.0  # taken once
    kv.check()


def test_host_lru_spills_to_disk_and_disk_hits_pay_the_disk_read():
    kv = make_kv(cpu_gb=0.5, disk_gb=1.0)  # host 2 blocks, disk 4
    _run(kv, make_seq(1, (10, 11, 12, 13)))
    _run(kv, make_seq(2, (20, 21, 22, 23, 24)))
    # a's blocks were evicted deepest first (13, 12, 11, 10): host keeps the last two written, disk the others
    assert len(kv.host) == 2 and kv.disk is not None and len(kv.disk) == 2
    c = make_seq(3, (10, 11, 12, 13))
    assert kv.match_prefix(c) == 64
    kv.allocate(c, c.num_tokens)
    disk = kv.num_disk_hit_tokens // 16
    host = kv.num_host_hit_tokens // 16
    assert disk + host == 4 and disk == 2
    assert kv.take_load_s() == pytest.approx(1e-5 + 4 * BLOCK_BYTES / LINK + 2 * BLOCK_BYTES / 5e9)
    kv.check()


def test_tier_books_balance_under_churn():
    kv = make_kv(num_blocks=8, cpu_gb=1.0, disk_gb=0.5)
    for i in range(60):
        base = (i * 7) % 5
        _run(kv, make_seq(i, tuple(100 * base + j for j in range(3 + i % 3))))
        kv.check()  # GPU books, and written - evicted == held <= capacity for each tier
    assert kv.num_allocated == kv.num_freed


def test_load_modes_by_hand():
    blocking, layerwise = make_kv(), make_kv(load="layerwise", num_layers=32)
    assert blocking.step_with_load(0.010, 0.004) == pytest.approx(0.014)
    assert layerwise.step_with_load(0.010, 0.004) == pytest.approx(0.010 + 0.004 / 32)  # hidden behind compute
    assert layerwise.step_with_load(0.002, 0.008) == pytest.approx(0.008 + 0.002 / 32)  # load-bound


@pytest.mark.parametrize(("kw", "message"), [
    ({"cpu_gb": 200.0, "host_memory_bytes": 125e9}, '"cpu_gb": 200 GiB per GPU is more than the host memory'),
    ({"cpu_gb": -1.0}, '"cpu_gb" must be a finite number of GiB >= 0'),
    ({"load": "async"}, '"load" must be one of blocking, layerwise'),
])
def test_bad_tier_settings(kw, message):
    with pytest.raises(ConfigError, match=message):
        make_kv(**kw)


EXP = {"name": "tiers", "model": "llama-3.1-8b", "hardware": "a100-sxm-40gb", "scheduler": {"kind": "vllm"},
       "workload": {"arrival": {"kind": "poisson", "rate_per_s": 4.0}, "input_len": {"kind": "fixed", "value": 200},
                    "output_len": {"kind": "fixed", "value": 4},
                    "prefix": {"kind": "shared_system_prompt", "groups": 40, "tokens": 160}},
       "stop": {"num_requests": 300}}


def _exp(tmp_path, capsys, data):
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    out = tmp_path / "res"
    code = main(["run", str(path), "--out", str(out), "--no-plots"])
    return code, capsys.readouterr().err, path, out


def test_host_tier_larger_than_host_memory_is_exit_2(tmp_path, capsys):
    code, err, path, _ = _exp(tmp_path, capsys, {**EXP, "kv": {"kind": "tiered", "cpu_gb": 500}})
    assert code == 2 and err.startswith(f"error: {path}: kv") and "cpu_gb" in err and "host memory" in err, err


def test_simulated_cpu_tier_serves_prefixes_the_gpu_evicted(tmp_path, capsys):
    import json

    # 40 system prompts of 160 tokens, a GPU cache of 60 blocks: most prompts are evicted between reuses
    runs = {}
    for name, kv in (("gpu", {"kind": "prefix", "num_blocks": 60}),
                     ("cpu", {"kind": "tiered", "num_blocks": 60, "cpu_gb": 2})):
        code, err, _, out = _exp(tmp_path / name, capsys, {**EXP, "kv": kv})
        assert code == 0, err
        runs[name] = json.loads(next((out / "points").rglob("summary.json")).read_text())
    cpu, gpu = runs["cpu"], runs["gpu"]
    assert cpu["kv_cpu_hit_tokens"] > 0 and cpu["kv_tier_load_s"] > 0
    assert cpu["kv_blocks_allocated"] == cpu["kv_blocks_freed"]
    assert cpu["kv_cpu_written_blocks"] - cpu["kv_cpu_evicted_blocks"] == cpu["kv_cpu_blocks"]
    assert cpu["kv_cpu_hit_rate"] == pytest.approx(cpu["kv_cpu_hit_tokens"] / cpu["prefix_query_tokens"])
    assert cpu["computed_tokens_per_s"] < gpu["computed_tokens_per_s"]  # host hits are not recomputed


def test_registered_by_the_package_itself():
    import subprocess
    import sys

    code = "from llmsim.kv import KV_MANAGERS; print('tiered' in KV_MANAGERS.names())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
    assert "tiered" in KV_MANAGERS.names()
