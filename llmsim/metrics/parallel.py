"""Per-parent figures of parallel sampling: a request of ``n`` outputs is one row per child in the requests
table (same ``id`` and ``arrival_s``); its first token is its first child's and it ends with its last."""

from __future__ import annotations

import numpy as np
import pandas as pd


def parent_summary(requests: pd.DataFrame, n: int) -> dict[str, float | int]:
    """``sampling_parents`` finished, and the parents' TTFT (first child) and E2E (last child) percentiles."""
    done = requests[requests["status"] == "finished"]
    if "phase" in done:
        done = done[done["phase"] == "measured"]
    groups = done.groupby(["id", "arrival_s"], sort=False)
    sizes = groups.size()
    complete = sizes[sizes == n].index
    if not len(complete):
        return {"sampling_n": n, "sampling_parents": 0}
    g = done.set_index(["id", "arrival_s"]).loc[complete].groupby(level=[0, 1], sort=False)
    ttft, e2e = g["ttft_s"].min().to_numpy(), g["e2e_s"].max().to_numpy()
    return {"sampling_n": n, "sampling_parents": int(len(complete)),
            "parent_ttft_p50_s": float(np.median(ttft)), "parent_e2e_p50_s": float(np.median(e2e)),
            "parent_e2e_p99_s": float(np.quantile(e2e, 0.99))}


def beam_summary(requests: pd.DataFrame, width: int) -> dict[str, float | int]:
    """Beam search: a parent's beam requests share its ``id``; it arrives with its first step and ends with
    its last beam request (``beam_e2e_*``); ``beam_prompt_tokens_computed`` counts the tokens the engine
    computed over all beam steps (the recomputed tails of the forks)."""
    done = requests[requests["status"] == "finished"]
    g = done.groupby("id", sort=False)
    e2e = (g["finish_s"].max() - g["arrival_s"].min()).to_numpy()
    if not e2e.size:
        return {"beam_width": width, "beam_parents": 0}
    return {"beam_width": width, "beam_parents": int(e2e.size), "beam_e2e_p50_s": float(np.median(e2e)),
            "beam_e2e_p99_s": float(np.quantile(e2e, 0.99)),
            "beam_computed_tokens": int(done["computed_tokens"].sum())}
