"""``SimResult``: the tables of one run and its summary."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from llmsim.metrics.histogram import LogHistogram
from llmsim.metrics.summary import Overload, summarize


@dataclass(frozen=True)
class SimResult:
    """``requests``: one row per request (see ``llmsim.metrics.REQUEST_COLUMNS``); ``steps``: one row per
    engine step; ``overloaded``: truthy with ``.reason`` when arrivals outpaced service; ``itl``: global
    inter-token-latency histogram; ``info``: resolved configuration and derived capacities (KV blocks per
    replica, capacity bound, ...), JSON-able."""

    requests: pd.DataFrame
    steps: pd.DataFrame
    overloaded: Overload
    itl: LogHistogram
    info: Mapping[str, Any] = field(default_factory=dict)

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
        out.update({k: v for k, v in self.info.items() if k not in out})
        return out
