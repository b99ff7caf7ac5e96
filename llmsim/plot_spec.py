"""Figures of speculative-decoding experiments, drawn from results directories only.

    python -m llmsim.plot_spec speedup OUT.png DIR   # TPOT and throughput speed-up vs users, per model and proposer
"""

from __future__ import annotations

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from llmsim.experiment.results import Results  # noqa: E402


def speedup_table(directory: str, min_finished: int = 5) -> pd.DataFrame:
    """Per (model, users, proposer): TPOT p50 and output tokens/s relative to the same point without
    speculation (``sweep.speculative`` null); points that finished fewer than ``min_finished`` measured
    requests (too short a run to say) are left out."""
    d = Results.load(directory).summary.copy()
    adaptive = d.get("spec_adaptive", pd.Series(False, index=d.index)).fillna(False).astype(bool)
    d["proposer"] = d["spec_proposer"].fillna("off") + adaptive.map({True: " (adaptive k)", False: ""})
    d["users"] = d["sweep.workload.arrival.users"]
    base = d[d["proposer"] == "off"].set_index(["model", "users"])
    keys = list(zip(d["model"], d["users"], strict=True))
    d["tpot_speedup"] = [base.loc[k, "tpot_p50_s"] / t for k, t in zip(keys, d["tpot_p50_s"], strict=True)]
    d["throughput_ratio"] = [x / base.loc[k, "output_tokens_per_s"]
                             for k, x in zip(keys, d["output_tokens_per_s"], strict=True)]
    d = d[d["num_finished"].fillna(0) >= min_finished]
    cols = ["model", "users", "proposer", "tpot_speedup", "throughput_ratio", "spec_tokens_per_step",
            "spec_mean_k", "spec_proposer_fraction"]
    return d[[c for c in cols if c in d]].sort_values(["model", "proposer", "users"])


def speedup(out: str, directory: str) -> None:
    t = speedup_table(directory)
    t = t[t["proposer"] != "off"]
    models = list(dict.fromkeys(t["model"]))
    fig, axes = plt.subplots(2, len(models), figsize=(5.5 * len(models), 7), squeeze=False, sharex=True)
    for j, model in enumerate(models):
        for prop, g in t[t["model"] == model].groupby("proposer", sort=True):
            axes[0][j].plot(g["users"], g["tpot_speedup"], marker="o", label=prop)
            axes[1][j].plot(g["users"], g["throughput_ratio"], marker="o", label=prop)
        axes[0][j].set_title(model)
        for i, what in enumerate(("TPOT p50 speed-up", "output throughput ratio")):
            ax = axes[i][j]
            ax.axhline(1.0, color="grey", lw=1, ls="--")
            ax.set_xscale("log", base=2)
            ax.set_ylabel(what)
            ax.grid(alpha=0.3)
        axes[1][j].set_xlabel("concurrent sequences (closed-loop users)")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("speculative decoding vs no speculation (above 1: faster)")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


FIGURES = {"speedup": speedup}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3 or args[0] not in FIGURES:
        print(f"usage: python -m llmsim.plot_spec {{{'|'.join(FIGURES)}}} OUT.png DIR", file=sys.stderr)
        return 2
    FIGURES[args[0]](args[1], args[2])
    print(speedup_table(args[2]).round(3).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
