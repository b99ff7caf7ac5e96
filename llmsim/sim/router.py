"""Routers moved to ``llmsim.routing`` (pure policies); kept importable from here."""

from llmsim.routing import ROUTERS, LeastLoadedRouter, ReplicaView, RoundRobinRouter, Router

__all__ = ["ROUTERS", "LeastLoadedRouter", "ReplicaView", "RoundRobinRouter", "Router"]
