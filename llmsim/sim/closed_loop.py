"""Closed-loop traffic: N users, each sending its next request a think time after its previous one ends.

Driven from a description with ``users``, ``start_times_s()`` and ``think_s(rng)`` (the workload package's
``ClosedLoop``) and an iterator of request contents whose ``arrival_s`` is a placeholder: the driver sets
the real arrival time (``dataclasses.replace``) when a user sends it. A user's next request goes out
``think_s`` after the client sees the previous one end (finish plus front-end overhead, or rejection).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import simpy

from llmsim.workload.request import Request


class ClosedLoopDriver:
    """Issues requests for ``loop.users`` users until ``requests`` is exhausted."""

    def __init__(self, env: simpy.Environment, loop: Any, requests: Iterator[Request], rng: np.random.Generator,
                 submit: Callable[[Request], None]) -> None:
        self.env = env
        self.loop = loop
        self.requests = requests
        self.rng = rng
        self.submit = submit
        self._owner: dict[int, int] = {}  # request id -> user

    def start(self) -> None:
        for user, t0 in enumerate(np.asarray(self.loop.start_times_s(), dtype=float)):
            self.env.process(self._issue(user, float(t0)))

    def _issue(self, user: int, at_s: float):
        if at_s > self.env.now:
            yield self.env.timeout(at_s - self.env.now)
        req = next(self.requests, None)
        if req is None:
            return
        req = dataclasses.replace(req, arrival_s=self.env.now)
        self._owner[req.id] = user
        self.submit(req)

    def on_end(self, req: Request, client_time_s: float) -> None:
        user = self._owner.pop(req.id, None)
        if user is not None:
            self.env.process(self._issue(user, client_time_s + float(self.loop.think_s(self.rng))))
