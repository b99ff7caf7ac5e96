"""Seeding of the engines' speculators and the run's speculation summary (acceptance rate, tokens per
verification, proposer overhead)."""

from __future__ import annotations

import numpy as np
import pandas as pd

SPEC_STREAM = 5  # numpy seed-sequence stream of acceptance draws: [seed, 5, replica, engine]


def seed_speculators(engines: list[tuple[int, object]], seed: int) -> None:
    """Give each speculating engine its own generator, derived from the run's seed (draws do not shift the
    request noise or the routers' streams)."""
    for replica, eng in engines:
        spec = getattr(eng.sched, "spec", None)
        if spec is not None:
            spec.rng = np.random.default_rng([seed, SPEC_STREAM, replica, eng.index])


def speculation_stats(scheds: list, steps: pd.DataFrame) -> dict[str, float | int]:
    """Totals over the engines: ``spec_acceptance_rate`` (accepted / proposed depth positions),
    ``spec_tokens_per_step`` (tokens a verifying sequence emits per step, 1 + accepted, trimmed at
    max_tokens), ``spec_proposer_fraction`` (proposer GPU seconds / all step seconds)."""
    specs = [s.spec for s in scheds if getattr(s, "spec", None) is not None]
    if not specs:
        return {}
    out: dict[str, float | int] = {}
    for sp in specs:
        for key, value in sp.stats().items():
            out[key] = out.get(key, 0) + value
    drafted, rows = out["spec_draft_tokens"], out["spec_verify_rows"]
    busy = float(steps["duration_s"].sum()) if "duration_s" in steps and len(steps) else 0.0
    out["spec_acceptance_rate"] = out["spec_accepted_tokens"] / drafted if drafted else 0.0
    out["spec_tokens_per_step"] = out["spec_emitted_tokens"] / rows if rows else 1.0
    out["spec_mean_k"] = drafted / rows if rows else 0.0
    out["spec_proposer_fraction"] = out["spec_proposer_s"] / busy if busy else 0.0
    return out
