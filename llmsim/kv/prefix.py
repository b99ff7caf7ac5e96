"""Paged KV with automatic prefix caching: a radix tree over full prompt blocks, LRU eviction.

Mirrors vLLM v1's prefix caching (``KVCacheManager`` + ``BlockPool``, v0.8-0.10) at block granularity:
only full blocks of the prompt are cached; a cached block whose last user ends stays in the tree as
*evictable* and still counts as free; new allocations evict the least recently freed ones first (a
request's blocks are released tail first, so deeper blocks go before their parents); at most
``prompt - 1`` tokens are served from the cache (the last prompt token is always recomputed to sample).

Block content comes from the request's ``prefix_hashes`` (one id per ``prefix_chunk_tokens`` chunk, as the
Mooncake trace's ``hash_ids``): block ``j`` is identified by its path from the root plus the id of the chunk
holding its last token. Shared-prompt groups are expressed the same way (equal leading ids). Requests
without hashes never hit and are not cached.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

from llmsim.kv.base import KV_MANAGERS, KVManager, ceil_div

if TYPE_CHECKING:
    from llmsim.sched.seq import Seq


class _Node:
    __slots__ = ("key", "parent", "children", "ref")

    def __init__(self, key: int, parent: _Node | None) -> None:
        self.key = key
        self.parent = parent
        self.children: dict[int, _Node] = {}
        self.ref = 0


@KV_MANAGERS.register("prefix")
class PrefixCacheKV(KVManager):
    """Paged blocks plus a radix tree of cached prompt blocks. Counters: ``num_query_tokens`` (prompt
    tokens looked up on admission), ``num_hit_tokens``, ``num_evicted`` (blocks)."""

    name = "prefix"
    supports_prefix = True

    def __init__(self, num_blocks: int, block_size: int = 16, watermark: float = 0.0) -> None:
        super().__init__(num_blocks, block_size, watermark)
        self.root = _Node(-1, None)
        self._paths: dict[int, list[_Node]] = {}  # seq key -> cached blocks it uses, root-first
        self._evictable: OrderedDict[_Node, None] = OrderedDict()  # ref == 0, least recently freed first
        self.num_query_tokens = 0
        self.num_hit_tokens = 0
        self.num_evicted = 0

    # --- block identity ----------------------------------------------------------------------------
    def _cacheable_blocks(self, seq: Seq) -> int:
        req = seq.req
        if not req.prefix_hashes:
            return 0
        return min(req.input_tokens, len(req.prefix_hashes) * req.prefix_chunk_tokens) // self.block_size

    def _key(self, seq: Seq, j: int) -> int:
        req = seq.req
        return req.prefix_hashes[((j + 1) * self.block_size - 1) // req.prefix_chunk_tokens]

    def _match_nodes(self, seq: Seq) -> list[_Node]:
        limit = min(self._cacheable_blocks(seq), (seq.num_tokens - 1) // self.block_size)
        node, path = self.root, []
        for j in range(limit):
            node = node.children.get(self._key(seq, j))
            if node is None:
                break
            path.append(node)
        return path

    # --- queries -------------------------------------------------------------------------------------
    def _fresh(self, seq: Seq) -> bool:
        return seq.key not in self._held and seq.key not in self._paths

    def match_prefix(self, seq: Seq) -> int:
        if not self._fresh(seq):
            return 0
        return len(self._match_nodes(seq)) * self.block_size

    def blocks_needed(self, seq: Seq, num_tokens: int) -> int:
        target = ceil_div(num_tokens, self.block_size)
        if self._fresh(seq):
            path = self._match_nodes(seq)
            idle_hits = sum(1 for n in path if n.ref == 0)  # leave the free pool when reused
            return max(0, target - len(path)) + idle_hits
        have = self._held.get(seq.key, 0) + len(self._paths.get(seq.key, ()))
        return max(0, target - have)

    @property
    def num_cached_idle_blocks(self) -> int:
        return len(self._evictable)

    # --- verbs ---------------------------------------------------------------------------------------
    def allocate(self, seq: Seq, num_tokens: int) -> bool:
        path = self._paths.get(seq.key)
        if path is None:
            return self._allocate_fresh(seq, num_tokens)
        need = -(-num_tokens // self.block_size) - self._held.get(seq.key, 0) - len(path)
        if need <= 0:
            return True
        if need > self.num_free_blocks:
            return False
        self._take(seq, need)
        return True

    def _allocate_fresh(self, seq: Seq, num_tokens: int) -> bool:
        if self.blocks_needed(seq, num_tokens) > self.num_free_blocks:
            return False
        path = self._match_nodes(seq)
        self.num_query_tokens += seq.req.input_tokens
        self.num_hit_tokens += len(path) * self.block_size
        for node in path:
            self._acquire(node)
        self._paths[seq.key] = path
        need = ceil_div(num_tokens, self.block_size) - len(path)
        if need > 0:
            self._take(seq, need)
        return True

    def _take(self, seq: Seq, need: int) -> None:
        self._evict(need - (self.num_free_blocks - len(self._evictable)))
        self._held[seq.key] = self._held.get(seq.key, 0) + need
        self.num_free_blocks -= need
        self.num_allocated += need

    def _acquire(self, node: _Node) -> None:
        if node.ref == 0:
            del self._evictable[node]
            self.num_free_blocks -= 1
            self.num_allocated += 1
        node.ref += 1

    def _evict(self, count: int) -> None:
        """Turn ``count`` evictable cached blocks into plain free ones, least recently freed first."""
        while count > 0:
            node, _ = self._evictable.popitem(last=False)
            count -= self._drop_subtree(node)

    def _drop_subtree(self, node: _Node) -> int:
        # Descendants of an idle block are idle too and become unreachable once it goes.
        if node.parent is not None:
            node.parent.children.pop(node.key, None)
            node.parent = None
        dropped, stack = 1, list(node.children.values())
        node.children = {}
        while stack:
            child = stack.pop()
            self._evictable.pop(child, None)
            stack.extend(child.children.values())
            child.children = {}
            dropped += 1
        self.num_evicted += dropped
        return dropped

    def on_computed(self, seq: Seq) -> None:
        """Move newly completed, cacheable prompt blocks of ``seq`` into the tree."""
        path = self._paths.get(seq.key)
        if path is None:
            return
        full = min(self._cacheable_blocks(seq), seq.num_computed // self.block_size)
        parent = path[-1] if path else self.root
        for j in range(len(path), full):
            key = self._key(seq, j)
            node = parent.children.get(key)
            if node is None:
                node = _Node(key, parent)
                parent.children[key] = node
                node.ref = 1
            else:  # computed concurrently by another request: share theirs, return ours
                self._acquire(node)
                self.num_free_blocks += 1
                self.num_freed += 1
            self._held[seq.key] -= 1
            path.append(node)
            parent = node

    def free(self, seq: Seq) -> int:
        released = super().free(seq)
        for node in reversed(self._paths.pop(seq.key, [])):
            node.ref -= 1
            if node.ref == 0:
                self._evictable[node] = None
                self.num_free_blocks += 1
                self.num_freed += 1
                released += 1
        return released
