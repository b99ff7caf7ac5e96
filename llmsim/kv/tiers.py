"""A KV memory hierarchy below the GPU prefix cache: a host-memory (CPU) tier and optionally a local-disk tier.

Blocks the GPU prefix cache evicts (``PrefixCacheKV._take`` reusing a cached block) are written down to host
memory (write-back on eviction, as SGLang's HiCache ``write_back`` policy; the device-to-host copy runs on a
copy engine beside the compute and is counted, not timed); when host memory is full its least recently used
block moves to disk, or is dropped without one. A new request's prefix lookup continues past the GPU hits
into the host, then the disk tier (chained hashes, stopping at the first miss, as vLLM's
``find_longest_cache_hit``); those tokens count as computed, like GPU hits, and their blocks are loaded back
over PCIe (from disk: disk read, then PCIe) before the step's prefill: ``blocking`` makes the step wait for the
whole load (vLLM 0.15.1's OffloadingConnector loads a request's blocks before it is scheduled), ``layerwise``
overlaps layer i's load with layer i-1's compute (LMCache / Mooncake layer-wise loading), so the step takes
``max(gpu, load) + min(gpu, load) / layers``. A loaded block is registered in the GPU cache and stays in its
tier too (inclusive). Counters: GPU, host and disk hit tokens, blocks written and evicted per tier, bytes
loaded and the seconds the loads took.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import TYPE_CHECKING

from llmsim.errors import ConfigError
from llmsim.kv.base import KV_MANAGERS
from llmsim.kv.prefix import PrefixCacheKV

if TYPE_CHECKING:
    from llmsim.sched.seq import Seq

GIB = float(1 << 30)
LOAD_MODES = ("blocking", "layerwise")


class Tier:
    """An LRU set of block hashes with a capacity in blocks; ``put`` returns the hash it pushed out (or None)."""

    __slots__ = ("name", "capacity", "bytes_per_s", "latency_s", "_lru", "num_written", "num_evicted",
                 "num_hit_blocks")

    def __init__(self, name: str, capacity: int, bytes_per_s: float, latency_s: float = 0.0) -> None:
        self.name = name
        self.capacity = capacity
        self.bytes_per_s = bytes_per_s
        self.latency_s = latency_s
        self._lru: OrderedDict[int, None] = OrderedDict()
        self.num_written = 0
        self.num_evicted = 0
        self.num_hit_blocks = 0

    def __contains__(self, h: int) -> bool:
        return h in self._lru

    def __len__(self) -> int:
        return len(self._lru)

    def touch(self, h: int) -> None:
        if h in self._lru:
            self._lru.move_to_end(h)

    def put(self, h: int) -> int | None:
        if h in self._lru:
            self._lru.move_to_end(h)
            return None
        self._lru[h] = None
        self.num_written += 1
        if len(self._lru) > self.capacity:
            old, _ = self._lru.popitem(last=False)
            self.num_evicted += 1
            return old
        return None

    def remove(self, h: int) -> None:
        del self._lru[h]
        self.num_evicted += 1


def _gb(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf:
        raise ConfigError(f'"{name}" must be a finite number of GiB >= 0, got {value!r}')
    return float(value)


@KV_MANAGERS.register("tiered")
class TieredPrefixKV(PrefixCacheKV):
    """Prefix cache with host (``cpu_gb`` GiB per GPU) and disk (``disk_gb``) tiers; ``load``: ``blocking`` or
    ``layerwise``; ``disk_bytes_per_s``: the disk's read bandwidth (default 5 GB/s, an NVMe SSD's datasheet
    figure; set it for your drive). The simulator passes ``block_bytes`` (one block's KV on one GPU),
    ``link_bytes_per_s`` / ``link_latency_s`` (the hardware profile's host link) and ``host_memory_bytes``
    (the profile's per-GPU host memory, 0 = unknown, not checked) and ``num_layers``."""

    name = "tiered"
    lazy_own = False  # every evicted hash goes down a tier, so each block carries its real hash

    def __init__(self, num_blocks: int, block_size: int = 16, watermark: float = 0.0, *, cpu_gb: float = 0.0,
                 disk_gb: float = 0.0, load: str = "blocking", disk_bytes_per_s: float = 5e9,
                 block_bytes: float = 0.0, link_bytes_per_s: float = 0.0, link_latency_s: float = 0.0,
                 host_memory_bytes: float = 0.0, num_layers: int = 1) -> None:
        super().__init__(num_blocks, block_size, watermark)
        cpu, disk = _gb("cpu_gb", cpu_gb), _gb("disk_gb", disk_gb)
        if load not in LOAD_MODES:
            raise ConfigError(f'"load" must be one of {", ".join(LOAD_MODES)}, got {load!r}')
        if not (block_bytes > 0 and link_bytes_per_s > 0):
            raise ConfigError('"block_bytes" and "link_bytes_per_s" must be > 0 (set by the simulator)')
        if host_memory_bytes and cpu * GIB > host_memory_bytes:
            raise ConfigError(f'"cpu_gb": {cpu:g} GiB per GPU is more than the host memory per GPU '
                              f"({host_memory_bytes / GIB:.1f} GiB, the hardware profile's host_memory_bytes)")
        if isinstance(disk_bytes_per_s, bool) or not (isinstance(disk_bytes_per_s, int | float)
                                                      and 0 < disk_bytes_per_s < math.inf):
            raise ConfigError(f'"disk_bytes_per_s" must be a finite number > 0, got {disk_bytes_per_s!r}')
        self.block_bytes = float(block_bytes)
        self.layerwise = load == "layerwise"
        self.num_layers = max(1, int(num_layers))
        self.host = Tier("cpu", int(cpu * GIB // block_bytes), float(link_bytes_per_s), float(link_latency_s))
        self.disk = Tier("disk", int(disk * GIB // block_bytes), float(disk_bytes_per_s)) if disk else None
        self.num_host_hit_tokens = 0
        self.num_disk_hit_tokens = 0
        self.num_loaded_bytes = 0.0
        self.load_s_total = 0.0
        self._pending_load_s = 0.0

    # --- lookup ------------------------------------------------------------------------------------
    def _lower_hits(self, seq: Seq, gpu_hits: int) -> list[Tier]:
        """The tier of each block past the ``gpu_hits`` GPU hits that a lower tier holds, up to the first miss."""
        if not seq.req.prefix_hashes and not seq.num_preemptions:
            return []
        limit = (seq.num_tokens - 1) // self.block_size
        out: list[Tier] = []
        for h in self._block_hashes(seq, limit)[gpu_hits:]:
            if h in self.host:
                out.append(self.host)
            elif self.disk is not None and h in self.disk:
                out.append(self.disk)
            else:
                break
        return out

    def match_prefix(self, seq: Seq) -> int:
        if not self._fresh(seq):
            return 0
        gpu = len(self._hits(seq))
        return (gpu + len(self._lower_hits(seq, gpu))) * self.block_size

    def allocate(self, seq: Seq, num_tokens: int) -> bool:
        if not self._fresh(seq):
            return super().allocate(seq, num_tokens)
        gpu = len(self._hits(seq))
        lower = self._lower_hits(seq, gpu)
        hashes = self._block_hashes(seq, gpu + len(lower))[gpu:gpu + len(lower)]
        if self.blocks_needed(seq, num_tokens) > self.num_free_blocks:
            return False
        for h, tier in zip(hashes, lower, strict=True):  # most recent first: the GPU evictions below push
            tier.touch(h)                                 # into these tiers and must not drop them
        super().allocate(seq, num_tokens)
        self._load(hashes, lower)
        return True

    def _load(self, hashes: list[int], tiers: list[Tier]) -> None:
        """Account the copy of the lower-tier hits into the blocks just allocated for them."""
        if not hashes:
            return
        bs, nbytes = self.block_size, self.block_bytes
        n_disk = 0
        for h, tier in zip(hashes, tiers, strict=True):
            tier.num_hit_blocks += 1
            if tier is self.disk:  # promoted: read from disk into host memory, then over PCIe
                n_disk += 1
                if h in self.disk:
                    self.disk.remove(h)
                self._push_host(h)
        n_host = len(hashes) - n_disk
        self.num_host_hit_tokens += n_host * bs
        self.num_disk_hit_tokens += n_disk * bs
        seconds = self.host.latency_s + len(hashes) * nbytes / self.host.bytes_per_s
        if n_disk:
            seconds += n_disk * nbytes / self.disk.bytes_per_s
        self.num_loaded_bytes += len(hashes) * nbytes
        self._pending_load_s += seconds

    # --- eviction goes down a tier --------------------------------------------------------------------
    def _take(self, n: int) -> list[int]:
        evicted = [h for b in self.free_queue(n) if (h := self._hash[b]) is not None]
        out = super()._take(n)
        for h in evicted:
            if h not in self._cached:  # the last GPU copy of that content is gone
                self._push_host(h)
        return out

    def _push_host(self, h: int) -> None:
        if self.host.capacity <= 0:
            self._push_disk(h)
            return
        old = self.host.put(h)
        if old is not None:
            self._push_disk(old)

    def _push_disk(self, h: int) -> None:
        if self.disk is not None and self.disk.capacity > 0:
            self.disk.put(h)

    # --- timing hook ------------------------------------------------------------------------------------
    def take_load_s(self) -> float:
        """Seconds of tier loads accounted since the last call (the step about to run waits for them)."""
        s, self._pending_load_s = self._pending_load_s, 0.0
        self.load_s_total += s
        return s

    def step_with_load(self, gpu_s: float, load_s: float) -> float:
        """The step's GPU seconds once it waits for ``load_s`` of loads (module docstring)."""
        if load_s <= 0:
            return gpu_s
        if not self.layerwise:
            return gpu_s + load_s
        return max(gpu_s, load_s) + min(gpu_s, load_s) / self.num_layers

    def tier_stats(self) -> dict[str, float]:
        out = {"kv_cpu_hit_tokens": self.num_host_hit_tokens, "kv_disk_hit_tokens": self.num_disk_hit_tokens,
               "kv_cpu_written_blocks": self.host.num_written, "kv_cpu_evicted_blocks": self.host.num_evicted,
               "kv_cpu_blocks": len(self.host), "kv_cpu_capacity_blocks": self.host.capacity,
               "kv_tier_loaded_bytes": self.num_loaded_bytes, "kv_tier_load_s": self.load_s_total}
        if self.disk is not None:
            out.update(kv_disk_written_blocks=self.disk.num_written, kv_disk_evicted_blocks=self.disk.num_evicted,
                       kv_disk_blocks=len(self.disk))
        return out

    def check(self) -> None:
        super().check()
        for tier in (self.host, self.disk):
            if tier is not None:
                assert len(tier) <= tier.capacity, (tier.name, len(tier), tier.capacity)
                assert tier.num_written - tier.num_evicted == len(tier), (tier.name, tier.num_written,
                                                                         tier.num_evicted, len(tier))
