"""Simulations timed by the tabulated step cost (``llmsim.cost.fast``, what ``StepTimer`` uses for a plain
``CostModel``) are identical to the same simulations timed step by step by ``CostModel.step_time``."""

from __future__ import annotations

import pytest

from llmsim.cost import CostModel
from llmsim.sim import simulate
from llmsim.sim.timer import StepTimer
from llmsim.specs import ParallelLayout, Precision, load_hardware, load_model
from tests.sim.test_sim_properties import POLICIES


class ExactOnly(CostModel):
    """The same cost model; as a subclass ``StepTimer`` does not tabulate it and calls ``step_time`` each time."""


CASES = [(p, "generic", "h100-sxm") for p in POLICIES] + [
    ({"kind": "vllm"}, "vllm-0.15", "h100-sxm-calibrated"),
    ({"kind": "sarathi", "chunk_size": 256}, "generic", "h100-sxm-calibrated"),
]


@pytest.mark.parametrize(("policy", "engine", "hardware"), CASES,
                         ids=["-".join(map(str, p.values())) + f"@{e}@{h}" for p, e, h in CASES])
def test_fast_and_exact_step_costs_give_the_same_run(make_requests, policy, engine, hardware):
    model, hw = load_model("llama-3.1-8b"), load_hardware(hardware)
    reqs = make_requests(60, 20.0, seed=4, mean_in=300, mean_out=60, max_in=1500, max_out=200, prefix_groups=2,
                         chunk=16)
    kw = dict(model=model, hardware=hw, scheduler=policy, engine=engine, seed=3,
              kv={"kind": "contiguous" if policy["kind"] in ("static", "orca") else "prefix", "num_blocks": 200,
                  "swap_space_gb": 0.05})
    layout, prec = ParallelLayout(), Precision.parse("bf16")
    fast = simulate(reqs, cost_model=CostModel(model, hw, layout, prec), **kw)
    exact = simulate(reqs, cost_model=ExactOnly(model, hw, layout, prec), **kw)
    assert fast.requests.to_csv() == exact.requests.to_csv()
    assert fast.steps.to_csv() == exact.steps.to_csv()


def test_the_timer_tabulates_plain_cost_models_only():
    model, hw = load_model("llama-3.1-8b"), load_hardware("h100-sxm")
    from llmsim.engines import load_engine, resolve_engine

    rt = resolve_engine(load_engine("generic"), hw)
    assert StepTimer(CostModel(model, hw), rt)._fast is not None
    assert StepTimer(ExactOnly(model, hw), rt)._fast is None


@pytest.mark.parametrize("kv_kind", ["paged", "contiguous"])
def test_skipping_in_block_decode_allocations_changes_nothing(make_requests, monkeypatch, kv_kind):
    """Sarathi's decodes-first pass skips ``allocate`` for decodes inside their last block; under KV pressure
    (preemptions) the run equals the one that calls it for every sequence."""
    from llmsim.kv.base import KV_MANAGERS

    reqs = make_requests(60, 30.0, seed=9, mean_in=200, mean_out=150, max_in=600, max_out=400)
    kw = dict(model="llama-3.1-8b", hardware="h100-sxm", scheduler={"kind": "sarathi", "chunk_size": 128}, seed=1,
              kv={"kind": kv_kind, "num_blocks": 120}, max_model_len=1024, check_invariants=True)
    fast = simulate(reqs, **kw)
    if kv_kind == "paged":
        assert fast.requests["preemptions"].sum() > 0  # the cache really was short
    monkeypatch.setattr(KV_MANAGERS.get(kv_kind), "in_block_decode_free", False)
    slow = simulate(reqs, **kw)
    assert fast.requests.to_csv() == slow.requests.to_csv()
    assert fast.steps.to_csv() == slow.steps.to_csv()
