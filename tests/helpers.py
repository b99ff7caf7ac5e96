"""Helpers shared by test modules, imported as ``from tests.helpers import ...`` (pyproject's pytest
``pythonpath`` puts the repository root on the path). A ``conftest.py`` holds fixtures only: pytest loads
each directory's conftest under the same module name, so importing one by name breaks depending on which
test directories a run collects."""

from __future__ import annotations

import numpy as np


def cv(x: np.ndarray) -> float:
    """Coefficient of variation: standard deviation over mean."""
    return float(np.std(x) / np.mean(x))
