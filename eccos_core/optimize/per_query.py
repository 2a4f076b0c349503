"""The per-query rule of the ECCOS authors' AIOS code, kept as its own policy and as a baseline.

Each query independently takes the cheapest allowed model whose predicted quality reaches α, or, when none
does, the highest-quality one (cheaper on ties). Caps are honoured greedily in query order: a model that is
full is skipped. The rule asks every query to reach α, so it overpays wherever an easy query could have
carried a hard one; :func:`eccos_core.optimize.solve` is the batch-optimal alternative.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np

from eccos_core.optimize.assignment import (
    QUALITY_RTOL,
    Assignment,
    Problem,
    SolveStatus,
    empty_assignment,
    floor_str,
    make_assignment,
    validate_problem,
)
from eccos_core.optimize.lagrangian import dual_ascent, evaluate_dual, scaled_costs

METHOD = "per-query"


def _preference(problem: Problem) -> np.ndarray:
    """Each query's models in the rule's order: those reaching α by cost, then the rest by quality."""
    threshold = problem.min_quality * (1.0 - QUALITY_RTOL)
    good = problem.allowed & (problem.quality >= threshold)
    # Sort keys (ascending): group (0 = reaches α, 1 = does not, 2 = not allowed), then cost or -quality.
    group = np.where(good, 0, np.where(problem.allowed, 1, 2))
    primary = np.where(good, problem.cost, -problem.quality)
    secondary = np.where(good, -problem.quality, problem.cost)
    order = np.lexsort((np.broadcast_to(np.arange(problem.m), group.shape), secondary, primary, group), axis=1)
    return order


def _place(problem: Problem, order: np.ndarray) -> np.ndarray:
    """Greedy in query order; a query whose allowed models are all full shifts earlier ones (augmenting path).

    The caps were checked to hold the batch, so an augmenting path always exists; it moves as few earlier
    queries as a breadth-first search finds, each to another allowed model.
    """
    n = problem.n
    room = problem.capacity.copy()
    index = np.full(n, -1, dtype=np.int64)
    counts = problem.allowed.sum(axis=1)
    for i in range(n):
        for j in order[i, : counts[i]].tolist():
            if room[j] > 0:
                index[i] = j
                room[j] -= 1
                break
        else:
            _augment(problem, index, room, i)
    return index


def _augment(problem: Problem, index: np.ndarray, room: np.ndarray, stuck: int) -> None:
    parent: dict[int, tuple[int, int]] = {}  # model -> (query that moves onto it, model that query leaves)
    seen_models: set[int] = set()
    queue: deque[tuple[int, int]] = deque((stuck, j) for j in np.flatnonzero(problem.allowed[stuck]).tolist())
    for _, j in queue:
        parent.setdefault(j, (stuck, -1))
    seen_models.update(j for _, j in queue)
    while queue:
        _, j = queue.popleft()
        if room[j] > 0:
            room[j] -= 1
            while True:
                query, left = parent[j]
                index[query] = j
                if left < 0:
                    return
                j = left
        for query in np.flatnonzero(index == j).tolist():
            for k in np.flatnonzero(problem.allowed[query]).tolist():
                if k not in seen_models:
                    seen_models.add(k)
                    parent[k] = (query, j)
                    queue.append((query, k))
    raise AssertionError("capacity was validated to hold the batch, yet no augmenting path exists")


def per_query(
    cost: Any,
    quality: Any,
    min_quality: float,
    capacity: Sequence[int | None] | None = None,
    allowed: Any = None,
) -> Assignment:
    """Routes each query on its own: cheapest allowed model with predicted quality >= α, else the best one.

    Args:
        cost: N×M costs in USD.
        quality: N×M predicted p(success).
        min_quality: α, the quality every query should reach on its own.
        capacity: Optional length-M caps (int or None = uncapped), honoured greedily in query order.
        allowed: Optional N×M bool mask; False means model j cannot take query i.

    Returns:
        FEASIBLE when the batch's mean predicted quality reaches α (with the gap to the Lagrangian lower
        bound), otherwise QUALITY_UNREACHABLE with a message giving the mean the rule reaches (gap NaN).

    Raises:
        InputError: Malformed inputs (see :func:`~eccos_core.optimize.assignment.validate_problem`).
        CapacityError: The caps cannot hold the batch.
    """
    problem = validate_problem(cost, quality, min_quality, capacity, allowed)
    if problem.n == 0:
        return empty_assignment(METHOD)
    order = _preference(problem)
    index = order[:, 0] if not problem.capped else _place(problem, order)
    mean = float(np.mean(problem.quality[np.arange(problem.n), index]))
    if not problem.meets_quality(index):
        return Assignment(
            model_index=index,
            status=SolveStatus.QUALITY_UNREACHABLE,
            expected_quality=mean,
            expected_cost=math.fsum(problem.cost[np.arange(problem.n), index].tolist()),
            method=METHOD,
            gap=math.nan,
            message=(
                f"min_quality {problem.min_quality:g} is unreachable by the per-query rule: its assignment "
                f"reaches {floor_str(mean)} (queries with no model at α take their best one); solve() finds the "
                "cheapest batch that meets the mean when one exists"
            ),
        )
    costs, scale = scaled_costs(problem)
    need = problem.quality_floor()
    dual = dual_ascent(problem, costs, need, deadline=math.inf, sweeps=20)
    bound, _ = evaluate_dual(problem, costs, dual.lam, dual.mu, need)
    total = math.fsum(costs[np.arange(problem.n), index].tolist())
    return make_assignment(problem, index, SolveStatus.FEASIBLE, METHOD, gap=max(0.0, total - bound) * scale)
