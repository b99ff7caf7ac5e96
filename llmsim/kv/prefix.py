"""Paged KV with automatic prefix caching, as vLLM's V1 block pool does it.

Mirrors ``vllm/v1/core/{kv_cache_manager,block_pool,single_type_kv_cache_manager}.py`` (v0.15.1):

- every *full* block of a request is cached under a chained hash (its parent's hash and its content),
  prompt and generated tokens alike, so a preempted request re-hits its own prompt and output blocks;
- hashes are registered when blocks are allocated for the tokens a step schedules (``cache_blocks`` inside
  ``allocate_slots``), so two requests admitted in the same step share a prefix the first one is computing;
  blocks that fill during decode are registered at the latest when the request frees them (nothing but the
  request itself can hit its own output blocks while it runs);
- blocks are not de-duplicated: two requests that miss on the same content each compute and keep their own
  block, and a lookup returns the first one registered (``BlockHashToBlockMap.get_one_block``);
- one free queue holds every block with no user, cached or not: new blocks come from its head, evicting the
  cached hash of a block taken from there (``get_new_blocks`` / ``_maybe_evict_cached_block``); a request
  frees its blocks tail first, appended at the queue's tail (``free_blocks(reversed(req_blocks))``), so its
  deepest blocks are evicted first; a hit on a free cached block takes it out of the queue (``touch``);
- a lookup walks the request's block hashes from the first and stops at the first miss; at most
  ``num_tokens - 1`` tokens are served from the cache (the last one is recomputed to sample).

The free queue is a ``deque`` of block ids: new blocks leave from its head, freed ones join at its tail, both
O(1) and in bulk. A hit on a free block (``touch``) leaves its entry where it is and counts it stale
(``_stale[b]``); the queue's entries of a block other than its newest are all stale and all older, so the
head skips a block's entry while the block has stale ones. That is the order vLLM's doubly linked
``FreeKVCacheBlockQueue`` keeps, without a Python object per block; the queue is rebuilt without its stale
entries when they outnumber the blocks.

Block content: the request's ``prefix_hashes`` (one id per ``prefix_chunk_tokens`` tokens; equal ids at
equal positions mean equal content) name the content of the tokens they cover; every other token (the rest
of the prompt, the output) is unique to its request. A block's content key is the id of the chunk holding
its last token, so chunks of 16 tokens give exact block identity and coarser chunks (a trace's 512-token
``hash_ids``) imply sharing at block granularity within them.

A block of a request's own content (past what its prefix ids cover) can only ever be looked up by that
request, after a preemption, so registering it is deferred (``lazy_own``) to when the request frees it: a
preempted request registers those blocks then, in block order, exactly as they would have been registered
(no other request's lookups can differ); a finished one marks them ``OWN`` (cached, found by no lookup: an
eviction still counts them), since its content is never asked for again. Same block pool, same counters, no
per-block hashing while a request runs.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from llmsim.kv.base import KV_MANAGERS, KVManager, ceil_div

if TYPE_CHECKING:
    from llmsim.sched.seq import Seq
    from llmsim.workload.request import Request

OWN = -1  # ``_hash`` of a free block holding a finished request's own content (``hash()`` never returns -1)


@KV_MANAGERS.register("prefix")
class PrefixCacheKV(KVManager):
    """Block pool with a prefix cache. Counters: ``num_query_tokens`` (tokens looked up when a request is
    admitted), ``num_hit_tokens`` (of those, served from the cache), ``num_evicted`` (cached blocks whose hash
    was dropped to reuse the block)."""

    name = "prefix"
    supports_prefix = True
    in_block_decode_free = False  # allocate() registers a block that fills (cache_full_blocks)
    lazy_own = True  # own-content blocks registered when freed (module docstring); False: as they fill

    def __init__(self, num_blocks: int, block_size: int = 16, watermark: float = 0.0) -> None:
        super().__init__(num_blocks, block_size, watermark)
        self._free: deque[int] = deque(range(num_blocks))  # head = next to use; stale entries included
        self._stale = [0] * num_blocks  # entries of each block in ``_free`` that are not its current one
        self._num_stale = 0
        self._ref = [0] * num_blocks
        self._hash: list[int | None] = [None] * num_blocks
        self._cached: dict[int, int] = {}  # block hash -> the first registered block holding it
        self._more: dict[int, list[int]] = {}  # block hash -> the further blocks holding it, in registration order
        self._blocks: dict[int, list[int]] = {}  # seq key -> its blocks, in token order
        self._num_cached: dict[int, int] = {}  # seq key -> how many of its leading blocks are registered
        self._hashes: dict[int, list[int]] = {}  # seq key -> chained hashes of its full blocks so far
        self.num_query_tokens = 0
        self.num_hit_tokens = 0
        self.num_evicted = 0

    # --- block identity ----------------------------------------------------------------------------
    def _content(self, seq: Seq, j: int) -> int:
        req = seq.req
        ids = req.prefix_hashes
        if ids:
            c = ((j + 1) * self.block_size - 1) // req.prefix_chunk_tokens
            if c < len(ids):
                return ids[c]
        return -1 - seq.key  # tokens no prefix id covers are this request's own

    def _block_hashes(self, seq: Seq, count: int) -> list[int]:
        """Chained hashes of the first ``count`` blocks of ``seq`` (computed once, extended as it grows)."""
        hashes = self._hashes.setdefault(seq.key, [])
        start = len(hashes)
        if start >= count:
            return hashes
        parent = hashes[-1] if hashes else 0
        req, bs = seq.req, self.block_size
        ids, own = req.prefix_hashes, -1 - seq.key
        if not ids:  # every block is this request's own content (``_content``, inlined: a hot loop)
            for _ in range(start, count):
                parent = hash((parent, own))
                hashes.append(parent)
            return hashes
        chunk, n_ids = req.prefix_chunk_tokens, len(ids)
        for j in range(start, count):
            c = ((j + 1) * bs - 1) // chunk
            parent = hash((parent, ids[c] if c < n_ids else own))
            hashes.append(parent)
        return hashes

    def _hits(self, seq: Seq) -> list[int]:
        """Cached blocks matching the start of ``seq`` (``find_longest_cache_hit``)."""
        if not seq.req.prefix_hashes and not seq.num_preemptions:
            return []  # unique content never seen before: nothing can match
        limit = (seq.num_tokens - 1) // self.block_size
        hits = []
        cached = self._cached
        for h in self._block_hashes(seq, limit)[:limit]:  # the list may run longer (blocks of draft tokens)
            b = cached.get(h)
            if b is None:
                break
            hits.append(b)
        return hits

    def cached_tokens(self, req: Request) -> int:
        """Leading prompt tokens of a new request ``req`` this cache holds now (what admission would hit, if
        nothing is evicted first). Read-only: routers probe every replica with it."""
        ids = req.prefix_hashes
        if not ids:
            return 0
        bs, chunk = self.block_size, req.prefix_chunk_tokens
        limit = min((req.input_tokens - 1) // bs, (len(ids) * chunk) // bs)  # blocks the prefix ids cover
        parent, cached, n = 0, self._cached, 0
        for j in range(limit):
            parent = hash((parent, ids[((j + 1) * bs - 1) // chunk]))
            if parent not in cached:
                break
            n += 1
        return n * bs

    # --- queries -------------------------------------------------------------------------------------
    def _fresh(self, seq: Seq) -> bool:
        return seq.key not in self._blocks

    def held_blocks(self, seq: Seq) -> int:
        return len(self._blocks.get(seq.key, ()))

    def match_prefix(self, seq: Seq) -> int:
        if not self._fresh(seq):
            return 0
        return len(self._hits(seq)) * self.block_size

    def blocks_needed(self, seq: Seq, num_tokens: int) -> int:
        target = ceil_div(num_tokens, self.block_size)
        if self._fresh(seq):
            hits = self._hits(seq)
            idle = sum(1 for b in hits if self._ref[b] == 0)  # leave the free queue when touched
            return max(0, target - len(hits)) + idle
        return max(0, target - len(self._blocks[seq.key]))

    @property
    def num_cached_idle_blocks(self) -> int:
        return sum(1 for b in self.free_queue() if self._hash[b] is not None)

    def free_queue(self, n: int | None = None) -> list[int]:
        """The free blocks in queue order, head first (the first ``n`` of them: the next ``_take(n)``)."""
        out: list[int] = []
        if n is not None and n <= 0:
            return out
        skip: dict[int, int] = {}
        stale = self._stale
        for b in self._free:
            s = stale[b] - skip.get(b, 0)
            if s > 0:  # one of its stale entries
                skip[b] = skip.get(b, 0) + 1
                continue
            out.append(b)
            if n is not None and len(out) >= n:
                break
        return out

    def _compact(self) -> None:
        """Drop the stale entries from the free queue (order kept)."""
        self._free = deque(self.free_queue())
        self._stale = [0] * self.num_blocks
        self._num_stale = 0

    # --- verbs ---------------------------------------------------------------------------------------
    def allocate(self, seq: Seq, num_tokens: int) -> bool:
        blocks = self._blocks.get(seq.key)
        if blocks is not None:  # a running sequence grows (the general path below, for this case)
            need = ceil_div(num_tokens, self.block_size) - len(blocks)
            if need > self.num_free_blocks:
                return False
            if need > 0:
                blocks.extend(self._take(need))
            self._register(seq, min(num_tokens, seq.num_tokens) // self.block_size)
            return True
        fresh = self._fresh(seq)
        if self.blocks_needed(seq, num_tokens) > self.num_free_blocks:
            return False
        if fresh:
            hits = self._hits(seq)
            self.num_query_tokens += seq.num_tokens
            self.num_hit_tokens += len(hits) * self.block_size
            for b in hits:
                self._touch(b)
            self._blocks[seq.key] = list(hits)
            self._num_cached[seq.key] = len(hits)
        blocks = self._blocks[seq.key]
        need = ceil_div(num_tokens, self.block_size) - len(blocks)
        if need > 0:
            blocks.extend(self._take(need))
        self._register(seq, min(num_tokens, seq.num_tokens) // self.block_size)
        return True

    def grow_run(self, seqs: list[Seq], k: int) -> int:
        """``KVManager.grow_run`` with one ``_take`` for all of the run's new blocks, handed out in order: the
        blocks and counters come out as ``allocate`` one by one leaves them. Taking every block before the
        registrations (rather than in turn) changes nothing: a registration appends a held block to its
        hash's holders and an eviction removes a free one, and the two commute. A subclass that acts on each
        take (``TieredPrefixKV``), a sequence not yet allocated, or a run that does not fit goes one by one."""
        if type(self)._take is not PrefixCacheKV._take:
            return super().grow_run(seqs, k)
        bs, blocks_of = self.block_size, self._blocks
        grows = []
        total = 0
        for seq in seqs:
            blocks = blocks_of.get(seq.key)
            if blocks is None:
                return super().grow_run(seqs, k)
            target = seq.num_computed + k
            need = -(-target // bs) - len(blocks)
            if need > 0:
                total += need
            grows.append((seq, blocks, need, target))
        if total > self.num_free_blocks:
            return super().grow_run(seqs, k)
        new = self._take(total) if total else []
        i = 0
        for seq, blocks, need, target in grows:
            if need > 0:
                blocks.extend(new[i:i + need])
                i += need
            self._register(seq, min(target, seq.num_tokens) // bs)
        return -1

    def _touch(self, b: int) -> None:
        if self._ref[b] == 0:  # out of the free queue: its entry there goes stale
            self._stale[b] += 1
            self._num_stale += 1
            self.num_free_blocks -= 1
            self.num_allocated += 1
        self._ref[b] += 1

    def _take(self, n: int) -> list[int]:
        """``n`` blocks from the head of the free queue, dropping the cached hashes they held."""
        pop = self._free.popleft
        if self._num_stale:
            out = []
            add, stale = out.append, self._stale
            for _ in range(n):
                b = pop()
                while stale[b]:  # an entry left behind by a hit on a free block
                    stale[b] -= 1
                    self._num_stale -= 1
                    b = pop()
                add(b)
        else:  # no stale entries: the next n entries are the blocks
            out = [pop() for _ in range(n)]
        hashes, ref = self._hash, self._ref
        evicted = 0
        for b in out:  # one pass: drop the hashes the blocks held (most free blocks hold one), take a ref
            h = hashes[b]
            if h is not None:
                evicted += 1
                if h != OWN:  # OWN: no lookup finds it, nothing to unregister
                    if h in self._more:
                        self._evict_shared(b, h)
                    else:  # its only holder
                        del self._cached[h]
                hashes[b] = None
            ref[b] = 1
        self.num_evicted += evicted
        self.num_free_blocks -= n
        self.num_allocated += n
        return out

    def _evict_shared(self, b: int, h: int) -> None:
        """Drop block ``b`` from the holders of hash ``h`` (which has more than one)."""
        more = self._more[h]
        if self._cached[h] == b:
            self._cached[h] = more.pop(0)
        else:
            more.remove(b)
        if not more:
            del self._more[h]

    def _register(self, seq: Seq, full: int) -> None:
        """Cache the first ``full`` blocks of ``seq`` (``cache_full_blocks``), skipping those already cached."""
        done = self._num_cached.get(seq.key, 0)
        if full <= done:
            return
        self._num_cached[seq.key] = full
        if self.lazy_own:  # own-content blocks wait for free()
            full = min(full, self._shared_blocks(seq))
        if full > done:
            self._cache_blocks(seq, range(done, full))

    def _shared_blocks(self, seq: Seq) -> int:
        """Leading blocks whose content the request's prefix ids name (``_content``); the rest are its own."""
        req = seq.req
        return (len(req.prefix_hashes) * req.prefix_chunk_tokens) // self.block_size if req.prefix_hashes else 0

    def _cache_blocks(self, seq: Seq, js) -> None:
        """Register blocks ``js`` (indices, increasing) of ``seq`` under their chained hashes."""
        blocks = self._blocks[seq.key]
        hashes = self._block_hashes(seq, js[-1] + 1)
        block_hash, first = self._hash, self._cached.setdefault
        for j in js:
            b, h = blocks[j], hashes[j]
            block_hash[b] = h
            if first(h, b) != b:  # already held by an earlier block
                self._more.setdefault(h, []).append(b)

    def _settle_own(self, seq: Seq, blocks: list[int]) -> None:
        """At free: the own-content blocks registration deferred (``lazy_own``), those not already cached (hits
        of a preempted request's earlier life): registered if ``seq`` may look them up again, else ``OWN``."""
        start, full = self._shared_blocks(seq), self._num_cached.get(seq.key, 0)
        if full <= start:
            return
        hashes = self._hash
        if seq.status == "finished":
            for b in blocks[start:full]:
                if hashes[b] is None:
                    hashes[b] = OWN
            return
        todo = [j for j in range(start, full) if hashes[blocks[j]] is None]
        if todo:
            self._cache_blocks(seq, todo)

    def free(self, seq: Seq) -> int:
        blocks = self._blocks.get(seq.key)
        if blocks is None:
            return 0
        # Blocks that filled during decode are registered now, then everything is released.
        self._register(seq, min(seq.num_computed, len(blocks) * self.block_size) // self.block_size)
        if self.lazy_own:
            self._settle_own(seq, blocks)
        del self._blocks[seq.key]
        self._num_cached.pop(seq.key, None)
        if seq.status == "finished":  # a preempted request looks its own blocks up again; a finished one not
            self._hashes.pop(seq.key, None)
        ref, back = self._ref, []
        add = back.append
        for b in reversed(blocks):  # tail first: the deepest blocks are evicted first
            r = ref[b] - 1
            ref[b] = r
            if r == 0:
                add(b)
        self._free.extend(back)
        released = len(back)
        self.num_free_blocks += released
        self.num_freed += released
        if self._num_stale > self.num_blocks:
            self._compact()
        return released

    def check(self) -> None:
        super().check()
        queue = self.free_queue()
        assert len(queue) == self.num_free_blocks, (len(queue), self.num_free_blocks)
        assert len(self._free) == len(queue) + self._num_stale == len(queue) + sum(self._stale)
        assert len(set(queue)) == len(queue)
        held = sum(len(b) for b in self._blocks.values())
        assert sum(self._ref) == held, (sum(self._ref), held)
        for b in queue:
            assert self._ref[b] == 0, b
        for b, h in enumerate(self._hash):
            assert h != OWN or self._ref[b] == 0, b  # nobody can hit an OWN block
        for h, b in self._cached.items():
            assert self._hash[b] == h, (b, h)
        for h, blocks in self._more.items():
            assert blocks and h in self._cached, h
            for b in blocks:
                assert self._hash[b] == h, (b, h)
