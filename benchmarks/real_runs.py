"""Accuracy against real vLLM serving runs (../shared/data/real_runs/), configured as a user would.

Every run of ``vllm_0.15.1_runs.csv`` is simulated with the experiment ``llmsim.trust.realruns.experiment_for``
writes for it (model, GPU, TP, replicas, the run's scheduler limits, max_model_len 4096, the load
generator's pool of recurring prompts at a fixed interval in back-to-back stages, exact output lengths) and
the named engine profile. Per run and stage it prints predicted and measured TTFT and E2E (mean, p90, p99)
and the derived inter-token time (E2E mean - TTFT mean) / (output - 1), the signed percentage errors, and
whether llmsim reports the run overloaded. Medians of the absolute errors are over the healthy stages;
every saturated run should be reported overloaded and no healthy one. Where a saturated stage queues in
both (mean TTFT over 1 s), both decode at the ``max_num_seqs`` cap: the derived inter-token time there is
printed too, the only check of a full batch of long contexts (the healthy runs hold far fewer sequences).
Then the per-request vLLM 0.11.0
records are replayed request by request (exact arrivals and lengths, the load generator's shared prompt
prefix, server-side times), with the decode time per token of the requests that had the real server to
themselves (batch 1: one GPU step plus the serial CPU step, the cleanest split of the two).

Prediction intervals (``llmsim.trust.intervals``): every healthy stage's residual ln(predicted / measured)
per metric family, with the grade llmsim gave the run's metric, is judged against the interval built from
the residuals of the *other* runs only (leave-one-run-out; ``--holdout model`` leaves out every run of the
same model): the printed coverage is on held-out runs. ``--write-residuals FILE`` stores this run's
residuals as one named set (``--set-name``, default from the hardware suffix) with their provenance;
``llmsim/trust/residuals.json`` is the file llmsim reads.

    python benchmarks/real_runs.py [--engine vllm-0.15] [--hardware-suffix=auto|''|-calibrated] [--jobs 2]
        [--time-scale 0.25] [--level 0.9] [--holdout run|model] [--write-residuals llmsim/trust/residuals.json]
    python benchmarks/real_runs.py --coverage-from llmsim/trust/residuals.json   # no simulation

Last line: ``real_runs: e2e_mean=X% e2e_p99=X% ttft_mean=X% itl=X% overload_flagged=K/N n=N coverage90=X%``.
"""

from __future__ import annotations

import argparse
import math
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real_runs"
METRICS = ("ttft_mean", "ttft_p90", "ttft_p99", "e2e_mean", "e2e_p90", "e2e_p99", "itl")
SUMMARY = ("e2e_mean", "e2e_p99", "ttft_mean", "itl")
# residual family -> the summary column whose grade it carries
GRADE_OF = {"ttft_mean": "ttft_mean_s", "ttft_p90": "ttft_p90_s", "ttft_p99": "ttft_p99_s", "e2e_mean": "e2e_mean_s",
            "e2e_p90": "e2e_p90_s", "e2e_p99": "e2e_p99_s", "itl": "tpot_mean_s", "throughput": "throughput_rps"}


def stage_metrics(requests, t0: float, t1: float, output_len: int) -> dict[str, float]:
    """Predicted metrics of the requests sent in [t0, t1), as the load generator reports them."""
    sel = requests[(requests["arrival_s"] >= t0) & (requests["arrival_s"] < t1)]
    done = sel[sel["status"] == "finished"]
    out = {m: math.nan for m in (*METRICS, "throughput")}
    out["n"], out["finished"] = len(sel), len(done)
    if len(done):
        ttft, e2e = done["ttft_s"].to_numpy(float), done["e2e_s"].to_numpy(float)
        out.update(ttft_mean=float(ttft.mean()), ttft_p90=float(np.percentile(ttft, 90)),
                   ttft_p99=float(np.percentile(ttft, 99)), e2e_mean=float(e2e.mean()),
                   e2e_p90=float(np.percentile(e2e, 90)), e2e_p99=float(np.percentile(e2e, 99)))
        out["itl"] = (out["e2e_mean"] - out["ttft_mean"]) / max(1, output_len - 1)
        out["throughput"] = len(done) / (t1 - t0) if t1 > t0 else math.nan
    return out


def hardware_for(gpu: str, suffix: str) -> str:
    """The profile a user would pick: ``auto`` = the calibrated one where it exists, else the datasheet one."""
    if suffix != "auto":
        return gpu + suffix
    from llmsim.specs import hardware_names

    return gpu + "-calibrated" if gpu + "-calibrated" in hardware_names() else gpu


