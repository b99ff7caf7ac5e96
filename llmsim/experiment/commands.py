"""CLI: ``llmsim run``, ``llmsim plot``, ``llmsim compare``, ``llmsim schema``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from llmsim.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

COMPARE_COLUMNS = ("throughput_rps", "output_tokens_per_s", "ttft_p50_s", "ttft_p99_s", "tpot_p50_s",
                   "tpot_p99_s", "itl_p99_s", "e2e_p50_s", "slo_attainment", "preemptions", "overloaded")


def register(subparsers) -> None:
    _register_run(subparsers)
    _register_results(subparsers)
    _register_trace(subparsers)
    p = subparsers.add_parser("schema", help="print the experiment YAML's JSON schema")
    p.set_defaults(func=cmd_schema)


def _register_run(subparsers) -> None:
    p = subparsers.add_parser(
        "run", help="run an experiment YAML (sweeps in parallel, resumable)",
        description="Simulate every sweep point x seed of an experiment; print a table (stdout), progress (stderr), "
                    "and write a results directory. Re-running skips finished points.")
    p.add_argument("experiment", help="experiment YAML (see experiments/ and `llmsim schema`)")
    p.add_argument("--out", help="results directory (default: results/<experiment name>)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field, VALUE read as YAML: --set stop.num_requests=2000; a swept key runs that "
                        "one value (--set workload.arrival.rate_per_s=7); repeatable")
    p.add_argument("--jobs", type=int, default=1, help="parallel worker processes (default 1)")
    p.add_argument("--executor", default="local", choices=("local", "dask"), help="local (default) or dask")
    p.add_argument("--no-plots", action="store_true", help="skip drawing figures after the run")
    p.add_argument("--no-progress", action="store_true", help="no progress display on stderr")
    p.set_defaults(func=cmd_run)


def _register_results(subparsers) -> None:
    p = subparsers.add_parser("plot", help="draw figures from a results directory",
                              description="Draw every figure of a results directory as PNG and SVG.")
    p.add_argument("directory", metavar="DIR", help="results directory written by `llmsim run`")
    p.add_argument("--out", help="figure folder (default: DIR/plots)")
    p.set_defaults(func=cmd_plot)

    p = subparsers.add_parser("compare", help="side-by-side summary of results directories",
                              description="Print the runs side by side: one row per sweep point (seeds averaged), "
                                          "one column per run under each metric. Latencies in ms, E2E in s.")
    p.add_argument("directories", nargs="+", metavar="DIR", help="results directories written by `llmsim run`")
    p.add_argument("--metrics", help="comma-separated metrics to show, from: status, grade, served, tokens, ttft_p50, "
                                     "ttft_p99, tpot_p50, tpot_p99, itl_p99, e2e_p50, attainment, goodput, rejected, "
                                     "preemptions (default: as many of the first ten as fit 120 columns)")
    p.set_defaults(func=cmd_compare)


def _register_trace(subparsers) -> None:
    p = subparsers.add_parser(
        "trace", help="write the requests of an experiment point as a Mooncake JSONL trace",
        description="Write the requests one sweep point x seed sends (as simulated) in the Mooncake trace format "
                    "(timestamp ms, input_length, output_length, hash_ids per 512-token block), the interchange "
                    "format other simulators and benchmarks replay. Read one back with a workload "
                    "`trace: {path: FILE, format: mooncake}`.")
    p.add_argument("experiment", help="experiment YAML")
    p.add_argument("-o", "--output", required=True, help="JSONL file to write")
    p.add_argument("--point", type=int, default=0,
                   help="which sweep point x seed, 0-based in the order of points.json (default 0)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field as `llmsim run --set` does")
    p.add_argument("--block-tokens", type=int, default=512, help="tokens per hash id block (default 512)")
    p.set_defaults(func=cmd_trace)


def cmd_run(args: argparse.Namespace) -> int:
    from llmsim.experiment.config import load_config
    from llmsim.experiment.runner import run_experiment

    overrides = tuple(args.overrides)
    cfg, _ = load_config(args.experiment, overrides)
    out = Path(args.out) if args.out else Path("results") / cfg.name
    results = run_experiment(args.experiment, out, jobs=args.jobs, executor=args.executor,
                             progress=not args.no_progress, overrides=overrides)
    _print_summary(results.summary, results.experiment_summary())
    if not args.no_plots:
        from llmsim.plots import plot_all

        plot_all(out)
    tables = "requests and steps" if cfg.output.steps else "requests (no steps: output.steps false)"
    print(f"\nresults in {out}/ (summary table and summary.json, per-point {tables}, run.log"
          f"{'' if args.no_plots else ', plots/'})")
    return 0


def _print_summary(summary: pd.DataFrame, exp: dict) -> None:
    from llmsim.experiment.report import headline, run_table

    print(run_table(summary))
    from llmsim.trust.display import trust_table  # grade and interval of the headline metrics

    trust = trust_table(summary)
    if trust:
        print("\n" + trust)
    text = headline(exp)
    if text:
        print("\n" + text)


def cmd_plot(args: argparse.Namespace) -> int:
    from llmsim.plots import plot_all

    written = plot_all(args.directory, args.out)
    for p in written:
        print(p)
    return 0


def compare_table(directories: list[str]) -> pd.DataFrame:
    """The compared summaries as one long table: a ``results`` column, the sweep columns and the seed means
    of ``COMPARE_COLUMNS`` (for notebooks; ``llmsim compare`` prints them side by side)."""
    import pandas as pd

    from llmsim.experiment.results import Results

    frames = []
    for d in directories:
        s = Results.load(d).summary
        sweep = [c for c in s.columns if c.startswith("sweep.")]
        cols = [c for c in COMPARE_COLUMNS if c in s]
        numeric = [c for c in cols if pd.api.types.is_numeric_dtype(s[c])]
        g = s.groupby(sweep, dropna=False)[numeric].mean().reset_index() if sweep else s[numeric].mean().to_frame().T
        g.insert(0, "results", Path(d).name)
        frames.append(g)
    return pd.concat(frames, ignore_index=True)


def cmd_compare(args: argparse.Namespace) -> int:
    from llmsim.experiment.report import DEFAULT_METRICS, compare_text, run_names
    from llmsim.experiment.results import Results

    metrics = [m.strip() for m in args.metrics.split(",")] if args.metrics else list(DEFAULT_METRICS)
    summaries = [Results.load(d).summary for d in args.directories]
    if all(s.empty for s in summaries):
        raise ConfigError("compare: no summaries found")
    print(compare_text(summaries, run_names(args.directories), metrics))
    return 0


def cmd_trace(args: argparse.Namespace) -> int:
    from llmsim.experiment.config import load_config
    from llmsim.experiment.point import point_requests
    from llmsim.experiment.sweep import expand
    from llmsim.specs import load_model
    from llmsim.workload.trace_formats import write_mooncake

    cfg, base = load_config(args.experiment, tuple(args.overrides))
    points = expand(cfg, base, args.experiment)
    if not 0 <= args.point < len(points):
        raise ConfigError(f"--point: expected 0 to {len(points) - 1} ({len(points)} sweep points x seeds), "
                          f"got {args.point}")
    if args.block_tokens < 1:
        raise ConfigError(f"--block-tokens: must be a positive integer, got {args.block_tokens}")
    point = points[args.point]
    spec, stream = point_requests(point, load_model(point.config.model))
    if spec.closed_loop is not None:
        raise ConfigError(f"{args.experiment}: workload: a closed-loop workload has no arrival times before it "
                          "is simulated; export an open-loop one")
    n = write_mooncake(stream, args.output, args.block_tokens)
    print(f"{args.output}: {n} requests of point {point.id} (seed {point.seed})")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from llmsim.experiment.config import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0
