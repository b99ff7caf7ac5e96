"""``llmsim policies``: list the registered batching policies, KV-cache managers, routers and migration
policies."""

from __future__ import annotations

import inspect


def _summary(factory) -> str:
    """First sentence of the factory's own docstring, else of its module's."""
    doc = inspect.cleandoc(factory.__doc__ or inspect.getmodule(factory).__doc__ or "")
    text = " ".join(doc.split("\n\n")[0].split())
    return text.split(". ")[0].rstrip(".")


def cmd_policies(args) -> int:
    from llmsim.kv import KV_MANAGERS
    from llmsim.routing import MIGRATIONS, ROUTERS
    from llmsim.sched import SCHEDULERS
    from llmsim.speculative import PROPOSERS

    for title, registry in (("schedulers", SCHEDULERS), ("kv managers", KV_MANAGERS), ("routers", ROUTERS),
                            ("migration", MIGRATIONS), ("speculative proposers", PROPOSERS)):
        print(f"{title}:")
        for name in registry.names():
            factory = registry.get(name)
            params = ", ".join(p for p in inspect.signature(factory).parameters if p not in ("num_blocks",))
            print(f"  {name:<12} {_summary(factory)}")
            print(f"  {'':<12} params: {params or '(none)'}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("policies", help="list batching policies, KV-cache managers, routers and migration policies")
    p.set_defaults(func=cmd_policies)
