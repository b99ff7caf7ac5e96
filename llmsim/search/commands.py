"""``llmsim search SPEC.yaml --out DIR``: which deployment to run (screen, allocation ILP, DES check)."""

from __future__ import annotations


def cmd_search(args) -> int:
    from llmsim.search.run import search

    search(args.spec, args.out, jobs=args.jobs, executor=args.executor)
    print(f"results in {args.out}: search.csv, pareto.png, winner-*.yaml, discards.csv")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "search", help="search deployments: analytic screen, allocation ILP (pulp/CBC), DES check of the best",
        description="Screen every candidate configuration with analytic bounds, allocate replicas to GPU types "
                    "with an integer program, verify the top allocations in the simulator (goodput by bisection "
                    "on the rate), and write a table, a Pareto plot, the winner as an experiment YAML and the "
                    "discard log. Re-running with the same --out resumes: finished simulations are kept.")
    p.add_argument("spec", help="search spec YAML (see llmsim.search.spec)")
    p.add_argument("--out", required=True, help="results directory")
    p.add_argument("--jobs", type=int, default=1, help="parallel worker processes per DES trial (its seeds)")
    p.add_argument("--executor", default="local", choices=("local", "dask"), help="local (default) or dask")
    p.set_defaults(func=cmd_search)
