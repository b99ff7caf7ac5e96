"""``llmsim`` command line: estimate, models, hardware (and the subcommands other packages register).

User mistakes (``LlmsimError``) print one line ``error: ...`` on stderr and exit with code 2. The core
commands (estimate, models, hardware) are parsed without importing the other subcommands' modules, so
``llmsim estimate`` answers in a fraction of a second.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections.abc import Sequence

from llmsim.errors import LlmsimError


def _fmt_bytes(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


def _fmt_s(s: float) -> str:
    return f"{s * 1e3:.3f} ms"


# the flag behind an error message's leading field name ("tp=3 does not divide ...", "batch_size: ...")
FLAGS = {"tp": "--tp", "pp": "--pp", "ep": "--ep", "ep_comm": "--ep-comm", "moe.skew": "--moe-skew",
         "moe.capacity_factor": "--capacity-factor", "batch_size": "--batch-size", "input_len": "--input-len",
         "output_len": "--output-len", "gpu_memory_utilization": "--gpu-memory-utilization",
         "block_size": "--block-size", "kv_dtype": "--kv-dtype", "precision": "--precision"}
MAX_ESTIMATE_BATCH = 1_000_000  # sequences in one static batch; costing is O(batch) per step
MAX_WINDOWED_CELLS = 20_000_000  # batch x decode steps, for sliding-window models (costed per cell)


def _flagged(flag: str, build, *args):
    """``build(*args)``; a user-facing error gets the flag it came from in front."""
    try:
        return build(*args)
    except LlmsimError as exc:
        raise type(exc)(f"{flag}: {exc}") from None


def _load_common(args: argparse.Namespace):
    from llmsim.specs import ParallelLayout, Precision, load_hardware, load_model

    model = _flagged("--model", load_model, args.model)
    hardware = _flagged("--hardware", load_hardware, args.hardware)
    from llmsim.specs.moe import MoERouting

    layout = ParallelLayout(tp=args.tp, pp=args.pp, ep=args.ep, ep_comm=args.ep_comm,
                            moe=MoERouting(skew=args.moe_skew, capacity_factor=args.capacity_factor))
    precision = Precision.parse(args.precision, args.kv_dtype)
    _flagged("--precision", hardware.peak_flops, precision.compute)
    return model, hardware, layout, precision


def _check_batch(args: argparse.Namespace, model) -> None:
    if args.block_size < 1:
        raise LlmsimError(f"--block-size: must be a positive integer, got {args.block_size}")
    if args.batch_size > MAX_ESTIMATE_BATCH:
        raise LlmsimError(f"--batch-size: at most {MAX_ESTIMATE_BATCH:,} sequences in one static batch, got "
                          f"{args.batch_size:,}")
    if (model.sliding_window or model.attention_chunk) and args.batch_size * args.output_len > MAX_WINDOWED_CELLS:
        raise LlmsimError(f"--batch-size x --output-len: at most {MAX_WINDOWED_CELLS:,} for a sliding-window "
                          f"model ({model.name}), got {args.batch_size * args.output_len:,}")


def cmd_estimate(args: argparse.Namespace) -> int:
    try:
        return _estimate(args)
    except LlmsimError as exc:
        text = str(exc)
        head = re.match(r"([a-z_.]+)(=|: )", text)
        if head and head[1] in FLAGS:  # "tp: must be ..." -> "--tp: must be ..."; "tp=3 ..." -> "--tp: tp=3 ..."
            rest = text[head.end():] if head[2] == ": " else text
            raise type(exc)(f"{FLAGS[head[1]]}: {rest}") from None
        raise


def _estimate(args: argparse.Namespace) -> int:
    from llmsim.cost.estimate import breakdown, estimate

    model, hardware, layout, precision = _load_common(args)
    _check_batch(args, model)
    est = estimate(model, hardware, layout, precision, batch_size=args.batch_size, input_len=args.input_len,
                   output_len=args.output_len, gpu_memory_utilization=args.gpu_memory_utilization,
                   block_size=args.block_size)
    tables = None
    if args.breakdown:
        tables = breakdown(model, hardware, layout, precision, batch_size=args.batch_size,
                           input_len=args.input_len, output_len=args.output_len)
    if args.json:
        out = est.to_dict()
        out["grade"] = _estimate_grade(est)
        if tables:
            out["breakdown"] = {k: [_row(r) for r in v] for k, v in tables.items()}
        print(json.dumps(out, indent=2))
        return 0
    _print_estimate(est)
    if tables:
        for phase, rows in tables.items():
            _print_breakdown(phase, rows)
    return 0


def _row(r) -> dict:
    return {"name": r.name, "op_class": r.op_class, "where": r.where, "count": r.count, "flops": r.flops,
            "hbm_bytes": r.hbm_bytes, "time_s": r.time_s, "bound": r.bound, "source": r.source}


def _print_estimate(e) -> None:
    m = e.memory
    lines = [
        f"{e.model} on {e.hardware}  tp={e.tp} pp={e.pp}{f' ep={e.ep}' if e.ep > 1 else ''}  "
        f"precision={e.precision} kv={e.kv_dtype}",
        f"batch {e.batch_size} x ({e.input_len} in, {e.output_len} out)",
        "",
        f"  prefill            {_fmt_s(e.prefill_s)}   (MFU {e.prefill_mfu:.1%})",
        f"  TTFT               {_fmt_s(e.ttft_s)}",
        f"  decode step        first {_fmt_s(e.decode_step_first_s)}, middle {_fmt_s(e.decode_step_mid_s)}, "
        f"last {_fmt_s(e.decode_step_last_s)}   (MBU {e.decode_mbu:.1%})",
        f"  TPOT               {_fmt_s(e.tpot_s)}",
        f"  E2E                {e.e2e_s:.3f} s",
        f"  output throughput  {e.output_tokens_per_s:,.0f} tok/s ({e.output_tokens_per_s_per_gpu:,.0f} per GPU)",
        "",
        f"  memory per GPU     weights {_fmt_bytes(m.weights_bytes)}, activations {_fmt_bytes(m.activation_bytes)}, "
        f"reserved {_fmt_bytes(m.reserved_bytes)} of {_fmt_bytes(m.usable_bytes)} usable",
        f"  KV per token       {m.kv_bytes_per_token / 1024:.0f} KiB (model), "
        f"{m.kv_bytes_per_token_per_gpu / 1024:.0f} KiB per GPU",
        f"  KV capacity        {m.kv_capacity_tokens:,} tokens ({m.num_blocks:,} blocks of {m.block_size})",
        f"  fits               {'yes' if m.fits else 'NO'} (max batch size {m.max_batch_size} at this length)",
    ]
    if e.evidence:
        ev = e.evidence
        lines.append(f"  evidence           {ev['interpolated']:.0%} of kernel time interpolated between measured "
                     f"kernels, {ev['extrapolated']:.0%} extrapolated, {ev['roofline']:.0%} roofline only")
        lines.append(f"  grade              {_estimate_grade(e)} (llmsim.trust.grades; no interval: intervals come from "
                     "simulated serving runs, `llmsim run`)")
    print("\n".join(lines))


def _estimate_grade(e) -> str | None:
    """Evidence grade of a static-batch estimate: its kernels' evidence alone (no engine profile is timed)."""
    if not e.evidence:
        return None
    from llmsim.trust.grades import Evidence, grade

    ev = e.evidence
    return grade(Evidence(ev["interpolated"], ev["extrapolated"], ev["roofline"])).letter


