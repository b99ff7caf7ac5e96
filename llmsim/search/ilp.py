"""Allocation as an integer program (pulp with its bundled CBC; the only pulp importer in llmsim).

Given replica configurations that passed the screen (``Item``: a model, a role, a GPU type, GPUs, price,
TDP and an estimated capacity in requests/s), choose how many replicas of each to run:

    x_i in {0, 1, ...}     replicas of item i;  u_i in {0, 1}: item i is used (u_i <= x_i <= U_i u_i)
    w_m in {0, 1}          model m is served disaggregated (prefill + decode pools) rather than colocated
    served_m = sum_{mixed i of m} cap_i x_i + z_m,  z_m <= sum_{prefill i} cap_i x_i,  z_m <= sum_{decode i} cap_i x_i
    served_m >= lam * rate_m,  lam >= 1                  every model at (a common multiple of) its target rate
    sum_{i on GPU type h} gpus_i x_i <= count_h          GPUs on offer
    sum_i usd_i x_i <= budget                            dollars per hour
    at most one configuration per (model, role); mixed only if not w_m, prefill / decode only if w_m

The prefill:decode ratio of a disaggregated model is x_prefill : x_decode (DistServe's placement); several
models draw on the same GPU counts and budget (AlpaServe's shared cluster). Objectives: ``min_cost``
minimises $/h; ``goodput`` maximises ``lam``; ``goodput_per_usd`` / ``_per_gpu`` / ``_per_watt`` maximise
``lam * sum(rate) / D`` with D the $/h, GPUs or TDP watts, by Dinkelbach's method (a sequence of ILPs
``max lam R - q D`` with q updated to the last ratio; exact for integer programs, finitely many steps).
The ``top_k`` allocations are found by re-solving with a cut that forbids each previous set of used items.
An infeasible program is re-solved with elastic GPU and budget constraints to name the tightest one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from llmsim.errors import InfeasibleError, LlmsimError

RATIO_DENOMINATOR = {"goodput_per_usd": "usd_per_hour", "goodput_per_gpu": "gpus", "goodput_per_watt": "tdp_w"}
MAX_REPLICAS = 256


class SolverError(LlmsimError):
    """pulp/CBC returned a status other than optimal or infeasible (not solved, unbounded, undefined)."""


@dataclass(frozen=True, slots=True)
class Item:
    key: str
    model: str
    role: str  # mixed | prefill | decode
    hardware: str
    gpus: int
    usd_per_hour: float
    tdp_w: float
    capacity_rps: float


@dataclass(frozen=True)
class Allocation:
    """Replicas per item key, with totals and the estimated rate multiple ``lam`` (served = lam x rate)."""

    replicas: Mapping[str, int]
    lam: float
    usd_per_hour: float
    gpus: int
    tdp_w: float
    objective: float
    status: str = "Optimal"
    gpus_by_type: Mapping[str, int] = field(default_factory=dict)


def solve(items: Sequence[Item], rates: Mapping[str, float], counts: Mapping[str, int | None],
          budget_usd_per_hour: float | None, objective: str, top_k: int = 1,
          time_limit_s: float = 60.0, exclude: Sequence[set[str]] = ()) -> list[Allocation]:
    """The ``top_k`` best allocations (fewer when fewer exist), none using exactly a set of item keys in
    ``exclude``; InfeasibleError naming the tightest constraint when none meets the rates; SolverError
    for any other solver status."""
    import warnings

    with warnings.catch_warnings():  # pulp 3.x announces its 4.0 API on every variable and solve
        warnings.simplefilter("ignore", DeprecationWarning)
        return _solve(items, rates, counts, budget_usd_per_hour, objective, top_k, time_limit_s, exclude)


def _solve(items, rates, counts, budget_usd_per_hour, objective, top_k, time_limit_s, exclude) -> list[Allocation]:
    if not items:
        raise InfeasibleError("allocation: no candidate passed the screen")
    missing = [m for m in rates if not any(i.model == m for i in items)]
    if missing:
        raise InfeasibleError(f"allocation: no candidate of model(s) {', '.join(missing)} passed the screen")
    found: list[Allocation] = []
    keys = {i.key for i in items}
    cuts: list[set[str]] = [set(e) for e in exclude if set(e) <= keys]
    for _ in range(max(1, top_k)):
        alloc = _best(items, rates, counts, budget_usd_per_hour, objective, cuts, time_limit_s)
        if alloc is None:
            if not found:
                raise InfeasibleError(_tightest(items, rates, counts, budget_usd_per_hour, time_limit_s))
            break
        found.append(alloc)
        cuts.append({k for k, n in alloc.replicas.items() if n > 0})
    return found


def _best(items, rates, counts, budget, objective, cuts, time_limit_s) -> Allocation | None:
    if objective not in RATIO_DENOMINATOR:
        return _solve_once(items, rates, counts, budget, objective, 0.0, cuts, time_limit_s)
    q, best = 0.0, None
    for _ in range(30):  # Dinkelbach: max lam R - q D, q <- lam R / D, until no allocation beats q
        alloc = _solve_once(items, rates, counts, budget, objective, q, cuts, time_limit_s)
        if alloc is None:
            return best
        ratio = alloc.lam * sum(rates.values()) / _denominator(alloc, objective)
        if best is not None and ratio <= q * (1 + 1e-9):
            return best
        best, q = alloc, ratio
    return best


def _denominator(alloc: Allocation, objective: str) -> float:
    return float(getattr(alloc, RATIO_DENOMINATOR[objective]))


def _model(items, rates, counts, budget, cuts, elastic: bool = False):
    """The program's variables and constraints (no objective); with ``elastic``, slack on GPUs and budget."""
    import pulp

    prob = pulp.LpProblem("allocation", pulp.LpMinimize)
    bound = {i.key: MAX_REPLICAS if elastic else _upper(i, counts, budget) for i in items}
    x = {i.key: pulp.LpVariable(f"x{n}", 0, bound[i.key], cat="Integer") for n, i in enumerate(items)}
    u = {i.key: pulp.LpVariable(f"u{n}", cat="Binary") for n, i in enumerate(items)}
    lam = pulp.LpVariable("lam", lowBound=1.0, upBound=1e4)
    for i in items:
        prob += x[i.key] <= bound[i.key] * u[i.key]
        prob += x[i.key] >= u[i.key]
    for m, rate in rates.items():
        mine = [i for i in items if i.model == m]
        w = pulp.LpVariable(f"w_{m}", cat="Binary")
        z = pulp.LpVariable(f"z_{m}", lowBound=0)
        by_role = {r: [i for i in mine if i.role == r] for r in ("mixed", "prefill", "decode")}
        for role in ("prefill", "decode"):
            prob += z <= pulp.lpSum(i.capacity_rps * x[i.key] for i in by_role[role])
            prob += pulp.lpSum(u[i.key] for i in by_role[role]) <= w
        prob += pulp.lpSum(u[i.key] for i in by_role["mixed"]) <= 1 - w
        prob += pulp.lpSum(i.capacity_rps * x[i.key] for i in by_role["mixed"]) + z >= rate * lam
    slack = {}
    for hw, count in counts.items():
        if count is not None:
            s = slack[f"gpus.{hw}.count"] = pulp.LpVariable(f"s_gpu_{len(slack)}", lowBound=0) if elastic else 0
            prob += pulp.lpSum(i.gpus * x[i.key] for i in items if i.hardware == hw) <= count + s
    if budget is not None:
        s = slack["budget_usd_per_hour"] = pulp.LpVariable("s_budget", lowBound=0) if elastic else 0
        prob += pulp.lpSum(i.usd_per_hour * x[i.key] for i in items) <= budget + s
    for used in cuts:
        prob += pulp.lpSum(1 - u[k] for k in used) + pulp.lpSum(u[k] for k in u if k not in used) >= 1
    return prob, x, lam, slack


