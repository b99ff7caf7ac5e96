"""``SimResult``: the tables of one run and its summary."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from llmsim.metrics.energy import energy_fields
from llmsim.metrics.histogram import LogHistogram
from llmsim.metrics.pools import pool_summary
from llmsim.metrics.summary import Overload, summarize


@dataclass(frozen=True)
class SimResult:
    """``requests``: one row per request (see ``llmsim.metrics.REQUEST_COLUMNS``); ``steps``: one row per
    engine step; ``overloaded``: truthy with ``.reason`` when arrivals outpaced service; ``itl``: global
    inter-token-latency histogram; ``info``: resolved configuration and derived capacities (KV blocks per
    replica, capacity bound, ...), JSON-able; ``pools``: pool name -> (role, replica indices);
    ``transfers``: one row per KV transfer over a link (``llmsim.sim.links.TRANSFER_COLUMNS``); ``power``:
    each replica's power figures and price, for the energy and cost columns (``llmsim.metrics.energy``)."""

    requests: pd.DataFrame
    steps: pd.DataFrame
    overloaded: Overload
    itl: LogHistogram
    info: Mapping[str, Any] = field(default_factory=dict)
    pools: Mapping[str, tuple[str, tuple[int, ...]]] = field(default_factory=dict)
    transfers: pd.DataFrame | None = None
    power: tuple = ()  # one llmsim.cost.energy.ReplicaPower per replica (energy and cost columns)

    def summary(self, slo: Mapping[str, float] | None = None) -> dict:
        """Flat JSON-able dict: latency percentiles, throughput, SLO attainment (``slo``: any of ``ttft_s``,
        ``tpot_s``, ``e2e_s`` targets), KV utilisation, preemptions, MFU/MBU, cross-checks, and ``info``."""
        out = summarize(self.requests, self.steps, itl=self.itl, slo=slo,
                        peak_flops_per_s=self.info.get("peak_flops_per_s", 0.0),
                        peak_hbm_bytes_per_s=self.info.get("peak_hbm_bytes_per_s", 0.0), overload=self.overloaded)
        bound = self.info.get("capacity_tokens_per_s")
        if bound:
            out["capacity_tokens_per_s"] = bound
            measured = out.get("computed_tokens_per_s") or 0.0
            out["within_capacity_bound"] = bool(measured <= bound * (1 + 1e-9))
        if len(self.pools) > 1 or any(role != "mixed" for role, _ in self.pools.values()):
            out.update(pool_summary(self.requests, self.steps, self.pools))
        out.update(energy_fields(self.requests, self.steps, self.power, out))
        out["cross_check_warnings"] = "; ".join(self._cross_check(out))
        out.update({k: v for k, v in self.info.items() if k not in out})
        if self.info.get("steps_recorded") is False:  # steps in the measured window unknown; all: steps_simulated
            out["num_steps"] = None
        return out

    def _cross_check(self, out: Mapping[str, Any]) -> list[str]:
        """Analytical checks a correct run passes (a failure is a simulator bug, reported, not raised)."""
        problems = []
        if out.get("within_capacity_bound") is False:
            problems.append(f"computed {out['computed_tokens_per_s']:.4g} tokens/s beats the capacity bound "
                            f"{out['capacity_tokens_per_s']:.4g}")
        if self.info.get("kv_blocks_allocated") != self.info.get("kv_blocks_freed") and not self.info.get("unfinished"):
            problems.append("KV blocks allocated != freed after every request ended")
        L, lw = out.get("littles_L"), out.get("littles_lambda_W")
        idles_with_queue = self.info.get("scheduler") == "static"  # its batching window has no steps to see
        # steps do not see a disaggregated request between its prefill and its decode (waiting for blocks on
        # the decode side, on the link), so L from steps undercounts there
        in_transit = any(role == "prefill" for role, _ in self.pools.values())
        if L and lw and out.get("num_finished", 0) >= 100 and not (idles_with_queue or in_transit) \
                and abs(L - lw) > 0.1 * lw:
            problems.append(f"Little's law off by {abs(L - lw) / lw:.0%} (L={L:.4g}, lambda*W={lw:.4g})")
        for text in problems:
            warnings.warn(f"llmsim cross-check: {text}", RuntimeWarning, stacklevel=3)
        return problems
