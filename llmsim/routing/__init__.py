"""Cluster-level policies, pure like schedulers: routers (which replica, or which prefill and which decode
replica, serves a request) and live-migration decisions. Registered by name; a new policy is one file.

Routers: ``round_robin`` (default), ``random``, ``least_outstanding`` (alias ``least_loaded``),
``least_kv``, ``power_of_two``, ``prefix_affinity``. Migration: ``llumnix``.
"""

from llmsim.routing.base import ROUTERS, ReplicaView, Router
from llmsim.routing.least_loaded import LeastKVRouter, LeastLoadedRouter, LeastOutstandingRouter
from llmsim.routing.migration import MIGRATIONS, LlumnixMigration, MigrationPolicy
from llmsim.routing.power_of_two import PowerOfTwoRouter
from llmsim.routing.prefix_affinity import PrefixAffinityRouter
from llmsim.routing.round_robin import RoundRobinRouter
from llmsim.routing.uniform import RandomRouter

__all__ = [
    "MIGRATIONS", "ROUTERS", "LeastKVRouter", "LeastLoadedRouter", "LeastOutstandingRouter", "LlumnixMigration",
    "MigrationPolicy", "PowerOfTwoRouter", "PrefixAffinityRouter", "RandomRouter", "ReplicaView",
    "RoundRobinRouter", "Router",
]
