"""Figures of cluster experiments, drawn from results directories only: goodput per GPU, per dollar and per
kilowatt of each cluster configuration (DistServe, Splitwise), prefix-cache hit rate and tail TTFT per
router (routing), tail latency with and without live migration.

    python -m llmsim.plot_cluster goodput OUT.png DIR [DIR ...]   # one row per results directory
    python -m llmsim.plot_cluster cost OUT.png DIR                # goodput per GPU, per $/h and per kW
    python -m llmsim.plot_cluster routing OUT.png DIR             # hit rate and TTFT p99 vs load per router
    python -m llmsim.plot_cluster migration OUT.png DIR           # TTFT / E2E p99 vs rate, migration on/off
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from llmsim.experiment.results import Results  # noqa: E402
from llmsim.plots import rate_column, with_labels  # noqa: E402

ROLE_LETTER = {"prefill": "P", "decode": "D", "mixed": "M"}


def cluster_label(row: pd.Series) -> str:
    """``colocated 1x a100 (vLLM v0)`` / ``1P + 2D a100`` / ``2P h100 + 2D a100`` from a summary row."""
    block = row.get("sweep.cluster")
    block = json.loads(block) if isinstance(block, str) else block
    if not isinstance(block, dict):
        return str(row.get("label", "all points"))
    pools = block.get("pools", {})
    parts = []
    for name, pool in pools.items():
        pool = pool or {}
        n = pool.get("replicas", 1)
        hw = row.get(f"pool.{name}.hardware") or row.get("hardware")
        parts.append((n, ROLE_LETTER[pool.get("role", "mixed")], hw, pool.get("scheduler") or {}))
    parts.sort(key=lambda p: "PMD".index(p[1]))  # prefill pools first, whatever the YAML's key order
    hws = [p[2] for p in parts]
    short = {hw: str(hw).removesuffix("-sxm-80gb").removesuffix("-sxm") for hw in hws}
    if all(letter == "M" for _, letter, _, _ in parts):
        n = sum(p[0] for p in parts)
        mode = next((s.get("mode") for *_, s in parts if s.get("mode")), "v1")
        text = f"colocated {n}x {'+'.join(dict.fromkeys(short[h] for h in hws))} (vLLM {mode})"
    elif len(set(hws)) > 1:
        text = " + ".join(f"{n}{letter} {short[hw]}" for n, letter, hw, _ in parts)
    else:
        text = " + ".join(f"{n}{letter}" for n, letter, _, _ in parts) + f" {short[hws[0]]}"
    if all(letter == "M" for _, letter, _, _ in parts) and block.get("router"):
        text += f", {block['router'].get('kind')}"
    if block.get("migration"):
        text += " + migration"
    return text


def _configs(directory: Path) -> tuple[pd.DataFrame, str]:
    """Summary rows with ``label`` (cluster-aware) and the rate column."""
    res = Results.load(directory)
    summary = res.summary
    rate = rate_column(summary)
    speed = [c for c in summary if c.startswith("sweep.") and c.endswith(".speed")]
    if not rate.startswith("sweep.") and speed:
        rate = speed[0]  # a trace replayed faster or slower is the load axis
    summary = with_labels(summary, rate)
    if "sweep.cluster" in summary:
        summary["label"] = [cluster_label(r) for _, r in summary.iterrows()]
    return summary, rate


def attainment_goodput(rows: pd.DataFrame, rate: str, target: float) -> float | None:
    """The rate where SLO attainment crosses ``target`` (linear between the last rate that meets it and the
    first that does not, unless that one is overloaded: then the last that meets it), counting rates the load verdict
    calls inconclusive by their attainment. The runner's goodput (``bound``) is stricter: it stops at the
    first rate it cannot call stable, which short runs of large clusters often are."""
    g = rows.groupby(rate, as_index=False).agg(att=("slo_attainment", "mean"),
                                               over=("load_verdict", lambda v: (v == "overloaded").any()))
    prev = None
    for r in g.itertuples():
        ok = r.att >= target and not r.over
        if not ok:
            if prev is None:
                return None
            if not r.over and r.att < target < prev.att:  # an overloaded rate's attainment is a transient
                return float(prev[1] + (r[1] - prev[1]) * (prev.att - target) / (prev.att - r.att))
            return float(prev[1])
        prev = r
    return float(prev[1]) if prev is not None else None


def goodput_table(directory: str | Path) -> pd.DataFrame:
    """One row per configuration: goodput (req/s, ``attainment_goodput``), the runner's verdict-checked bound,
    GPUs, $/h, kW, and goodput per GPU, per $/h, per kW."""
    from llmsim.metrics.goodput import goodput

    summary, rate = _configs(Path(directory))
    rows = []
    for label, g in summary.groupby("label", sort=False):
        target = float(g["slo_target_attainment"].iloc[0]) if "slo_target_attainment" in g else 0.9
        c = goodput(g, rate, label, target).to_dict()
        first = g.iloc[0]
        gp, gpus = attainment_goodput(g, rate, target), int(first["num_gpus"])
        price, kw = first.get("price_per_hour_usd") or 0.0, (first.get("tdp_w") or 0.0) / 1e3
        rows.append({"label": label, "goodput_rps": gp, "bound": c["text"], "num_gpus": gpus,
                     "price_per_hour_usd": price, "kw": kw,
                     "goodput_per_gpu": None if gp is None else gp / gpus,
                     "requests_per_usd": None if gp is None or not price else gp * 3600 / price,
                     "goodput_per_kw": None if gp is None or not kw else gp / kw})
    return pd.DataFrame(rows)


def scaled_goodput(directory: str | Path, scales=(1.0, 0.75, 0.5, 0.35, 0.25)) -> pd.DataFrame:
    """Goodput per GPU of each configuration with every latency target multiplied by each ``scale`` (DistServe's
    "SLO scale"), attainment recomputed from the measured requests of every point."""
    from llmsim.metrics.slo import slo_attainment

    res = Results.load(directory)
    summary, rate = _configs(Path(directory))
    targets = {k: summary[f"slo_{k}"].iloc[0] for k in ("ttft_s", "tpot_s", "e2e_s") if f"slo_{k}" in summary}
    target = float(summary["slo_target_attainment"].iloc[0]) if "slo_target_attainment" in summary else 0.9
    att: dict[str, list] = {}  # point -> attainment per scale: one point's latency columns read at a time
    for pid in summary["point_id"]:
        if pid not in att:
            t = _measured_latencies(res, pid)
            att[pid] = [slo_attainment(t, {k: v * scale for k, v in targets.items()}) for scale in scales]
    rows = []
    for i, scale in enumerate(scales):
        scaled = summary.assign(slo_attainment=summary["point_id"].map(lambda pid, i=i: att[pid][i]))
        for label, g in scaled.groupby("label", sort=False):
            gp = attainment_goodput(g, rate, target)
            rows.append({"label": label, "slo_scale": scale,
                         "goodput_per_gpu": None if gp is None else gp / int(g["num_gpus"].iloc[0])})
    return pd.DataFrame(rows)


SLO_COLUMNS = ("status", "phase", "ttft_s", "tpot_s", "e2e_s")


def _measured_latencies(res: Results, point_id: str) -> pd.DataFrame:
    """The measured requests of a point, only the columns an SLO reads (``SLO_COLUMNS``)."""
    blocks = list(res.request_blocks(point_id, SLO_COLUMNS))
    t = pd.concat(blocks, ignore_index=True) if blocks else pd.DataFrame(columns=list(SLO_COLUMNS[:1]))
    return t[t["phase"] == "measured"] if "phase" in t else t


def _attainment(ax, summary: pd.DataFrame, rate: str, per_gpu: bool = True) -> None:
    for label, g in summary.groupby("label", sort=False):
        g = g.groupby(rate, as_index=False)[["slo_attainment", "num_gpus"]].mean()
        x = g[rate] / (g["num_gpus"] if per_gpu else 1)
        ax.plot(x, g["slo_attainment"], marker="o", ms=3, label=label)
    target = float(summary["slo_target_attainment"].iloc[0]) if "slo_target_attainment" in summary else 0.9
    ax.axhline(target, color="grey", ls=":", lw=1)
    ax.set_xlabel("request rate per GPU (req/s)" if per_gpu else "request rate (req/s)")
    ax.set_ylabel("SLO attainment")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=6)


def _bars(ax, table: pd.DataFrame, column: str, title: str) -> None:
    values = table[column].fillna(0.0)
    ax.barh(range(len(table)), values, color="tab:blue")
    ax.set_yticks(range(len(table)), table["label"], fontsize=6)
    ax.invert_yaxis()
    ax.set_title(title, fontsize=8)
    for i, v in enumerate(values):
        ax.text(v, i, f" {v:,.0f}" if v >= 100 else f" {v:.3g}", va="center", fontsize=6)


def figure_goodput(out: str | Path, *directories: str | Path) -> None:
    """Per results directory: SLO attainment vs rate per GPU, goodput per GPU per configuration, and goodput
    per GPU as the SLO tightens."""
    fig, axes = plt.subplots(len(directories), 3, figsize=(16, 3.6 * len(directories)), squeeze=False)
    for row, d in zip(axes, directories, strict=True):
        summary, rate = _configs(Path(d))
        _attainment(row[0], summary, rate)
        row[0].set_title(f"{summary['model'].iloc[0]}: {Path(d).name}", fontsize=8)
        _bars(row[1], goodput_table(d), "goodput_per_gpu", "goodput per GPU at the SLO (req/s)")
        for label, g in scaled_goodput(d).groupby("label", sort=False):
            row[2].plot(g["slo_scale"], g["goodput_per_gpu"].fillna(0.0), marker="o", ms=3, label=label)
        row[2].set_xlabel("SLO scale (every latency target x scale)")
        row[2].set_ylabel("goodput per GPU (req/s)")
        row[2].invert_xaxis()
        row[2].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out, dpi=130)
    plt.close(fig)


def figure_cost(out: str | Path, directory: str | Path) -> None:
    """Goodput per GPU, per dollar-hour and per provisioned kW of each configuration, and attainment."""
    summary, rate = _configs(Path(directory))
    table = goodput_table(directory)
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.8))
    _attainment(axes[0], summary, rate, per_gpu=False)
    _bars(axes[1], table, "goodput_per_gpu", "goodput per GPU (req/s)")
    _bars(axes[2], table, "requests_per_usd", "requests per $ at the SLO (list prices)")
    _bars(axes[3], table, "goodput_per_kw", "goodput per kW of TDP (req/s)")
    fig.tight_layout()
    fig.savefig(out, dpi=130)
    plt.close(fig)


def _per_label(ax, summary: pd.DataFrame, rate: str, column: str, ylabel: str, scale: float = 1.0) -> None:
    for label, g in summary.groupby("label", sort=False):
        g = g.groupby(rate, as_index=False)[column].mean()
        ax.plot(g[rate], g[column] * scale, marker="o", ms=3, label=label)
    ax.set_xlabel(rate.removeprefix("sweep."))
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=6)


def figure_routing(out: str | Path, directory: str | Path) -> None:
    """Prefix-cache hit rate, TTFT p50 and p99 and SLO attainment vs load, one line per router."""
    summary, rate = _configs(Path(directory))
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    _per_label(axes[0], summary, rate, "prefix_hit_rate", "prefix-cache hit rate (prompt tokens)")
    _per_label(axes[1], summary, rate, "ttft_p50_s", "TTFT p50 (s)")
    _per_label(axes[2], summary, rate, "ttft_p99_s", "TTFT p99 (s)")
    _per_label(axes[3], summary, rate, "slo_attainment", "SLO attainment")
    fig.tight_layout()
    fig.savefig(out, dpi=130)
    plt.close(fig)


def figure_migration(out: str | Path, directory: str | Path) -> None:
    """TTFT p99, E2E p99, preemptions and SLO attainment vs rate, with and without migration."""
    summary, rate = _configs(Path(directory))
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    _per_label(axes[0], summary, rate, "ttft_p99_s", "TTFT p99 (s)")
    _per_label(axes[1], summary, rate, "e2e_p99_s", "E2E p99 (s)")
    _per_label(axes[2], summary, rate, "preemptions", "preemptions (measured requests)")
    _per_label(axes[3], summary, rate, "slo_attainment", "SLO attainment")
    fig.tight_layout()
    fig.savefig(out, dpi=130)
    plt.close(fig)


FIGURES = {"goodput": figure_goodput, "cost": figure_cost, "routing": figure_routing, "migration": figure_migration}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 3 or args[0] not in FIGURES:
        print(f"usage: python -m llmsim.plot_cluster {{{'|'.join(FIGURES)}}} OUT.png DIR [DIR ...]", file=sys.stderr)
        return 2
    FIGURES[args[0]](args[1], *args[2:])
    for d in args[2:]:
        if args[0] in ("goodput", "cost"):
            print(goodput_table(d).to_string(index=False))
        if args[0] == "goodput":
            print(scaled_goodput(d).pivot(index="label", columns="slo_scale", values="goodput_per_gpu")
                  .round(2).to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
