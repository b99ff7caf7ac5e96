"""Replica-level batching policies: pure decision logic over a KV manager's verbs.

Build one with ``SCHEDULERS.build({"kind": "vllm", "mode": "v1", ...})``. Registered: ``static``,
``orca``, ``vllm`` (modes v0, v1), ``sarathi``, ``fastserve``, ``sjf``.
"""

from llmsim.sched.base import SCHEDULERS, Scheduler
from llmsim.sched.fastserve import FastServeScheduler
from llmsim.sched.iteration import IterationScheduler
from llmsim.sched.orca import OrcaScheduler
from llmsim.sched.plan import Plan
from llmsim.sched.sarathi import SarathiScheduler
from llmsim.sched.seq import Seq
from llmsim.sched.sjf import SJFScheduler
from llmsim.sched.static import StaticScheduler
from llmsim.sched.vllm import VllmV0Scheduler, VllmV1Scheduler, make_vllm

__all__ = [
    "SCHEDULERS", "FastServeScheduler", "IterationScheduler", "OrcaScheduler", "Plan", "SJFScheduler",
    "SarathiScheduler", "Scheduler", "Seq", "StaticScheduler", "VllmV0Scheduler", "VllmV1Scheduler", "make_vllm",
]
