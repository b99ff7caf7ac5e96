"""String-keyed registries for pluggable parts (schedulers, KV managers, arrival processes, ...).

A YAML block ``{kind: NAME, ...params}`` selects an entry and passes the other keys as keyword arguments.
Adding a policy is one new file with ``@REGISTRY.register("name")`` on the class.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from llmsim.errors import ConfigError, UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named table of factories; ``what`` names the kind of thing for error messages."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._entries: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries:
                raise ValueError(f"{self.what} {name!r} is registered twice")
            self._entries[name] = factory
            return factory

        return decorator

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def get(self, name: str) -> Callable[..., T]:
        try:
            return self._entries[name]
        except KeyError:
            valid = ", ".join(self.names()) or "(none)"
            raise UnknownNameError(f"unknown {self.what} {name!r}; valid: {valid}") from None

    def build(self, block: Mapping[str, Any], where: str = "", **extra: Any) -> T:
        """Build from ``{kind: NAME, **params}``; ``where`` prefixes error messages (file: field path)."""
        prefix = f"{where}: " if where else ""
        if not isinstance(block, Mapping) or "kind" not in block:
            raise ConfigError(f"{prefix}expected a mapping with a 'kind' key (one of {', '.join(self.names())})")
        params = {k: v for k, v in block.items() if k != "kind"}
        try:
            factory = self.get(str(block["kind"]))
        except UnknownNameError as exc:
            raise UnknownNameError(f"{prefix}{exc}") from None
        _check_params(factory, params, f"{prefix}{self.what} {block['kind']!r}")
        try:
            return factory(**params, **extra)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, ConfigError) and (not prefix or str(exc).startswith(prefix)):
                raise
            raise ConfigError(f"{prefix}{exc}") from None


def _check_params(factory: Callable[..., Any], params: Mapping[str, Any], label: str) -> None:
    """Reject unknown keys up front, naming them and the accepted ones."""
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()):
        return
    accepted = {n for n, p in sig.parameters.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL}
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise ConfigError(
            f"{label}: unknown key(s) {', '.join(unknown)}; accepted: {', '.join(sorted(accepted)) or '(none)'}"
        )
