"""Communication time of tensor- and pipeline-parallel collectives on the profile's interconnect.

All-reduce is timed by the algorithm a serving engine actually runs for that size (vLLM): its custom
one-shot kernel for small messages (every rank reads every peer's buffer over NVLink and reduces), the
two-shot kernel (reduce-scatter + all-gather) up to 8 MiB, NCCL's ring above. Each algorithm has a latency
floor (a custom kernel's barrier and flag exchange; NCCL's per-hop latency) and moves its bytes at a
fraction of the link's bandwidth.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from llmsim.errors import ConfigError
from llmsim.specs import HardwareSpec, Link

CUSTOM_WORLD_SIZES = (2, 4, 6, 8)  # vLLM custom all-reduce supports these world sizes


def link_for(hardware: HardwareSpec, ranks: int) -> Link:
    """A group that fits in one node talks over NVLink/PCIe; a larger one is bound by the network."""
    return hardware.intra_node if ranks <= hardware.gpus_per_node else hardware.inter_node


@dataclass(frozen=True, slots=True)
class AllReduceTerms:
    """Latency floors and bandwidth efficiencies of each all-reduce algorithm (defaults from the profile's
    ``kernels`` and ``efficiency.comm``; a calibrated profile fits them)."""

    oneshot_latency_s: float
    twoshot_latency_s: float
    ring_latency_s: float
    ring_hop_s: float
    oneshot_eff: float
    twoshot_eff: float
    ring_eff: float
    custom_max_bytes: float

    @classmethod
    def of(cls, hardware: HardwareSpec, fitted: Mapping[str, Any] | None = None) -> AllReduceTerms:
        kt, eff = hardware.kernels, hardware.efficiency.comm
        out = cls(kt.oneshot_latency_s, kt.twoshot_latency_s, kt.ring_latency_s, kt.ring_hop_s, eff, eff, eff,
                  kt.custom_allreduce_max_bytes)
        if fitted:
            unknown = sorted(set(fitted) - set(cls.__slots__))
            if unknown:
                raise ConfigError(f"calibration.physics.allreduce: unknown key(s) {', '.join(unknown)}")
            out = replace(out, **{k: float(v) for k, v in fitted.items()})
        return out


def allreduce_algorithm(hardware: HardwareSpec, payload_bytes: float, ranks: int, terms: AllReduceTerms) -> str:
    """vLLM's choice (custom_all_reduce.cuh): one-shot for 2 ranks, or below 512 KiB (<= 4 ranks) / 256 KiB
    (<= 8 ranks) on full NVLink; two-shot up to the custom kernel's size limit; NCCL's ring beyond it or
    across nodes. The custom kernel needs NVLink between all ranks, or exactly two GPUs."""
    link = link_for(hardware, ranks)
    nvlink = link.name.startswith("nvlink") and ranks <= hardware.gpus_per_node
    custom = ranks in CUSTOM_WORLD_SIZES and payload_bytes <= terms.custom_max_bytes and (nvlink or ranks == 2)
    if not custom:
        return "ring"
    if ranks == 2 or (ranks <= 4 and payload_bytes < 512 * 1024) or (ranks <= 8 and payload_bytes < 256 * 1024):
        return "oneshot"
    return "twoshot"


def allreduce_s(hardware: HardwareSpec, payload_bytes: float, ranks: int,
                terms: AllReduceTerms | None = None) -> float:
    """One all-reduce of ``payload_bytes`` per rank. One-shot: each rank reads the p-1 peer buffers;
    two-shot and ring (Patarasuk & Yuan 2009) move 2(p-1)/p of the payload per rank."""
    if ranks <= 1 or payload_bytes <= 0:
        return 0.0
    terms = terms or AllReduceTerms.of(hardware)
    link = link_for(hardware, ranks)
    bw = link.bytes_per_s
    algo = allreduce_algorithm(hardware, payload_bytes, ranks, terms)
    if algo == "oneshot":
        return terms.oneshot_latency_s + (ranks - 1) * payload_bytes / (bw * terms.oneshot_eff)
    moved = 2.0 * (ranks - 1) / ranks * payload_bytes
    if algo == "twoshot":
        return terms.twoshot_latency_s + moved / (bw * terms.twoshot_eff)
    hop = terms.ring_hop_s if ranks <= hardware.gpus_per_node else max(terms.ring_hop_s, link.latency_s)
    return terms.ring_latency_s + 2.0 * (ranks - 1) * hop + moved / (bw * terms.ring_eff)


def alltoall_s(hardware: HardwareSpec, payload_bytes: float, ranks: int) -> float:
    """All-to-all (MoE dispatch or combine): (p-1)/p of each rank's payload leaves it, p-1 messages."""
    if ranks <= 1 or payload_bytes <= 0:
        return 0.0
    link = link_for(hardware, ranks)
    bw = link.bytes_per_s * hardware.efficiency.comm
    return (ranks - 1) / ranks * payload_bytes / bw + (ranks - 1) * link.latency_s


def p2p_s(hardware: HardwareSpec, payload_bytes: float, tp: int, pp: int) -> float:
    """Pipeline stage-to-stage send of the hidden states; crosses nodes when the replica does."""
    if pp <= 1:
        return 0.0
    link = link_for(hardware, tp * pp)
    return payload_bytes / (link.bytes_per_s * hardware.efficiency.comm) + link.latency_s


def ranks_per_token(experts: int, topk: int, ep: int) -> float:
    """Expected distinct EP ranks a token's top-k experts live on (``experts / ep`` contiguous experts per
    rank, top-k drawn without replacement): ep x (1 - C(E - E/ep, k) / C(E, k)). DeepEP and pplx send a token
    once per destination rank, not once per expert."""
    if ep <= 1:
        return 1.0
    local = experts // ep
    miss = math.comb(experts - local, topk) / math.comb(experts, topk)
    return ep * (1.0 - miss)


def moe_alltoall_s(hardware: HardwareSpec, tokens: float, hidden: int, act_bytes: float, experts: int,
                   topk: int, ep: int, busiest_share: float = 1.0) -> float:
    """One MoE dispatch (or combine) over ``ep`` ranks, each holding ``tokens / ep`` of the batch: each token's
    hidden state goes to the distinct ranks of its experts (``ranks_per_token``), (ep-1)/ep of them remote.
    The busiest rank receives ``busiest_share`` times its uniform share, and the collective waits for it."""
    if ep <= 1 or tokens <= 0:
        return 0.0
    payload = tokens / ep * ranks_per_token(experts, topk, ep) * hidden * act_bytes
    return alltoall_s(hardware, payload * busiest_share, ep)
