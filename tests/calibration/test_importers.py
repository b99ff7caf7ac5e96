"""Importers of measured kernel databases: round trips on small fixture files, the profile the command
writes from them, and one clear located error for each kind of bad file."""

import math

import pytest

from llmsim.calibration.importers import load_imports
from llmsim.calibration.physics_fit import companion_s
from llmsim.cli import main
from llmsim.cost.calibrated import CalibratedTimer
from llmsim.errors import ConfigError
from llmsim.specs import load_hardware
from llmsim.specs.hardware import load_hardware_file

H100_SYSTEM = "gpu:\n  mem_bw: 3350000000000\n  bfloat16_tc_flops: 989000000000000\n"
A100_SYSTEM = "gpu:\n  mem_bw: 2039000000000\n  bfloat16_tc_flops: 312000000000000\n"
GEMM_HEAD = "m,n,k,gemm_dtype,kernel_source,latency_ms\n"


def gemm_rows(n=4096, k=4096, dtype="bfloat16"):
    """A plausible H100 curve: weight-bound (5 us + bytes at 3 TB/s) at small m, ~0.8 of peak at large m."""
    rows = []
    for m in (1, 8, 64, 128, 512, 2048, 8192):
        t = max(5e-3 + 2 * (n * k + m * k + m * n) / 3e12 * 1e3, 2 * m * n * k / (0.8 * 989e12) * 1e3)
        rows.append(f"{m},{n},{k},{dtype},vllm_default,{t:.6g}\n")
    return rows


def aic_folder(tmp_path, system=H100_SYSTEM, gemm=None, decode=True, allreduce=True):
    folder = tmp_path / "h100_sxm" / "vllm-0.14.0"
    folder.mkdir(parents=True)
    (folder.parent / "system.yaml").write_text(system)
    lines = gemm if gemm is not None else gemm_rows() + gemm_rows(n=8192) + gemm_rows(k=8192) + gemm_rows(8192, 8192)
    (folder / "gemm.csv").write_text(GEMM_HEAD + "".join(lines))
    if decode:
        head = ("batch_size,step,kv_len_tokens,num_heads,num_kv_heads,head_dim,window_size_tokens,attn_dtype,"
                "kv_cache_dtype,kernel_source,latency_ms\n")
        rows = [f"{b},{c},{c},32,8,128,0,bfloat16,bfloat16,vllm_flash_attn,"
                f"{0.011 + b * c * 8 * 128 * 4 / 3.0e12 * 1e3:.6g}\n" for b in (1, 8, 64) for c in (127, 1023, 8191)]
        (folder / "generation_attention.csv").write_text(head + "".join(rows))
    if allreduce:
        head = "num_gpus,message_size_elems,message_size_bytes,allreduce_dtype,kernel_source,latency_ms\n"
        rows = [f"{p},{b // 2},{b},bfloat16,{src},{(0.0045 + b / 300e9 * 1e3) * (4 if src.endswith('eager') else 1):.6g}\n"
                for p in (2, 4, 8) for b in (4096, 1 << 20, 1 << 26) for src in ("vLLM_custom_graph", "vLLM_custom_eager")]
        (folder / "custom_allreduce.csv").write_text(head + "".join(rows))
    return folder


def test_aic_round_trip(tmp_path):
    folder = aic_folder(tmp_path)
    imp = load_imports([("aic", str(folder))], load_hardware("h100-sxm"))
    gemm = {(m.case["m"], m.case["n"], m.case["k"]): m.median_s for m in imp.measurements if m.case.op_class == "gemm"}
    assert len(gemm) == 28 and gemm[(1, 4096, 4096)] == pytest.approx(5e-6 + 2 * (4096 * 4097 + 4096) / 3e12, rel=1e-5)
    decode = [m for m in imp.measurements if m.case.op_class == "attn_decode"]
    assert {m.case["context"] for m in decode} == {127, 1023, 8191} and len(decode) == 9
    ar = [m for m in imp.measurements if m.case.op_class == "allreduce"]
    assert len(ar) == 9 and {m.case.kind for m in ar} == {"custom_graph"}  # eager rows are not kernel time
    assert any("eager" in n for n in imp.notes)
    assert all(math.isnan(m.spread) for m in imp.measurements)  # AIC records a mean, no spread