def simulate_run(run, engine, suffix: str, time_scale: float) -> dict:
    """Simulate one real run; returns per-stage predictions and the overload verdict (or why it was skipped)."""
    import llmsim
    from llmsim.errors import LlmsimError
    from llmsim.trust.realruns import experiment_for

    cfg = experiment_for(run, DATA, engine=engine, hardware=hardware_for(run.gpu, suffix), time_scale=time_scale)
    try:
        res = llmsim.run(cfg)
    except LlmsimError as exc:
        return {"run": run, "skipped": str(exc)}
    row = res.summary.iloc[0]
    reqs = res.requests(row["point_id"])
    stages, t0 = [], 0.0
    for st in run.stages:
        t1 = t0 + st.duration_s * time_scale
        stages.append(stage_metrics(reqs, t0, t1, run.output_len))
        t0 = t1
    grades = {fam: row.get(f"grade.{col}") for fam, col in GRADE_OF.items()}
    return {"run": run, "stages": stages, "overloaded": bool(row.get("overloaded", False)),
            "whole": stage_metrics(reqs, 0.0, t0, run.output_len), "grades": grades,
            "pressure": float(row.get("capacity_use") or 0.0)}


def err(pred: float, real: float) -> float:
    return (pred / real - 1.0) * 100.0 if real and not (math.isnan(pred) or math.isnan(real)) else math.nan


def report(results: list[dict]) -> dict[str, list[float]]:
    abs_errs: dict[str, list[float]] = {m: [] for m in METRICS}
    print(f"{'run':<44}{'st':>3}{'rate':>6}  {'metric':<10}{'pred ms':>10}{'real ms':>10}{'err %':>8}")
    for r in results:
        run = r["run"]
        if "skipped" in r:
            print(f"{run.experiment[:43]:<44}  skipped: {r['skipped'][:100]}")
            continue
        verdict = "overloaded" if r["overloaded"] else "ok"
        truth = "saturated" if run.saturated else "healthy"
        print(f"{run.experiment[:43]:<44} llmsim: {verdict}, real: {truth}")
        for i, (st, pred) in enumerate(zip(run.stages, r["stages"], strict=True)):
            for m in METRICS:
                e = err(pred[m], st.measured[m])
                if not run.saturated and not math.isnan(e):
                    abs_errs[m].append(abs(e))
                print(f"{'':<44}{i:>3}{st.rate_per_s:>6.1f}  {m:<10}{pred[m] * 1e3:>10.1f}"
                      f"{st.measured[m] * 1e3:>10.1f}{e:>+8.1f}")
    return abs_errs


def saturated_decode(sat: list[dict]) -> list[tuple[str, int, float, float]]:
    """(run, stage, predicted ITL, measured ITL) of the saturated stages where both the real server and the
    simulation queue requests (mean TTFT over 1 s), so that both decode at their running-sequence cap: a
    check of the step time at a full batch of long contexts, which the healthy runs never reach."""
    out = []
    for r in sat:
        for i, (st, pred) in enumerate(zip(r["run"].stages, r["stages"], strict=True)):
            if min(pred["ttft_mean"], st.measured["ttft_mean"]) > 1.0:
                out.append((r["run"].experiment, i, pred["itl"], st.measured["itl"]))
    return out


FAMILIES = (*METRICS, "throughput")


def residuals(results: list[dict]) -> list:
    """ln(predicted / measured) of every healthy stage and family, with the run's grade of that metric."""
    from llmsim.trust.intervals import Residual

    rows = []
    for r in results:
        run = r["run"]
        if "skipped" in r or run.saturated:
            continue
        for i, (st, pred) in enumerate(zip(run.stages, r["stages"], strict=True)):
            for fam in FAMILIES:
                p, m = pred.get(fam, math.nan), st.measured.get(fam, math.nan)
                g = r["grades"].get(fam)
                if g and p > 0 and m > 0 and math.isfinite(p) and math.isfinite(m):
                    rows.append(Residual(run.experiment, run.model_id, fam, g, math.log(p / m), i, r["pressure"]))
    return rows


def coverage_report(rows: list, level: float, by: str) -> float:
    """Print held-out coverage per family; returns the coverage over all families."""
    from llmsim.trust.intervals import ResidualTable, held_out_coverage, missing_intervals

    table = ResidualTable(tuple(rows))
    cov = held_out_coverage(table, level, by)
    grades = sorted({r.grade for r in rows})
    print(f"\nheld-out coverage of the {level:.0%} intervals (leave one {by} out; grades {', '.join(grades)}):")
    for fam in FAMILIES:
        hit, n = cov.get(fam, (0, 0))
        q = table.quantile(fam, grades[0], level).q if grades else math.nan
        print(f"  {fam:<11} {hit:>3}/{n:<3} = {hit / n if n else math.nan:6.1%}   full-table half-width at grade "
              f"{grades[0] if grades else '-'}: x/÷ {math.exp(q) if math.isfinite(q) else math.inf:.3f}")
    hit, n = sum(c[0] for c in cov.values()), sum(c[1] for c in cov.values())
    miss = missing_intervals(table, level, by)
    print(f"  all         {hit:>3}/{n:<3} = {hit / n if n else math.nan:6.1%}   ({miss} residuals had no held-out interval)")
    return hit / n if n else math.nan


