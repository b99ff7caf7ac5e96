"""The search's outputs in ``DIR``: ``search.csv`` (one row per allocation: estimate and DES measurement),
``search.json``, ``screen.csv`` (every candidate with its bounds), ``discards.csv`` (why each discarded
candidate was discarded), ``pareto.png`` (goodput per $ and per GPU against p99 TTFT at goodput) and
``winner-<model>.yaml`` (the best allocation as a runnable experiment, at the target rate)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import yaml

from llmsim.experiment.results import atomic_write_text, json_default

RANK = {"goodput_per_usd": "goodput_requests_per_usd", "goodput_per_gpu": "goodput_rps_per_gpu",
        "goodput_per_watt": "goodput_rps_per_kw", "goodput": "goodput_rps", "min_cost": "usd_per_hour"}


def _describe(parts) -> str:
    return " + ".join(f"{n}x {c.role} {c.hardware} tp{c.tp}pp{c.pp} {c.precision} b{c.max_num_batched_tokens} "
                      f"s{c.max_num_seqs}" for c, n in parts)


def allocation_row(ctx, k: int, alloc, per_model: dict | None) -> dict:
    """Estimate (ILP) and, when verified, the DES's goodput with per-$ / per-GPU / per-kW figures."""
    total = sum(e.rate_per_s for e in ctx.spec.models)
    row = {"allocation": k, "usd_per_hour": alloc.usd_per_hour, "gpus": alloc.gpus, "tdp_w": alloc.tdp_w,
           "gpus_by_type": json.dumps(dict(alloc.gpus_by_type)), "estimated_goodput_rps": alloc.lam * total}
    if not per_model:
        return row
    lams, figs = [], {}
    for name, (parts, result, figures) in per_model.items():
        row[f"{name}.deployment"] = _describe(parts)
        lam = result.goodput_rps
        lams.append(lam if lam is not None else 0.0)
        at = figures.get(lam, {}) if lam is not None else {}
        for key, value in at.items():
            figs[f"{name}.{key}"] = value
        row[f"{name}.goodput_rps"] = None if lam is None else lam * next(
            e.rate_per_s for e in ctx.spec.models if e.name == name)
        row[f"{name}.des_runs"] = len(result.trials)
    lam = min(lams)
    good = lam * total
    row.update(goodput_rps=good, meets_target=lam >= 1.0,
               goodput_rps_per_gpu=good / alloc.gpus, goodput_rps_per_kw=good / (alloc.tdp_w / 1e3),
               goodput_requests_per_usd=good * 3600 / alloc.usd_per_hour if alloc.usd_per_hour else None,
               ttft_p99_s=max((v for k2, v in figs.items() if k2.endswith(".ttft_p99_s") and v is not None),
                              default=None))
    row.update(figs)
    return row


def write_report(ctx, out: Path, screened, per_s: float, allocations, by_label, verified, log) -> dict:
    rows = [allocation_row(ctx, k, a, verified[k] if k < len(verified) else None) for k, a in enumerate(allocations)]
    table = pd.DataFrame(rows)
    rank = RANK[ctx.spec.objective]
    if "goodput_rps" in table:  # allocations that meet the target rates first, then by the objective
        meets = table["meets_target"].fillna(False).astype(bool)
        key = table[rank] if ctx.spec.objective != "min_cost" else -table[rank]
        table = table.assign(_meets=meets, _key=key).sort_values(["_meets", "_key"], ascending=False,
                                                                 na_position="last").drop(columns=["_meets", "_key"])
    table.to_csv(out / "search.csv", index=False)
    _screen_tables(out, screened)
    if verified:
        _pareto(table, out / "pareto.png")
        best = int(table.iloc[0]["allocation"])
        _winner(ctx, out, allocations[best], by_label, verified[best])
    summary = {"spec": ctx.spec.model_dump(mode="json"), "candidates": len(screened),
               "kept": sum(s.kept for s in screened), "candidates_per_cpu_s": per_s,
               "allocations": table.to_dict(orient="records")}
    atomic_write_text(out / "search.json", json.dumps(summary, indent=1, default=json_default))
    _print(table, log)
    return summary


def _screen_tables(out: Path, screened) -> None:
    rows = [{"candidate": s.candidate.label, "kept": s.kept, "reason": s.reason, "ttft_lb_s": s.ttft_lb_s,
             "tpot_lb_s": s.tpot_lb_s, "capacity_ub_rps": s.capacity_ub_rps, "capacity_est_rps": s.capacity_est_rps,
             "usd_per_hour": s.usd_per_hour, "kv_tokens": s.kv_tokens} for s in screened]
    df = pd.DataFrame(rows)
    df.to_csv(out / "screen.csv", index=False)
    df.loc[~df["kept"], ["candidate", "reason"]].to_csv(out / "discards.csv", index=False)


def _pareto(table: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    done = table.dropna(subset=["goodput_rps"]) if "goodput_rps" in table else table.iloc[0:0]
    for ax, col, label in ((axes[0], "goodput_requests_per_usd", "goodput (requests per $)"),
                           (axes[1], "goodput_rps_per_gpu", "goodput per GPU (req/s)")):
        for _, r in done.iterrows():
            ax.scatter(r.get("ttft_p99_s"), r.get(col))
            ax.annotate(f"#{int(r['allocation'])} {short_gpus(r['gpus_by_type'])}", (r.get("ttft_p99_s"), r.get(col)),
                        fontsize=7, xytext=(4, 2), textcoords="offset points")
        ax.margins(0.25)
        front = _front(done, col)
        if len(front):
            ax.step(front["ttft_p99_s"], front[col], where="post", color="grey", linewidth=0.8)
        ax.set_xlabel("p99 TTFT at goodput (s)")
        ax.set_ylabel(label)
    fig.suptitle("verified allocations (DES); grey: Pareto front")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def short_gpus(by_type: str) -> str:
    """``{"h100-sxm-calibrated": 16}`` -> ``16xh100``."""
    return "+".join(f"{n}x{name.split('-')[0]}" for name, n in json.loads(by_type).items())


def _front(df: pd.DataFrame, col: str) -> pd.DataFrame:
    """Allocations not beaten on both (lower p99 TTFT, higher ``col``)."""
    df = df.dropna(subset=["ttft_p99_s", col]).sort_values("ttft_p99_s")
    best, keep = -float("inf"), []
    for i, r in df.iterrows():
        if r[col] > best:
            best = r[col]
            keep.append(i)
    return df.loc[keep]


def _winner(ctx, out: Path, alloc, by_label, per_model) -> None:
    from llmsim.search.verify import experiment_dict

    for entry in ctx.spec.models:
        parts = per_model[entry.name][0]
        exp = experiment_dict(ctx.spec, entry, parts, ctx.workloads[entry.name], entry.rate_per_s, ctx.prices)
        head = (f"# The best allocation's {entry.name} deployment found by `llmsim search` ({ctx.spec.name}), "
                f"at its target rate.\n# Run it with: llmsim run {out / f'winner-{entry.name}.yaml'} --out DIR\n")
        atomic_write_text(out / f"winner-{entry.name}.yaml", head + yaml.safe_dump(exp, sort_keys=False))


def _print(table: pd.DataFrame, log) -> None:
    cols = [c for c in ("allocation", "gpus_by_type", "usd_per_hour", "estimated_goodput_rps", "goodput_rps",
                        "goodput_requests_per_usd", "goodput_rps_per_gpu", "ttft_p99_s") if c in table]
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        log(table[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