def test_repeated_keys_are_averaged(tmp_path):
    folder = aic_folder(tmp_path, gemm=["1,4096,4096,bfloat16,x,0.016\n", "1,4096,4096,bfloat16,x,0.025\n"],
                        decode=False, allreduce=False)
    (m,) = load_imports([("aic", str(folder))], load_hardware("h100-sxm")).measurements
    assert m.median_s == pytest.approx(math.sqrt(16e-6 * 25e-6))


def test_selector_keeps_some_rows_and_a_later_import_replaces_earlier_rows(tmp_path):
    a = aic_folder(tmp_path / "a")
    b = aic_folder(tmp_path / "b", gemm=["1,4096,4096,bfloat16,x,0.020\n"], decode=False, allreduce=False)
    hw = load_hardware("h100-sxm")
    only = load_imports([("aic", f"{a}::gemm")], hw)
    assert {m.case.op_class for m in only.measurements} == {"gemm"}
    both = load_imports([("aic", str(a)), ("aic", f"{b}::gemm/bf16")], hw)
    gemm = [m for m in both.measurements if m.case.op_class == "gemm"]
    assert len(gemm) == 1 and gemm[0].median_s == pytest.approx(20e-6)
    assert any(m.case.op_class == "attn_decode" for m in both.measurements)


def test_command_writes_a_profile_that_predicts_the_imported_points(tmp_path, capsys):
    folder = aic_folder(tmp_path)
    out, report = tmp_path / "profiles" / "h100-test.yaml", tmp_path / "report"
    assert main(["calibrate", "--import", "aic", str(folder), "--hardware", "h100-sxm", "--out", str(out),
                 "--data-dir", str(report)]) == 0
    hw = load_hardware_file(out)
    assert hw.overheads == load_hardware("h100-sxm").overheads  # kernel data do not refit CPU-side costs
    timer = CalibratedTimer(hw)
    imp = load_imports([("aic", str(folder))], load_hardware("h100-sxm"))
    for m in imp.measurements:
        if m.case.op_class in ("gemm", "attn_decode"):
            t = timer.time(m.operator)
            # AIC's decode timing includes the KV-cache write, which the cost model times as its own operator
            assert m.includes == (("kv_cache_write",) if m.case.op_class == "attn_decode" else ())
            assert float(t.kernel_s) + companion_s(m, timer.model) == pytest.approx(m.median_s, rel=2e-3)
            assert t.source == "interpolated"
    text = (report / "report.md").read_text()
    assert "## Error on unseen shape families" in text and "| gemm |" in text and str(folder) in text
    assert not list(report.glob("*.csv"))  # the imported data are not copied


def test_plain_csv_round_trip_with_units_and_kv_dtype(tmp_path):
    path = tmp_path / "k.csv"
    path.write_text("op_class,dtype,m,n,k,batch,context,heads,kv_heads,head_dim,kv_dtype,time_us\n"
                    "gemm,bf16,1,4096,4096,,,,,,,16\n"
                    "attn_decode,bf16,,,,8,1024,32,8,128,fp8,30\n")
    imp = load_imports([("csv", str(path))], load_hardware("h100-sxm"))
    g, d = imp.measurements
    assert (g.case.op_class, g.median_s) == ("gemm", pytest.approx(16e-6))
    assert d.case.dtype == "bf16/kv-fp8" and d.operator.storage_dtype == "fp8"


