"""GPU power, energy and dollar cost of serving, as pure functions of what a step does.

Power of one GPU averaged over a step (a linear activity model between idle and TDP)::

    P = idle_w + (tdp_w - idle_w) * a_c + (memory_bound_w - idle_w) * a_m        (at most tdp_w)
    a_c = min(1, MFU / full_power_mfu)      a_m = min(1, MBU)

``MFU`` / ``MBU`` are the step's achieved fraction of peak FLOP/s and HBM bandwidth (its FLOPs and bytes
over its duration); ``a_c`` is the share of the step the tensor cores run at the rate that takes the board
to its TDP (dense GEMMs do: Hopper boards sit at the 700 W limit in them), ``a_m`` the share HBM runs at
full bandwidth. The profile's figures (``idle_w``: a CUDA context loaded, no kernels; ``memory_bound_w``:
HBM saturated, tensor cores idle; ``full_power_mfu``) carry their sources in the YAML; a profile without
them gets ``FALLBACK`` fractions of its TDP, taken from the same measurements and reported as such
(``source == "fallback"``).

A **power cap** ``cap_w`` below the draw lowers the SM clock to ``r`` (DVFS: dynamic power ~ f V^2 with
V ~ f, so ~ r^3 per unit time, ~ r^2 per unit of work): compute-bound work takes ``1/r`` longer, memory
traffic is unchanged (HBM has its own clock), and ``r`` is the highest clock whose average power over the
lengthened step meets the cap. Memory-bound steps are hardly slowed by caps, as Splitwise (Patel et al.,
ISCA'24, section on power capping) and Ma et al. (arXiv:2605.11999, decode draws 137-300 W of an H200's
700 W, so no cap binds) report; prefill-heavy steps are. Power the SM clock cannot remove (HBM traffic
above the cap) is left as it is: HBM clocks are not modelled. The cost model runs a capped profile's
steps at that clock (``llmsim.cost.step.apply_power_cap``, clock from ``cap_clock`` with the step's
compute-bound share of its GPU time); the accounting then charges those steps as they are
(``ReplicaPower.steps_capped``), and ``step_power``'s time factor is for steps timed at full clocks.

Cost: $ per hour is the profile's indicative price per GPU-hour (overridable per experiment) times GPUs;
$ per million tokens is that over tokens per second. Energy is of the GPU boards only (no host, network,
cooling or PUE).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from llmsim.errors import ConfigError

# Fallback power figures as fractions of TDP, for profiles that do not state their own (approximate):
# idle with a CUDA context ~ 15 % of TDP (H100 SXM: ~70 W bare idle as nvidia-smi reports it, plus the
# +26-50 W DVFS step a CUDA context forces on HBM GPUs, Vadari, arXiv:2605.23918, 2026); HBM-saturated
# decode ~ 43 % (Ma et al., arXiv:2605.11999: up to 300 W of 700 W on H200); dense GEMMs reach TDP at
# ~ 70 % of the dense tensor peak (H100 SXM BF16 GEMMs sustain ~ 650-750 TFLOP/s of 989 at 700 W).
FALLBACK = {"idle": 0.15, "memory_bound": 0.43, "full_power_mfu": 0.70}
MIN_CLOCK = 0.1  # lowest SM clock ratio a cap can force (H100: ~ 200 MHz of 1980 MHz)


@dataclass(frozen=True, slots=True)
class PowerProfile:
    """Per-GPU power figures (W) and an optional cap; ``source`` says where the figures came from."""

    idle_w: float
    tdp_w: float
    memory_bound_w: float
    full_power_mfu: float
    cap_w: float | None = None
    source: str = "profile"

    def __post_init__(self) -> None:
        if not (0 <= self.idle_w <= self.memory_bound_w <= self.tdp_w) or self.tdp_w <= 0:
            raise ConfigError(f"power: expected 0 <= idle_w ({self.idle_w}) <= memory_bound_w "
                              f"({self.memory_bound_w}) <= tdp_w ({self.tdp_w}) with tdp_w > 0")
        if not 0 < self.full_power_mfu <= 1:
            raise ConfigError(f"power: full_power_mfu must be in (0, 1], got {self.full_power_mfu}")
        if self.cap_w is not None and not self.idle_w < self.cap_w:
            raise ConfigError(f"must be above the idle power {self.idle_w:g} W, got {self.cap_w}")

    @property
    def limit_w(self) -> float:
        return self.tdp_w if self.cap_w is None else min(self.cap_w, self.tdp_w)


def power_profile(hardware, cap_w: float | None = None) -> PowerProfile:
    """The profile's power figures; those it lacks (0) from ``FALLBACK`` fractions of its TDP."""
    tdp = float(hardware.tdp_w)
    if tdp <= 0:
        raise ConfigError(f"hardware {hardware.name}: tdp_w is missing or 0: no power model without it")
    own = hardware.idle_w > 0 and hardware.memory_bound_w > 0 and hardware.full_power_mfu > 0
    idle = hardware.idle_w or FALLBACK["idle"] * tdp
    mem = hardware.memory_bound_w or FALLBACK["memory_bound"] * tdp
    mfu = hardware.full_power_mfu or FALLBACK["full_power_mfu"]
    return PowerProfile(idle, tdp, mem, mfu, cap_w, "profile" if own else "fallback")


