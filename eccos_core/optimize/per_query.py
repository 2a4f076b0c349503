"""The per-query rule of the ECCOS authors' AIOS code, kept as its own policy and as a baseline.

Each query independently takes the cheapest allowed model whose predicted quality reaches α, or, when none
does, the highest-quality one (cheaper on ties). Caps are honoured greedily in query order: a model that is
full is skipped. The rule asks every query to reach α, so it overpays wherever an easy query could have
carried a hard one; the other methods of :func:`eccos_core.optimize.solve` are the batch-optimal alternative.
Run it as ``solve(..., method="per_query")`` (or :func:`eccos_core.optimize.per_query`).
"""

from __future__ import annotations

from collections import deque

import numpy as np

from eccos_core.optimize.assignment import QUALITY_RTOL, Problem

METHOD = "per-query"


def _preference(problem: Problem) -> np.ndarray:
    """Each query's models in the rule's order: those reaching α by cost, then the rest by quality."""
    threshold = problem.target * (1.0 - QUALITY_RTOL)
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


def route(problem: Problem) -> np.ndarray:
    """The rule's assignment: per query the cheapest allowed model reaching α, else its best one.

    Caps are honoured greedily in query order. Whether the batch then meets α, and what to say when it does
    not, is decided with every other method's results in :mod:`~eccos_core.optimize.methods`.
    """
    order = _preference(problem)
    return order[:, 0] if not problem.capped else _place(problem, order)
