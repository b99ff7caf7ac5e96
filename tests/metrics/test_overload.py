"""Load verdicts from request records: synthetic queues with a known answer, and every batching policy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from llmsim.metrics import detect_overload, mark_phases
from llmsim.metrics.overload import autocorrelation_time_s, correlation_time_s, number_in_system
from llmsim.workload.request import Request

MODEL, HARDWARE = "llama-3.1-8b", "h100-sxm"


def fcfs_queue(n: int, rho: float, seed: int = 0, servers: int = 1, sigma: float | None = None) -> pd.DataFrame:
    """Records of an M/G/c FCFS queue with unit mean service (exponential, or lognormal of log-sd
    ``sigma``): arrival rate ``rho * servers``."""
    rng = np.random.default_rng(seed)
    arrival = np.cumsum(rng.exponential(1.0 / (rho * servers), n))
    service = rng.exponential(1.0, n) if sigma is None else rng.lognormal(-sigma**2 / 2, sigma, n)
    free = np.zeros(servers)
    finish = np.empty(n)
    for i in range(n):
        k = int(np.argmin(free))
        finish[i] = max(arrival[i], free[k]) + service[i]
        free[k] = finish[i]
    return pd.DataFrame({"id": np.arange(n), "status": "finished", "arrival_s": arrival, "finish_s": finish,
                         "e2e_s": finish - arrival})


def test_number_in_system_by_hand():
    df = pd.DataFrame({"id": [0, 1, 2, 3], "status": ["finished", "finished", "rejected", "unfinished"],
                       "arrival_s": [0.0, 1.0, 1.5, 2.0], "finish_s": [3.0, 2.5, 1.5, 9.0]})
    # rejected never enter; unfinished never leave
    assert list(number_in_system(df, np.array([0.5, 1.2, 2.2, 2.7, 5.0]))) == [1, 2, 3, 2, 1]


def test_stable_queue_is_stable_and_overloaded_queue_is_overloaded():
    stable = detect_overload(mark_phases(fcfs_queue(3000, 0.6, servers=4), warmup_requests=300))
    assert stable.verdict == "stable" and not stable
    assert stable.served_fraction == pytest.approx(1.0, abs=0.02)
    over = detect_overload(mark_phases(fcfs_queue(3000, 1.3, servers=4), warmup_requests=300))
    assert over.verdict == "overloaded" and over and "backlog grows" in over.reason
    # it serves 1/1.3 of what arrives; the backlog grows by the difference
    assert over.served_fraction == pytest.approx(1 / 1.3, abs=0.05)
    assert over.backlog_growth_rps == pytest.approx(4 * (1.3 - 1.0), rel=0.25)


def test_short_run_at_the_edge_is_mostly_inconclusive():
    # at rho = 1 a short run can look like anything; the verdict must mostly say it cannot tell
    verdicts = [detect_overload(mark_phases(fcfs_queue(150, 1.0, seed=s, servers=4), warmup_requests=15)).verdict
                for s in range(20)]
    assert verdicts.count("inconclusive") >= 15


def test_flat_backlog_of_long_requests_over_a_short_span_is_inconclusive():
    # every request takes 60 s; after a 60 s warm-up the backlog is flat, but 50 s of it cannot tell a
    # level from the start of a slow climb
    arrival = np.arange(1600) * 0.1
    df = pd.DataFrame({"id": np.arange(1600), "status": "finished", "arrival_s": arrival,
                       "finish_s": arrival + 60.0})
    verdict = detect_overload(mark_phases(df, warmup_requests=600))
    assert verdict.verdict == "inconclusive" and "correlation times" in verdict.reason
    assert verdict.backlog_growth_rps == pytest.approx(0.0, abs=1e-9)


def test_stable_queues_are_not_called_overloaded_across_seeds():
    # near saturation the backlog wanders for a long time; a wander must not read as overload (judged on
    # the batch means' residuals alone, without the served-fraction check, 2 of these 40 runs would)
    verdicts = [detect_overload(mark_phases(fcfs_queue(2000, 0.9, seed=s, servers=8, sigma=1.0),
                                            warmup_requests=200)).verdict for s in range(40)]
    assert "overloaded" not in verdicts and verdicts.count("stable") >= 24


def test_burst_is_offline_and_few_requests_are_inconclusive():
    burst = fcfs_queue(200, 0.5).assign(arrival_s=0.0)
    assert detect_overload(burst).verdict == "offline" and not detect_overload(burst)
    few = detect_overload(fcfs_queue(20, 0.5))
    assert few.verdict == "inconclusive" and "only 20 measured" in few.reason


def test_cut_off_run_counts_unfinished_as_still_in_the_system():
    df = fcfs_queue(600, 2.0, servers=4)
    cut = 0.6 * float(df["arrival_s"].max())
    df = df[df["arrival_s"] <= cut].copy()
    late = df["finish_s"] > cut
    df.loc[late, "status"] = "unfinished"
    df.loc[late, "finish_s"] = cut
    assert detect_overload(df, None, int(late.sum()), cut).verdict == "overloaded"


def test_verdict_uses_measured_rows_only():
    # a stable stretch followed by an overloaded one: marked as cool-down, the overload is not judged
    calm = fcfs_queue(3000, 0.6, servers=4)
    storm = fcfs_queue(3000, 1.5, seed=1, servers=4)
    shift = float(calm["finish_s"].max())
    storm = storm.assign(id=storm["id"] + 3000, arrival_s=storm["arrival_s"] + shift,
                         finish_s=storm["finish_s"] + shift)
    both = pd.concat([calm, storm], ignore_index=True)
    assert detect_overload(both).verdict == "overloaded"
    marked = mark_phases(both, warmup_requests=300, cooldown_requests=3000)
    assert (marked["phase"] == "cooldown").sum() == 3000
    assert detect_overload(marked).verdict == "stable"


def test_correlation_times():
    assert correlation_time_s(np.full(10, 2.0)) == pytest.approx(1.0)  # E[S^2] / 2E[S]
    assert autocorrelation_time_s(np.zeros(50), 0.1) == 0.0
    rng = np.random.default_rng(0)
    white = rng.standard_normal(20000)
    assert autocorrelation_time_s(white, 0.5) == pytest.approx(0.5, rel=0.3)
    ar = np.zeros(20000)
    for i in range(1, ar.size):  # AR(1), phi = 0.9: two-sided integrated time (1 + phi) / (1 - phi) = 19
        ar[i] = 0.9 * ar[i - 1] + white[i]
    assert autocorrelation_time_s(ar, 1.0) == pytest.approx(19, rel=0.3)


POLICIES = {
    "vllm": {"kind": "vllm"}, "sarathi": {"kind": "sarathi"}, "orca": {"kind": "orca", "max_batch_size": 64},
    "static": {"kind": "static", "max_batch_size": 16, "max_wait_s": 0.05}, "fastserve": {"kind": "fastserve"},
    "sjf": {"kind": "sjf"},
}


def _requests(n: int, rate: float, seed: int) -> list[Request]:
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.exponential(1 / rate, n)) if rate else np.zeros(n)
    ins = np.clip(rng.lognormal(np.log(300) - 0.5, 1.0, n), 1, 2000).astype(int)
    outs = np.clip(rng.lognormal(np.log(60) - 0.5, 1.0, n), 1, 400).astype(int)
    return [Request(i, float(t[i]), int(ins[i]), int(outs[i])) for i in range(n)]


@pytest.fixture(scope="module")
def cost_model():
    from llmsim.cost import CostModel
    from llmsim.specs import ParallelLayout, Precision, load_hardware, load_model

    return CostModel(load_model(MODEL), load_hardware(HARDWARE), ParallelLayout(), Precision.parse("bf16"))


def _verdict(scheduler, cost_model, n: int, rate: float):
    from llmsim.sim import simulate

    res = simulate(_requests(n, rate, 8), model=MODEL, hardware=HARDWARE, scheduler=scheduler, cost_model=cost_model)
    return detect_overload(mark_phases(res.requests, warmup_requests=n // 10), res.steps)


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_every_policy_stable_overloaded_and_borderline(policy, cost_model):
    from llmsim.sim import simulate

    scheduler = POLICIES[policy]
    burst = simulate(_requests(400, 0.0, 7), model=MODEL, hardware=HARDWARE, scheduler=scheduler,
                     cost_model=cost_model).requests.sort_values("finish_s")
    capacity = 300 / float(burst["finish_s"].iloc[299])  # requests/s while the burst keeps it full
    assert _verdict(scheduler, cost_model, 600, 0.3 * capacity).verdict == "stable"
    over = _verdict(scheduler, cost_model, 600, 3.0 * capacity)
    assert over.verdict == "overloaded" and over.served_fraction < 0.5
    assert _verdict(scheduler, cost_model, 200, 1.0 * capacity).verdict == "inconclusive"
