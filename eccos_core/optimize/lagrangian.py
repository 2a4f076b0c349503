"""The Lagrangian method: near-optimal multipliers, the assignment they suggest, and the honest gap between.

It skips what makes the exact method exact: the multipliers come from the LP relaxation solved only on a
sample of at most :data:`~eccos_core.optimize.lp.APPROX_ROWS` queries (priced on the whole batch, which keeps
the bound valid), and the assignment is their cheapest choices repaired to the caps, filled up to α and
improved by local search (:mod:`~eccos_core.optimize.primal`), with no proof search after. The gap it reports
is the assignment's cost minus the dual bound, so it is an upper bound on how far from the optimum the answer
can be; on large batches it is a few queries' worth of cost.
"""

from __future__ import annotations

import math
import time

import numpy as np

from eccos_core.optimize.assignment import GAP_RTOL, Assignment, Problem, SolveStatus, make_assignment
from eccos_core.optimize.dual import cheapest_index, scaled_costs
from eccos_core.optimize.lp import lp_relaxation
from eccos_core.optimize.primal import heuristic

METHOD = "lagrangian"


def solve_lagrangian(problem: Problem, time_limit: float) -> Assignment | None:
    """Fast heuristic for very large batches: Lagrangian multipliers, then repair and local search.

    Args:
        problem: Validated instance with a reachable α (the caller checks) and at least one query.
        time_limit: Seconds for the whole method.

    Returns:
        The assignment, OPTIMAL only when its cost meets the dual bound within :data:`GAP_RTOL`; None when
        repairing the multipliers' choices could not meet the caps and α (the caller then runs the exact
        method instead).
    """
    started = time.perf_counter()
    costs, scale = scaled_costs(problem)
    need = problem.quality_floor()
    rows = np.arange(problem.n)
    cheapest = cheapest_index(costs, problem.quality)
    if problem.meets_quality(cheapest) and problem.respects_caps(cheapest):
        return make_assignment(problem, cheapest, SolveStatus.OPTIMAL, METHOD)
    lp = lp_relaxation(problem, costs, need, deadline=started + 0.5 * time_limit, exact=False)
    if lp is None:
        return None
    index = heuristic(problem, costs, need, lp.dual, deadline=started + time_limit, start=lp.index)
    if index is None or not problem.meets_quality(index) or not problem.respects_caps(index):
        return None
    total = math.fsum(costs[rows, index].tolist())
    gap = max(0.0, total - lp.dual.bound)
    status = SolveStatus.OPTIMAL if gap <= GAP_RTOL * max(1.0, abs(total)) else SolveStatus.FEASIBLE
    return make_assignment(problem, index, status, METHOD, gap=gap * scale)