def _upper(item: Item, counts, budget) -> int:
    limit = MAX_REPLICAS
    count = counts.get(item.hardware)
    if count is not None:
        limit = min(limit, count // item.gpus)
    if budget is not None and item.usd_per_hour > 0:
        limit = min(limit, int(budget // item.usd_per_hour))
    return max(0, limit)


def _solve_once(items, rates, counts, budget, objective, q, cuts, time_limit_s) -> Allocation | None:
    import pulp

    prob, x, lam, _ = _model(items, rates, counts, budget, cuts)
    cost = pulp.lpSum(i.usd_per_hour * x[i.key] for i in items)
    if objective == "min_cost":
        prob.setObjective(cost)
    elif objective == "goodput":
        prob.setObjective(-lam + 1e-6 * cost)  # ties: the cheaper allocation
    else:
        attr = RATIO_DENOMINATOR[objective]
        denom = pulp.lpSum(float(getattr(i, attr)) * x[i.key] for i in items)
        prob.setObjective(-(sum(rates.values()) * lam - q * denom))
    status = _run(prob, time_limit_s)
    if status == "Infeasible":
        return None
    return _allocation(items, x, lam, pulp.value(prob.objective), status)


def _run(prob, time_limit_s: float) -> str:
    import warnings

    import pulp

    with warnings.catch_warnings():  # pulp 3.x announces API changes for 4.0 on every call
        warnings.simplefilter("ignore", DeprecationWarning)
        prob.solve(pulp.PULP_CBC_CMD(msg=False, timeLimit=time_limit_s))
    status = pulp.LpStatus[prob.status]
    if status not in ("Optimal", "Infeasible"):
        raise SolverError(f"allocation ILP: the CBC solver returned status {status!r} "
                          f"({'no solution within the time limit' if status == 'Not Solved' else 'see pulp'})")
    return status


def _allocation(items, x, lam, objective_value, status) -> Allocation:
    import pulp

    reps = {i.key: int(round(pulp.value(x[i.key]) or 0)) for i in items}
    by_key = {i.key: i for i in items}
    used = {k: n for k, n in reps.items() if n > 0}
    by_type: dict[str, int] = {}
    for k, n in used.items():
        by_type[by_key[k].hardware] = by_type.get(by_key[k].hardware, 0) + n * by_key[k].gpus
    return Allocation(used, float(pulp.value(lam)), sum(by_key[k].usd_per_hour * n for k, n in used.items()),
                      sum(by_key[k].gpus * n for k, n in used.items()),
                      sum(by_key[k].tdp_w * n for k, n in used.items()), float(objective_value or 0.0), status,
                      by_type)


def _tightest(items, rates, counts, budget, time_limit_s) -> str:
    """Re-solve with elastic GPU counts and budget (minimise the relative overshoot) and name the
    constraint that has to give most."""
    import pulp

    prob, x, lam, slack = _model(items, rates, counts, budget, [], elastic=True)
    rhs = {k: (budget if k == "budget_usd_per_hour" else counts[k.split(".")[1]]) for k in slack}
    prob.setObjective(pulp.lpSum(s / max(rhs[k], 1e-9) for k, s in slack.items()))
    status = _run(prob, time_limit_s)
    if status != "Optimal":
        return ("allocation: infeasible even without GPU and budget limits: the candidates cannot be combined "
                "to serve every model (a P/D split needs both a prefill and a decode candidate)")
    over = {k: pulp.value(s) or 0.0 for k, s in slack.items()}
    name = max(over, key=lambda k: over[k] / max(rhs[k], 1e-9))
    need = rhs[name] + over[name]
    unit = " $/h" if name == "budget_usd_per_hour" else " GPUs"
    return (f"allocation: nothing meets the target rates within the limits; the tightest constraint is {name} = "
            f"{rhs[name]:g}{unit}: the best allocation needs {need:.4g}{unit} (+{over[name] / max(rhs[name], 1e-9):.0%})")
