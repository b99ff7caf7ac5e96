"""Find shipped model specs and hardware profiles by name, or load them from a path."""

from __future__ import annotations

import os
from pathlib import Path

from llmsim.errors import UnknownNameError
from llmsim.specs.hardware import HardwareSpec, load_hardware_file
from llmsim.specs.hf_import import load_hf_config
from llmsim.specs.model import ModelSpec

MODELS_DIR = Path(__file__).parent / "models"
REPO_ROOT = Path(__file__).resolve().parents[2]


def hardware_dirs() -> list[Path]:
    """Where profiles are looked up by name: $LLMSIM_HARDWARE_PATH (os.pathsep-separated), then
    ./hardware_profiles, then the repository's hardware_profiles/ (editable installs)."""
    dirs = [Path(p) for p in os.environ.get("LLMSIM_HARDWARE_PATH", "").split(os.pathsep) if p]
    dirs += [Path.cwd() / "hardware_profiles", REPO_ROOT / "hardware_profiles"]
    seen: list[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in [s.resolve() for s in seen]:
            seen.append(d)
    return seen


def model_names() -> list[str]:
    return sorted(p.stem for p in MODELS_DIR.glob("*.json"))


def hardware_names() -> list[str]:
    names: set[str] = set()
    for d in hardware_dirs():
        names.update(p.stem for p in d.glob("*.yaml"))
    return sorted(names)


def _looks_like_path(name: str) -> bool:
    return os.sep in name or name.endswith((".json", ".yaml", ".yml"))


def load_model(name: str) -> ModelSpec:
    """A shipped model by name (``llama-3.1-8b``) or a Hugging Face config.json by path."""
    if _looks_like_path(name):
        return load_hf_config(name)
    path = MODELS_DIR / f"{name}.json"
    if not path.is_file():
        raise UnknownNameError(f"unknown model {name!r}; valid: {', '.join(model_names())} "
                               "(or a path to a Hugging Face config.json)")
    return load_hf_config(path, name=name)


def load_hardware(name: str) -> HardwareSpec:
    """A hardware profile by name (``h100-sxm``) or by path to its YAML."""
    if _looks_like_path(name):
        return load_hardware_file(name)
    for d in hardware_dirs():
        path = d / f"{name}.yaml"
        if path.is_file():
            return load_hardware_file(path)
    raise UnknownNameError(f"unknown hardware {name!r}; valid: {', '.join(hardware_names()) or '(none found)'} "
                           "(or a path to a profile YAML)")
