"""How much of a predicted time rests on measured kernels: the share of operator time by evidence.

Every operator's time says where it came from (``OpTime.source``): ``interpolated`` between measured
kernels of its own shape family, ``extrapolated`` beyond them (or from a neighbouring family, or from
fitted constants of another kernel), or ``roofline`` (the profile's constants, nothing measured). Launch
gaps are left out: they are the engine's CPU-side cost, not a kernel's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

SOURCES = ("interpolated", "extrapolated", "roofline")


def evidence_fractions(rows: Iterable) -> dict[str, float]:
    """Fractions (summing to 1, or all 0 for no time) of kernel and communication time by source, from
    ``CostModel.operator_costs`` rows (each with ``time_s``, ``launch_s`` and ``source``)."""
    totals = dict.fromkeys(SOURCES, 0.0)
    for r in rows:
        totals[r.source if r.source in totals else "roofline"] += max(float(r.time_s) - float(r.launch_s), 0.0)
    whole = sum(totals.values())
    return {k: (v / whole if whole > 0 else 0.0) for k, v in totals.items()}


def weighted_fractions(parts: Iterable[tuple[Mapping[str, float], float]]) -> dict[str, float]:
    """Fractions of several steps combined, each weighted by its seconds (e.g. prefill and the decode steps)."""
    totals = dict.fromkeys(SOURCES, 0.0)
    whole = 0.0
    for fractions, seconds in parts:
        whole += seconds
        for k in SOURCES:
            totals[k] += fractions.get(k, 0.0) * seconds
    return {k: (v / whole if whole > 0 else 0.0) for k, v in totals.items()}
