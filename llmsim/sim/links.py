"""Links that carry KV caches between replicas, as SimPy resources: concurrent transfers queue.

Each replica has one sending and one receiving port per link (``LinkSpec``: ``bytes_per_s`` per GPU, so a
replica of g GPUs moves g shards in parallel); a transfer holds the sender's out-port and the receiver's
in-port for its whole duration, at the slower of the two rates, so a port never carries more than its
bandwidth. A ``shared`` link has one port that every transfer on it holds.

Transfer time of ``n`` bytes at rate ``B`` with per-transfer latency ``L``:

- ``whole`` (the cache moves after the prefill): ``L + n / B`` from when both ports are free;
- ``layerwise`` (DistServe / Splitwise: layer ``l``'s KV leaves once layer ``l`` is computed): the prompt's
  earlier chunks (fraction ``1 - r`` of the bytes) are ready when the last prefill step starts at ``s``
  and its last chunk's bytes become ready layer by layer over the step's ``P`` seconds; sent in order on a
  port held from ``a >= s``, the last layer arrives at ``max(a + n/B, s + P + r n / (B layers)) + L``.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass

import pandas as pd
import simpy

from llmsim.sim.spec import ClusterSpec, LinkSpec

TRANSFER_COLUMNS = ("link", "kind", "request", "src", "dst", "start_s", "end_s", "bytes", "rate_bytes_per_s",
                    "src_port", "dst_port")


@dataclass(frozen=True, slots=True)
class Overlap:
    """A layerwise transfer's prefill: the last prefill step starts at ``start_s`` and lasts ``duration_s``;
    ``last_fraction`` of the bytes are computed in it, over ``layers`` layers."""

    start_s: float
    duration_s: float
    last_fraction: float
    layers: int


def transfer_seconds(num_bytes: float, rate: float, latency_s: float, acquired_s: float,
                     overlap: Overlap | None = None) -> float:
    """End time of a transfer whose ports were acquired at ``acquired_s`` (see the module docstring)."""
    wire = num_bytes / rate
    end = acquired_s + wire
    if overlap is not None:
        last = overlap.last_fraction * wire / max(1, overlap.layers)
        end = max(end, overlap.start_s + overlap.duration_s + last)
    return end + latency_s


class TransferLog:
    """One row per transfer (column-wise, as the step log)."""

    def __init__(self) -> None:
        self._text: dict[str, list[str]] = {"link": [], "kind": []}
        self._num = {c: array("d") for c in TRANSFER_COLUMNS if c not in self._text}

    def add(self, link: str, kind: str, request: int, src: int, dst: int, start_s: float, end_s: float,
            num_bytes: float, rate: float, src_port: int, dst_port: int) -> None:
        self._text["link"].append(link)
        self._text["kind"].append(kind)
        for c, v in zip(("request", "src", "dst", "start_s", "end_s", "bytes", "rate_bytes_per_s", "src_port",
                         "dst_port"), (request, src, dst, start_s, end_s, num_bytes, rate, src_port, dst_port),
                        strict=True):
            self._num[c].append(v)

    def __len__(self) -> int:
        return len(self._text["link"])

    def frame(self) -> pd.DataFrame:
        cols: dict = {c: list(v) for c, v in self._text.items()}
        for c, v in self._num.items():
            cols[c] = pd.Series(list(v), dtype="int64" if c in ("request", "src", "dst", "src_port", "dst_port")
                                else "float64")
        return pd.DataFrame(cols, columns=list(TRANSFER_COLUMNS))


class Network:
    """The ports of every link, created on first use; ``transfer(...)`` is a SimPy process body."""

    def __init__(self, env: simpy.Environment, spec: ClusterSpec, pool_of: list[str], gpus_of: list[int]) -> None:
        self.env = env
        self.spec = spec
        self.pool_of = pool_of  # replica index -> pool name
        self.gpus_of = gpus_of  # replica index -> GPUs in it
        self.log = TransferLog()
        self._ports: dict[tuple, tuple[int, simpy.Resource, float]] = {}
        self._links: dict[tuple[str, str], LinkSpec] = {}

    def link(self, src: int, dst: int) -> LinkSpec:
        key = (self.pool_of[src], self.pool_of[dst])
        if key not in self._links:
            self._links[key] = self.spec.link(*key)
        return self._links[key]

    def _port(self, link: LinkSpec, replica: int, direction: str) -> tuple[int, simpy.Resource, float]:
        key = (link.name, "shared") if link.shared else (link.name, replica, direction)
        if key not in self._ports:
            rate = link.bytes_per_s if link.shared else link.bytes_per_s * self.gpus_of[replica]
            self._ports[key] = (len(self._ports), simpy.Resource(self.env, 1), rate)
        return self._ports[key]

    def transfer(self, kind: str, request: int, src: int, dst: int, num_bytes: float,
                 overlap: Overlap | None = None):
        """Move ``num_bytes`` from replica ``src`` to ``dst``; returns the seconds spent holding the link."""
        link = self.link(src, dst)
        out_id, out_port, out_rate = self._port(link, src, "out")
        in_id, in_port, in_rate = self._port(link, dst, "in")
        rate = min(out_rate, in_rate)
        env = self.env
        with out_port.request() as a:
            yield a
            if in_port is out_port:
                start = env.now
                yield env.timeout(transfer_seconds(num_bytes, rate, link.latency_s, start, overlap) - start)
            else:
                with in_port.request() as b:
                    yield b
                    start = env.now
                    yield env.timeout(transfer_seconds(num_bytes, rate, link.latency_s, start, overlap) - start)
        self.log.add(link.name, kind, request, src, dst, start, env.now, num_bytes, rate, out_id, in_id)
        return env.now - start

    def stats(self) -> dict[str, float]:
        """Per link: transfers, bytes and busiest port's busy seconds (JSON-able, flat)."""
        if not len(self.log):
            return {}
        df = self.log.frame()
        out: dict[str, float] = {}
        for name, g in df.groupby("link", sort=True):
            busy = (g["end_s"] - g["start_s"]).groupby(g["src_port"]).sum()
            out[f"link.{name}.transfers"] = int(len(g))
            out[f"link.{name}.bytes"] = float(g["bytes"].sum())
            out[f"link.{name}.busiest_port_busy_s"] = float(busy.max())
        return out