def _print_breakdown(phase: str, rows) -> None:
    total = sum(r.time_s for r in rows) or 1.0
    print(f"\n{phase} step, per GPU (times summed over the operator's count):")
    print(f"  {'operator':<22}{'class':<13}{'count':>6}{'GFLOP':>12}{'MB':>11}{'time':>12}{'share':>8}"
          f"  {'bound':<8}source")
    for r in rows:
        print(f"  {r.name:<22}{r.op_class:<13}{r.count:>6}{r.flops / 1e9:>12.2f}{r.hbm_bytes / 1e6:>11.2f}"
              f"{_fmt_s(r.time_s):>12}{r.time_s / total:>8.1%}  {r.bound:<8}{r.source}")


def cmd_models(args: argparse.Namespace) -> int:
    from llmsim.specs import load_model, model_names

    print(f"{'name':<18}{'layers':>7}{'hidden':>8}{'heads':>7}{'kv':>5}{'params':>10}{'active':>9}  attention")
    for name in model_names():
        m = load_model(name)
        print(f"{name:<18}{m.num_layers:>7}{m.hidden_size:>8}{m.num_heads:>7}{m.num_kv_heads:>5}"
              f"{m.param_count() / 1e9:>9.2f}B{m.param_count(True) / 1e9:>8.2f}B  {m.attention_kind}")
    return 0


def cmd_hardware(args: argparse.Namespace) -> int:
    from llmsim.specs import hardware_names, load_hardware

    names = hardware_names()
    width = max([16, *(len(n) + 2 for n in names)])
    print(f"{'name':<{width}}{'bf16 TFLOP/s':>13}{'HBM GB':>8}{'HBM TB/s':>9}{'$/h':>7}  calibrated")
    for name in names:
        hw = load_hardware(name)
        print(f"{name:<{width}}{hw.peak_flops('bf16') / 1e12:>13.1f}{hw.hbm_bytes / 1e9:>8.1f}"
              f"{hw.hbm_bytes_per_s / 1e12:>9.2f}{hw.price_per_hour_usd:>7.2f}  {'yes' if hw.calibration else 'no'}")
    return 0


