"""Prompt prefix structure: which prompt blocks requests share, for prefix caching.

A prefix model turns the sampled *new* prompt tokens of each request into its full prompt length and its
``prefix_hashes`` (one id per ``chunk`` prompt tokens, as in the Mooncake trace: equal ids at equal positions
mean identical content up to there). Models are immutable specs; ``start()`` returns the mutable state of one
generation run, so one spec can generate many independent streams.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from llmsim.errors import ConfigError
from llmsim.registry import Registry
from llmsim.workload.lengths import LENGTHS, Fixed, LengthDist

PREFIXES: Registry[object] = Registry("prefix model")


MAX_GROUPS = 1_000_000  # groups and sessions: their popularity weights and state are kept in arrays
MAX_TOKENS = 1_000_000_000  # a system prompt beyond any model's context (lengths are int64 arrays)


def _count(name: str, value: object, low: int, high: int | None = None) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name!r} must be an integer >= {low}, got {value!r}")
    if high is not None and value > high:
        raise ValueError(f"{name!r} must be at most {high:,}, got {value!r}")



def _skew(value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf:
        raise ValueError(f"'skew' must be a finite number >= 0, got {value!r}")


class _Ids:
    """Hands out fresh block ids (never shared by construction)."""

    def __init__(self, start: int) -> None:
        self.next = start

    def take(self, n: int) -> list[int]:
        ids = list(range(self.next, self.next + n))
        self.next += n
        return ids


@dataclass(frozen=True, slots=True)
class _SystemPrompts:
    """``groups`` system prompts of ``tokens`` tokens; group g owns block ids g*k .. g*k+k-1 (k full blocks).

    Only full blocks are shared: the block where the system prompt ends also holds user text, so it differs.
    """

    groups: int
    tokens: int
    skew: float
    chunk: int

    @property
    def blocks(self) -> int:
        return self.tokens // self.chunk

    def choose(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Group of each of n requests: uniform, or Zipf(skew) popularity when skew > 0."""
        if self.groups == 1:
            return np.zeros(n, dtype=np.int64)
        if self.skew == 0:
            return rng.integers(0, self.groups, n)
        weights = np.arange(1, self.groups + 1, dtype=np.float64) ** -self.skew
        return rng.choice(self.groups, size=n, p=weights / weights.sum())

    def ids(self, group: int, limit: float = math.inf) -> list[int]:
        """The group's block ids, the first ``limit`` of them (ids past the model's context are cut anyway)."""
        return list(range(group * self.blocks, group * self.blocks + int(min(self.blocks, limit))))


@PREFIXES.register("shared_system_prompt")
@dataclass(frozen=True, slots=True)
class SharedSystemPrompt:
    """Users in ``groups`` groups; each group's requests start with the same ``tokens``-token system prompt.

    The prompt is the system prompt followed by the sampled ``input_len`` tokens. Groups are picked
    uniformly, or with Zipf popularity exponent ``skew`` (a few very popular prompts).
    """

    groups: int
    tokens: int
    skew: float = 0.0

    def __post_init__(self) -> None:
        _count("groups", self.groups, 1, MAX_GROUPS)
        _count("tokens", self.tokens, 1, MAX_TOKENS)
        _skew(self.skew)

    def start(self, chunk: int, max_context: int | None) -> _SharedState:
        return _SharedState(_SystemPrompts(self.groups, self.tokens, self.skew, chunk), max_context)


