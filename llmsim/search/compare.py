"""Compare several searches' verified allocations in one figure, from their ``search.csv`` files only.

    python -m llmsim.search.compare OUT.png DIR[:LABEL] [DIR[:LABEL] ...]

Left: goodput per dollar (requests served within the SLO per $) of every verified allocation, by search,
the bar at the best one that meets the target rates (hollow points: allocations below them). Right: the same against p99 TTFT at goodput (the Pareto view), per GPU on a
second panel row.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from llmsim.errors import ConfigError


def load(specs: list[str]) -> list[tuple[str, pd.DataFrame]]:
    out = []
    for item in specs:
        path, _, label = item.partition(":")
        csv = Path(path) / "search.csv"
        if not csv.is_file():
            raise ConfigError(f"{csv}: no such file (run llmsim search ... --out {path} first)")
        table = pd.read_csv(csv)
        out.append((label or Path(path).name, table.dropna(subset=["goodput_rps"]) if "goodput_rps" in table else
                    table.iloc[0:0]))
    return out


def draw(searches: list[tuple[str, pd.DataFrame]], path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from llmsim.search.report import short_gpus

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for n, (label, t) in enumerate(searches):
        color = f"C{n}"
        if not len(t):
            continue
        meets = t["meets_target"].fillna(False).astype(bool) if "meets_target" in t else t["goodput_rps"] > 0
        pool = t[meets] if meets.any() else t
        best = pool.loc[pool["goodput_requests_per_usd"].idxmax()]
        axes[0].bar(n, best["goodput_requests_per_usd"], color=color, alpha=1.0 if meets.any() else 0.35)
        axes[0].scatter([n] * len(t), t["goodput_requests_per_usd"], s=14, zorder=3,
                        facecolors=["k" if m else "none" for m in meets], edgecolors="k")
        axes[0].annotate(short_gpus(best["gpus_by_type"]), (n, best["goodput_requests_per_usd"]), ha="center",
                         xytext=(0, 3), textcoords="offset points", fontsize=8)
        for ax, col in ((axes[1], "goodput_requests_per_usd"), (axes[2], "goodput_rps_per_gpu")):
            ax.scatter(t["ttft_p99_s"], t[col], label=label, edgecolors=color,
                       facecolors=[color if m else "none" for m in meets])
    axes[0].set_xticks(range(len(searches)), [label for label, _ in searches])
    axes[0].set_ylabel("goodput: requests per $ (best allocation)")
    for ax, ylabel in ((axes[1], "goodput: requests per $"), (axes[2], "goodput per GPU (req/s)")):
        ax.set_xlabel("p99 TTFT at goodput (s, worst service)")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
    fig.suptitle("llmsim search: verified allocations (DES goodput by bisection; hollow: below the target rates)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    try:
        draw(load(args[1:]), args[0])
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
