"""``llmsim workload describe|fit``: the command-line face of this package.

``register(subparsers)`` adds the ``workload`` subcommand; each handler is stored as ``args.func`` and
returns an exit code. User mistakes raise ``ConfigError`` (the top-level CLI prints it and exits 2).
``main(argv)`` runs the subcommand on its own (used by the tests).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from llmsim.errors import ConfigError

if TYPE_CHECKING:  # the modules themselves are imported by the commands (``llmsim --help`` stays light)
    from llmsim.workload.fit import WorkloadFit
    from llmsim.workload.traces import TraceData

_TIES_TO_SPREAD = 0.2  # above this share of zero gaps the clock is quantised, and fitting needs spreading


def _trace_args(p: argparse.ArgumentParser) -> None:
    from llmsim.workload import trace_formats  # noqa: F401  (fills TRACE_FORMATS for --help)
    from llmsim.workload.traces import TRACE_FORMATS

    p.add_argument("trace", help="trace file (CSV or JSONL)")
    p.add_argument("--format", default="auto", help=f"auto or one of: {', '.join(TRACE_FORMATS.names())}")
    p.add_argument("--strict", action="store_true", help="fail on the first malformed row")
    p.add_argument("--start-s", type=float, help="keep arrivals at or after this time (s from trace start)")
    p.add_argument("--end-s", type=float, help="keep arrivals before this time")
    p.add_argument(
        "--spread-s", type=float, help="spread requests sharing a timestamp over this many seconds"
    )


def register(subparsers) -> None:
    """Add ``workload describe TRACE`` and ``workload fit TRACE -o OUT.yaml`` to an argparse subparsers."""
    wl = subparsers.add_parser("workload", help="describe a request trace or fit a workload model to it")
    sub = wl.add_subparsers(dest="workload_command", metavar="{describe,fit}", required=True)
    d = sub.add_parser("describe", help="summary statistics of a trace")
    _trace_args(d)
    d.add_argument("--json", action="store_true", help="print JSON instead of a table")
    d.add_argument("--bin-s", type=float, help="bin width for the rate over time (default: automatic)")
    d.set_defaults(func=describe_command)
    f = sub.add_parser("fit", help="fit arrivals and lengths; write a workload YAML")
    _trace_args(f)
    f.add_argument("-o", "--output", required=True, help="workload YAML to write")
    f.add_argument("--plot", help="also write a PNG of fitted vs empirical distributions")
    f.add_argument("--rate-per-s", type=float, help="Poisson rate to write for traces without timestamps")
    f.add_argument("--json", action="store_true", help="print the fit as JSON instead of text")
    f.set_defaults(func=fit_command)


def _load(args: argparse.Namespace) -> TraceData:
    from llmsim.workload.traces import load_trace

    trace = load_trace(
        args.trace,
        args.format,
        strict=args.strict,
        start_s=args.start_s,
        end_s=args.end_s,
        spread_s=args.spread_s,
    )
    if trace.malformed:
        print(trace.malformed_report(), file=sys.stderr)
    for warning in trace.warnings:
        print(f"warning: {trace.path}: {warning}", file=sys.stderr)
    return trace


def describe_command(args: argparse.Namespace) -> int:
    """Print the trace summary as a table, or JSON with ``--json``."""
    if args.bin_s is not None and not args.bin_s > 0:
        raise ConfigError(f"--bin-s must be > 0, got {args.bin_s}")
    from llmsim.workload.describe import describe_trace, format_summary

    trace = _load(args)
    summary = describe_trace(trace, bin_s=args.bin_s)
    if args.json:
        out = summary.to_dict()
        out["malformed"] = [{"line": m.line, "reason": m.reason} for m in trace.malformed]
        out["notes"] = list(trace.notes)
        print(json.dumps(out, indent=2, default=_json_number))
    else:
        print(format_summary(summary))
    return 0


def _json_number(value: object) -> object:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {value!r}")


def _auto_spread(trace: TraceData, args: argparse.Namespace) -> TraceData:
    """Quantised timestamps (many ties) make gaps meaningless: spread them over the clock's quantum."""
    import numpy as np

    if trace.arrival_s is None or args.spread_s is not None or len(trace) < 3:
        return trace
    gaps = np.diff(trace.arrival_s)
    if np.mean(gaps == 0) <= _TIES_TO_SPREAD:
        return trace
    quantum = float(gaps[gaps > 0].min())
    print(
        f"note: {np.mean(gaps == 0):.0%} of arrivals share a timestamp; spreading them over {quantum:.3g} s "
        "(the smallest non-zero gap) before fitting; set --spread-s to choose",
        file=sys.stderr,
    )
    args.spread_s = quantum
    return _load(args)


