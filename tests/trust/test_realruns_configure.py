"""Every real vLLM run in ``../shared/data/real_runs/`` configures as an llmsim experiment that passes the
preflight (model, layout, memory, workload): a run the benchmark skips silently is a run nobody checks.
Skips cleanly where the data is absent."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmsim.experiment.config import parse_config
from llmsim.experiment.point import preflight
from llmsim.experiment.sweep import expand
from llmsim.trust.realruns import experiment_for, load_stage_runs

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real_runs"
CSV = DATA / "vllm_0.15.1_runs.csv"
RUNS = load_stage_runs(CSV) if CSV.exists() else []


@pytest.mark.skipif(not RUNS, reason="no ../shared/data/real_runs")
@pytest.mark.parametrize("run", RUNS, ids=[r.experiment[:40] for r in RUNS])
def test_every_real_run_configures(run):
    cfg = parse_config(experiment_for(run, DATA), "<real run>")
    for point in expand(cfg, DATA, "<real run>"):
        preflight(point)
