"""Lazy package exports (PEP 562): a package's public names are imported from their modules on first use,
so importing the package (``llmsim --help``, ``import llmsim.experiment``) does not pull in pandas, scipy,
SimPy or matplotlib until something needs them."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str], namespace: dict) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: name -> the module (relative to the package) defining it;
    any other name is tried as a submodule."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            try:
                value = importlib.import_module(f"{package}.{name}")
            except ModuleNotFoundError as exc:
                if exc.name != f"{package}.{name}":
                    raise
                raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        else:
            value = getattr(importlib.import_module(f"{package}.{module}"), name)
        namespace[name] = value
        return value

    return __getattr__
