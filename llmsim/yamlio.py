"""Safe, bounded YAML reading: every YAML file llmsim reads goes through ``load_yaml`` / ``loads_yaml``.

PyYAML's ``safe_load`` builds no arbitrary objects, but it still lets a small file cost unbounded time and
memory: an alias bomb ("billion laughs") is a few hundred bytes that expand to billions of nodes once
anything walks the result, and deep nesting overflows the Python stack. Here a document is checked as a
stream of events first (size, nesting depth, alias count: no recursion, no expansion), then composed, then
walked once without expanding (expanded node count, recursive aliases, duplicate keys), and only then
constructed. Every failure is a :class:`ConfigError` naming the file, and the line and field where known:
``experiments/x.yaml: stop: duplicate key at line 9 (first at line 7)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from llmsim.errors import ConfigError

MAX_BYTES = 4 << 20  # the largest shipped YAML is a few KiB; calibrated profiles stay far below this
MAX_DEPTH = 64  # nesting of blocks and lists; llmsim's own files nest fewer than ten levels
MAX_ALIASES = 10_000
MAX_NODES = 200_000  # nodes once aliases are expanded (what anything walking the result sees): ~2 s, ~100 MB

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: fast and non-recursive


def load_yaml(path: str | Path, what: str = "YAML") -> Any:
    """Read and parse the YAML file ``path``; ``what`` names the kind of file in messages
    (``"experiment"``, ``"hardware profile"``). Returns the document (None for an empty file)."""
    path = Path(path)
    return loads_yaml(_read_text(path, what), str(path))


def loads_yaml(text: str, where: str) -> Any:
    """Parse YAML ``text``; ``where`` (a file name, or ``<experiment>``) prefixes every error message."""
    if len(text) > MAX_BYTES:
        raise ConfigError(f"{where}: {len(text)} characters is more than the {MAX_BYTES >> 20} MiB a YAML "
                          "file may hold here")
    if "\x00" in text:
        raise ConfigError(f"{where}: contains NUL characters: a binary file, not YAML text")
    try:
        _check_events(text, where)
        loader = _LOADER(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _check_nodes(node, where)
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        raise ConfigError(f"{where}: {_at_mark(exc)}not valid YAML: {_problem(exc)}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML: {exc}") from None
    except RecursionError:  # belt and braces: _check_events bounds the depth before anything recurses
        raise ConfigError(f"{where}: nested too deeply (more than {MAX_DEPTH} levels)") from None


def _read_text(path: Path, what: str) -> str:
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such {what} file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not {_a(what)} file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read this {what} file ({exc.strerror or exc})") from None
    if len(data) > MAX_BYTES:
        raise ConfigError(f"{path}: larger than the {MAX_BYTES >> 20} MiB a {what} YAML file may hold here")
    if b"\x00" in data:
        raise ConfigError(f"{path}: a binary file (it contains NUL bytes), not {_a(what)} file in YAML")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: byte {exc.start} is not UTF-8 text: not {_a(what)} file in YAML") from None


def _a(what: str) -> str:
    return f"{'an' if what[:1].lower() in 'aeiou' else 'a'} {what}"


def _check_events(text: str, where: str) -> None:
    """Depth and alias count from the event stream: bounded work, nothing built, nothing recursive."""
    depth = aliases = 0
    for event in yaml.parse(text, Loader=_LOADER):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise ConfigError(f"{where}: {_line(event.start_mark)}nested more than {MAX_DEPTH} levels deep")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
        elif isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > MAX_ALIASES:
                raise ConfigError(f"{where}: {_line(event.start_mark)}more than {MAX_ALIASES} aliases (*name)")


def _check_nodes(root: yaml.Node, where: str) -> None:
    """One pass over the composed graph, each shared (anchored) node once: the size the document has once
    aliases are expanded, recursive aliases, and duplicate mapping keys (named by field path)."""
    size: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, str, bool]] = [(root, "", False)]
    while stack:
        node, path, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in _children(node))
            if size[key] > MAX_NODES:
                raise ConfigError(f"{where}: {path or '(top level)'}: expands to more than {MAX_NODES:,} nodes "
                                  "(aliases repeating aliases?)")
            continue
        if key in size:
            continue
        on_path.add(key)
        stack.append((node, path, True))
        if isinstance(node, yaml.MappingNode):
            _check_duplicates(node, path, where)
        for child, child_path in reversed(_labelled_children(node, path)):  # popped in document order
            if id(child) in on_path:
                raise ConfigError(f"{where}: {child_path}: {_line(child.start_mark)}an alias refers to a node "
                                  "that contains it (recursive alias)")
            if id(child) not in size:
                stack.append((child, child_path, False))


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _labelled_children(node: yaml.Node, path: str) -> list[tuple[yaml.Node, str]]:
    if isinstance(node, yaml.SequenceNode):
        return [(child, f"{path}[{i}]") for i, child in enumerate(node.value)]
    if not isinstance(node, yaml.MappingNode):
        return []
    out = []
    for k, v in node.value:
        label = _join(path, k.value if isinstance(k, yaml.ScalarNode) else "?")
        out += [(k, label), (v, label)]
    return out


def _check_duplicates(node: yaml.MappingNode, path: str, where: str) -> None:
    seen: dict[tuple[str, str], yaml.Node] = {}
    for k, _ in node.value:
        if not isinstance(k, yaml.ScalarNode):
            continue
        first = seen.setdefault((k.tag, k.value), k)
        if first is not k:
            raise ConfigError(f"{where}: {_join(path, k.value)}: duplicate key at line {k.start_mark.line + 1} "
                              f"(first at line {first.start_mark.line + 1}); give each key once")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else str(key)


def _line(mark: Any) -> str:
    return f"line {mark.line + 1}: " if mark is not None else ""


def _at_mark(exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    return f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""


def _problem(exc: yaml.MarkedYAMLError) -> str:
    parts = [p for p in (exc.context, exc.problem) if p]
    return "; ".join(parts) or str(exc).splitlines()[0]
