"""CLI: ``llmsim validate-run`` (a real benchmark's result vs the simulation of the same load) and
``llmsim sensitivity`` (which uncertain input moves a metric most)."""

from __future__ import annotations

import argparse
from pathlib import Path

from llmsim.errors import ConfigError


def register(subparsers) -> None:
    _register_validate(subparsers)
    _register_sensitivity(subparsers)


def _register_validate(subparsers) -> None:
    p = subparsers.add_parser(
        "validate-run", help="compare a real benchmark result file with the simulation of the same load",
        description="Read a vllm bench serve JSON, a guidellm report or an inference-perf lifecycle-metrics JSON, "
                    "rebuild its load (rate or concurrency, request count, lengths, shared prefixes where the file "
                    "says), simulate it on the deployment given by the flags (or a base --experiment), and print "
                    "predicted vs measured per metric, the error, the interval and whether the measurement is "
                    "inside it.")
    p.add_argument("result", help="benchmark result file (JSON; vLLM --append-result files may hold one per line)")
    p.add_argument("--format", default="auto", help="auto (default), vllm, guidellm or inference-perf")
    p.add_argument("--experiment", help="base experiment YAML for the deployment (its workload is replaced)")
    p.add_argument("--model", help="model name or HF config.json")
    p.add_argument("--hardware", help="hardware profile")
    p.add_argument("--tp", type=int, help="tensor-parallel degree")
    p.add_argument("--replicas", type=int, help="data-parallel replicas behind one endpoint")
    p.add_argument("--precision", help="bf16 (default), fp8, ...")
    p.add_argument("--engine", help="engine profile (e.g. vllm-0.15)")
    p.add_argument("--max-num-seqs", type=int, help="the engine's max_num_seqs")
    p.add_argument("--max-num-batched-tokens", type=int, help="the engine's max_num_batched_tokens")
    p.add_argument("--max-model-len", type=int, help="the engine's max_model_len")
    p.add_argument("--gpu-memory-utilization", type=float, help="the engine's gpu_memory_utilization")
    p.add_argument("--input-len", type=int, help="prompt tokens per request (overrides the file)")
    p.add_argument("--output-len", type=int, help="output tokens per request (overrides the file)")
    p.add_argument("--repeat", action="append", default=[], metavar="FILE",
                   help="another result file of the same run, for the run-to-run spread (repeatable)")
    p.add_argument("--index", type=int, help="only this load point of a multi-point file (0-based)")
    p.add_argument("--scale", type=float, default=1.0, help="simulate this fraction of the requests (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_validate_run)


def _base(args: argparse.Namespace) -> dict:
    from llmsim.yamlio import load_yaml

    base = dict(load_yaml(Path(args.experiment), "experiment")) if args.experiment else {}
    if not isinstance(base, dict):
        raise ConfigError(f"{args.experiment}: expected a YAML mapping")
    for flag, key in (("model", "model"), ("hardware", "hardware"), ("precision", "precision"),
                      ("engine", "engine"), ("max_model_len", "max_model_len")):
        if getattr(args, flag) is not None:
            base[key] = getattr(args, flag)
    layout = dict(base.get("layout") or {})
    for flag in ("tp", "replicas"):
        if getattr(args, flag) is not None:
            layout[flag] = getattr(args, flag)
    if layout:
        base["layout"] = layout
    sched = dict(base.get("scheduler") or {"kind": "vllm"})
    for flag in ("max_num_seqs", "max_num_batched_tokens"):
        if getattr(args, flag) is not None:
            sched[flag] = getattr(args, flag)
    base["scheduler"] = sched
    if args.gpu_memory_utilization is not None:
        base["memory"] = {**(base.get("memory") or {}), "gpu_memory_utilization": args.gpu_memory_utilization}
    return base


def cmd_validate_run(args: argparse.Namespace) -> int:
    from llmsim.trust.benchfiles import load_bench_file
    from llmsim.trust.intervals import LEVEL
    from llmsim.trust.validate_run import render, validate

    if not 0 < args.scale <= 1:
        raise ConfigError(f"--scale: expected a number in (0, 1], got {args.scale}")
    runs = load_bench_file(args.result, args.format)
    repeats = [load_bench_file(f, args.format) for f in args.repeat]
    if args.index is not None:
        if not 0 <= args.index < len(runs):
            raise ConfigError(f"--index: {args.result} has {len(runs)} load points (0-{len(runs) - 1}), got "
                              f"{args.index}")
        runs = [runs[args.index]]
        repeats = [[rep[args.index]] if args.index < len(rep) else [] for rep in repeats]
    print(render(validate(runs, _base(args), repeats, args.seed, args.scale, args.input_len, args.output_len), LEVEL))
    return 0


def _register_sensitivity(subparsers) -> None:
    p = subparsers.add_parser(
        "sensitivity", help="rank uncertain inputs by their effect on one metric (tornado plot)",
        description="Perturb each uncertain input (kernel time, engine CPU and front-end costs, arrival burstiness, "
                    "prompt and output lengths) to the ends of its stated uncertainty, simulate one point of the "
                    "experiment at each end, and rank the inputs by how far they move the metric.")
    p.add_argument("experiment", help="experiment YAML")
    p.add_argument("--metric", default="ttft_p99", help="summary metric, with or without _s (default ttft_p99)")
    p.add_argument("--point", type=int, default=0, help="which sweep point x seed, 0-based (default 0)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field as `llmsim run --set` does")
    p.add_argument("--plot", metavar="FILE", help="write the tornado plot (PNG or SVG)")
    p.set_defaults(func=cmd_sensitivity)


def cmd_sensitivity(args: argparse.Namespace) -> int:
    from llmsim.trust.sensitivity import render, sensitivity, tornado_plot

    result = sensitivity(args.experiment, args.metric, point=args.point, overrides=tuple(args.overrides))
    print(render(result))
    if args.plot:
        tornado_plot(result, args.plot)
        print(f"\ntornado plot: {args.plot}")
    return 0