def _fit_text(fit: WorkloadFit) -> str:
    lines = [f"fit of {fit.source}"]
    if fit.arrival is not None:
        lines.append("arrivals (best AIC first; KS D: <= 0.05 good, <= 0.10 fair):")
        for c in fit.arrival.candidates:
            aic = "-" if math.isnan(c.aic) else f"{c.aic:.1f}"
            lines.append(f"  {c.name:<8} D={c.ks_d:.3f} ({c.quality:<4}) AIC={aic:<10} {_flow(c.block)}")
        lines.append(f"verdict: {fit.arrival.verdict}")
    for lf in (fit.input_len, fit.output_len):
        lines.append(lf.verdict)
    lines.append(f"input/output normal-score correlation: {fit.correlation:.3f}")
    return "\n".join(lines)


def _flow(block: dict) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in block.items()) + "}"


def _yaml_text(fit: WorkloadFit, mapping: dict) -> str:
    header = [f"# Written by `llmsim workload fit {fit.source}`."]
    if fit.arrival is not None:
        header.append(f"# arrivals: {fit.arrival.verdict}")
    header += [f"# {fit.input_len.verdict}", f"# {fit.output_len.verdict}"]
    import yaml

    body = yaml.safe_dump(mapping, sort_keys=False, default_flow_style=None, width=110)
    return "\n".join(header) + "\n" + body


def fit_command(args: argparse.Namespace) -> int:
    """Fit, print the verdicts, write the workload YAML (checked by loading it back) and the plot."""
    from llmsim.workload.fit import fit_trace
    from llmsim.workload.spec import load_workload

    trace = _auto_spread(_load(args), args)
    if len(trace) < 11:
        raise ConfigError(f"{args.trace}: need at least 11 requests to fit, got {len(trace)}")
    try:
        fit = fit_trace(trace)
    except ValueError as exc:
        raise ConfigError(f"{args.trace}: {exc}") from None
    mapping = fit.workload_mapping(rate_per_s=args.rate_per_s)
    load_workload(mapping, where=f"{args.output} (as fitted)")  # never write a file we cannot read back
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(_yaml_text(fit, mapping), encoding="utf-8")
    if args.plot:
        from llmsim.workload.fit_plot import plot_fit  # matplotlib only when asked

        plot_fit(fit, trace, args.plot)
    if args.json:
        print(
            json.dumps(
                {"source": fit.source, "workload": mapping, "candidates": _candidates_json(fit)}, indent=2
            )
        )
    else:
        print(_fit_text(fit))
        print(f"wrote {out}" + (f" and {args.plot}" if args.plot else ""))
    return 0


def _candidates_json(fit: WorkloadFit) -> list[dict]:
    if fit.arrival is None:
        return []
    return [
        {"name": c.name, "block": c.block, "ks_d": c.ks_d, "aic": None if math.isnan(c.aic) else c.aic}
        for c in fit.arrival.candidates
    ]


def main(argv: list[str] | None = None) -> int:
    """Run ``workload ...`` standalone: ``main(["describe", "trace.csv"])``."""
    parser = argparse.ArgumentParser(prog="llmsim")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["workload", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)
