"""The budget policy: the mirror of the joint one, the best mean p(success) whose total predicted cost fits."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from eccos_core.errors import CapacityError
from eccos_core.messages import Needs
from eccos_core.optimize import SolveStatus
from eccos_core.optimize.budget import solve_budget
from eccos_core.plans import RoutingPlan
from eccos_core.predictors.base import Prediction
from eccos_core.pricing import cost_matrix

if TYPE_CHECKING:
    from eccos_core.planner import Planner

logger = logging.getLogger("eccos.planner")


def plan(
    planner: Planner,
    prediction: Prediction,
    tokens: np.ndarray,
    budget: float,
    caps: Sequence[int | None],
    needs: Sequence[Needs] | None,
) -> RoutingPlan:
    """The best plan (mean predicted quality) whose total predicted cost fits ``budget`` USD."""
    allowed = planner.allowed(tokens, caps, needs)
    quality = prediction.quality
    cost = cost_matrix(planner.pool, tokens, prediction.output_tokens)
    try:
        found = solve_budget(
            cost,
            quality,
            budget,
            list(caps) if any(c is not None for c in caps) else None,
            allowed=None if allowed.all() else allowed,
            time_limit=planner.time_limit,
        )
    except CapacityError as exc:
        raise planner.solver_error(exc) from None
    index = np.asarray(found.model_index, dtype=int)
    message = found.message
    if found.status is SolveStatus.FEASIBLE and not message:
        message = f"within {found.gap:.2e} of the best mean quality the budget buys (not proven optimal)"
    if found.status is SolveStatus.QUALITY_UNREACHABLE:
        logger.info("%s", message)
    fallbacks = budget_chains(planner, index, quality, cost, allowed, caps, budget)
    return planner.assemble(
        index, prediction, tokens, cost, allowed, caps, fallbacks, found.status, message, found.method,
        min_quality=0.0, target=0.0, budget=budget,
    )  # fmt: skip


def budget_chains(
    planner: Planner,
    index: np.ndarray,
    quality: np.ndarray,
    cost: np.ndarray,
    allowed: np.ndarray,
    caps: Sequence[int | None],
    budget: float,
) -> list[tuple[str, ...]]:
    """Each query's fallbacks in budget mode.

    Allowed models with room under their caps: best first among those that keep the batch within budget,
    then the rest, cheapest first.
    """
    n = len(index)
    counts = np.bincount(index, minlength=len(planner.pool))
    room = np.array([cap is None or counts[j] < cap for j, cap in enumerate(caps)])
    rows = np.arange(n)
    total = float(cost[rows, index].sum())
    chains = []
    for i in range(n):
        others = total - cost[i, index[i]]
        candidates = [j for j in np.flatnonzero(allowed[i] & room) if j != index[i]]
        keeps = [j for j in candidates if others + cost[i, j] <= budget * (1 + 1e-12)]
        rest = [j for j in candidates if j not in keeps]
        ordered = sorted(keeps, key=lambda j: (-quality[i, j], cost[i, j]))
        ordered += sorted(rest, key=lambda j: (cost[i, j], -quality[i, j]))
        chains.append(tuple(planner.names[j] for j in ordered))
    return chains