def activity(flops, hbm_bytes, duration_s, gpus: int, peak_flops_per_s: float, hbm_bytes_per_s: float,
             full_power_mfu: float) -> tuple[np.ndarray, np.ndarray]:
    """``(a_c, a_m)`` of steps: ``flops`` and ``hbm_bytes`` are totals over the replica's ``gpus`` GPUs,
    the peaks per GPU. Zero-length steps have no activity."""
    t = np.asarray(duration_s, dtype=np.float64)
    safe = np.where(t > 0, t, 1.0)
    mfu = np.asarray(flops, dtype=np.float64) / (safe * gpus * peak_flops_per_s)
    mbu = np.asarray(hbm_bytes, dtype=np.float64) / (safe * gpus * hbm_bytes_per_s)
    a_c = np.where(t > 0, np.minimum(1.0, mfu / full_power_mfu), 0.0)
    a_m = np.where(t > 0, np.minimum(1.0, mbu), 0.0)
    return a_c, a_m


def dynamic_w(profile: PowerProfile, a_c, a_m) -> tuple[np.ndarray, np.ndarray]:
    """``(dyn_c, dyn_m)``: the watts above idle of compute and of HBM traffic at full clock, scaled down
    together where their sum would pass the TDP (the board's own limit: kernel timings already run at it)."""
    dyn_c = (profile.tdp_w - profile.idle_w) * np.asarray(a_c, dtype=np.float64)
    dyn_m = (profile.memory_bound_w - profile.idle_w) * np.asarray(a_m, dtype=np.float64)
    total = dyn_c + dyn_m
    room = profile.tdp_w - profile.idle_w
    scale = np.where(total > room, room / np.where(total > 0, total, 1.0), 1.0)
    return dyn_c * scale, dyn_m * scale


def step_power(profile: PowerProfile, a_c, a_m) -> tuple[np.ndarray, np.ndarray]:
    """``(power_w, time_factor)`` per step: average power of one GPU over the step, and how much longer the
    step takes under the cap (1 without one, or when the cap does not bind)."""
    a_c = np.asarray(a_c, dtype=np.float64)
    dyn_c, dyn_m = dynamic_w(profile, a_c, a_m)
    power = profile.idle_w + dyn_c + dyn_m
    factor = np.ones_like(power)
    if profile.cap_w is None or profile.cap_w >= profile.tdp_w:
        return power, factor
    clock = cap_clock(profile, a_c, dyn_c, dyn_m)
    factor = 1.0 + a_c * (1.0 / clock - 1.0)
    return profile.idle_w + (dyn_c * clock**2 + dyn_m) / factor, factor


