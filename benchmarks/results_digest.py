"""Digest of every result file a fixed set of experiments writes: the check that a speed change left every
prediction byte-identical (or exactly which tables moved).

Runs each example experiment below at ``--requests`` requests (default 600) and Vidur's scenario at 1,500,
each as ``llmsim run ... --no-plots`` in a fresh process, with this checkout's ``llmsim`` (the current directory
is put first on the import path), into ``--out``; then prints the md5 of every CSV and ``summary.json`` written
(path relative to ``--out``), and a last line ``results_digest: files=N digest=MD5`` (the md5 of those lines).
Run it on two checkouts and diff the outputs:

    python benchmarks/results_digest.py --out /tmp/digest_new > new.txt
    (cd ../base && python benchmarks/results_digest.py --out /tmp/digest_base > /tmp/base.txt)
    diff /tmp/base.txt new.txt

An experiment that fails (e.g. its data in ``../shared`` is absent) is reported on a ``#`` line, counted as
``failed=K`` on the last line, and the exit status is 1: a digest with missing tables is not comparable.
~3 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = ("quickstart", "prefix_caching", "sarathi_vs_vllm", "batching_vllm_orca_static", "routing_prefix",
               "burstiness", "mooncake_cpu_tier", "distserve_chat", "migration_bursty", "speculative_speedup",
               "slora_adapters", "moe_ep_vs_tp")


def run(yaml: Path, out: Path, n: int, jobs: int) -> str | None:
    """None, or why the run failed (the tail of its stderr)."""
    cmd = [sys.executable, "-m", "llmsim.cli", "run", str(yaml), "--out", str(out), "--set",
           f"stop.num_requests={n}", "--no-plots", "--no-progress", "--jobs", str(jobs)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if proc.returncode == 0:
        return None
    tail = proc.stderr.strip().splitlines()
    return tail[-1] if tail else f"exit {proc.returncode}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="scratch directory for the results (new or empty)")
    ap.add_argument("--requests", type=int, default=600,
                    help="requests per example experiment (default 600; above their warm-up, up to 400)")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    out = Path(args.out).resolve()  # the runs start in the repository, not here
    if out.exists() and any(out.iterdir()):
        sys.exit(f"--out {out}: exists and is not empty (pick a fresh scratch directory)")
    cases = [(e, REPO / "experiments" / f"{e}.yaml", args.requests) for e in EXPERIMENTS]
    cases.append(("vidur", REPO / "benchmarks" / "vidur_scenario.yaml", 1500))
    failed = 0
    for name, yaml, n in cases:
        why = run(yaml, out / name, n, args.jobs)
        if why is not None:
            failed += 1
            print(f"# {name}: not run ({why})")
    lines = []
    for path in sorted(p for p in out.rglob("*") if p.is_file() and (p.suffix == ".csv" or p.name == "summary.json")):
        lines.append(f"{hashlib.md5(path.read_bytes()).hexdigest()}  {path.relative_to(out)}")
    print("\n".join(lines))
    print(f"results_digest: files={len(lines)} digest={hashlib.md5(chr(10).join(lines).encode()).hexdigest()}"
          f"{f' failed={failed}' if failed else ''}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
