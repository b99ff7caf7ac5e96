"""Parallel sampling (``n`` outputs per request) as vLLM v1 serves it: the request is fanned out into ``n``
child requests with the same prompt (``vllm/v1/engine/parallel_sampling.py`` ``ParentRequest``, v0.15.1:
children ``{index}_{request_id}``, the parent's output complete when every child has finished), and the
children share the prompt's KV through the prefix cache.

Content identity: a child's prompt is described at 16-token granularity (``prefix_chunk_tokens = 16``, a
divisor of every block size vLLM uses) by the parent's prefix ids where it has them, else by an id unique
to the parent; only the pieces wholly inside the prompt carry ids, so the block holding the prompt's last
tokens and the first outputs is each child's own: copy on write at the first divergent block (vLLM v1
recomputes that partial block per child rather than copying it; the cost is the same few tokens).
``share_prompt: false`` gives the naive alternative: ``n`` independent requests, nothing shared.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import replace

from llmsim.workload.request import Request

PIECE_TOKENS = 16


def _prompt_ids(req: Request, own: int) -> tuple[int, ...]:
    pieces = req.input_tokens // PIECE_TOKENS
    ids, chunk = req.prefix_hashes, req.prefix_chunk_tokens
    out = []
    for p in range(pieces):
        c = ((p + 1) * PIECE_TOKENS - 1) // chunk
        out.append(ids[c] if c < len(ids) else own)
    return tuple(out)


def fan_out(requests: Iterable[Request], n: int, share_prompt: bool = True) -> Iterator[Request]:
    """Each request as ``n`` children (same id, arrival, prompt and output length), in order."""
    if n == 1:
        yield from requests
        return
    for counter, req in enumerate(requests):
        if share_prompt:
            child = replace(req, prefix_hashes=_prompt_ids(req, -(1 << 40) - counter), prefix_chunk_tokens=PIECE_TOKENS)
        else:
            child = replace(req, prefix_hashes=())
        for _ in range(n):
            yield child
