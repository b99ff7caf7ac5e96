"""``llmsim`` command line: estimate, models, hardware (and the subcommands other packages register).

User mistakes (``LlmsimError``) print one line ``error: ...`` on stderr and exit with code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from llmsim.errors import LlmsimError


def _fmt_bytes(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


def _fmt_s(s: float) -> str:
    return f"{s * 1e3:.3f} ms"


def _load_common(args: argparse.Namespace):
    from llmsim.specs import ParallelLayout, Precision, load_hardware, load_model

    model = load_model(args.model)
    hardware = load_hardware(args.hardware)
    layout = ParallelLayout(tp=args.tp, pp=args.pp)
    precision = Precision.parse(args.precision, args.kv_dtype)
    return model, hardware, layout, precision


def cmd_estimate(args: argparse.Namespace) -> int:
    from llmsim.cost.estimate import breakdown, estimate

    model, hardware, layout, precision = _load_common(args)
    est = estimate(model, hardware, layout, precision, batch_size=args.batch_size, input_len=args.input_len,
                   output_len=args.output_len, gpu_memory_utilization=args.gpu_memory_utilization,
                   block_size=args.block_size)
    tables = None
    if args.breakdown:
        tables = breakdown(model, hardware, layout, precision, batch_size=args.batch_size,
                           input_len=args.input_len, output_len=args.output_len)
    if args.json:
        out = est.to_dict()
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
        f"{e.model} on {e.hardware}  tp={e.tp} pp={e.pp}  precision={e.precision} kv={e.kv_dtype}",
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
    print("\n".join(lines))


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
    p.add_argument("--model", required=True, help="shipped model name or path to a HF config.json")
    p.add_argument("--hardware", required=True, help="hardware profile name or path to a profile YAML")
    p.add_argument("--tp", type=int, default=1, help="tensor-parallel degree (default 1)")
    p.add_argument("--pp", type=int, default=1, help="pipeline-parallel degree (default 1)")
    p.add_argument("--precision", default="bf16", help="bf16, fp16, fp8, w8a8-int8, int8, int4 (default bf16)")
    p.add_argument("--kv-dtype", default=None, help="KV-cache dtype: bf16, fp16, fp8, int8, int4")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llmsim", description="Simulate and estimate LLM serving performance.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("estimate", help="analytical estimate of one static batch (milliseconds to answer)")
    _add_layout_args(p)
    p.add_argument("--batch-size", type=int, required=True)
    p.add_argument("--input-len", type=int, required=True)
    p.add_argument("--output-len", type=int, required=True)
    p.add_argument("--gpu-memory-utilization", type=float, default=0.9)
    p.add_argument("--block-size", type=int, default=16)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--breakdown", action="store_true", help="per-operator tables of prefill and decode")
    p.set_defaults(func=cmd_estimate)

    sub.add_parser("models", help="list shipped model specs").set_defaults(func=cmd_models)
    sub.add_parser("hardware", help="list hardware profiles").set_defaults(func=cmd_hardware)
    for register in _plugin_commands():
        register(sub)
    return parser


def _plugin_commands():
    """Subcommands owned by other packages (each module exposes ``register(subparsers)``)."""
    import importlib

    found = []
    for module in ("llmsim.experiment.commands", "llmsim.workload.commands", "llmsim.sim.commands",
                   "llmsim.calibration.commands"):
        try:
            found.append(importlib.import_module(module).register)
        except ModuleNotFoundError as exc:
            if exc.name is None or not module.startswith(exc.name):
                raise
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except LlmsimError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