def cap_clock(profile: PowerProfile, share, dyn_c, dyn_m) -> np.ndarray:
    """Highest clock ratio r in [MIN_CLOCK, 1] with idle + (dyn_c r^2 + dyn_m) / (1 + share (1/r - 1)) <= cap:
    ``share`` of the step (its compute-bound part) takes 1/r longer, the rest (HBM-bound) does not; 1 without
    a cap or where it does not bind (that power rises with r, so bisection finds it)."""
    dyn_c = np.asarray(dyn_c, dtype=np.float64)
    if profile.cap_w is None or profile.cap_w >= profile.tdp_w:
        return np.ones_like(dyn_c)
    share = np.asarray(share, dtype=np.float64)

    def power(r):
        return profile.idle_w + (dyn_c * r**2 + dyn_m) / (1.0 + share * (1.0 / r - 1.0))

    cap = profile.cap_w
    lo, hi = np.full_like(dyn_c, MIN_CLOCK), np.ones_like(dyn_c)
    ok = power(hi) <= cap
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        fits = power(mid) <= cap
        lo, hi = np.where(fits, mid, lo), np.where(fits, hi, mid)
    return np.where(ok, 1.0, lo)


@dataclass(frozen=True, slots=True)
class ReplicaPower:
    """What the energy and cost accounting needs of one replica: its GPUs, their power figures, per-GPU
    peaks of its compute dtype and HBM, and the price of one GPU-hour. ``steps_capped``: its step times
    already run at the capped clock (its cost model applied the cap, ``llmsim.cost.step.apply_power_cap``)."""

    gpus: int
    profile: PowerProfile
    peak_flops_per_s: float
    hbm_bytes_per_s: float
    usd_per_gpu_hour: float
    steps_capped: bool = False

    @property
    def usd_per_hour(self) -> float:
        return self.gpus * self.usd_per_gpu_hour


def replica_power(hardware, gpus: int, compute_dtype: str, steps_capped: bool = False) -> ReplicaPower:
    """A replica of ``gpus`` GPUs of ``hardware`` (its ``power_cap_w``, when set, caps each GPU)."""
    cap = hardware.power_cap_w or None
    return ReplicaPower(gpus, power_profile(hardware, cap), hardware.peak_flops(compute_dtype),
                        hardware.hbm_bytes_per_s, hardware.price_per_hour_usd, steps_capped and cap is not None)


def step_energy_j(rp: ReplicaPower, flops, hbm_bytes, duration_s) -> tuple[np.ndarray, np.ndarray]:
    """``(joules, time_factor)`` per step, over all of the replica's GPUs (the capped step lasts
    ``duration_s * time_factor``). Steps already timed at the capped clock (``rp.steps_capped``) keep their
    length (factor 1) and draw their activity's power, at most the cap: where the cap binds the clock was
    chosen so that the GPU part of the step averages the cap exactly (``cap_clock``), so this is exact for a
    step that is all GPU time and above it by the host part's share otherwise."""
    a_c, a_m = activity(flops, hbm_bytes, duration_s, rp.gpus, rp.peak_flops_per_s, rp.hbm_bytes_per_s,
                        rp.profile.full_power_mfu)
    if rp.steps_capped:
        dyn_c, dyn_m = dynamic_w(rp.profile, a_c, a_m)
        power = np.minimum(rp.profile.idle_w + dyn_c + dyn_m, rp.profile.limit_w)
        factor = np.ones_like(power)
    else:
        power, factor = step_power(rp.profile, a_c, a_m)
    return power * np.asarray(duration_s, dtype=np.float64) * factor * rp.gpus, factor


def idle_energy_j(rp: ReplicaPower, idle_s: float) -> float:
    """Energy of the replica's GPUs doing nothing for ``idle_s`` (a model is loaded: CUDA context held)."""
    return rp.profile.idle_w * rp.gpus * max(0.0, idle_s)


def usd_per_million_tokens(usd_per_hour: float, tokens_per_s: float) -> float | None:
    """Dollars per million tokens at a sustained ``tokens_per_s``; None when no tokens flow."""
    if not tokens_per_s or tokens_per_s <= 0:
        return None
    return usd_per_hour / 3600.0 / tokens_per_s * 1e6
