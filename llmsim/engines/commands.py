"""``llmsim engines [NAME] [--hardware HW]``: list engine profiles, or show one with every value's source."""

from __future__ import annotations

import argparse


def cmd_engines(args: argparse.Namespace) -> int:
    from llmsim.engines import engine_names, load_engine

    if not args.name:
        print(f"{'name':<12}{'version':<10}{'scheduler':<12}{'async':<7}{'cuda graphs':<20}description")
        for name in engine_names():
            p = load_engine(name)
            sched = f"{p.scheduler.get('kind')}/{p.scheduler.get('mode', '-')}"
            print(f"{name:<12}{p.version or '-':<10}{sched:<12}{'yes' if p.async_scheduling else 'no':<7}"
                  f"{p.cuda_graphs.mode:<20}{p.description}")
        return 0
    _show(load_engine(args.name), args.hardware)
    return 0


def _show(p, hardware_name: str | None) -> None:
    from llmsim.engines import resolve_engine
    from llmsim.specs import load_hardware

    src = p.sources
    print(f"{p.name}: {p.description}")
    print(f"  scheduler          {dict(p.scheduler)}   usage context: {p.usage_context}")
    print(f"  async scheduling   {p.async_scheduling}   {src.get('async_scheduling', '')}")
    g = p.cuda_graphs
    print(f"  cuda graphs        mode {g.mode}, sizes {g.sizes}, max capture {g.max_capture_size or 'engine rule'}"
          f"   {src.get('cuda_graphs.mode', '')}")
    if p.batch_defaults is not None:
        b = p.batch_defaults
        print(f"  batch defaults     >= {b.large_gpu_min_hbm_gib:g} GiB (not {', '.join(b.large_gpu_excludes) or '-'}): "
              f"{dict(b.large)}; other GPUs: {dict(b.other)}")
    for key, value in p.options.items():
        print(f"  {key:<19}{value!s:<8}{src.get('options.' + key, '')}")
    cpu = p.cpu
    cpu_text = ("the hardware profile's overheads" if cpu is None else
                f"{cpu.step_s * 1e3:.3f} ms + {cpu.per_seq_s * 1e6:.2f} us/seq + {cpu.per_token_s * 1e6:.3f} us/token")
    print(f"  cpu per step       {cpu_text}   {src.get('cpu', '')}")
    print(f"  front end          request {p.frontend.request_s * 1e3:.2f} ms, token {p.frontend.token_s * 1e3:.2f} ms"
          f"   {src.get('frontend', '')}")
    if p.fitted_on:
        print(f"  fitted on          {p.fitted_on}")
    if hardware_name:
        rt = resolve_engine(p, load_hardware(hardware_name))
        print(f"  on {hardware_name}: scheduler {dict(rt.scheduler_block)}, kv {rt.kv_kind or '(policy default)'} "
              f"blocks of {rt.block_size}, graph sizes up to {rt.max_capture_size}")


def register(sub) -> None:
    p = sub.add_parser("engines", help="list engine profiles (vLLM versions, ...) or show one with its sources")
    p.add_argument("name", nargs="?", help="profile to show (name or path)")
    p.add_argument("--hardware", help="also resolve the profile's defaults on this hardware profile")
    p.set_defaults(func=cmd_engines)
