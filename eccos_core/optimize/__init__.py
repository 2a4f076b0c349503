"""Constrained assignment of queries to models: the cheapest batch whose mean predicted quality reaches α.

    >>> import numpy as np
    >>> from eccos_core.optimize import solve
    >>> cost = np.array([[1.0, 4.0], [1.0, 4.0]])
    >>> quality = np.array([[0.6, 0.9], [0.2, 0.9]])
    >>> a = solve(cost, quality, min_quality=0.75)
    >>> a.model_index.tolist(), a.status.value, round(a.expected_quality, 2)
    ([0, 1], 'optimal', 0.75)

Methods (``method=``):

- ``"exact"`` (and ``"auto"``): proven optimal, fast (LP duals + reduced-cost fixing + a small HiGHS MIP).
- ``"ilp"``: the whole problem as one MIP through PuLP (HiGHS, else CBC); the slow reference.
- ``"lagrangian"``: a Lagrangian heuristic with an honest gap, for very large batches.

:func:`per_query` is the ECCOS authors' per-query rule, kept as its own policy and as a baseline.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from eccos_core.errors import InputError
from eccos_core.optimize.assignment import (
    Assignment,
    Problem,
    SolveStatus,
    empty_assignment,
    make_assignment,
    unreachable_message,
    validate_problem,
)
from eccos_core.optimize.exact import max_quality_assignment, solve_exact
from eccos_core.optimize.ilp import solve_ilp
from eccos_core.optimize.lagrangian import quick_feasible, solve_lagrangian
from eccos_core.optimize.per_query import per_query

__all__ = ["METHODS", "Assignment", "SolveStatus", "per_query", "solve"]

logger = logging.getLogger(__name__)

METHODS: tuple[str, ...] = ("auto", "exact", "ilp", "lagrangian")
"""Accepted values of ``solve(method=...)``; ``"auto"`` is ``"exact"``."""

_SOLVERS: dict[str, Callable[[Problem, float], Assignment]] = {
    "exact": solve_exact,
    "ilp": solve_ilp,
    "lagrangian": solve_lagrangian,
}


def _reachable(problem: Problem, deadline: float) -> tuple[bool, np.ndarray | None]:
    """Whether α is reachable, and the max-quality assignment when it had to be computed to decide.

    Cheap tests settle almost every call: without binding caps the best model of every query is the
    maximum; with caps, any feasible assignment found by the Lagrangian repair proves reachability. Only
    when both fail is the max-quality transportation problem solved.
    """
    best = np.where(problem.allowed, problem.quality, -np.inf).argmax(axis=1)
    if not problem.capped or problem.respects_caps(best):
        return problem.meets_quality(best), best
    if not problem.meets_quality(best):
        return False, None
    if quick_feasible(problem) is not None:
        return True, None
    best = max_quality_assignment(problem, deadline=deadline)
    return problem.meets_quality(best), best


def solve(
    cost: Any,
    quality: Any,
    min_quality: float,
    capacity: Sequence[int | None] | None = None,
    *,
    allowed: Any = None,
    method: str = "auto",
    time_limit: float = 10.0,
) -> Assignment:
    """Chooses one model per query: the cheapest batch whose mean predicted quality reaches ``min_quality``.

    Minimises ``Σ cost[i, x_i]`` subject to ``mean_i quality[i, x_i] >= min_quality`` (to a relative 1e-9),
    at most ``capacity[j]`` queries on model ``j`` and only pairs with ``allowed[i, j]``. When no assignment
    reaches ``min_quality``, returns the highest-quality one the caps and mask allow (cheapest among those)
    with status QUALITY_UNREACHABLE and a message giving the reachable maximum, rather than raising: a
    router should still route the batch as well as it can.

    Args:
        cost: N×M costs in USD (finite, >= 0), one row per query, one column per model.
        quality: N×M predicted p(success), each in [0, 1].
        min_quality: α in [0, 1], the mean predicted quality the batch must reach.
        capacity: Optional length-M caps, each a non-negative int or None (uncapped).
        allowed: Optional N×M bool mask; False means model j cannot take query i (e.g. the prompt exceeds its
            context window). Entries it excludes are not validated.
        method: One of :data:`METHODS`.
        time_limit: Seconds the method may spend; past it the best assignment found is returned FEASIBLE
            with an honest ``gap``.

    Returns:
        The :class:`Assignment`.

    Raises:
        InputError: Malformed inputs, an unknown method or a non-positive time limit; the message says what
            to fix.
        CapacityError: The caps (with the mask) cannot hold every query of the batch.
    """
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}: choose one of {', '.join(METHODS)}")
    if isinstance(time_limit, bool) or not isinstance(time_limit, (int, float)) or not time_limit > 0:
        raise InputError(f"time_limit must be a positive number of seconds, got {time_limit!r}")
    name = "exact" if method == "auto" else method
    problem = validate_problem(cost, quality, min_quality, capacity, allowed)
    if problem.n == 0:
        return empty_assignment(name)
    return run_method(problem, _SOLVERS[name], float(time_limit), name=name)


def run_method(
    problem: Problem, method: Callable[[Problem, float], Assignment], time_limit: float, *, name: str
) -> Assignment:
    """Runs one method on a validated, non-empty problem, handling an unreachable α the same way for all.

    When α is out of reach the method solves the lexicographic second stage (the cheapest assignment at the
    maximum reachable quality), and the result is relabelled QUALITY_UNREACHABLE with the explaining
    message. :func:`solve` uses this; the solver benchmark calls it to pick the ILP's engine.
    """
    started = time.perf_counter()
    reachable, best = _reachable(problem, started + time_limit)
    if reachable:
        return method(problem, time_limit)

    if best is None:
        best = max_quality_assignment(problem, deadline=started + time_limit)
    reached = float(np.mean(problem.quality[np.arange(problem.n), best]))
    message = unreachable_message(problem, reached)
    logger.info("%s", message)
    # Lexicographic second stage: the cheapest assignment whose quality equals the maximum (within 1e-9).
    top = problem.with_min_quality(min(1.0, reached))
    remaining = max(0.1 * time_limit, time_limit - (time.perf_counter() - started))
    result = method(top, remaining)
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