class _SharedState:
    def __init__(self, prompts: _SystemPrompts, max_context: int | None = None) -> None:
        self.prompts = prompts
        self.ids = _Ids(prompts.groups * prompts.blocks)
        # a prompt is cut to the context later: no ids past it (a huge system prompt stays cheap)
        self.limit = -(-max_context // prompts.chunk) if max_context else math.inf

    def apply(self, user: np.ndarray, output: np.ndarray, rng: np.random.Generator):
        """Full prompt lengths, prefix hashes and session ids (None) for one chunk of requests."""
        p = self.prompts
        groups = p.choose(rng, len(user))
        inputs = user + p.tokens
        hashes = []
        for g, total in zip(groups.tolist(), inputs.tolist(), strict=True):
            shared = p.ids(g, self.limit)
            own = int(min(-(-total // p.chunk), self.limit)) - len(shared)
            hashes.append(tuple(shared + self.ids.take(own)))
        return inputs, hashes, [None] * len(user)


@PREFIXES.register("multi_turn")
@dataclass(frozen=True, slots=True)
class MultiTurn:
    """Multi-turn conversations: each turn's prompt is the whole conversation so far plus the new message.

    ``sessions`` conversations are open at once; each arrival continues one of them at random (so a
    conversation's turns are spread over time and interleaved with others), and a conversation that has had
    its ``turns`` turns (an integer or a length-distribution block) is replaced by a new one. The sampled
    ``input_len`` is the new user message per turn. Optional ``system_tokens`` / ``groups`` / ``skew`` add a
    shared system prompt at the start of each conversation. A conversation that would exceed the model
    context ends early (the user starts a new chat). Requests carry ``session_id``.
    """

    sessions: int = 16
    turns: int | dict | LengthDist = 5
    system_tokens: int = 0
    groups: int = 1
    skew: float = 0.0
    _turns: LengthDist = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _count("sessions", self.sessions, 1, MAX_GROUPS)
        _count("system_tokens", self.system_tokens, 0, MAX_TOKENS)
        _count("groups", self.groups, 1, MAX_GROUPS)
        _skew(self.skew)
        if isinstance(self.turns, dict):
            try:
                turns = LENGTHS.build(self.turns, where="turns")
            except ConfigError as exc:  # re-raised as ValueError so the caller prefixes file and field
                raise ValueError(str(exc)) from None
        elif isinstance(self.turns, int) and not isinstance(self.turns, bool) and self.turns >= 1:
            turns = Fixed(self.turns)
        elif isinstance(self.turns, LengthDist):
            turns = self.turns
        else:
            raise ValueError(
                f"'turns' must be an integer >= 1 or a length-distribution block, got {self.turns!r}"
            )
        object.__setattr__(self, "_turns", turns)

    def start(self, chunk: int, max_context: int | None) -> _MultiTurnState:
        prompts = _SystemPrompts(self.groups, self.system_tokens, self.skew, chunk)
        return _MultiTurnState(self, prompts, max_context or math.inf)


@dataclass(slots=True)
class _Conversation:
    session_id: int
    tokens: int  # conversation length so far (system prompt + all turns' inputs and outputs)
    block_ids: list[int]  # ids of its full blocks
    turns_left: int


class _MultiTurnState:
    def __init__(self, spec: MultiTurn, prompts: _SystemPrompts, max_context: float) -> None:
        self.spec, self.prompts, self.max_context = spec, prompts, max_context
        self.ids = _Ids(prompts.groups * prompts.blocks)
        self.open: list[_Conversation | None] = [None] * spec.sessions
        self.next_session = 0

    def _new(self, group: int, turns: int) -> _Conversation:
        chunk, ctx = self.prompts.chunk, self.max_context
        limit = -(-int(ctx) // chunk) if ctx < math.inf else math.inf  # ids past the context are cut anyway
        conv = _Conversation(self.next_session, self.prompts.tokens, self.prompts.ids(group, limit), turns)
        self.next_session += 1
        return conv

    def apply(self, user: np.ndarray, output: np.ndarray, rng: np.random.Generator):
        """Full prompt lengths, prefix hashes and session ids for one chunk of requests."""
        n, chunk = len(user), self.prompts.chunk
        slots = rng.integers(0, self.spec.sessions, n).tolist()
        groups = self.prompts.choose(rng, n).tolist()
        turns = self.spec._turns.sample(rng, n).tolist()
        inputs, hashes, sessions = np.empty(n, dtype=np.int64), [], []
        for i, (slot, u, o) in enumerate(zip(slots, user.tolist(), output.tolist(), strict=True)):
            conv = self.open[slot]
            if conv is None or conv.turns_left == 0 or conv.tokens + u + o > self.max_context:
                conv = self.open[slot] = self._new(groups[i], turns[i])
            prompt = conv.tokens + u
            kept = conv.block_ids[: prompt // chunk]
            ids = kept + self.ids.take(-(-int(min(prompt, self.max_context)) // chunk) - len(kept))
            # the prompt's last partial block gets this turn's output appended, so it changes: new id
            conv.block_ids = ids[: prompt // chunk] + self.ids.take((prompt + o) // chunk - prompt // chunk)
            conv.tokens, conv.turns_left = prompt + o, conv.turns_left - 1
            inputs[i] = prompt
            hashes.append(tuple(ids))
            sessions.append(conv.session_id)
        return inputs, hashes, sessions


PROMPT_ORDERS = ("round_robin", "random")


@PREFIXES.register("prompt_pool")
@dataclass(frozen=True, slots=True)
class PromptPool:
    """A fixed pool of ``groups`` x ``users_per_group`` prompts, sent again and again: the prompts of group g
    start with the same ``system_tokens``-token system prompt, then each has its own question whose length
    is drawn once (from ``input_len``) and kept. With ``order: round_robin`` request i sends prompt number
    ``i mod (groups * users_per_group)``, as inference-perf's ``shared_prefix`` data does (and vLLM's
    prefix-repetition benchmark); ``random`` picks one uniformly. Once a prompt has been seen, all of its full
    blocks can be prefix-cache hits."""

    groups: int
    users_per_group: int = 1
    system_tokens: int = 0
    order: str = "round_robin"

    def __post_init__(self) -> None:
        _count("groups", self.groups, 1)
        _count("users_per_group", self.users_per_group, 1)
        _count("system_tokens", self.system_tokens, 0)
        if self.order not in PROMPT_ORDERS:
            raise ValueError(f"'order' must be one of {', '.join(PROMPT_ORDERS)}, got {self.order!r}")

    @property
    def size(self) -> int:
        return self.groups * self.users_per_group

    def start(self, chunk: int, max_context: int | None) -> _PoolState:
        return _PoolState(self, _SystemPrompts(self.groups, self.system_tokens, 0.0, chunk))


class _PoolState:
    def __init__(self, spec: PromptPool, prompts: _SystemPrompts) -> None:
        self.spec, self.prompts = spec, prompts
        self.ids = _Ids(prompts.groups * prompts.blocks)
        self.pool: dict[int, tuple[int, tuple[int, ...]]] = {}  # prompt number -> (tokens, chunk ids)
        self.sent = 0

    def _prompt(self, number: int, question: int) -> tuple[int, tuple[int, ...]]:
        if number not in self.pool:
            p = self.prompts
            total = p.tokens + question
            group = number // self.spec.users_per_group
            own = -(-total // p.chunk) - p.blocks
            self.pool[number] = (total, tuple(p.ids(group) + self.ids.take(own)))
        return self.pool[number]

    def apply(self, user: np.ndarray, output: np.ndarray, rng: np.random.Generator):
        """Full prompt lengths, prefix hashes and session ids (the prompt number) for one chunk of requests."""
        n, size = len(user), self.spec.size
        if self.spec.order == "random":
            numbers = rng.integers(0, size, n).tolist()
        else:
            numbers = [(self.sent + i) % size for i in range(n)]
        self.sent += n
        inputs, hashes = np.empty(n, dtype=np.int64), []
        for i, (number, question) in enumerate(zip(numbers, user.tolist(), strict=True)):
            tokens, ids = self._prompt(number, int(question))
            inputs[i] = tokens
            hashes.append(ids)
        return inputs, hashes, numbers
