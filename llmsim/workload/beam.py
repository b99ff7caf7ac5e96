"""Beam search of width ``w`` as vLLM v1 runs it: outside the engine (``vllm/entrypoints/llm.py``
``LLM.beam_search`` and ``vllm/engine/protocol.py`` ``EngineClient.beam_search``, v0.15.1). Each step sends
one request per beam with ``max_tokens=1`` (and ``2w`` logprobs), its prompt the original prompt plus the
beam's tokens so far; the next step starts when every beam of this one has returned, and the search ends
after ``output_tokens`` steps. The KV is forked through the prefix cache: every beam request hits the full
blocks it shares with the prompt and with its own earlier steps, and recomputes the rest (its last,
partly filled block: copy on write at the first divergent block).

Modelled lineage: beam b keeps extending its own history (the surviving beams are not reshuffled among
parents). Reshuffling would make a new beam hit its new parent's blocks instead of its own, with the same
number of shared full blocks, so the compute and KV per step are the same to within a block.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

from llmsim.workload.parallel import PIECE_TOKENS, _prompt_ids
from llmsim.workload.request import Request


@dataclass
class _Search:
    parent: Request
    uid: int
    prompt_ids: tuple[int, ...]
    step: int = 0
    pending: int = 0


class BeamSearch:
    """``initial(requests)``: the first step's beam requests of every parent, in order; ``callback`` (the
    simulator's ``arrivals_callback``) issues the next step when the last beam of a step ends."""

    def __init__(self, width: int) -> None:
        if not isinstance(width, int) or isinstance(width, bool) or width < 1:
            raise ValueError(f"beam_width: must be a positive integer, got {width!r}")
        self.width = width
        self._of: dict[int, _Search] = {}  # id() of an in-flight beam request -> its search
        self._count = 0

    def initial(self, requests: Iterable[Request]) -> Iterator[Request]:
        for req in requests:
            self._count += 1
            uid = self._count
            search = _Search(req, uid, _prompt_ids(req, -(1 << 42) - uid))
            yield from self._step(search, req.arrival_s)

    def _beam_ids(self, s: _Search, beam: int, tokens: int) -> tuple[int, ...]:
        own = -(1 << 43) - s.uid * self.width - beam
        return s.prompt_ids + (own,) * (tokens // PIECE_TOKENS - len(s.prompt_ids))

    def _step(self, s: _Search, at_s: float) -> list[Request]:
        tokens = s.parent.input_tokens + s.step
        out = [replace(s.parent, arrival_s=at_s, input_tokens=tokens, output_tokens=1,
                       prefix_hashes=self._beam_ids(s, b, tokens), prefix_chunk_tokens=PIECE_TOKENS)
               for b in range(self.width)]
        s.pending = self.width
        for r in out:
            self._of[id(r)] = s
        return out

    def callback(self, req: Request, end_s: float) -> list[Request]:
        s = self._of.pop(id(req), None)
        if s is None:
            return []
        s.pending -= 1
        if s.pending or s.step + 1 >= s.parent.output_tokens:
            return []
        s.step += 1
        return self._step(s, end_s)
