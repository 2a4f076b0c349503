"""The exact method: a proven-optimal assignment, fast because almost every query decides itself.

The LP relaxation of the routing problem has at most (number of binding caps + 1) fractional queries, and its
dual prices every (query, model) pair: a pair whose reduced cost exceeds ``incumbent - lower bound`` cannot
appear in any cheaper assignment. So the method

1. with caps, first asks whether they can bind at all: when the uncapped optimum already respects them, it
   is the answer (the capped problem only has fewer assignments to choose from);
2. computes the LP bound and reduced costs (:mod:`~eccos_core.optimize.lp`): from the queries' lower convex
   hulls when no cap binds (no LP solver at all), otherwise with the caps priced by multipliers μ_j found on
   small working sets;
3. gets an incumbent from the LP's choices repaired by the Lagrangian heuristic (often already within 1e-9 of
   the bound: done);
4. keeps only pairs with small reduced cost (first a tight threshold, so the problem left is tiny; if its
   answer is not provably optimal, the threshold its answer sets, which then always proves optimality),
   fixes every query left with one candidate and solves what is left exactly
   (:mod:`~eccos_core.optimize.restricted`).

The answer is OPTIMAL (gap 0) unless the time limit stops the search, in which case it is FEASIBLE with a
gap measured against a valid lower bound.
"""

from __future__ import annotations

import logging
import math
import time

import numpy as np

from eccos_core.optimize.assignment import GAP_RTOL, Assignment, Problem, SolveStatus, make_assignment
from eccos_core.optimize.dual import Dual, cheapest_index, evaluate_dual, scaled_costs
from eccos_core.optimize.lp import LpSolution, caps_clearly_bind, lp_relaxation, max_quality_index
from eccos_core.optimize.primal import heuristic
from eccos_core.optimize.restricted import solve_restricted

logger = logging.getLogger(__name__)

METHOD = "exact"

_RC_TOL = 1e-10
"""Slack added to reduced-cost thresholds (scaled units) so rounding never drops a pair that belongs."""

_FIRST_FREE = 96
"""Reduced-cost pairs kept in the first, tight restricted problem: small enough to solve in milliseconds."""


def solve_exact(problem: Problem, time_limit: float) -> Assignment:
    """Proven-optimal assignment (see the module docstring for how).

    Args:
        problem: Validated instance whose α is reachable (the caller checks) with at least one query.
        time_limit: Seconds for the whole method; past it the best assignment found is returned FEASIBLE.

    Returns:
        The assignment, OPTIMAL unless the time limit stopped the proof.
    """
    started = time.perf_counter()
    if problem.n == 1:
        return _single(problem)
    costs, scale = scaled_costs(problem)
    need = problem.quality_floor()
    cheapest = cheapest_index(costs, problem.quality)
    if problem.meets_quality(cheapest) and problem.respects_caps(cheapest):
        return make_assignment(problem, cheapest, SolveStatus.OPTIMAL, METHOD)
    free: LpSolution | None = None
    if problem.capped and not caps_clearly_bind(problem, costs, need):
        relaxed = problem.without_caps()
        free = lp_relaxation(relaxed, costs, need, deadline=started + 0.3 * time_limit)
        if free is not None and problem.respects_caps(free.index):
            result = _prove(relaxed, costs, scale, need, free, started=started, time_limit=0.5 * time_limit)
            if result.status is SolveStatus.OPTIMAL and problem.respects_caps(result.model_index):
                logger.debug("the caps cannot bind: the uncapped optimum respects them")
                return result
    lp = lp_relaxation(problem, costs, need, deadline=started + 0.5 * time_limit, uncapped=free)
    if lp is None:  # the caller checked α is reachable; only rounding can land here
        lp = LpSolution(Dual(0.0, np.zeros(problem.m), -math.inf), cheapest, np.zeros(problem.n, bool), False)
    return _prove(problem, costs, scale, need, lp, started=started, time_limit=time_limit)


def _single(problem: Problem) -> Assignment:
    """One query: the cheapest allowed model that meets α (the caller made sure one does)."""
    row_q = problem.quality[0]
    floor = problem.quality_floor()
    ok = problem.allowed[0] & (row_q >= floor)
    costs = np.where(ok, problem.cost[0], np.inf)
    j = int(cheapest_index(costs[None, :], row_q[None, :])[0])
    return make_assignment(problem, np.array([j]), SolveStatus.OPTIMAL, METHOD)


