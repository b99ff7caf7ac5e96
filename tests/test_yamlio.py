"""Safe, bounded YAML loading: each hostile or malformed input is one ConfigError naming the file."""

import time

import pytest

from llmsim.errors import ConfigError
from llmsim.yamlio import MAX_BYTES, MAX_DEPTH, load_yaml, loads_yaml


def bomb(levels: int = 9) -> str:
    """Billion laughs: each level lists the previous one nine times (9**levels leaves)."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_quickly():
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=r"^x\.yaml: l5: expands to more than 200,000 nodes"):
        loads_yaml(bomb(), "x.yaml")
    assert time.perf_counter() - t0 < 2.0


def test_modest_aliases_and_merge_keys_still_work():
    data = loads_yaml("a: &a {x: 1, y: 2}\nb: *a\nc:\n  <<: *a\n  x: 3\n", "f")
    assert data == {"a": {"x": 1, "y": 2}, "b": {"x": 1, "y": 2}, "c": {"x": 3, "y": 2}}


def test_duplicate_key_names_path_and_both_lines():
    with pytest.raises(ConfigError, match=r"^f\.yaml: stop\.num_requests: duplicate key at line 4 \(first at line 3\)"):
        loads_yaml("model: m\nstop:\n  num_requests: 1\n  num_requests: 2\n", "f.yaml")


def test_duplicate_top_level_key():
    with pytest.raises(ConfigError, match=r"^f: stop: duplicate key at line 3 \(first at line 1\)"):
        loads_yaml("stop: {num_requests: 5}\nmodel: m\nstop: {num_requests: 9}\n", "f")


@pytest.mark.parametrize("text", ["a: " + "[" * 5000 + "]" * 5000,
                                  "".join("  " * i + f"k{i}:\n" for i in range(MAX_DEPTH + 5)) + "  " * 70 + "v\n"])
def test_deep_nesting_is_refused_without_recursion(text):
    with pytest.raises(ConfigError, match=r"^f: line \d+"):
        loads_yaml(text, "f")


@pytest.mark.parametrize("text", ["a: &a [1, *a]\n", "a: &a {b: *a}\n"])
def test_recursive_alias(text):
    with pytest.raises(ConfigError, match=r"^f: a\.?\[?b?1?\]?: line 1: an alias refers to a node that contains it"):
        loads_yaml(text, "f")


def test_python_tags_are_not_constructed():
    with pytest.raises(ConfigError, match=r"^f: line 1, column 4: not valid YAML: could not determine a constructor"):
        loads_yaml("a: !!python/object/apply:os.system ['true']\n", "f")


def test_syntax_error_has_line_and_column():
    with pytest.raises(ConfigError, match=r"^f: line 2, column \d+: not valid YAML: "):
        loads_yaml("a: [1, 2\nb: 3\n", "f")


def test_two_documents():
    with pytest.raises(ConfigError, match="expected a single document"):
        loads_yaml("a: 1\n---\nb: 2\n", "f")


def test_binary_and_non_utf8_files(tmp_path):
    binary = tmp_path / "b.yaml"
    binary.write_bytes(b"model: x\n\x00\x01\x02\xff")
    with pytest.raises(ConfigError, match=r"b\.yaml: a binary file .*not an experiment file"):
        load_yaml(binary, "experiment")
    latin = tmp_path / "l.yaml"
    latin.write_bytes("description: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"l\.yaml: byte 16 is not UTF-8 text"):
        load_yaml(latin, "workload")


def test_missing_directory_and_oversized_files(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.yaml: no such hardware profile file"):
        load_yaml(tmp_path / "nope.yaml", "hardware profile")
    with pytest.raises(ConfigError, match="is a directory"):
        load_yaml(tmp_path, "experiment")
    big = tmp_path / "big.yaml"
    big.write_bytes(b"# " + b"x" * MAX_BYTES + b"\n")
    with pytest.raises(ConfigError, match=r"big\.yaml: larger than the 4 MiB"):
        load_yaml(big)


def test_bom_and_empty_file(tmp_path):
    p = tmp_path / "bom.yaml"
    p.write_bytes(b"\xef\xbb\xbfa: 1\n")
    assert load_yaml(p) == {"a": 1}
    p.write_text("")
    assert load_yaml(p) is None