@pytest.mark.parametrize(("text", "message"), [
    ("op_class,dtype,m,n,k,time_s\ngemm,bf16,1,4096,4096,-1e-5\n", "line 2: column 'time_s': expected a positive time"),
    ("op_class,dtype,m,n,time_s\ngemm,bf16,1,4096,1e-5\n", "line 2: column 'k': expected a value"),
    ("op_class,dtype,m,n,k,latency\ngemm,bf16,1,4096,4096,16\n", "line 1: expected exactly one time column"),
    ("op_class,dtype,m,n,k,time_ms\ngemm,bf16,8192,8192,8192,1e-4\n", "faster than h100-sxm's peak allows"),
    ("op_class,dtype,m,n,k,time_s\ngemm,bf17,1,4096,4096,1e-5\n", "line 2: column 'dtype': expected one of"),
    ("op_class,dtype,ranks,bytes,time_s\nallreduce,bf16,16,1024,1e-5\n", "column 'ranks': 16 GPUs exceed"),
    ("op_class,dtype,m,n,k,time_s\ngemm,bf16,1.5,4096,4096,1e-5\n", "column 'm': expected a positive integer"),
])
def test_bad_csv_rows_name_file_line_and_column(tmp_path, capsys, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    assert main(["calibrate", "--import", "csv", str(path), "--hardware", "h100-sxm",
                 "--out", str(tmp_path / "x.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}") and message in err and err.count("\n") == 1
    assert not (tmp_path / "x.yaml").exists()


def test_aic_data_of_another_gpu_are_refused(tmp_path, capsys):
    folder = aic_folder(tmp_path, system=A100_SYSTEM)
    assert main(["calibrate", "--import", "aic", str(folder), "--hardware", "h100-sxm",
                 "--out", str(tmp_path / "x.yaml")]) == 2
    err = capsys.readouterr().err
    assert "system.yaml: gpu.bfloat16_tc_flops" in err and "belong to another GPU" in err


def test_fp8_rows_on_a_gpu_without_fp8(tmp_path):
    folder = aic_folder(tmp_path, system=A100_SYSTEM, gemm=gemm_rows(dtype="fp8"), decode=False, allreduce=False)
    with pytest.raises(ConfigError, match=r"gemm.csv: line 2: column 'dtype': a100-sxm-80gb has no fp8"):
        load_imports([("aic", str(folder))], load_hardware("a100-sxm-80gb"))


def test_missing_column_in_an_aic_table(tmp_path):
    folder = aic_folder(tmp_path, decode=False, allreduce=False)
    (folder / "gemm.csv").write_text("m,n,k,latency_ms\n1,2,3,0.01\n")
    with pytest.raises(ConfigError, match=r"gemm.csv: line 1: missing column\(s\) gemm_dtype"):
        load_imports([("aic", str(folder))], load_hardware("h100-sxm"))


def test_import_needs_hardware(tmp_path, capsys):
    assert main(["calibrate", "--import", "aic", str(tmp_path), "--out", str(tmp_path / "x.yaml")]) == 2
    assert "--import needs --hardware" in capsys.readouterr().err


def test_a_few_impossible_rows_in_a_large_file_are_skipped_with_a_note(tmp_path):
    good = [f"gemm,bf16,{m},4096,4096,{5e-6 + 2 * 4096 * 4096 / 3e12:.6g}\n" for m in range(1, 201)]
    path = tmp_path / "k.csv"
    path.write_text("op_class,dtype,m,n,k,time_s\n" + "".join(good) + "gemm,bf16,8192,8192,8192,1e-7\n")
    imp = load_imports([("csv", str(path))], load_hardware("h100-sxm"))
    assert len(imp.measurements) == 200
    assert "1 of 201 rows skipped" in imp.notes[0] and "line 202" in imp.notes[0]
    path.write_text("op_class,dtype,m,n,k,time_s\n" + "".join(good[:5]) + "gemm,bf16,8192,8192,8192,1e-7\n")
    with pytest.raises(ConfigError, match="line 7: column 'time_s'"):
        load_imports([("csv", str(path))], load_hardware("h100-sxm"))


def test_plain_csv_launch_and_companion_kernels(tmp_path):
    path = tmp_path / "k.csv"
    path.write_text("op_class,dtype,m,n,k,time_us,launch_included,includes\n"
                    "gemm,fp8,1,4096,4096,30,1,quant\n"
                    "gemm,bf16,1,4096,4096,30,0,\n")
    a, b = load_imports([("csv", str(path))], load_hardware("h100-sxm")).measurements
    assert a.median_s == pytest.approx(30e-6 - 5.2e-6) and a.includes == ("quant",)  # h100-sxm launch gap 5.2 us
    assert b.median_s == pytest.approx(30e-6) and b.includes == ()
    path.write_text("op_class,dtype,m,n,k,time_us,includes\ngemm,fp8,1,4096,4096,30,rmsnorm\n")
    with pytest.raises(ConfigError, match="line 2: column 'includes': expected ;-separated kv_cache_write, quant"):
        load_imports([("csv", str(path))], load_hardware("h100-sxm"))