def _incumbent(
    problem: Problem, costs: np.ndarray, need: float, lp: LpSolution, deadline: float
) -> tuple[np.ndarray | None, float]:
    """The Lagrangian heuristic started from the LP's choices, and its cost (inf when it found nothing)."""
    index = heuristic(problem, costs, need, lp.dual, deadline=deadline, start=lp.index)
    if index is None or not (problem.meets_quality(index) and problem.respects_caps(index)):
        return None, math.inf
    return index, math.fsum(costs[np.arange(problem.n), index].tolist())


def _first_threshold(rc: np.ndarray) -> float:
    """The reduced cost below which about :data:`_FIRST_FREE` pairs lie (besides the zero ones)."""
    positive = rc[(rc > _RC_TOL) & np.isfinite(rc)]
    if not len(positive):
        return 0.0
    k = min(_FIRST_FREE, len(positive) - 1)
    return float(np.partition(positive, k)[k])


def _prove(
    problem: Problem,
    costs: np.ndarray,
    scale: float,
    need: float,
    lp: LpSolution,
    *,
    started: float,
    time_limit: float,
) -> Assignment:
    """Reduced-cost fixing from the LP's multipliers, then exact solves of what is left, until proven."""
    deadline = started + time_limit
    rows = np.arange(problem.n)
    lower, rc = evaluate_dual(problem, costs, lp.dual.lam, lp.dual.mu, need)
    incumbent, best_cost = _incumbent(problem, costs, need, lp, started + 0.6 * time_limit)
    tolerance = GAP_RTOL * max(1.0, abs(lower))
    if best_cost - lower <= tolerance:
        return make_assignment(problem, incumbent, SolveStatus.OPTIMAL, METHOD)
    delta = min(best_cost - lower, _first_threshold(rc))
    global_bound = lower
    proven = False
    for attempt in range(8):
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            break
        keep = rc <= delta * (1 + 1e-9) + _RC_TOL
        if attempt == 0:
            keep |= lp.fractional[:, None] & problem.allowed
        if incumbent is not None:
            keep[rows, incumbent] = True
        outcome = solve_restricted(
            problem, costs, keep, need, remaining, best_cost=best_cost, mu=lp.dual.mu, floor=lower, delta=delta
        )
        del keep
        found = outcome.index
        if found is not None and problem.meets_quality(found) and problem.respects_caps(found):
            value = math.fsum(costs[rows, found].tolist())
            if value < best_cost:
                incumbent, best_cost = found, value
        elif found is not None:
            logger.debug("restricted answer missed the quality floor by rounding; tightening")
            need = need + 1e-9 * max(1.0, need)
            continue
        # Every assignment using a pair outside `keep` costs more than lower + delta.
        if outcome.proven or outcome.bound > -math.inf:
            global_bound = max(global_bound, min(outcome.bound, lower + delta))
        if outcome.proven and best_cost <= lower + delta + tolerance:
            proven = True
            break
        if not outcome.proven:
            break  # time limit inside the MIP
        delta = best_cost - lower if math.isfinite(best_cost) else max(4.0 * delta, 1e-6 * max(1.0, lower))
        if math.isfinite(best_cost) and best_cost - global_bound <= tolerance:
            proven = True
            break
    return _conclude(problem, costs, scale, incumbent, best_cost, global_bound, proven, time_limit)


def _conclude(
    problem: Problem,
    costs: np.ndarray,
    scale: float,
    incumbent: np.ndarray | None,
    best_cost: float,
    bound: float,
    proven: bool,
    time_limit: float,
) -> Assignment:
    """The assignment the search ended with: OPTIMAL when proven, else FEASIBLE with its honest gap."""
    if incumbent is None:
        logger.warning("exact method found no assignment within %.1f s; returning the max-quality one", time_limit)
        incumbent = max_quality_index(problem, deadline=time.perf_counter() + max(1.0, time_limit))
        best_cost = math.fsum(costs[np.arange(problem.n), incumbent].tolist())
    if proven:
        return make_assignment(problem, incumbent, SolveStatus.OPTIMAL, METHOD)
    gap = max(0.0, best_cost - bound) * scale
    return make_assignment(
        problem,
        incumbent,
        SolveStatus.FEASIBLE,
        METHOD,
        gap=gap,
        message=(
            f"time limit of {time_limit:g} s reached before optimality was proven: cost is at most "
            f"{gap:.6g} USD above the optimum"
        ),
    )