def write_residuals(path: str, name: str, rows: list, args) -> None:
    import datetime
    import hashlib
    import subprocess

    from llmsim.trust.intervals import write_residual_set

    csv_path = DATA / "vllm_0.15.1_runs.csv"
    def git(*cmd: str) -> str:
        try:
            return subprocess.run(["git", *cmd], capture_output=True, text=True, check=False,
                                  cwd=Path(__file__).parent).stdout.strip()
        except OSError:
            return ""

    dirty = git("status", "--porcelain", "--", "llmsim", "benchmarks", f":!{Path(path).name}", ":!*/residuals.json")
    commit = git("rev-parse", "HEAD") + (" (with uncommitted changes)" if dirty else "")
    prov = {"command": "python benchmarks/real_runs.py " + " ".join(sys.argv[1:]), "engine": args.engine,
            "hardware_suffix": args.hardware_suffix, "time_scale": args.time_scale, "git_commit": commit,
            "data": "../shared/data/real_runs/vllm_0.15.1_runs.csv (healthy runs only)",
            "data_sha256": hashlib.sha256(csv_path.read_bytes()).hexdigest(),
            "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
            "runs": len({r.run for r in rows}), "residuals": len(rows)}
    write_residual_set(path, name, prov, rows)
    print(f"wrote {len(rows)} residuals as set {name!r} to {path}")


def replay_requests(engine, suffix: str = "") -> list[str]:
    """Replay the per-request vLLM 0.11.0 runs request by request; per-request TTFT/E2E errors."""
    from llmsim.sim import simulate
    from llmsim.specs import load_hardware
    from llmsim.trust.realruns import load_request_runs

    path = DATA / "per_request_vllm_0.11.0.csv"
    if not path.is_file():
        return []
    lines = []
    for rr in load_request_runs(path):
        reqs = rr.requests()
        res = simulate(reqs, model=rr.model, hardware=load_hardware(hardware_for("h100-sxm", suffix)), engine=engine,
                       scheduler={"kind": "vllm", "max_num_seqs": rr.max_num_seqs,
                                  "max_num_batched_tokens": rr.max_num_batched_tokens},
                       max_model_len=rr.max_model_len)
        df = res.requests.sort_values("id")
        fin = df["status"].to_numpy() == "finished"
        ttft, e2e = df["ttft_s"].to_numpy(float), df["e2e_s"].to_numpy(float)
        real_ttft, real_e2e = np.asarray(rr.ttft_s), np.asarray(rr.e2e_s)
        te = np.abs(ttft[fin] / real_ttft[fin] - 1) * 100
        ee = np.abs(e2e[fin] / real_e2e[fin] - 1) * 100
        lines.append(f"{rr.experiment:<28}{len(reqs):>5} req  per-request |err| median: TTFT {np.median(te):5.1f}% "
                     f"E2E {np.median(ee):5.1f}%   mean TTFT {err(ttft[fin].mean(), real_ttft[fin].mean()):+6.1f}% "
                     f"mean E2E {err(e2e[fin].mean(), real_e2e[fin].mean()):+6.1f}%")
        alone = fin & isolated(rr)
        if alone.any():  # batch-1 decode: GPU step + (serial) CPU step, no batching effects
            out = np.asarray(rr.output_tokens)[alone] - 1
            pred, real = np.median((e2e - ttft)[alone] / out), np.median((real_e2e - real_ttft)[alone] / out)
            lines.append(f"{'':<28}{int(alone.sum()):>5} req  alone in the server: decode per token pred "
                         f"{pred * 1e3:5.2f} ms real {real * 1e3:5.2f} ms ({err(pred, real):+5.1f}%)")
    return lines


