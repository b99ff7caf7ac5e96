"""Splitwise (ISCA'24) phase characterisation, H100 vs A100: prompt (prefill) time vs prompt length and token
(decode) step time vs batch for Llama-2-70B fp16 at TP 2/4/8, simulated by the cost model and compared with
the Splitwise profiling database in ../shared/data/reference/measured_points.csv (rows S1).

The shipped A100 and H100 profiles had their efficiencies tuned on these very rows (among others, by
benchmarks/tune_profiles.py), so the "shipped" error is in-sample. ``--held-out`` re-tunes each profile on
the other sources only (TensorRT-LLM and LMDeploy rows) and predicts the Splitwise rows with that: the
error on data the profile did not see. Also prints each phase's throughput per GPU-dollar and per watt
(list prices and TDP from the profiles), the reason Splitwise sends the token phase to older GPUs.

    python benchmarks/splitwise_phases.py [--held-out] [--figure experiments/figures/splitwise_phases.png]

Last line: ``splitwise_phases: prefill_speedup_sim=X prefill_speedup_measured=X decode_speedup_sim=X
decode_speedup_measured=X median_abs_err=X held_out_median_abs_err=X``.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import pandas as pd
from estimate_accuracy import DEFAULT_CSV, _profile, evaluate, usable_rows

from llmsim.cost.estimate import estimate
from llmsim.specs import ParallelLayout, Precision, load_hardware, load_model

PROFILES = ("a100-sxm-80gb", "h100-sxm")
PROMPTS = (128, 256, 512, 1024, 2048, 4096, 8192)
BATCHES = (1, 2, 4, 8, 16, 32, 64)


def simulate_grid(hardware: dict | None = None) -> pd.DataFrame:
    """Prefill ms (batch 1) per prompt length and decode step ms per batch (~512-token context), per GPU/TP."""
    model, prec = load_model("llama-2-70b"), Precision.parse("fp16")
    rows = []
    for name in PROFILES:
        hw = (hardware or {}).get(name) or load_hardware(name)
        for tp in (2, 4, 8):
            layout = ParallelLayout(tp=tp)
            for n in PROMPTS:
                e = estimate(model, hw, layout, prec, batch_size=1, input_len=n, output_len=2, enforce_max_context=False)
                rows.append({"hardware": name, "tp": tp, "phase": "prefill", "x": n, "ms": e.prefill_s * 1e3,
                             "tokens_per_s": n / e.prefill_s, "gpus": tp, "price": hw.price_per_hour_usd,
                             "tdp_w": hw.tdp_w})
            for b in BATCHES:
                e = estimate(model, hw, layout, prec, batch_size=b, input_len=512, output_len=128,
                             enforce_max_context=False)
                rows.append({"hardware": name, "tp": tp, "phase": "decode", "x": b, "ms": e.tpot_s * 1e3,
                             "tokens_per_s": b / e.tpot_s, "gpus": tp, "price": hw.price_per_hour_usd,
                             "tdp_w": hw.tdp_w})
    df = pd.DataFrame(rows)
    df["tokens_per_usd"] = df["tokens_per_s"] * 3600 / (df["price"] * df["gpus"])
    df["tokens_per_joule"] = df["tokens_per_s"] / (df["tdp_w"] * df["gpus"])
    return df


def splitwise_rows(csv) -> pd.DataFrame:
    rows, _ = usable_rows(pd.read_csv(csv))
    return rows


def held_out_profiles(rows: pd.DataFrame) -> dict:
    """Each profile re-tuned (tune_profiles' objective and bounds) on its GPU's rows from other sources."""
    from scipy.optimize import minimize
    from tune_profiles import HIGH, LOW, score, with_params

    out = {}
    for name in PROFILES:
        train = rows[(rows["gpu"].map(_profile) == name) & (rows["source_id"] != "S1")]
        base = load_hardware(name)
        x0 = np.array([base.efficiency.gemm, base.efficiency.attention, base.efficiency.memory,
                       base.efficiency.comm, base.overheads.kernel_launch_s, base.overheads.step_s])

        def unit(u):
            return LOW + np.clip(u, 0, 1) * (HIGH - LOW)

        def objective(u, train=train, base=base, name=name):
            return score(evaluate(train, {name: with_params(base, unit(u))}))

        best = minimize(objective, (x0 - LOW) / (HIGH - LOW), method="Nelder-Mead",
                        options={"maxfev": 150, "xatol": 1e-3})
        out[name] = with_params(base, unit(best.x))
        print(f"held-out {name}: tuned on {len(train)} rows of other sources, objective {best.fun:.3f}")
    return out


def speedups(df: pd.DataFrame, value: str) -> dict[str, float]:
    """Geometric-mean A100 / H100 time ratio per phase (same TP, same point)."""
    out = {}
    for phase in ("prefill", "decode"):
        g = df[df["phase"] == phase].pivot_table(index=["tp", "x"], columns="hardware", values=value)
        out[phase] = float(np.exp(np.log(g[PROFILES[0]] / g[PROFILES[1]]).mean()))
    return out


def measured_frame(res: pd.DataFrame) -> pd.DataFrame:
    s1 = res[res["source_id"] == "S1"].copy()
    s1["hardware"] = s1["gpu"].map(_profile)
    s1["phase"] = np.where(s1["metric_short"].str.startswith("prefill"), "prefill", "decode")
    s1["x"] = np.where(s1["phase"] == "prefill", s1["input_len"], s1["batch_or_concurrency"]).astype(int)
    s1["tp"] = s1["tp"].astype(int)
    # prompt rows of batch 1 (the database also times batches of 512-token prompts), decode rows as they are
    return s1[(s1["phase"] == "decode") | (s1["batch_or_concurrency"].astype(int) == 1)]


def figure(path: str, sim: pd.DataFrame, meas: pd.DataFrame | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    colors = {PROFILES[0]: "tab:green", PROFILES[1]: "tab:purple"}
    styles, marks = {2: ":", 4: "--", 8: "-"}, {2: "x", 4: "+", 8: "o"}
    for ax, phase, xlabel in ((axes[0], "prefill", "prompt tokens (batch 1)"),
                              (axes[1], "decode", "batch size (context ~512)")):
        for (hw, tp), g in sim[sim["phase"] == phase].groupby(["hardware", "tp"]):
            ax.plot(g["x"], g["ms"], color=colors[hw], ls=styles[tp], lw=1, label=f"{hw} TP{tp}")
        if meas is not None:
            for (hw, tp), g in meas[meas["phase"] == phase].groupby(["hardware", "tp"]):
                ax.scatter(g["x"], g["value"], color=colors[hw], s=12, marker=marks[tp])
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("ms")
        ax.set_title(f"Llama-2-70B fp16 {phase}: lines simulated, markers Splitwise measured (x TP2, + TP4, o TP8)",
                     fontsize=7)
        ax.legend(fontsize=5)
    g = sim[(sim["tp"] == 8) & (((sim["phase"] == "prefill") & (sim["x"] == 2048))
                                | ((sim["phase"] == "decode") & (sim["x"] == 64)))]
    labels = [f"{r.phase}\n{r.hardware}" for r in g.itertuples()]
    axes[2].bar(range(len(g)), g["tokens_per_usd"] / 1e6, color=[colors[h] for h in g["hardware"]])
    axes[2].set_xticks(range(len(g)), labels, fontsize=6)
    axes[2].set_ylabel("million tokens per GPU-dollar (TP8)")
    axes[2].set_title("prefill 2,048-token prompt / decode batch 64", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--held-out", action="store_true", help="also predict with profiles tuned without Splitwise")
    ap.add_argument("--figure", help="write the figure here (PNG)")
    args = ap.parse_args()
    sim = simulate_grid()
    sp_sim = speedups(sim, "ms")
    have = DEFAULT_CSV.is_file()
    meas, parts = None, [f"prefill_speedup_sim={sp_sim['prefill']:.2f}"]
    if have:
        rows = splitwise_rows(DEFAULT_CSV)
        res = evaluate(rows[rows["source_id"] == "S1"])
        meas = measured_frame(res)
        sp_meas = speedups(meas.rename(columns={"value": "ms_measured"}), "ms_measured")
        err = float(res["rel_err"].abs().median())
        print(f"Splitwise rows: {len(res)}; |error| of the shipped profiles (in-sample): median {err:.1%}, "
              f"p90 {res['rel_err'].abs().quantile(0.9):.1%}")
        parts += [f"prefill_speedup_measured={sp_meas['prefill']:.2f}"]
    parts += [f"decode_speedup_sim={sp_sim['decode']:.2f}"]
    if have:
        parts += [f"decode_speedup_measured={sp_meas['decode']:.2f}", f"median_abs_err={err:.3f}"]
        if args.held_out:
            held = held_out_profiles(rows)
            res_h = evaluate(rows[rows["source_id"] == "S1"], held)
            err_h = float(res_h["rel_err"].abs().median())
            for phase in ("prefill", "decode"):
                m = measured_frame(res_h)
                m = m[m["phase"] == phase]
                print(f"held-out {phase}: median |error| {m['rel_err'].abs().median():.1%}, bias "
                      f"{m['rel_err'].median():+.1%}")
            parts.append(f"held_out_median_abs_err={err_h:.3f}")
    else:
        print(f"no measured data at {DEFAULT_CSV}: simulated values only", file=sys.stderr)
    print("A100 / H100 time per phase (geomean over TP and points): simulated "
          f"prefill {sp_sim['prefill']:.2f}x, decode {sp_sim['decode']:.2f}x"
          + (f"; measured prefill {sp_meas['prefill']:.2f}x, decode {sp_meas['decode']:.2f}x" if have else ""))
    per = sim[sim["tp"] == 8].pivot_table(index=["phase", "x"], columns="hardware",
                                          values=["tokens_per_usd", "tokens_per_joule"])
    for phase in ("prefill", "decode"):
        p = per.loc[phase]
        usd = (p["tokens_per_usd"][PROFILES[0]] / p["tokens_per_usd"][PROFILES[1]]).mean()
        joule = (p["tokens_per_joule"][PROFILES[0]] / p["tokens_per_joule"][PROFILES[1]]).mean()
        print(f"{phase}: A100 / H100 tokens per GPU-dollar {usd:.2f}x, per joule {joule:.2f}x (TP8, mean over points)")
    if args.figure:
        figure(args.figure, sim, meas)
        print(f"figure: {args.figure}")
    print("splitwise_phases: " + " ".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
