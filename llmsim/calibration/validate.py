"""``llmsim validate``: time real forward steps of a random-weight model in torch and compare them with the
cost model's step time on a (calibrated) hardware profile. Writes ``validation.csv`` and ``validation.md``.

Prefill points run ``batch`` prompts of ``length`` tokens from an empty cache; decode points run one token
per sequence on top of ``length`` cached tokens. The prediction is ``StepCost.total_s - overhead_s``: the
forward pass has no serving scheduler, so the profile's per-step CPU overhead is left out (kernel launch
gaps stay in, as eager torch pays them).
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmsim.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

GPU_POINTS = {
    "prefill": [(1, 128), (1, 512), (1, 2048), (1, 4096), (4, 512), (8, 1024), (16, 512)],
    "decode": [(1, 512), (1, 2048), (8, 512), (16, 2048), (32, 1024), (64, 1024), (64, 2048), (128, 512)],
}
QUICK_POINTS = {"prefill": [(1, 32), (2, 64)], "decode": [(1, 64), (4, 64)]}
# --quick on a CPU times a model of at most this many parameters (~100 MB in bf16: seconds per point on one
# thread); a bigger one (the default llama-3.1-8b would need ~16 GB and hours) is shrunk by quick_cpu_model
QUICK_CPU_MAX_PARAMS = 50e6
QUICK_CPU_MAX_CASE_S = 2.0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("validate", help="time a real forward pass in torch and compare with the cost model",
                              description=__doc__)
    p.add_argument("--device", choices=("cuda", "cpu"), required=True)
    p.add_argument("--model", default="llama-3.1-8b", help="shipped name or HF config.json (dense Llama-style)")
    p.add_argument("--hardware", required=True, help="hardware profile (name or path), calibrated ideally")
    p.add_argument("--dtype", default="bf16", choices=("bf16", "fp16", "fp32"))
    p.add_argument("--quick", action="store_true", help="a few small points (CPU tests)")
    p.add_argument("--out-dir", required=True, help="folder for validation.csv and validation.md")
    p.add_argument("--threads", type=int, default=1, help="--device cpu: torch threads (default 1)")
    p.set_defaults(func=cmd_validate)


def quick_cpu_model(model):
    """The model's architecture at toy size, for ``--quick`` on a CPU: 2 layers, its head size, its kind of
    attention (MHA: 4 heads; GQA: 2 KV heads, each serving up to 4 query heads; MQA: 1 KV head, up to 8 query
    heads), its MLP/hidden ratio, a vocabulary of at most 8192. Measured and predicted times then both refer
    to this model."""
    from dataclasses import replace

    if model.param_count() <= QUICK_CPU_MAX_PARAMS:
        return model
    group = model.num_heads // model.num_kv_heads
    if model.num_kv_heads == 1:
        heads, kv_heads = min(model.num_heads, 8), 1
    else:
        heads, kv_heads = (4, 4) if group == 1 else (2 * min(group, 4), 2)
    hidden = heads * model.head_dim
    ffn = max(64, round(hidden * model.ffn_size / model.hidden_size / 64) * 64)
    return replace(model, name=f"{model.name}-quick-cpu", num_layers=2, hidden_size=hidden, num_heads=heads,
                   num_kv_heads=kv_heads, ffn_size=ffn, vocab_size=min(model.vocab_size, 8192))


def measure_points(torch: Any, fwd: Any, harness: Any, points: dict[str, list[tuple[int, int]]]) -> list[dict]:
    from llmsim.calibration.runner import say

    rows = []
    total, done = sum(len(p) for p in points.values()), 0
    for kind, pts in points.items():
        for batch, length in pts:
            if kind == "prefill":
                tokens = torch.randint(0, fwd.m.vocab_size, (batch, length), device=fwd.device)
                timing = harness.time(lambda tokens=tokens: fwd.step(tokens, 0))
            else:
                tokens = torch.randint(0, fwd.m.vocab_size, (batch, 1), device=fwd.device)
                timing = harness.time(lambda tokens=tokens, length=length: fwd.step(tokens, length))
            rows.append(dict(kind=kind, batch=batch, length=length, measured_s=timing.median_s,
                             spread=timing.spread, samples=timing.samples))
            done += 1
            say(f"  [{done}/{total}] {kind} batch {batch} x {length}: {timing.median_s * 1e3:.3f} ms")
    return rows


def predict(rows: list[dict], model, hardware, dtype: str) -> pd.DataFrame:
    import pandas as pd  # only when validating (``llmsim --help`` stays light)

    from llmsim.cost import CostModel
    from llmsim.specs import Precision

    cm = CostModel(model, hardware, precision=Precision.parse(dtype))
    out = []
    for r in rows:
        if r["kind"] == "prefill":
            c = cm.step_time([r["length"]] * r["batch"], [0] * r["batch"])
        else:
            c = cm.step_time([1] * r["batch"], [r["length"]] * r["batch"])
        sources = sorted({op.source for op in cm.operator_costs(
            [r["length"] if r["kind"] == "prefill" else 1] * r["batch"],
            [0 if r["kind"] == "prefill" else r["length"]] * r["batch"])})
        out.append({**r, "predicted_s": c.total_s - c.overhead_s, "sources": "+".join(sources)})
    df = pd.DataFrame(out)
    df["rel_err"] = relative_error(df["predicted_s"], df["measured_s"])
    return df


def relative_error(predicted, measured):
    """(predicted - measured) / measured: positive when the cost model is slower than the real run."""
    return (predicted - measured) / measured


def report(df: pd.DataFrame, env: dict, model_name: str, hardware_name: str) -> str:
    lines = [f"# Forward-pass validation: {model_name} on {env.get('name', env['device'])}", "",
             f"Cost model profile: `{hardware_name}`. Measured: random-weight forward steps in torch "
             f"({env['device']}, torch {env.get('torch')}). Predicted: `StepCost.total_s - overhead_s`.", "",
             "| kind | batch | tokens (prefill) / context (decode) | measured ms | predicted ms | error | sources |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for r in df.itertuples():
        lines.append(f"| {r.kind} | {r.batch} | {r.length} | {r.measured_s * 1e3:.3f} | {r.predicted_s * 1e3:.3f} "
                     f"| {r.rel_err:+.1%} | {r.sources} |")
    lines += ["", "| kind | points | median abs error | max abs error |", "|---|---:|---:|---:|"]
    for kind, g in df.groupby("kind"):
        a = g["rel_err"].abs()
        lines.append(f"| {kind} | {len(g)} | {a.median():.1%} | {a.max():.1%} |")
    lines += ["", f"All points: median abs error {df['rel_err'].abs().median():.1%}.", "",
              "Environment: " + ", ".join(f"{k}={v}" for k, v in env.items()), ""]
    return "\n".join(lines)


def cmd_validate(args: argparse.Namespace) -> int:
    from llmsim.calibration.commands import import_torch
    from llmsim.calibration.environment import describe
    from llmsim.calibration.forward import LlamaForward
    from llmsim.calibration.runner import say
    from llmsim.calibration.timing import Harness
    from llmsim.specs import load_hardware, load_model

    torch = import_torch()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA GPU is visible")
    if args.device == "cpu" and args.threads > 0:
        torch.set_num_threads(args.threads)
    model, hardware = load_model(args.model), load_hardware(args.hardware)
    max_case_s = 5.0
    if args.quick and args.device == "cpu":
        small = quick_cpu_model(model)
        if small is not model:
            say(f"--quick on a CPU: {model.name} ({model.param_count() / 1e9:.1f}B parameters) would take hours "
                f"here; timing {small.name} instead ({small.num_layers} layers, hidden {small.hidden_size}, "
                f"{small.num_heads}/{small.num_kv_heads} heads of {small.head_dim}, vocabulary {small.vocab_size}: "
                f"{small.param_count() / 1e6:.1f}M parameters)")
        model, max_case_s = small, QUICK_CPU_MAX_CASE_S
    points = QUICK_POINTS if args.quick else GPU_POINTS
    max_batch = max(b for pts in points.values() for b, _ in pts)
    max_len = max(n for pts in points.values() for _, n in pts) + 1
    with torch.inference_mode():
        fwd = LlamaForward(torch, model, args.device, args.dtype, max_batch, max_len)
        say(f"validate: {model.name}, {sum(len(p) for p in points.values())} points on {args.device}")
        harness = Harness(torch, args.device, min_repeats=3, max_repeats=10, max_case_s=max_case_s)
        rows = measure_points(torch, fwd, harness, points)
    df = predict(rows, model, hardware, args.dtype)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "validation.csv", index=False)
    env = describe(torch, args.device)
    text = report(df, env, model.name, hardware.name)
    (out / "validation.md").write_text(text)
    print(text)
    print(f"median abs error {statistics.median(df['rel_err'].abs()):.1%}; wrote {out}/validation.md")
    return 0
