"""The textbook formulation, solved by a general MIP solver through PuLP.

It is the reference the other methods are checked against and the baseline the benchmark compares them with.
PuLP is imported with this module, which :mod:`~eccos_core.optimize.methods` loads only when the ILP runs.

One binary per allowed (query, model) pair, one ``= 1`` row per query, the quality row and one ``<=`` row per
binding cap. HiGHS is used when PuLP can reach it (``highspy``), CBC otherwise. It is exact but builds
N×M Python objects, so it is seconds at N = 10,000 where the ``exact`` method takes a fraction of that.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from typing import Literal

import numpy as np
import pulp

from eccos_core.optimize.assignment import Assignment, Problem, SolveStatus, make_assignment
from eccos_core.optimize.dual import scaled_costs
from eccos_core.optimize.highs import quiet_highs
from eccos_core.optimize.lp import lp_relaxation, max_quality_index

logger = logging.getLogger(__name__)

METHOD = "ilp"

_GAP_REL = 1e-10
"""Relative MIP gap asked of the solver; their defaults (HiGHS: 1e-4) would stop short of optimality."""

_TOL = 1e-9
"""Feasibility tolerance asked of HiGHS, below the quality constraint's own 1e-9 relative tolerance."""

SolverName = Literal["auto", "highs", "cbc"]


def _solver(name: SolverName, time_limit: float) -> tuple[pulp.LpSolver, str]:
    highs_ok = bool(pulp.HiGHS().available())
    if name == "highs" or (name == "auto" and highs_ok):
        if not highs_ok:
            raise RuntimeError("PuLP cannot reach HiGHS: install highspy")
        quiet_highs()  # absorbs HiGHS's one-time banner before PuLP builds its own instance
        solver = pulp.HiGHS(
            msg=False,
            timeLimit=time_limit,
            gapRel=_GAP_REL,
            gapAbs=0.0,
            mip_feasibility_tolerance=_TOL,
            primal_feasibility_tolerance=_TOL,
            random_seed=0,
        )
        return solver, "highs"
    with warnings.catch_warnings():
        # PuLP 3.3 deprecates its bundled CBC in favour of a separately installed one; the bundled one is
        # what every PuLP install has, so it stays the fallback.
        warnings.simplefilter("ignore", DeprecationWarning)
        return pulp.PULP_CBC_CMD(msg=False, timeLimit=time_limit, gapRel=_GAP_REL, gapAbs=0.0), "cbc"


def _model(
    problem: Problem, costs: np.ndarray, need: float
) -> tuple[pulp.LpProblem, list[pulp.LpVariable], np.ndarray, np.ndarray]:
    pair_i, pair_j = np.nonzero(problem.allowed)
    model = pulp.LpProblem("eccos_routing", pulp.LpMinimize)
    if hasattr(model, "add_variable"):  # PuLP >= 3.3 owns variables through the model
        variables = [
            model.add_variable(f"x_{i}_{j}", 0, 1, pulp.LpInteger) for i, j in zip(pair_i, pair_j, strict=True)
        ]
    else:
        variables = [pulp.LpVariable(f"x_{i}_{j}", cat=pulp.LpBinary) for i, j in zip(pair_i, pair_j, strict=True)]
    model += pulp.LpAffineExpression(zip(variables, costs[pair_i, pair_j].tolist(), strict=True))
    starts = np.searchsorted(pair_i, np.arange(problem.n + 1))
    for i in range(problem.n):
        row = variables[starts[i] : starts[i + 1]]
        model += pulp.LpConstraint(pulp.LpAffineExpression((v, 1.0) for v in row), pulp.LpConstraintEQ, rhs=1.0)
    quality = problem.quality[pair_i, pair_j].tolist()
    model += pulp.LpConstraint(
        pulp.LpAffineExpression(zip(variables, quality, strict=True)), pulp.LpConstraintGE, rhs=need
    )
    for j in np.flatnonzero(problem.binding).tolist():
        members = np.flatnonzero(pair_j == j).tolist()
        expression = pulp.LpAffineExpression((variables[k], 1.0) for k in members)
        model += pulp.LpConstraint(expression, pulp.LpConstraintLE, rhs=float(problem.capacity[j]))
    return model, variables, pair_i, pair_j


def solve_ilp(problem: Problem, time_limit: float, *, solver: SolverName = "auto") -> Assignment | None:
    """Solves the assignment as one MIP with PuLP.

    Args:
        problem: Validated instance whose α is reachable (the caller checks) with at least one query.
        time_limit: Seconds given to the MIP solver (model building in PuLP is not counted by the solver).
        solver: ``"highs"``, ``"cbc"`` or ``"auto"`` (HiGHS when available).

    Returns:
        OPTIMAL when the solver proves it; FEASIBLE when its time limit stopped it with an incumbent, with the
        gap to the best lower bound known (the solver's, or the Lagrangian dual bound); None when the solver
        found no solution at all (the caller then runs the exact method instead).
    """
    started = time.perf_counter()
    costs, scale = scaled_costs(problem)
    floor = problem.quality_floor()
    # A hair above the floor (within the tolerance band) so the solver's own tolerance still meets it.
    need = floor + min(2e-9, 0.5 * (problem.n * problem.target - floor))
    rows = np.arange(problem.n)
    for _attempt in range(2):
        model, variables, pair_i, pair_j = _model(problem, np.where(problem.allowed, costs, 0.0), need)
        engine, engine_name = _solver(solver, max(0.01, time_limit - (time.perf_counter() - started)))
        model.solve(engine)
        values = np.array([v.varValue if v.varValue is not None else 0.0 for v in variables])
        if model.sol_status not in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible):
            logger.warning("ILP (%s) found no solution (%s)", engine_name, model.status)
            return None
        dense = np.full((problem.n, problem.m), -1.0)
        dense[pair_i, pair_j] = values
        index = dense.argmax(axis=1)
        if problem.meets_quality(index) and problem.respects_caps(index):
            break
        shortfall = floor - float(problem.quality[rows, index].sum())
        logger.debug("ILP answer misses the quality floor by %.3g after rounding; tightening", shortfall)
        need += max(shortfall, 0.0) + 1e-7
    else:
        index = max_quality_index(problem, deadline=time.perf_counter() + max(1.0, time_limit))
        return make_assignment(problem, index, SolveStatus.FEASIBLE, METHOD, gap=math.inf)
    method = f"{METHOD}-{engine_name}" if solver != "auto" else METHOD
    if model.sol_status == pulp.LpSolutionOptimal:
        return make_assignment(problem, index, SolveStatus.OPTIMAL, method)
    total = math.fsum(costs[rows, index].tolist())
    lp = lp_relaxation(problem, costs, floor, deadline=time.perf_counter() + 0.1 * time_limit + 1.0, exact=False)
    bound = lp.dual.bound if lp is not None else -math.inf
    if engine_name == "highs" and model.solverModel is not None:
        mip_bound = float(model.solverModel.getInfo().mip_dual_bound)
        if math.isfinite(mip_bound):
            bound = max(bound, mip_bound)
    gap = max(0.0, total - bound) * scale
    return make_assignment(
        problem,
        index,
        SolveStatus.FEASIBLE,
        method,
        gap=gap,
        message=(
            f"{engine_name} stopped at its time limit of {time_limit:g} s: cost is at most {gap:.6g} USD above "
            "the optimum"
        ),
    )
