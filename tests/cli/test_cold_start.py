"""Cold start: ``import llmsim`` and ``llmsim --help`` import none of the heavy libraries (pandas, scipy,
SimPy, matplotlib, pydantic, torch); commands import them when they run."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("pandas", "scipy", "simpy", "matplotlib", "pydantic", "torch")
PROBE = """
import sys
{code}
print("heavy:" + ",".join(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)
"""


def heavy_imported(code: str) -> list[str]:
    err = subprocess.run([sys.executable, "-c", PROBE.format(code=code, heavy=HEAVY)], capture_output=True,
                         text=True, check=True).stderr
    line = next(x for x in err.splitlines() if x.startswith("heavy:"))
    return [m for m in line[len("heavy:"):].split(",") if m]


def test_import_llmsim_is_light():
    assert heavy_imported("import llmsim") == []


def test_help_is_light():
    code = ("from llmsim.cli import build_parser\n"
            "try:\n    build_parser().parse_args(['--help'])\nexcept SystemExit:\n    pass")
    assert heavy_imported(code) == []


def test_package_names_still_import_on_use():
    code = "from llmsim.sim import simulate\nfrom llmsim.experiment import Results\nfrom llmsim.workload import fit_trace"
    assert {"pandas", "scipy", "simpy"} <= set(heavy_imported(code))