def isolated(rr) -> np.ndarray:
    """Requests of a per-request run that had the real server to themselves (no other request between
    their arrival and end) and decoded more than 8 tokens: their decode time per token is one sequence's
    step time, free of batching and scheduling effects."""
    start = np.asarray(rr.arrival_s)
    end = start + np.asarray(rr.e2e_s)
    overlap = (start[None, :] < end[:, None]) & (end[None, :] > start[:, None])
    return (overlap.sum(axis=1) == 1) & (np.asarray(rr.output_tokens) > 8)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--engine", default="vllm-0.15", help="engine profile (default vllm-0.15)")
    ap.add_argument("--request-engine", default="vllm-0.11", help="engine for the per-request 0.11.0 replay")
    ap.add_argument("--hardware-suffix", default="auto",
                    help="appended to each run's GPU profile name; 'auto' (default) = -calibrated where it exists, "
                         "'' = the datasheet profiles")
    ap.add_argument("--time-scale", type=float, default=1.0, help="shorten every stage by this factor")
    ap.add_argument("--runs", default="", help="only runs whose name contains this string")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--level", type=float, default=0.9, help="interval level for the coverage report")
    ap.add_argument("--holdout", choices=("run", "model"), default="run", help="what each coverage check leaves out")
    ap.add_argument("--write-residuals", metavar="FILE", help="store the residuals as one set in FILE")
    ap.add_argument("--set-name", help="name of the residual set (default: calibrated / datasheet / the suffix)")
    ap.add_argument("--coverage-from", metavar="FILE",
                    help="simulate nothing: report the held-out coverage of a stored residual file (all its sets "
                         "together, as llmsim reads it), leaving out each run and then each model")
    args = ap.parse_args(argv)
    if args.coverage_from:
        from llmsim.trust.intervals import load_residuals

        rows = list(load_residuals(args.coverage_from).rows)
        cover = {by: coverage_report(rows, args.level, by) for by in ("run", "model")}
        print(f"real_runs coverage: residuals={len(rows)} coverage{args.level * 100:g}_run={cover['run']:.1%} "
              f"coverage{args.level * 100:g}_model={cover['model']:.1%}")
        return 0
    from llmsim.trust.realruns import load_stage_runs

    csv_path = DATA / "vllm_0.15.1_runs.csv"
    if not csv_path.is_file():
        print(f"real_runs: skipped (no {csv_path})")
        return 0
    runs = [r for r in load_stage_runs(csv_path) if args.runs in r.experiment]
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(simulate_run, runs, [args.engine] * len(runs),
                                [args.hardware_suffix] * len(runs), [args.time_scale] * len(runs)))
    abs_errs = report(results)
    print()
    for m in METRICS:
        v = abs_errs[m]
        print(f"median |err| {m:<10} {np.median(v) if v else math.nan:6.1f}%  (p90 "
              f"{np.percentile(v, 90) if v else math.nan:5.1f}%, n={len(v)})")
    sat = [r for r in results if "skipped" not in r and r["run"].saturated]
    healthy = [r for r in results if "skipped" not in r and not r["run"].saturated]
    flagged = sum(r["overloaded"] for r in sat)
    false_pos = [r["run"].experiment for r in healthy if r["overloaded"]]
    print(f"saturated runs reported overloaded: {flagged}/{len(sat)}; healthy runs reported overloaded: "
          f"{len(false_pos)} {false_pos if false_pos else ''}")
    at_cap = saturated_decode(sat)
    if at_cap:
        print("decode time per token where the real server and llmsim both queue (mean TTFT > 1 s: both at the "
              "max_num_seqs cap):")
        for name, i, pred, real in at_cap:
            print(f"  {name[:43]:<44}{i:>3}  pred {pred * 1e3:6.1f} ms  real {real * 1e3:6.1f} ms  "
                  f"({err(pred, real):+.1f}%)")
        print(f"  median {np.median([err(p, m) for *_, p, m in at_cap]):+.1f}% (n={len(at_cap)})")
    skipped = [r["run"].experiment for r in results if "skipped" in r]
    if skipped:
        print(f"skipped {len(skipped)} runs: {', '.join(skipped)}")
    if not args.runs:
        print(f"\nper-request replay (vLLM 0.11.0 records, engine {args.request_engine}):")
        for line in replay_requests(args.request_engine, args.hardware_suffix):
            print("  " + line)
    rows = residuals(results)
    cover = coverage_report(rows, args.level, args.holdout)
    if args.write_residuals:
        name = args.set_name or {"auto": "calibrated", "": "datasheet"}.get(args.hardware_suffix,
                                                                              args.hardware_suffix.strip("-"))
        write_residuals(args.write_residuals, name, rows, args)
    med = {m: (np.median(abs_errs[m]) if abs_errs[m] else math.nan) for m in SUMMARY}
    print(f"real_runs: e2e_mean={med['e2e_mean']:.1f}% e2e_p99={med['e2e_p99']:.1f}% "
          f"ttft_mean={med['ttft_mean']:.1f}% itl={med['itl']:.1f}% overload_flagged={flagged}/{len(sat)} "
          f"n={len(abs_errs['e2e_mean'])} coverage{args.level * 100:g}={cover:.1%}"
          + (f" skipped={len(skipped)}" if skipped else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
