"""KV-cache managers: contiguous reservation, paged blocks, prefix (radix) cache, host/disk tiers below it, CPU swap space.

Build one with ``KV_MANAGERS.build({"kind": "paged", ...}, num_blocks=..., block_size=...)``.
"""

from llmsim.kv.base import KV_MANAGERS, KVManager, ceil_div
from llmsim.kv.contiguous import ContiguousKV
from llmsim.kv.paged import PagedKV
from llmsim.kv.prefix import PrefixCacheKV
from llmsim.kv.swap import SwapSpace
from llmsim.kv.tiers import TieredPrefixKV
from llmsim.kv.window import WindowedKV

__all__ = ["KV_MANAGERS", "ContiguousKV", "KVManager", "PagedKV", "PrefixCacheKV", "SwapSpace", "TieredPrefixKV", "WindowedKV",
           "ceil_div"]
