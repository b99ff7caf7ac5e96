"""Shared helpers for workload tests: fixture paths and real traces from ../shared (skipped when absent)."""

from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "workload"
TRACES = REPO / ".." / "shared" / "data" / "traces"


@pytest.fixture
def fixture_path():
    return lambda name: FIXTURES / name


@pytest.fixture
def real_trace():
    """Path of a real trace under ../shared/data/traces, or skip the test."""

    def get(name: str) -> Path:
        path = TRACES / name
        if not path.is_file():
            pytest.skip(f"real trace {name} not available at {TRACES}")
        return path

    return get


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
