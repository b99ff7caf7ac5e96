"""`llmsim calibrate` user errors: one line on stderr, exit code 2; torch only imported when it runs."""

import subprocess
import sys

import pytest

from llmsim.calibration.commands import INSTALL_HINT
from llmsim.cli import main


def test_importing_the_cli_does_not_import_torch():
    code = "import sys, llmsim.cli; llmsim.cli.build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_missing_torch_says_how_to_install(tmp_path):
    # A fresh interpreter where `import torch` fails, as without the `calibrate` extra.
    code = f"""
import sys

class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError("No module named 'torch'", name="torch")

sys.meta_path.insert(0, NoTorch())
from llmsim.cli import main
sys.exit(main(['calibrate', '--device', 'cpu', '--out', {str(tmp_path / 'x.yaml')!r}]))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {INSTALL_HINT}"
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(("extra", "message"), [
    (["--tp", "0"], "--tp: expected comma-separated positive integers"),
    (["--dtypes", "int3"], "--dtypes: expected a comma-separated subset"),
    (["--models", "nope"], "unknown model 'nope'"),
])
def test_bad_arguments(extra, message, tmp_path, capsys):
    args = ["calibrate", "--device", "cpu", "--out", str(tmp_path / "x.yaml"), "--data-dir", str(tmp_path), *extra]
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_out_must_be_yaml(tmp_path, capsys):
    assert main(["calibrate", "--device", "cpu", "--out", str(tmp_path / "x.txt")]) == 2
    assert "--out: expected a .yaml path" in capsys.readouterr().err


def test_cuda_without_gpu_is_a_user_error(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    assert main(["calibrate", "--device", "cuda", "--out", str(tmp_path / "x.yaml")]) == 2
    assert "torch sees no CUDA GPU" in capsys.readouterr().err
