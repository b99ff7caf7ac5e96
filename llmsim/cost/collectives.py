"""Communication time of tensor- and pipeline-parallel collectives on the profile's interconnect."""

from __future__ import annotations

from llmsim.specs import HardwareSpec, Link


def link_for(hardware: HardwareSpec, ranks: int) -> Link:
    """A group that fits in one node talks over NVLink/PCIe; a larger one is bound by the network."""
    return hardware.intra_node if ranks <= hardware.gpus_per_node else hardware.inter_node


def allreduce_s(hardware: HardwareSpec, payload_bytes: float, ranks: int) -> float:
    """Ring all-reduce (Patarasuk & Yuan 2009): 2(p-1)/p of the payload crosses each link, in 2(p-1) hops."""
    if ranks <= 1 or payload_bytes <= 0:
        return 0.0
    link = link_for(hardware, ranks)
    bw = link.bytes_per_s * hardware.efficiency.comm
    return 2.0 * (ranks - 1) / ranks * payload_bytes / bw + 2.0 * (ranks - 1) * link.latency_s


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
