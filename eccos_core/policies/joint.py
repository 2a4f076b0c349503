"""The joint policy: a batch's cheapest assignment whose mean p(success) reaches the target, and its fallbacks.

``policy="strict"`` for one call is this policy with N = 1. The target comes from
:meth:`eccos_core.targets.Targets.batch` (the quality guard, plus the margin when a ``confidence`` is asked).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from eccos_core.errors import CapacityError
from eccos_core.messages import Needs
from eccos_core.optimize import SolveStatus
from eccos_core.optimize import solve as optimize
from eccos_core.plans import RoutingPlan
from eccos_core.predictors.base import Prediction
from eccos_core.pricing import cost_matrix
from eccos_core.targets import BatchGoal

if TYPE_CHECKING:
    from eccos_core.planner import Planner

logger = logging.getLogger("eccos.planner")


def plan(
    planner: Planner,
    prediction: Prediction,
    tokens: np.ndarray,
    alpha: float,
    caps: Sequence[int | None],
    needs: Sequence[Needs] | None,
    confidence: float | None = None,
) -> RoutingPlan:
    """The optimizer's plan for a batch whose predictions, tokens and needs are known."""
    goal = planner.targets.batch(alpha, len(tokens), confidence)
    target = goal.target  # out of the guard's measured range: the best assignment the caps allow
    allowed = planner.allowed(tokens, caps, needs)
    quality = prediction.quality
    cost = cost_matrix(planner.pool, tokens, prediction.output_tokens)
    started = time.perf_counter()
    large = len(tokens) > planner.progress_chunk
    if large:
        planner.report("solve", 0, len(tokens), started)
    try:
        assignment = optimize(
            cost,
            quality,
            target,
            list(caps) if any(c is not None for c in caps) else None,
            allowed=None if allowed.all() else allowed,
            method=planner.method,
            time_limit=planner.time_limit,
        )
    except CapacityError as exc:
        raise planner.solver_error(exc) from None
    if large:
        planner.report("solve", len(tokens), len(tokens), started)
    index = np.asarray(assignment.model_index, dtype=int)
    status, message = status_of(planner, assignment.status, assignment.message, goal)
    fallbacks = chains(planner, index, quality, cost, allowed, caps, target)
    plan = planner.assemble(
        index, prediction, tokens, cost, allowed, caps, fallbacks, status, message, assignment.method,
        min_quality=alpha, target=target, confidence=goal.confidence, margin=goal.margin,
    )  # fmt: skip
    entries = plan.queries
    logger.debug(
        "planned %d queries at min_quality %.3f (internal target %.3f): %s, quality %.3f, cost $%.6g via %s",
        len(entries),
        alpha,
        target,
        status.value,
        plan.expected_quality,
        plan.expected_cost,
        plan.solver,
    )
    return plan


def status_of(planner: Planner, status: SolveStatus, message: str, goal: BatchGoal) -> tuple[SolveStatus, str]:
    """The plan's status and a message that names the user's ``min_quality`` and the internal target apart."""
    alpha, target = goal.alpha, goal.target
    asked = f"min_quality {alpha:.3f}"
    if goal.confidence is not None:
        asked += (
            f" at confidence {goal.confidence:.3g} (a margin of {goal.margin:.3f} for a batch of "
            f"{goal.batch_size}: {min(1.0, alpha + (goal.margin or 0.0)):.3f} realized success)"
        )
    refused = "; the guarantee cannot be given" if goal.confidence is not None else ""
    if not goal.reachable:
        message = (
            f"{asked} is unreachable: on held-out training queries this router's best routing reached "
            f"{planner.targets.guard.max_quality:.3f} realized success{refused}; routed every query to the "
            "highest-quality model the caps allow"
        )
        status = SolveStatus.QUALITY_UNREACHABLE
    elif status is SolveStatus.QUALITY_UNREACHABLE:
        message = (
            f"{asked} needs a mean predicted p(success) of {target:.3f} on this batch (the guard's correction "
            f"for selection bias), which its models cannot reach{refused}; routed to the best they can: "
            f"{message}"
        )
    if status is SolveStatus.QUALITY_UNREACHABLE:
        logger.info("%s", message)
    elif status is SolveStatus.FEASIBLE:
        proof = f" ({message})" if message else ""
        message = (
            f"meets the target {target:.3f} but is not proven the cheapest plan that does: the optimizer stopped "
            f"at its time limit ({planner.time_limit:g} s) or used a heuristic{proof}"
        )
        logger.info("%s", message)
    return status, message


def chains(
    planner: Planner,
    index: np.ndarray,
    quality: np.ndarray,
    cost: np.ndarray,
    allowed: np.ndarray,
    caps: Sequence[int | None],
    target: float,
) -> list[tuple[str, ...]]:
    """Each query's fallbacks, fixed at plan time.

    Allowed models with room under their caps: cheapest first among those that keep the batch's mean
    predicted quality on target, then the rest by quality.
    """
    n = len(index)
    counts = np.bincount(index, minlength=len(planner.pool))
    room = np.array([cap is None or counts[j] < cap for j, cap in enumerate(caps)])
    rows = np.arange(n)
    total = float(quality[rows, index].sum())
    chains = []
    for i in range(n):
        others = total - quality[i, index[i]]
        candidates = [j for j in np.flatnonzero(allowed[i] & room) if j != index[i]]
        keeps = [j for j in candidates if (others + quality[i, j]) / n >= target - 1e-9]
        rest = [j for j in candidates if j not in keeps]
        ordered = sorted(keeps, key=lambda j: (cost[i, j], -quality[i, j]))
        ordered += sorted(rest, key=lambda j: (-quality[i, j], cost[i, j]))
        chains.append(tuple(planner.names[j] for j in ordered))
    return chains
