"""Any subset of the test directories collects: shared helpers live in importable modules
(``tests/helpers.py``), never in a ``conftest.py`` imported by name (pytest loads every directory's
conftest under the one name ``conftest``, so ``from conftest import ...`` gets whichever came last)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def test_no_test_module_imports_a_conftest_by_name():
    offenders = []
    for path in sorted(TESTS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if any(n == "conftest" for n in names):
                offenders.append(f"{path.relative_to(TESTS)}:{node.lineno}")
    assert not offenders, f"import helpers from tests.helpers, not conftest: {offenders}"


def test_workload_then_calibration_collect_together(tmp_path):
    """The reported failure: the calibration conftest shadowed the workload one (the workload conftest
    loaded first, the calibration one last; run from outside the repository)."""
    files = [str(TESTS / "workload" / "test_workload_arrivals.py"), str(TESTS / "calibration" / "test_fit.py")]
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                           "--rootdir", str(TESTS.parent), "-c", str(TESTS.parent / "pyproject.toml"), *files],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
