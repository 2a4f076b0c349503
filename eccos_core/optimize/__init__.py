"""Constrained assignment of queries to models: the cheapest batch whose mean predicted quality reaches α.

    >>> import numpy as np
    >>> from eccos_core.optimize import solve
    >>> cost = np.array([[1.0, 4.0], [1.0, 4.0]])
    >>> quality = np.array([[0.6, 0.9], [0.2, 0.9]])
    >>> a = solve(cost, quality, target=0.75)
    >>> a.model_index.tolist(), a.status.value, round(a.expected_quality, 2)
    ([0, 1], 'optimal', 0.75)

Methods (``method=``):

- ``"auto"`` (default): ``"exact"`` up to :data:`~eccos_core.optimize.methods.AUTO_EXACT_MAX_PAIRS` (query,
  model) pairs N×M (300,000: N = 100,000 at M = 3, about 33,000 at M = 9, 15,000 at M = 20), ``"lagrangian"``
  above, where the exact proof would take seconds and the Lagrangian gap is about a millionth of the cost.
  :attr:`Assignment.method` names the one that ran.
- ``"exact"``: proven optimal (LP duals with the caps priced in, reduced-cost fixing, an exact search over the
  few queries left).
- ``"lagrangian"``: near-optimal multipliers and a repaired assignment, with an honest ``gap``.
- ``"ilp"``: the whole problem as one MIP through PuLP (HiGHS, else CBC); the slow reference.
- ``"per_query"``: the ECCOS authors' per-query rule (each query on its cheapest model reaching α), kept as
  its own policy and as a baseline; :func:`per_query` is the same call.

Modules: :mod:`.assignment` (problem and result types, validation), :mod:`.dual` (Lagrangian bounds and
hulls), :mod:`.lp` (the LP relaxation with caps), :mod:`.primal` (repair and local search), :mod:`.restricted`
(the exact search left after fixing), :mod:`.highs` (running HiGHS), one module per method, and
:mod:`.methods` (what ``auto`` runs, and what an unreachable α returns). HiGHS and PuLP load when a method
first needs them, not on import.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eccos_core.errors import InputError
from eccos_core.optimize.assignment import Assignment, SolveStatus, empty_assignment, validate_problem
from eccos_core.optimize.methods import choose_method, run_method

__all__ = ["METHODS", "Assignment", "SolveStatus", "per_query", "solve"]

METHODS: tuple[str, ...] = ("auto", "exact", "ilp", "lagrangian", "per_query")
"""Accepted values of ``solve(method=...)``; ``"auto"`` picks ``"exact"`` or ``"lagrangian"`` by batch size."""


def solve(
    cost: Any,
    quality: Any,
    target: float,
    capacity: Sequence[int | None] | None = None,
    *,
    allowed: Any = None,
    method: str = "auto",
    time_limit: float = 10.0,
) -> Assignment:
    """Chooses one model per query: the cheapest batch whose mean predicted quality reaches ``target``.

    Minimises ``Σ cost[i, x_i]`` subject to ``mean_i quality[i, x_i] >= target`` (to a relative 1e-9),
    at most ``capacity[j]`` queries on model ``j`` and only pairs with ``allowed[i, j]``. When no assignment
    reaches ``target``, returns the highest-quality one the caps and mask allow (cheapest among those)
    with status QUALITY_UNREACHABLE and a message giving the reachable maximum, rather than raising: a
    router should still route the batch as well as it can.

    Args:
        cost: N×M costs in USD (finite, >= 0), one row per query, one column per model.
        quality: N×M predicted p(success), each in [0, 1].
        target: The mean predicted quality the batch must reach, in [0, 1] (the router passes the internal
            target its quality guard maps ``target`` to).
        capacity: Optional length-M caps, each a non-negative int or None (uncapped).
        allowed: Optional N×M bool mask; False means model j cannot take query i (e.g. the prompt exceeds its
            context window). Entries it excludes are not validated.
        method: One of :data:`METHODS`. ``"auto"`` runs ``"exact"`` up to 300,000 (query, model) pairs N×M and
            ``"lagrangian"`` above (see the module docstring).
        time_limit: Seconds the method may spend; past it the best assignment found is returned FEASIBLE
            with an honest ``gap``.

    Returns:
        The :class:`Assignment`. With ``method="per_query"`` it is the rule's assignment: FEASIBLE (with the
        gap to the dual bound) when it meets ``target``, QUALITY_UNREACHABLE when it misses it, the
        message then saying whether any assignment reaches it.

    Raises:
        InputError: Malformed inputs, an unknown method or a non-positive time limit; the message says what
            to fix.
        CapacityError: The caps (with the mask) cannot hold every query of the batch.
    """
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}: choose one of {', '.join(METHODS)}")
    if isinstance(time_limit, bool) or not isinstance(time_limit, (int, float)) or not time_limit > 0:
        raise InputError(f"time_limit must be a positive number of seconds, got {time_limit!r}")
    problem = validate_problem(cost, quality, target, capacity, allowed)
    if problem.n == 0:
        name = choose_method(problem.n, problem.m) if method == "auto" else method
        return empty_assignment("per-query" if name == "per_query" else name)
    return run_method(problem, method, float(time_limit))


def per_query(
    cost: Any,
    quality: Any,
    target: float,
    capacity: Sequence[int | None] | None = None,
    allowed: Any = None,
) -> Assignment:
    """The per-query rule: ``solve(cost, quality, target, capacity, allowed=allowed, method="per_query")``.

    Each query takes the cheapest allowed model whose predicted quality reaches α, else its highest-quality
    one; caps are honoured greedily in query order.
    """
    return solve(cost, quality, target, capacity, allowed=allowed, method="per_query")
