"""Hand-sized allocation programs whose optimum is worked out by hand in each test."""

from __future__ import annotations

import pytest

from llmsim.errors import InfeasibleError
from llmsim.search.ilp import Item, SolverError, _run, solve


def item(key, model="a", role="mixed", hw="h100", gpus=1, usd=1.0, cap=1.0, tdp=700.0):
    return Item(key, model, role, hw, gpus, usd, tdp * gpus, cap)


def test_min_cost_uses_one_configuration_per_role():
    # 10 req/s: A (cap 4, $3) needs 3 replicas but only 2 H100s exist; B (cap 2.5, $2) x 4 = $8
    items = [item("A", usd=3, cap=4), item("B", hw="a100", usd=2, cap=2.5)]
    [best] = solve(items, {"a": 10}, {"h100": 2, "a100": 10}, None, "min_cost")
    assert dict(best.replicas) == {"B": 4} and best.usd_per_hour == pytest.approx(8.0)


def test_prefill_decode_ratio_when_disaggregation_is_cheaper():
    # 6 req/s: colocated M (cap 1.5, $3) x 4 = $12; split P (cap 3, $3) x 2 + D (cap 2, $1.5) x 3 = $10.5
    items = [item("M", usd=3, cap=1.5), item("P", role="prefill", usd=3, cap=3),
             item("D", role="decode", hw="a100", usd=1.5, cap=2)]
    [best] = solve(items, {"a": 6}, {"h100": 8, "a100": 8}, None, "min_cost")
    assert dict(best.replicas) == {"P": 2, "D": 3} and best.usd_per_hour == pytest.approx(10.5)


def test_goodput_per_gpu_by_dinkelbach():
    # A: 3 req/s on 2 GPUs (1.5 per GPU) beats B: 1 req/s on 1 GPU; the ratio is 1.5 req/s per GPU
    items = [item("A", gpus=2, cap=3), item("B", cap=1)]
    [best] = solve(items, {"a": 1}, {"h100": 8}, None, "goodput_per_gpu")
    assert set(best.replicas) == {"A"}
    assert best.lam * 1 / best.gpus == pytest.approx(1.5)


def test_two_models_share_the_gpus():
    # a: 4 req/s on 2-GPU replicas of cap 1; b: 2 req/s on 1-GPU replicas of cap 1; 20 GPUs:
    # 2 x_a + x_b <= 20 with x_a >= 4 lam, x_b >= 2 lam -> 10 lam <= 20 -> lam = 2, x_a = 8, x_b = 4
    items = [item("a1", model="a", gpus=2), item("b1", model="b")]
    [best] = solve(items, {"a": 4, "b": 2}, {"h100": 20}, None, "goodput")
    assert best.lam == pytest.approx(2.0) and dict(best.replicas) == {"a1": 8, "b1": 4}


def test_top_k_are_distinct_and_ordered():
    items = [item("A", usd=3, cap=4), item("B", usd=2, cap=2)]
    first, second = solve(items, {"a": 8}, {"h100": 16}, None, "min_cost", top_k=3)[:2]
    # A x 2 = $6 is the cheapest; the next structure is B x 4 = $8
    assert dict(first.replicas) == {"A": 2} and dict(second.replicas) == {"B": 4}


def test_infeasible_names_the_budget():
    # 10 req/s of cap-1, $1 replicas: needs $10/h, the budget is $5/h
    with pytest.raises(InfeasibleError, match=r"tightest constraint is budget_usd_per_hour = 5 \$/h.*needs 10 \$/h"):
        solve([item("A")], {"a": 10}, {"h100": 100}, 5.0, "min_cost")


def test_infeasible_names_the_gpu_count():
    with pytest.raises(InfeasibleError, match=r"tightest constraint is gpus.h100.count = 4 GPUs.*needs 10 GPUs"):
        solve([item("A")], {"a": 10}, {"h100": 4}, 100.0, "min_cost")


def test_no_candidate_for_a_model():
    with pytest.raises(InfeasibleError, match="model.s. b"):
        solve([item("A")], {"a": 1, "b": 1}, {"h100": 4}, None, "min_cost")


def test_other_solver_status_is_reported():
    class NotSolved:
        status = 0  # pulp.LpStatus[0] == "Not Solved"

        def solve(self, _solver):
            return 0

    with pytest.raises(SolverError, match="status 'Not Solved'"):
        _run(NotSolved(), 1.0)
