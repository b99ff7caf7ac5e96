"""llmsim against Vidur on Vidur's own speed scenario, both as whole processes on this machine, alternating.

The scenario (Agrawal et al., MLSys'24; ``benchmarks/vidur_scenario.yaml``): Llama-2-70B, TP2 on A100-80GB,
Sarathi-Serve chunked prefill with a 512-token budget, Poisson arrivals at 1 request/s, request lengths from
the Azure 2023 conversation trace (Vidur ships it as ``data/processed_traces/splitwise_conv.csv``), N requests.
Vidur runs with its defaults (random-forest execution-time predictor, predictor models cached under its
``cache/``, batch cap 128) except: no wandb, no Chrome trace, no plots. llmsim runs the YAML through
``llmsim run`` (results, summary and trust annotation written, plots off). Each side's CPU time is the whole
child process's user + system time (``os.wait4``), imports and start-up included; peak RSS likewise.

Vidur is not a dependency: point ``--vidur-repo`` at a checkout of microsoft/vidur and ``--vidur-python`` at
an interpreter with its requirements (numpy pandas scikit-learn wandb kaleido ddsketch plotly_express
matplotlib seaborn fasteners) installed. The first Vidur run trains its predictors (tens of CPU minutes on a
slow core) unless its ``cache/`` is warm; ``--warmup`` runs one untimed Vidur run first. Without Vidur the
script says so and exits 0.

    python benchmarks/vidur_side_by_side.py --vidur-repo /path/to/vidur --vidur-python /path/to/venv/bin/python
        [--requests 10000] [--reps 3] [--warmup]

Last line: ``vidur_side_by_side: requests=N llmsim_cpu_ms_per_request=X vidur_cpu_ms_per_request=Y
speedup=Z llmsim_peak_rss_mb=A vidur_peak_rss_mb=B`` (medians over the reps).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
YAML = HERE / "vidur_scenario.yaml"


def vidur_command(python: str, n: int, out: Path) -> list[str]:
    return [python, "-m", "vidur.main",
            "--replica_config_model_name", "meta-llama/Llama-2-70b-hf",
            "--replica_config_device", "a100",
            "--replica_config_network_device", "a100_pairwise_nvlink",
            "--replica_config_tensor_parallel_size", "2",
            "--replica_config_num_pipeline_stages", "1",
            "--cluster_config_num_replicas", "1",
            "--replica_scheduler_config_type", "sarathi",
            "--sarathi_scheduler_config_chunk_size", "512",
            "--request_generator_config_type", "synthetic",
            "--synthetic_request_generator_config_num_requests", str(n),
            "--length_generator_config_type", "trace",
            "--trace_request_length_generator_config_trace_file", "./data/processed_traces/splitwise_conv.csv",
            "--interval_generator_config_type", "poisson",
            "--poisson_request_interval_generator_config_qps", "1",
            "--execution_time_predictor_config_type", "random_forrest",
            "--metrics_config_output_dir", str(out),
            "--no-metrics_config_enable_chrome_trace",
            "--no-metrics_config_store_plots"]


def llmsim_command(n: int, out: Path) -> list[str]:
    return [sys.executable, "-m", "llmsim.cli", "run", str(YAML), "--out", str(out), "--set",
            f"stop.num_requests={n}", "--no-plots", "--no-progress"]


def timed(cmd: list[str], cwd: Path, env: dict) -> tuple[float, float]:
    """(user + system CPU seconds, peak RSS MiB) of the child process (``os.wait4`` on it)."""
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            err.seek(0)
            sys.exit(f"{' '.join(cmd[:4])} ... failed ({proc.returncode}):\n{err.read().decode()[-2000:]}")
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vidur-repo", type=Path)
    ap.add_argument("--vidur-python", default=sys.executable)
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--warmup", action="store_true", help="one untimed Vidur run first (trains its predictors)")
    args = ap.parse_args()
    if args.vidur_repo is None or not (args.vidur_repo / "vidur" / "main.py").is_file():
        print("vidur_side_by_side: no Vidur checkout given (--vidur-repo); nothing measured")
        return
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONHASHSEED": "0"}
    n = args.requests
    with tempfile.TemporaryDirectory() as tmp:
        if args.warmup:
            timed(vidur_command(args.vidur_python, 100, Path(tmp) / "warm"), args.vidur_repo, env)
        ours, theirs = [], []
        for rep in range(args.reps):
            ours.append(timed(llmsim_command(n, Path(tmp) / f"llmsim{rep}"), HERE.parent, env))
            theirs.append(timed(vidur_command(args.vidur_python, n, Path(tmp) / f"vidur{rep}"), args.vidur_repo, env))
            print(f"rep {rep}: llmsim {ours[-1][0]:.2f} CPU-s {ours[-1][1]:.0f} MiB; "
                  f"vidur {theirs[-1][0]:.2f} CPU-s {theirs[-1][1]:.0f} MiB", flush=True)
    a = statistics.median(c for c, _ in ours)
    b = statistics.median(c for c, _ in theirs)
    print(f"vidur_side_by_side: requests={n} llmsim_cpu_ms_per_request={a / n * 1e3:.3f} "
          f"vidur_cpu_ms_per_request={b / n * 1e3:.3f} speedup={b / a:.2f} "
          f"llmsim_peak_rss_mb={statistics.median(m for _, m in ours):.0f} "
          f"vidur_peak_rss_mb={statistics.median(m for _, m in theirs):.0f}")


if __name__ == "__main__":
    main()
