"""The shipped datasheet hardware profiles (hardware_profiles/*.yaml): they load, they are self-consistent,
every datasheet figure carries its source comment, and a few figures match the datasheets."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from llmsim.errors import ConfigError, UnknownNameError
from llmsim.specs import hardware_names, load_hardware

PROFILES = [
    "a100-sxm-40gb", "a100-sxm-80gb", "h100-sxm", "h100-pcie", "h200", "l40s", "a10g", "l4", "rtx-4090",
    "mi300x", "b200",
]
SOURCED_TOP_LEVEL = ("hbm_bytes", "hbm_bytes_per_s")


def _path(name: str) -> Path:
    return Path(load_hardware(name).source)


@pytest.mark.parametrize("name", PROFILES)
def test_profile_loads_by_name(name: str) -> None:
    hw = load_hardware(name)
    assert hw.name == name
    assert _path(name).stem == name
    assert name in hardware_names()
    assert hw.description
    assert hw.price_per_hour_usd > 0 and hw.tdp_w > 0 and hw.sm_count > 0 and hw.host_memory_bytes > 0


@pytest.mark.parametrize("name", PROFILES)
def test_numbers_are_numbers_in_the_raw_yaml(name: str) -> None:
    # PyYAML reads "1e12" and "1.0e12" as strings; the loader's float() would hide that in some fields and
    # reject it in others. Every figure must already be a number in the YAML.
    data = yaml.safe_load(_path(name).read_text())

    def is_number(value: object) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool)

    for dtype, value in data["peak_flops_per_s"].items():
        assert is_number(value), f"{name}: peak_flops_per_s.{dtype} = {value!r}"
    for key in ("hbm_bytes", "hbm_bytes_per_s", "l2_bytes", "sm_count", "tdp_w", "price_per_hour_usd",
                "host_memory_bytes"):
        assert is_number(data[key]), f"{name}: {key} = {data[key]!r}"
    for link in ("intra_node", "inter_node", "host"):
        for key in ("bytes_per_s", "latency_s"):
            value = data["interconnect"][link][key]
            assert is_number(value), f"{name}: interconnect.{link}.{key} = {value!r}"
    for section in ("efficiency", "overheads"):
        for key, value in data[section].items():
            assert is_number(value), f"{name}: {section}.{key} = {value!r}"


@pytest.mark.parametrize("name", PROFILES)
def test_peak_ordering(name: str) -> None:
    peaks = load_hardware(name).peak_flops_per_s

    def check(low: str, high: str) -> None:
        if low in peaks and high in peaks:
            assert peaks[high] >= peaks[low], f"{name}: {high} peak {peaks[high]:.3g} < {low} peak {peaks[low]:.3g}"

    check("bf16", "fp8")
    check("fp16", "fp8")
    check("tf32", "bf16")
    check("tf32", "fp16")
    check("fp32", "tf32")
    check("bf16", "int8")
    check("int8", "int4")
    assert "bf16" in peaks or "fp16" in peaks


@pytest.mark.parametrize("name", PROFILES)
def test_memory_and_links_are_plausible(name: str) -> None:
    hw = load_hardware(name)
    assert 16e9 <= hw.hbm_bytes <= 300e9
    assert 1e11 <= hw.hbm_bytes_per_s <= 2e13
    for link in (hw.intra_node, hw.inter_node, hw.host_link):
        assert link.bytes_per_s > 0 and link.latency_s >= 0 and link.name
    assert hw.intra_node.bytes_per_s >= hw.inter_node.bytes_per_s
    assert hw.gpus_per_node >= 1
    assert hw.l2_bytes < hw.hbm_bytes


def test_dtype_support_follows_the_datasheets() -> None:
    for name in ("a100-sxm-40gb", "a100-sxm-80gb", "a10g"):  # Ampere: no FP8 tensor cores
        assert not load_hardware(name).supports("fp8"), name
    for name in ("h100-sxm", "h100-pcie", "h200", "mi300x"):  # no INT4 tensor cores
        assert not load_hardware(name).supports("int4"), name
    for name in ("a100-sxm-40gb", "a100-sxm-80gb", "a10g", "l40s", "rtx-4090"):
        assert load_hardware(name).supports("int4"), name
    for name in ("h100-sxm", "h100-pcie", "h200", "l40s", "l4", "rtx-4090", "mi300x", "b200"):
        assert load_hardware(name).supports("fp8"), name


def _lines_needing_a_source(text: str) -> list[str]:
    """The lines under peak_flops_per_s plus the hbm_bytes and hbm_bytes_per_s lines."""
    lines = text.splitlines()
    out: list[str] = []
    in_peaks = False
    for line in lines:
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        indented = line[0] in " \t"
        if in_peaks and not indented:
            in_peaks = False
        if in_peaks:
            out.append(line)
        key = stripped.split(":", 1)[0]
        if not indented and key == "peak_flops_per_s":
            in_peaks = True
        elif not indented and key in SOURCED_TOP_LEVEL:
            out.append(line)
    return out


@pytest.mark.parametrize("name", PROFILES)
def test_every_datasheet_figure_has_a_source_comment(name: str) -> None:
    lines = _lines_needing_a_source(_path(name).read_text())
    keys = {line.strip().split(":", 1)[0] for line in lines}
    assert set(SOURCED_TOP_LEVEL) <= keys, f"{name}: the checker found no {SOURCED_TOP_LEVEL} lines"
    assert keys & {"bf16", "fp16"}, f"{name}: the checker found no peak_flops_per_s entries"
    for line in lines:
        assert "#" in line and line.split("#", 1)[1].strip(), f"{name}: no source comment on {line.strip()!r}"


def test_source_checker_catches_a_missing_comment() -> None:
    text = "name: x\npeak_flops_per_s:\n  bf16: 1.0e+12  # src\n  fp8: 2.0e+12\nhbm_bytes: 1.0e+9  # src\n"
    lines = _lines_needing_a_source(text)
    assert [line for line in lines if "#" not in line] == ["  fp8: 2.0e+12"]


@pytest.mark.parametrize(("name", "field", "expected"), [
    ("h100-sxm", "bf16", 989.4e12),
    ("h100-sxm", "fp8", 1978.9e12),
    ("h100-sxm", "hbm_bytes_per_s", 3.35e12),
    ("a100-sxm-40gb", "bf16", 312e12),
    ("a100-sxm-80gb", "bf16", 312e12),
    ("a100-sxm-40gb", "hbm_bytes_per_s", 1.555e12),
    ("a100-sxm-80gb", "hbm_bytes_per_s", 2.039e12),
    ("a100-sxm-80gb", "hbm_bytes", 80 * 2**30),
    ("h200", "hbm_bytes", 143771 * 2**20),
    ("h200", "hbm_bytes_per_s", 4.8e12),
    ("h200", "bf16", 989.4e12),
    ("mi300x", "bf16", 1307.4e12),
    ("mi300x", "fp8", 2614.9e12),
    ("mi300x", "hbm_bytes", 192 * 2**30),
    ("mi300x", "hbm_bytes_per_s", 5.3e12),
    ("b200", "bf16", 2.25e15),
    ("b200", "fp8", 4.5e15),
    ("b200", "hbm_bytes_per_s", 8e12),
    ("l40s", "bf16", 362.05e12),
    ("l4", "hbm_bytes_per_s", 300e9),
])
def test_datasheet_spot_checks(name: str, field: str, expected: float) -> None:
    hw = load_hardware(name)
    value = getattr(hw, field) if field.startswith("hbm") else hw.peak_flops(field)
    assert value == pytest.approx(expected, rel=0.01)


def test_nvlink_figures_are_unidirectional_per_gpu() -> None:
    assert load_hardware("h100-sxm").intra_node.bytes_per_s == pytest.approx(450e9, rel=0.01)
    assert load_hardware("a100-sxm-80gb").intra_node.bytes_per_s == pytest.approx(300e9, rel=0.01)
    assert load_hardware("b200").intra_node.bytes_per_s == pytest.approx(900e9, rel=0.01)


def test_unknown_name_lists_valid_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLMSIM_HARDWARE_PATH", raising=False)
    with pytest.raises(UnknownNameError) as info:
        load_hardware("h100-sxm-does-not-exist")
    message = str(info.value)
    assert "h100-sxm-does-not-exist" in message
    for name in PROFILES:
        assert name in message


# --- malformed profiles: every one a ConfigError naming the file and the field ------------------------------

def _edited(tmp_path: Path, edit) -> Path:
    data = yaml.safe_load(_path("h100-sxm").read_text())
    edit(data)
    path = tmp_path / "edited.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(efficency=d.pop("efficiency")), r"efficency: unknown key \(did you mean 'efficiency'\?\)"),
    (lambda d: d.update(nvlink_gen=4), r"nvlink_gen: unknown key; expected one of name, description"),
    (lambda d: d["interconnect"]["host"].update(bandwith=1.0), r"interconnect\.host\.bandwith: unknown key"),
    (lambda d: d["overheads"].update(step_ms=2.0), r"overheads\.step_ms: unknown key"),
    (lambda d: d["peak_flops_per_s"].update(bf32=1.0), r"peak_flops_per_s\.bf32: unknown key"),
    (lambda d: d.update(hbm_bytes=float("nan")), r"hbm_bytes: expected a finite number > 0, got nan"),
    (lambda d: d.update(hbm_bytes_per_s=-3.0e12), r"hbm_bytes_per_s: expected a finite number > 0, got -3"),
    (lambda d: d["peak_flops_per_s"].update(bf16=0), r"peak_flops_per_s\.bf16: expected a finite number > 0"),
    (lambda d: d["interconnect"]["intra_node"].update(bytes_per_s=float("inf")),
     r"interconnect\.intra_node\.bytes_per_s: expected a finite number > 0, got inf"),
    (lambda d: d["overheads"].update(step_s=float("nan")), r"overheads\.step_s: expected a finite number >= 0"),
    (lambda d: d["efficiency"].update(gemm=1.5), r"efficiency\.gemm: expected a finite number > 0 and <= 1"),
    (lambda d: d.update(price_per_hour_usd="cheap"), r"price_per_hour_usd: expected a number, got 'cheap'"),
    (lambda d: d.pop("hbm_bytes"), r"hbm_bytes: required field is missing"),
    (lambda d: d["interconnect"]["host"].pop("latency_s"), r"interconnect\.host\.latency_s: required field"),
    (lambda d: d.update(interconnect=[1, 2]), r"interconnect: expected a mapping"),
])
def test_malformed_profile_names_file_and_field(tmp_path: Path, edit, message: str) -> None:
    path = _edited(tmp_path, edit)
    with pytest.raises(ConfigError, match=rf"^{path}: {message}"):
        load_hardware(str(path))


def test_profile_keys_accept_every_shipped_and_calibrated_profile() -> None:
    from llmsim.specs.hardware import PROFILE_KEYS

    repo = _path("h100-sxm").parents[1]
    for path in [*repo.glob("hardware_profiles/*.yaml"), *repo.glob("calibration/*/*.yaml")]:
        if path.name != "run.yaml":
            assert set(yaml.safe_load(path.read_text())) <= set(PROFILE_KEYS), path
            load_hardware(str(path))
