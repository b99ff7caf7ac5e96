"""CLI: ``llmsim run``, ``llmsim plot``, ``llmsim compare``, ``llmsim schema``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from llmsim.errors import ConfigError

COMPARE_COLUMNS = ("throughput_rps", "output_tokens_per_s", "ttft_p50_s", "ttft_p99_s", "tpot_p50_s",
                   "tpot_p99_s", "itl_p99_s", "e2e_p50_s", "slo_attainment", "preemptions", "overloaded")


LATENCY_PREFIXES = ("ttft_", "tpot_", "itl_", "e2e_", "queue_")


def register(subparsers) -> None:
    p = subparsers.add_parser("run", help="run an experiment YAML (sweeps in parallel, resumable)")
    p.add_argument("experiment", help="experiment YAML")
    p.add_argument("--out", help="results directory (default: results/<experiment name>)")
    p.add_argument("--jobs", type=int, default=1, help="parallel worker processes (default 1)")
    p.add_argument("--executor", default="local", help="local (default) or dask")
    p.add_argument("--no-plots", action="store_true", help="skip drawing figures after the run")
    p.set_defaults(func=cmd_run)

    p = subparsers.add_parser("plot", help="draw figures from a results directory")
    p.add_argument("directory")
    p.add_argument("--out", help="figure folder (default: DIR/plots)")
    p.set_defaults(func=cmd_plot)

    p = subparsers.add_parser("compare", help="side-by-side summary of results directories")
    p.add_argument("directories", nargs="+")
    p.set_defaults(func=cmd_compare)

    p = subparsers.add_parser("schema", help="print the experiment YAML's JSON schema")
    p.set_defaults(func=cmd_schema)


def cmd_run(args: argparse.Namespace) -> int:
    from llmsim.experiment.config import load_config
    from llmsim.experiment.runner import run_experiment

    cfg, _ = load_config(args.experiment)
    out = Path(args.out) if args.out else Path("results") / cfg.name
    results = run_experiment(args.experiment, out, jobs=args.jobs, executor=args.executor, progress=True)
    _print_summary(results.summary)
    if not args.no_plots:
        from llmsim.plots import plot_all

        plot_all(out)
    print(f"\nresults in {out}/ (summary table, per-point requests and steps, run.log"
          f"{'' if args.no_plots else ', plots/'})")
    return 0


def _print_summary(summary: pd.DataFrame) -> None:
    sweep = [c for c in summary.columns if c.startswith("sweep.")]
    cols = ["point_id", "seed", *sweep, *[c for c in COMPARE_COLUMNS if c in summary]]
    view = summary[cols].copy()
    latency = [c for c in view.columns if c.startswith(LATENCY_PREFIXES) and c.endswith("_s")]
    for c in latency:
        view[c] = view[c] * 1e3
    view = view.rename(columns={c: c[:-2] + "_ms" for c in latency})
    print(view.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    if "overloaded" in summary and summary["overloaded"].fillna(False).astype(bool).any():
        print("\nwarning: some points are overloaded (arrivals outpace service; the queue grows without bound):"
              " their latencies describe a transient, not a steady state")


def cmd_plot(args: argparse.Namespace) -> int:
    from llmsim.plots import plot_all

    written = plot_all(args.directory, args.out)
    for p in written:
        print(p)
    return 0


def compare_table(directories: list[str]) -> pd.DataFrame:
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
    table = compare_table(args.directories)
    if table.empty:
        raise ConfigError("compare: no summaries found")
    print(table.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from llmsim.experiment.config import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0
