"""The per-call policy (``policy="dual"``): one call routed at its stream's price on quality.

The stream (:class:`eccos_core.dual.StreamPrice`, one per ``min_quality`` or per-call budget, in the router's
store) keeps the mean over the calls routed with it on target; the target comes from
:meth:`eccos_core.targets.Targets.per_call`.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import numpy as np

from eccos_core.dual import Decision
from eccos_core.optimize import SolveStatus
from eccos_core.plans import QueryPlan, RoutingPlan
from eccos_core.predictors.base import Prediction
from eccos_core.pricing import cost_matrix

if TYPE_CHECKING:
    from eccos_core.planner import Planner

logger = logging.getLogger("eccos.planner")


def price_call(
    planner: Planner,
    prediction: Prediction,
    tokens: np.ndarray,
    allowed: np.ndarray,
    alpha: float | None,
    budget: float | None,
) -> RoutingPlan:
    """Route one call at its stream's price (per ``min_quality``, or per-call ``budget``) and record it."""
    quality = prediction.quality
    cost = cost_matrix(planner.pool, tokens, prediction.output_tokens)
    if budget is None:
        assert alpha is not None
        target, reachable = planner.targets.per_call(alpha)
        decision = planner.dual.quality_stream(alpha, target).route(quality[0], cost[0], allowed[0])
    else:
        reachable = True
        decision = planner.dual.budget_stream(budget).route(quality[0], cost[0], allowed[0])
    status, message = call_status(planner, decision, alpha, budget, reachable)
    j = decision.model
    entry = QueryPlan(
        index=0,
        model=planner.names[j],
        p_success=float(quality[0, j]),
        output_tokens=float(prediction.output_tokens[0, j]),
        cost=float(cost[0, j]),
        input_tokens=int(tokens[0]),
        chain=tuple(planner.names[k] for k in decision.order[1:]),
        allowed=tuple(n for n, ok in zip(planner.names, allowed[0], strict=False) if ok),
        status=status,
        message=message,
        solver="dual" if budget is None else "dual-budget",
        batch_size=1,
        min_quality=0.0 if alpha is None else alpha,
        budget=budget,
        price=decision.price if math.isfinite(decision.price) else None,
        prior=planner.priors.get(planner.names[j]),
        length=planner.columns.length_source(planner.names[j]),
    )
    return RoutingPlan(
        queries=(entry,),
        min_quality=entry.min_quality,
        target_quality=decision.target if budget is None else 0.0,
        expected_quality=entry.p_success,
        expected_cost=entry.cost,
        status=status,
        message=message,
        solver=entry.solver,
        budget=budget,
    )


def call_status(
    planner: Planner, decision: Decision, alpha: float | None, budget: float | None, reachable: bool
) -> tuple[SolveStatus, str]:
    """A per-call plan's status: what the stream's price promises, and when it cannot."""
    if budget is not None:
        if not decision.met:
            return SolveStatus.QUALITY_UNREACHABLE, (
                f"budget ${budget:.6g} per call is below what recent calls cost on their cheapest models; "
                "routed to the cheapest"
            )
        return SolveStatus.FEASIBLE, (
            f"priced per call at {decision.price:.6g} USD per unit of p(success): the mean predicted cost of "
            f"the calls routed with budget ${budget:.6g} stays within it, not each call's own"
        )
    if not reachable:
        best = planner.targets.per_call_best
        message = (
            f"min_quality {alpha:.3f} is unreachable: on held-out training queries this router's best per-call "
            f"routing reached {best:.3f} realized success; routed the call to its highest-quality model"
        )
        logger.info("%s", message)
        return SolveStatus.QUALITY_UNREACHABLE, message
    if not decision.met:
        message = (
            f"recent calls are harder than the training queries: even on their best models their mean predicted "
            f"p(success) is below {decision.target:.3f}, the internal target for min_quality {alpha:.3f}; "
            "routed the call to its highest-quality model"
        )
        logger.info("%s", message)
        return SolveStatus.QUALITY_UNREACHABLE, message
    return SolveStatus.FEASIBLE, (
        f"priced per call at {decision.price:.6g} USD per unit of p(success): min_quality {alpha:.3f} holds for "
        "the mean of the calls routed with it, not for each call on its own (policy='strict' for that)"
    )
