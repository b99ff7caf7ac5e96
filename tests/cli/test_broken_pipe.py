"""Output piped into a reader that stops early (`llmsim models | head -1`): no traceback, a quiet exit."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

FIXTURES = Path(__file__).parents[1] / "fixtures" / "workload"
TINY_RUN = {"model": "llama-3.1-8b", "hardware": "h100-sxm", "stop": {"num_requests": 5},
            "workload": {"arrival": {"kind": "poisson", "rate_per_s": 1.0},
                         "input_len": {"kind": "fixed", "value": 10}, "output_len": {"kind": "fixed", "value": 3}}}


@pytest.mark.parametrize("argv", [
    ["models"],
    ["hardware"],
    ["estimate", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--batch-size", "8", "--input-len", "512",
     "--output-len", "64", "--breakdown"],
    ["workload", "describe", str(FIXTURES / "azure2023.csv")],
    ["run", "{exp}", "--out", "{out}", "--no-plots"],
])
def test_closed_stdout_is_a_quiet_exit(tmp_path, argv):
    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump(TINY_RUN))
    argv = [a.format(exp=exp, out=tmp_path / "res") for a in argv]
    proc = subprocess.Popen([sys.executable, "-m", "llmsim.cli", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # the reader is gone before the first line is written, as `head` after its line
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 141
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err
