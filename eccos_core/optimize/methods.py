"""Runs a method on a validated problem: what ``"auto"`` means, and what an unreachable α returns.

This is the one place that decides whether α is reachable, for every method (the per-query rule included).

The decision is made once per call, before any method runs: cheap tests settle almost every call (without
binding caps the best model of every query is the maximum; with caps, a quick repair that reaches α proves it
reachable), and only when both fail is the max-quality transportation problem solved. When α is out of reach
an optimizing method solves the lexicographic second stage (the cheapest assignment at the maximum reachable
quality) and its result is relabelled QUALITY_UNREACHABLE with the message that says so. The per-query rule
routes the same way whatever α is; it is labelled QUALITY_UNREACHABLE whenever its own assignment misses α,
and the message says whether any assignment reaches α at all.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

import eccos_core.optimize.per_query as rule
from eccos_core.optimize.assignment import (
    Assignment,
    Problem,
    SolveStatus,
    best_reach,
    floor_str,
    make_assignment,
    unreachable_fix,
    unreachable_message,
)
from eccos_core.optimize.dual import scaled_costs
from eccos_core.optimize.exact import solve_exact
from eccos_core.optimize.lagrangian import solve_lagrangian
from eccos_core.optimize.lp import lp_relaxation, max_quality_index
from eccos_core.optimize.primal import quick_feasible

logger = logging.getLogger(__name__)

Solver = Callable[[Problem, float], "Assignment | None"]
"""A method: validated problem and seconds in, assignment out (None: it could not build one)."""

AUTO_EXACT_MAX_PAIRS = 300_000
"""``method="auto"`` runs the exact method up to this many (query, model) pairs, N×M, and the Lagrangian
method above. Measured on this project's 2-core machine (``benchmarks/results/solver.txt``): up to here the
exact method proves optimality in about 2 s or less (unless many caps bind at once, when its search can run
into the time limit and return FEASIBLE with its gap); above it its time grows to tens of seconds at
N = 10^5 with binding caps, while the Lagrangian method answers in a few seconds even at N = 10^6 × M = 9
with a certified gap around 10^-6 of the cost or less."""


def choose_method(n: int, m: int) -> str:
    """What ``method="auto"`` runs for N queries and M models (see :data:`AUTO_EXACT_MAX_PAIRS`)."""
    return "exact" if n * m <= AUTO_EXACT_MAX_PAIRS else "lagrangian"


def _solver(name: str) -> Solver:
    if name == "exact":
        return solve_exact
    if name == "lagrangian":
        return solve_lagrangian
    if name == "ilp":
        from eccos_core.optimize.ilp import solve_ilp  # PuLP loads only when the ILP is asked for

        return solve_ilp
    raise ValueError(f"no solver named {name!r}")


@dataclass(frozen=True)
class Reach:
    """Whether α is reachable, and the max-quality assignment when deciding needed it."""

    reachable: bool
    best: np.ndarray | None


def reachability(problem: Problem, deadline: float) -> Reach:
    """Decides whether some assignment the caps and mask allow reaches α (the only place this is decided).

    Cheap tests settle almost every call: every query on its best model is the maximum without binding caps;
    with caps, a quick repair of that assignment that still reaches α proves α reachable. Only when both fail
    is the max-quality transportation problem solved.
    """
    if float(problem.quality.max(axis=1, initial=0.0).sum()) < problem.quality_floor():
        return Reach(False, None)  # (forbidden pairs hold quality 0, never above an allowed one)
    if not problem.capped:
        return Reach(True, None)
    top = problem.quality.argmax(axis=1)
    if not problem.allowed[np.arange(problem.n), top].all():
        top = np.where(problem.allowed, problem.quality, -1.0).argmax(axis=1)
    if problem.respects_caps(top) or quick_feasible(problem, top) is not None:
        return Reach(True, None)
    best = max_quality_index(problem, deadline=deadline)
    return Reach(problem.meets_quality(best), best)


def run_method(problem: Problem, name: str, time_limit: float, *, solver: Solver | None = None) -> Assignment:
    """Runs one method on a validated, non-empty problem, handling an unreachable α the same way for all.

    Args:
        problem: The validated instance.
        name: ``"exact"``, ``"lagrangian"``, ``"ilp"``, ``"per_query"`` or ``"auto"``.
        time_limit: Seconds the method may spend.
        solver: Runs instead of the named method's own function (the benchmark passes the ILP with a chosen
            engine); ``name`` still labels a fallback.

    Returns:
        The assignment.
    """
    if name == "auto":
        name = choose_method(problem.n, problem.m)
    started = time.perf_counter()
    if name == "per_query":
        return _per_query(problem, started + time_limit)
    method = solver if solver is not None else _solver(name)
    reach = reachability(problem, started + time_limit)
    if reach.reachable:
        return _run(method, problem, time_limit, name)
    best = reach.best if reach.best is not None else max_quality_index(problem, deadline=started + time_limit)
    reached = float(np.mean(problem.quality[np.arange(problem.n), best]))
    message = unreachable_message(problem, reached)
    logger.info("%s", message)
    # Lexicographic second stage: the cheapest assignment whose quality equals the maximum (within 1e-9).
    top = problem.with_target(min(1.0, reached))
    remaining = max(0.1 * time_limit, time_limit - (time.perf_counter() - started))
    result = _run(method, top, remaining, name)
    if not (top.meets_quality(result.model_index) and top.respects_caps(result.model_index)):
        logger.warning("%s method missed the max-quality level; returning the max-quality assignment", name)
        result = make_assignment(top, best, SolveStatus.FEASIBLE, name, gap=math.inf)
    if result.status is SolveStatus.FEASIBLE:
        message += f"; its cost is at most {result.gap:.6g} USD above the cheapest of those"
    return replace(
        result,
        status=SolveStatus.QUALITY_UNREACHABLE,
        message=message,
        expected_quality=float(np.mean(problem.quality[np.arange(problem.n), result.model_index])),
    )


def _run(method: Solver, problem: Problem, time_limit: float, name: str) -> Assignment:
    """Runs a method on a problem whose α is reachable; the exact method takes over if it builds nothing."""
    started = time.perf_counter()
    result = method(problem, time_limit)
    if result is not None:
        return result
    logger.info("the %s method could not build an assignment; falling back to the exact method", name)
    exact = solve_exact(problem, max(0.1 * time_limit, time_limit - (time.perf_counter() - started)))
    return replace(exact, method=name)


def _per_query(problem: Problem, deadline: float) -> Assignment:
    """The per-query rule's assignment, FEASIBLE with its gap when it meets α, else QUALITY_UNREACHABLE."""
    index = rule.route(problem)
    if problem.meets_quality(index):
        costs, scale = scaled_costs(problem)
        lp = lp_relaxation(problem, costs, problem.quality_floor(), deadline=deadline, exact=False)
        total = math.fsum(costs[np.arange(problem.n), index].tolist())
        gap = max(0.0, total - lp.dual.bound) * scale if lp is not None else math.inf
        return make_assignment(problem, index, SolveStatus.FEASIBLE, rule.METHOD, gap=gap)
    rows = np.arange(problem.n)
    mean = float(np.mean(problem.quality[rows, index]))
    message = (
        f"target {problem.target:g} is unreachable by the per-query rule: its assignment reaches "
        f"{floor_str(mean)} (queries with no model at α take their best one); "
    )
    reach = reachability(problem, deadline)
    if reach.reachable:
        message += "solve() finds the cheapest batch that meets the mean (method='exact')"
    else:
        best = reach.best if reach.best is not None else max_quality_index(problem, deadline=deadline)
        reached = float(np.mean(problem.quality[rows, best]))
        message += f"no assignment reaches it: {best_reach(problem, reached)} ({unreachable_fix(problem)})"
    return Assignment(
        model_index=index,
        status=SolveStatus.QUALITY_UNREACHABLE,
        expected_quality=mean,
        expected_cost=math.fsum(problem.cost[rows, index].tolist()),
        method=rule.METHOD,
        gap=math.nan,
        message=message,
    )
