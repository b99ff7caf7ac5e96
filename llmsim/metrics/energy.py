"""Energy (J per token) and cost ($ per million tokens) of a run, from its steps and each replica's power
figures (``llmsim.cost.energy``).

Over the summary's measurement window (the arrival window; for a burst, the steps' makespan) every
replica's GPUs draw their step power while a step runs and their idle power otherwise. Per-token figures
divide the window's average power and hourly price by the summary's token rates (completions inside the
window), so they match its throughput. Input and output tokens split the cost and energy by GPU time:
each step's time is shared between its prefill and decode tokens in proportion to their counts (a
convention: a pure prefill step is all input, a pure decode step all output), idle time in the same ratio
as busy time.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from llmsim.cost.energy import ReplicaPower, idle_energy_j, step_energy_j, usd_per_million_tokens
from llmsim.metrics.window import Rows, Window, in_span


def window_steps(requests: pd.DataFrame, steps: pd.DataFrame) -> tuple[Rows, float]:
    """Steps starting inside the measurement window (read-only columns, ``llmsim.metrics.window.Rows``),
    and the window's length (the steps' makespan when the run has no arrival window)."""
    window = Window.of(requests)
    if window.length_s > 0 and len(steps):
        return Rows(steps, in_span(steps, window.start_s, window.end_s)), window.length_s
    if not len(steps):
        return Rows(steps), 0.0
    first, last = np.inf, -np.inf  # the makespan, a block at a time (extremes are exact in any order)
    for b in Rows(steps).blocks():
        start = b["start_s"].astype(np.float64, copy=False)
        first, last = min(first, start.min()), max(last, (start + b["duration_s"].astype(np.float64)).max())
    return Rows(steps), float(last - first)


def energy_fields(requests: pd.DataFrame, steps: pd.DataFrame, power: Sequence[ReplicaPower],
                  summary: dict) -> dict:
    """Summary columns: ``energy_j``, ``power_mean_w``, ``energy_j_per_output_token``,
    ``energy_j_per_token`` (input and output), ``energy_j_per_request``, ``usd_per_hour``,
    ``cost_usd_per_m_tokens``, ``cost_usd_per_m_output_tokens_all`` (the whole bill over output tokens),
    ``cost_usd_per_m_input_tokens`` and ``cost_usd_per_m_output_tokens`` (split by GPU time), and
    ``power_figures`` (``profile`` or ``fallback``, see ``llmsim.cost.energy``). A power cap normally
    reaches the simulated step times (the cost model runs capped steps at the lowered clock); only where a
    replica's steps were timed at full clocks (a cost model built without the cap) is there also
    ``power_cap_time_factor``: how much longer the window's steps would take at the cap."""
    if not power:
        return {}
    if not len(steps):  # no step rows (``record_steps=False``, or nothing ran): energy and the split unknown
        return _without_steps(power, summary)
    in_window, span = window_steps(requests, steps)
    energy, busy_s, prefill_gpu_s, capped_s = 0.0, 0.0, 0.0, 0.0
    sums = np.zeros((len(power), 4))  # per replica: step joules, capped busy s, busy s, prefill share of busy s
    for block in in_window.blocks():  # one block's temporaries at a time (a run's table is often one block)
        replica = block["replica"] if len(block) else np.zeros(0, dtype=np.int64)
        for index, rp in enumerate(power):
            mine = block.where(replica == index)
            joules, factor = step_energy_j(rp, mine["flops"], mine["hbm_bytes"], mine["duration_s"])
            dur = mine["duration_s"].astype(np.float64)
            pre = mine["prefill_tokens"].astype(np.float64)
            tokens = pre + mine["decode_tokens"].astype(np.float64)
            sums[index] += (joules.sum(), (dur * factor).sum(), dur.sum(),
                            (dur * np.divide(pre, tokens, out=np.zeros_like(pre), where=tokens > 0)).sum())
    for (joules, busy, dur, pre), rp in zip(sums.tolist(), power, strict=True):
        energy += joules + idle_energy_j(rp, span - busy)
        busy_s += dur * rp.gpus
        capped_s += busy * rp.gpus
        prefill_gpu_s += pre * rp.gpus
    usd_h = sum(rp.usd_per_hour for rp in power)
    out_tps = summary.get("output_tokens_per_s") or 0.0
    in_tps = summary.get("input_tokens_per_s") or 0.0
    rps = summary.get("throughput_rps") or 0.0
    watts = energy / span if span > 0 else None
    share_in = prefill_gpu_s / busy_s if busy_s > 0 else 0.0
    out = {
        "energy_j": energy, "power_mean_w": watts,
        "energy_j_per_output_token": watts / out_tps if watts is not None and out_tps else None,
        "energy_j_per_token": watts / (in_tps + out_tps) if watts is not None and in_tps + out_tps else None,
        "energy_j_per_request": watts / rps if watts is not None and rps else None,
        **_bill(power, summary),
        "cost_usd_per_m_input_tokens": usd_per_million_tokens(usd_h * share_in, in_tps),
        "cost_usd_per_m_output_tokens": usd_per_million_tokens(usd_h * (1 - share_in), out_tps),
    }
    out["power_figures"] = out.pop("power_figures")  # last, as before
    if any(rp.profile.cap_w is not None and not rp.steps_capped for rp in power):
        out["power_cap_time_factor"] = capped_s / busy_s if busy_s > 0 else 1.0
    return out


def _bill(power: Sequence[ReplicaPower], summary: dict) -> dict:
    """The cost columns that need no step rows: the hourly price over the tokens served."""
    usd_h = sum(rp.usd_per_hour for rp in power)
    out_tps = summary.get("output_tokens_per_s") or 0.0
    in_tps = summary.get("input_tokens_per_s") or 0.0
    return {"usd_per_hour": usd_h, "cost_usd_per_m_tokens": usd_per_million_tokens(usd_h, in_tps + out_tps),
            "cost_usd_per_m_output_tokens_all": usd_per_million_tokens(usd_h, out_tps),
            "power_figures": "+".join(dict.fromkeys(rp.profile.source for rp in power))}


def _without_steps(power: Sequence[ReplicaPower], summary: dict) -> dict:
    """What ``energy_fields`` can say without step rows: the bill over the tokens, never a made-up 0 J."""
    energy = ("energy_j", "power_mean_w", "energy_j_per_output_token", "energy_j_per_token", "energy_j_per_request")
    out = {**dict.fromkeys(energy), **_bill(power, summary), "cost_usd_per_m_input_tokens": None,
           "cost_usd_per_m_output_tokens": None}
    out["power_figures"] = out.pop("power_figures")  # the column order of energy_fields
    return out
