"""``llmsim calibrate``: measure kernels with torch (``--device``) or import measured kernel databases
(``--import FORMAT PATH``), fit, write a report and a hardware profile.

torch is imported here only when a ``--device`` run needs it; without it the command says how to install it
(exit 2). ``--import`` needs no torch.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from typing import Any

from llmsim.errors import ConfigError

INSTALL_HINT = "calibration needs torch: pip install -e '.[calibrate]'"
METHOD = ("structural kernel model (llmsim.cost.kernels) with constants fitted per class and dtype, times a "
          "residual measured / model per shape family, interpolated piecewise-linearly in log space over the "
          "measured grid (GEMM: over M per (dtype, N, K); attention: over (sequences, length) per head layout; "
          "elementwise: over bytes per kernel kind), held at the edge value outside it")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("calibrate", help="measure (or import) kernel timings and write a calibrated profile",
                              description=__doc__)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--device", choices=("cuda", "cpu"), help="where to measure")
    src.add_argument("--import", dest="imports", nargs=2, action="append", metavar=("FORMAT", "PATH"),
                     help="import measured kernel timings instead of measuring: FORMAT aic or csv; PATH a folder "
                          "or file, optionally PATH::class[/dtype],... to keep some rows only. Repeatable: a later "
                          "import replaces an earlier one's rows of the same class and dtype")
    p.add_argument("--hardware", default=None,
                   help="--import: the hardware profile the data were measured on (base of the written profile)")
    p.add_argument("--out", required=True, help="profile YAML to write (its stem is the profile name)")
    p.add_argument("--models", default="llama-3.1-8b",
                   help="comma-separated model names or HF config.json paths whose GEMM shapes are measured")
    p.add_argument("--tp", default="1", help="comma-separated TP degrees (default 1)")
    p.add_argument("--dtypes", default="bf16", help="comma-separated GEMM dtypes: bf16, fp16, fp8, fp32")
    p.add_argument("--quick", action="store_true", help="a coarser grid: a few minutes on a GPU, < 1 min on a CPU")
    p.add_argument("--base", default=None, help="base hardware profile (default: matched to the GPU name)")
    p.add_argument("--data-dir", default=None,
                   help="folder for raw CSVs, report and plots (default: calibration/<device-name>; with --import: "
                        "the report only, default calibration/<profile name>)")
    p.add_argument("--from-csv", default=None, metavar="DIR",
                   help="refit the measurements saved earlier in DIR (CSVs + run.yaml) instead of measuring; "
                        "needs no torch")
    p.add_argument("--max-m", type=int, default=None, help="largest token count swept (small test sweeps)")
    p.add_argument("--repeats", type=int, default=None, help="minimum timed samples per shape")
    p.add_argument("--threads", type=int, default=1,
                   help="--device cpu: threads torch may use (default 1: a CPU run tests the pipeline, and one "
                        "thread gives repeatable numbers on a shared machine; 0 = torch's default)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_calibrate)
    from llmsim.calibration.validate import register as register_validate  # noqa: PLC0415

    register_validate(subparsers)


def _ints(text: str, flag: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise ConfigError(f"{flag}: expected comma-separated positive integers, got {text!r}")
    return values


def command_argv(args: argparse.Namespace) -> list[str]:
    """The calibrate command line as parsed (``main(argv)`` may be called without ``sys.argv``)."""
    out = ["calibrate"]
    for flag in ("device", "models", "tp", "dtypes", "base", "max_m", "repeats", "threads", "out", "data_dir"):
        value = getattr(args, flag, None)
        if value is not None:
            out += [f"--{flag.replace('_', '-')}", str(value)]
    return out + (["--quick"] if args.quick else [])


def import_torch() -> Any:
    try:
        return importlib.import_module("torch")
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None


def cmd_import(args: argparse.Namespace, out: Path) -> int:
    from llmsim.calibration.import_outputs import write_import_outputs  # noqa: PLC0415
    from llmsim.calibration.importers import load_imports  # noqa: PLC0415
    from llmsim.calibration.runner import say  # noqa: PLC0415
    from llmsim.specs import load_hardware  # noqa: PLC0415

    if not args.hardware:
        raise ConfigError("--import needs --hardware NAME: the profile of the GPU the data were measured on")
    hw = load_hardware(args.hardware)
    imp = load_imports([(fmt, path) for fmt, path in args.imports], hw)
    report_dir = Path(args.data_dir) if args.data_dir else Path("calibration") / out.stem
    argv = ["calibrate", *(a for fmt, path in args.imports for a in ("--import", fmt, path)),
            "--hardware", args.hardware, "--out", str(out)]
    for path in write_import_outputs(imp, args.hardware, out, report_dir, argv):
        say(f"wrote {path}")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from llmsim.calibration.outputs import load_run, write_outputs  # noqa: PLC0415
    from llmsim.calibration.plan import parse_dtypes  # noqa: PLC0415
    from llmsim.calibration.runner import Options, calibrate, say  # noqa: PLC0415
    from llmsim.specs import load_model  # noqa: PLC0415

    out = Path(args.out)
    if out.suffix not in (".yaml", ".yml"):
        raise ConfigError(f"--out: expected a .yaml path, got {args.out!r}")
    if args.imports:
        return cmd_import(args, out)
    data_dir = Path(args.data_dir) if args.data_dir else None
    if args.from_csv:
        run = load_run(Path(args.from_csv))
        for path in write_outputs(run, out, data_dir or Path(args.from_csv), METHOD):
            say(f"wrote {path}")
        return 0
    models = [load_model(m.strip()) for m in args.models.split(",") if m.strip()]
    if not models:
        raise ConfigError("--models: give at least one model")
    opts = Options(device=args.device, models=models, tps=_ints(args.tp, "--tp"),
                   dtypes=parse_dtypes(args.dtypes, args.device), quick=args.quick, max_m=args.max_m,
                   repeats=args.repeats, base=args.base, threads=args.threads, progress=not args.no_progress,
                   argv=command_argv(args))
    torch = import_torch()
    if opts.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: torch sees no CUDA GPU here (use --device cpu to test the pipeline)")
    run = calibrate(torch, opts)
    written = write_outputs(run, out, data_dir, METHOD)
    for path in written:
        say(f"wrote {path}")
    return 0