def _add_layout_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True,
                   help="shipped model name (see `llmsim models`) or path to a HF config.json")
    p.add_argument("--hardware", required=True,
                   help="hardware profile name (see `llmsim hardware`) or path to a profile YAML")
    p.add_argument("--tp", type=int, default=1, help="tensor-parallel degree (default 1)")
    p.add_argument("--pp", type=int, default=1, help="pipeline-parallel degree (default 1)")
    p.add_argument("--ep", type=int, default=1,
                   help="expert-parallel degree for MoE models: divides --tp and the expert count (default 1)")
    p.add_argument("--ep-comm", default="allreduce",
                   help="how tokens reach the experts with --ep: allreduce (vLLM, one DP rank) or alltoall "
                        "(DeepEP dispatch/combine); default allreduce")
    p.add_argument("--moe-skew", type=float, default=1.0,
                   help="busiest EP GPU's expert load over its uniform share, >= 1 (default 1: uniform)")
    p.add_argument("--capacity-factor", type=float, default=None,
                   help="expert capacity factor (tokens above it dropped, GShard); default none")
    p.add_argument("--precision", default="bf16",
                   help="bf16, fp16, fp8, w8a8-int8, or weight-only int8 / int4 (default bf16)")
    p.add_argument("--kv-dtype", default=None, help="KV-cache dtype: bf16, fp16, fp8, int8, int4 (default: the "
                                                    "activation dtype: fp16 for --precision fp16, else bf16)")


EXIT_CODES = """exit codes:
  0    success
  1    internal error (a bug: please report the traceback)
  2    bad input or usage: one line `error: FILE: field: what was expected` on stderr
  130  interrupted (Ctrl-C)
  141  stdout closed early (e.g. piped into `head`): stopped quietly"""
CORE_COMMANDS = ("estimate", "models", "hardware")


def build_parser(plugins: bool = True) -> argparse.ArgumentParser:
    """The ``llmsim`` parser; ``plugins=False`` leaves out the subcommands other packages register."""
    from llmsim import __version__

    parser = argparse.ArgumentParser(prog="llmsim", description="Simulate and estimate LLM serving performance.",
                                     epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"llmsim {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("estimate", help="analytical estimate of one static batch (answers in milliseconds)",
                       description="Time one static batch on the roofline cost model: prefill of batch-size "
                                   "prompts, then output-len - 1 decode steps; memory and KV capacity as vLLM "
                                   "sizes them.", epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_layout_args(p)
    p.add_argument("--batch-size", type=int, required=True, help="sequences in the batch")
    p.add_argument("--input-len", type=int, required=True, help="prompt tokens per sequence")
    p.add_argument("--output-len", type=int, required=True, help="output tokens per sequence (the first from prefill)")
    p.add_argument("--gpu-memory-utilization", type=float, default=0.9,
                   help="fraction of HBM the engine may use, as vLLM's flag (default 0.9)")
    p.add_argument("--block-size", type=int, default=16, help="paged-KV block size in tokens (default 16)")
    p.add_argument("--json", action="store_true", help="print one JSON object (keys in the README)")
    p.add_argument("--breakdown", action="store_true", help="per-operator tables of prefill and decode")
    p.set_defaults(func=cmd_estimate)

    sub.add_parser("models", help="list shipped model specs").set_defaults(func=cmd_models)
    sub.add_parser("hardware", help="list hardware profiles").set_defaults(func=cmd_hardware)
    if plugins:
        for register in _plugin_commands():
            register(sub)
    return parser


# validate-run and sensitivity (llmsim.trust): kept apart so other branches' command lists merge cleanly
TRUST_COMMANDS = ("llmsim.trust.commands",)


def _plugin_commands():
    """Subcommands owned by other packages (each module exposes ``register(subparsers)``)."""
    import importlib

    found = []
    for module in ("llmsim.experiment.commands", "llmsim.workload.commands", "llmsim.sim.commands",
                   "llmsim.calibration.commands", "llmsim.engines.commands",
                   "llmsim.search.commands",  # llmsim search (configuration search)
                   *TRUST_COMMANDS):
        try:
            found.append(importlib.import_module(module).register)
        except ModuleNotFoundError as exc:
            if exc.name is None or not module.startswith(exc.name):
                raise
    return found


def _command(argv: Sequence[str]) -> str | None:
    """The subcommand named in ``argv`` (its first non-option word), if any."""
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(plugins=_command(argv) not in CORE_COMMANDS)
    args = parser.parse_args(argv)
    handler = _warnings_to_stderr()
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, inside the try, not at interpreter exit
        return code
    except LlmsimError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(str(exc) or "interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `llmsim models | head -1`: the reader left; stop quietly, as Unix tools do
        _silence_stdout()
        return 141
    finally:
        logging.getLogger("llmsim").removeHandler(handler)


def _warnings_to_stderr() -> logging.Handler:
    """Warnings of the llmsim loggers as ``warning: ...`` lines on stderr (run.log keeps its own copy)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("warning: %(message)s"))
    logging.getLogger("llmsim").addHandler(handler)
    return handler


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not raise again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
