"""The default method: a proven-optimal assignment, fast because almost every query decides itself.

The LP relaxation of the routing problem has at most (number of binding caps + 1) fractional queries, and its
dual prices every (query, model) pair: a pair whose reduced cost exceeds ``incumbent - lower bound`` cannot
appear in any cheaper assignment. So the method

1. computes the LP bound and reduced costs: exactly from the queries' lower convex hulls when no cap binds
   (no LP solver at all), and with caps by Lagrangian dual ascent, refined when needed by HiGHS on a small
   working set of queries whose choice is still open until the dual is LP-optimal;
2. gets an incumbent from the Lagrangian heuristic (often already within 1e-9 of the bound: done);
3. keeps only pairs with small reduced cost (first a tight threshold, so the problem left is tiny; if its
   answer is not provably optimal, the threshold its answer sets, which then always proves optimality),
   fixes every query left with one candidate, merges identical queries, and solves what is left exactly.

The small problem left is a knapsack with few distinct quality steps (predicted qualities repeat: k-of-K
votes, per-task rates), where HiGHS's branch and bound can need thousands of nodes and seconds to close the
last 1e-6 of gap. It is therefore solved first by a dynamic program over Pareto-optimal (quality, cost,
capped loads) partial solutions pruned with the LP bound, which settles it in milliseconds; HiGHS takes
over only when that state space grows too large.

The answer is OPTIMAL (gap 0) unless the time limit stops the search, in which case it is FEASIBLE with a
gap measured against a valid lower bound.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
import time
from dataclasses import dataclass

import highspy
import numpy as np
import scipy.sparse as sp

from eccos_core.optimize.assignment import (
    GAP_RTOL,
    Assignment,
    Problem,
    SolveStatus,
    make_assignment,
)
from eccos_core.optimize.lagrangian import (
    Dual,
    cheapest_index,
    dual_ascent,
    evaluate_dual,
    heuristic,
    lower_hull,
    scaled_costs,
)

logger = logging.getLogger(__name__)

METHOD = "exact"

_FEASIBILITY_TOL = 1e-9
"""Primal and MIP feasibility tolerance given to HiGHS (its defaults, 1e-7 and 1e-6, are looser than the
1e-9 relative tolerance promised on the quality constraint)."""

_MIP_REL_GAP = 1e-10
"""HiGHS stops when its gap is below this; HiGHS's default 1e-4 would not be a proof of optimality."""

_RC_TOL = 1e-10
"""Slack added to reduced-cost thresholds (scaled units) so rounding never drops a pair that belongs."""

_FIRST_FREE = 96
"""Reduced-cost pairs kept in the first, tight MIP: small enough to solve in milliseconds."""

_banner_lock = threading.Lock()
_banner_done = False


def quiet_highs() -> highspy.Highs:
    """A HiGHS instance that prints nothing.

    ``highspy.Highs()`` writes a copyright banner to the C-level stdout the first time one is built in a
    process, before any option can be set; the library must not print, so the first construction runs with
    file descriptor 1 pointed at ``/dev/null``. Later instances (PuLP's included) never print it again.
    """
    global _banner_done
    if not _banner_done:
        with _banner_lock:
            if not _banner_done:
                sys.stdout.flush()
                saved = os.dup(1)
                try:
                    devnull = os.open(os.devnull, os.O_WRONLY)
                    try:
                        os.dup2(devnull, 1)
                        highs = highspy.Highs()
                    finally:
                        os.dup2(saved, 1)
                        os.close(devnull)
                finally:
                    os.close(saved)
                _banner_done = True
                highs.setOptionValue("output_flag", False)
                return highs
    highs = highspy.Highs()
    highs.setOptionValue("output_flag", False)
    return highs


@dataclass(frozen=True)
class _Run:
    """What one HiGHS run returned."""

    status: str
    """``optimal``, ``infeasible``, ``time_limit`` (solution may exist) or ``failed``."""
    x: np.ndarray
    row_dual: np.ndarray
    objective: float
    bound: float
    """MIP dual bound (objective for an LP)."""
    has_solution: bool


def _run_highs(
    *,
    col_cost: np.ndarray,
    col_query: np.ndarray,
    col_model: np.ndarray,
    col_quality: np.ndarray,
    n_queries: int,
    need: float | None,
    caps: dict[int, float],
    integer: bool,
    time_limit: float,
    multiplicity: np.ndarray | None = None,
) -> _Run:
    """Builds and solves ``min cost·x`` with one row per query (=1), a quality row and cap rows.

    Args:
        col_cost: Objective of each column (one column per kept (query, model) pair).
        col_query: Local query row of each column.
        col_model: Model of each column (for its cap row).
        col_quality: Quality of each column (its coefficient in the quality row).
        n_queries: Number of query rows.
        need: Right-hand side of the quality row (``>=``), or None to leave the row out.
        caps: Residual cap of each model that gets a ``<=`` row.
        integer: Solve as a MIP (binary columns) rather than an LP.
        time_limit: Seconds for HiGHS.
        multiplicity: Copies of each query row (identical queries merged into one integer column per model,
            bounded by the count, with row right-hand side = count); None means 1 each.

    No starting solution is passed to the MIP: HiGHS 1.16 with presolve on can return a given start as
    "optimal" with a wrong objective, so the proof would be void. For the same reason the objective HiGHS
    reports is checked against ``col_cost·x`` before a status is trusted.
    """
    n_cols = len(col_cost)
    columns = np.arange(n_cols)
    copies = np.ones(n_queries) if multiplicity is None else np.asarray(multiplicity, dtype=float)
    rows = [col_query]
    cols = [columns]
    vals = [np.ones(n_cols)]
    row_lower = [copies]
    row_upper = [copies]
    next_row = n_queries
    if need is not None:
        rows.append(np.full(n_cols, next_row))
        cols.append(columns)
        vals.append(col_quality)
        row_lower.append(np.array([need]))
        row_upper.append(np.array([math.inf]))
        next_row += 1
    cap_row = {}
    for j, cap in caps.items():
        members = col_model == j
        if not members.any():
            continue
        cap_row[j] = next_row
        rows.append(np.full(int(members.sum()), next_row))
        cols.append(columns[members])
        vals.append(np.ones(int(members.sum())))
        row_lower.append(np.array([-math.inf]))
        row_upper.append(np.array([float(cap)]))
        next_row += 1
    matrix = sp.csc_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(next_row, n_cols)
    )
    lp = highspy.HighsLp()
    lp.num_col_ = n_cols
    lp.num_row_ = next_row
    lp.col_cost_ = np.asarray(col_cost, dtype=float)
    lp.col_lower_ = np.zeros(n_cols)
    lp.col_upper_ = copies[col_query]
    lp.row_lower_ = np.concatenate(row_lower)
    lp.row_upper_ = np.concatenate(row_upper)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = matrix.indptr
    lp.a_matrix_.index_ = matrix.indices
    lp.a_matrix_.value_ = matrix.data
    if integer:
        lp.integrality_ = [highspy.HighsVarType.kInteger] * n_cols
    highs = quiet_highs()
    highs.setOptionValue("time_limit", max(0.01, float(time_limit)))
    highs.setOptionValue("primal_feasibility_tolerance", _FEASIBILITY_TOL)
    highs.setOptionValue("random_seed", 0)
    if integer:
        highs.setOptionValue("mip_rel_gap", _MIP_REL_GAP)
        highs.setOptionValue("mip_abs_gap", 0.0)
        highs.setOptionValue("mip_feasibility_tolerance", _FEASIBILITY_TOL)
    else:
        highs.setOptionValue("solver", "simplex")
    highs.passModel(lp)
    highs.run()
    model_status = highs.getModelStatus()
    info = highs.getInfo()
    solution = highs.getSolution()
    has_solution = bool(solution.value_valid) and info.primal_solution_status == 2
    if model_status == highspy.HighsModelStatus.kOptimal:
        status = "optimal"
    elif model_status == highspy.HighsModelStatus.kInfeasible:
        status = "infeasible"
    elif model_status in (highspy.HighsModelStatus.kTimeLimit, highspy.HighsModelStatus.kInterrupt):
        status = "time_limit"
    else:
        status = "failed"
    x = np.asarray(solution.col_value, dtype=float) if has_solution else np.zeros(n_cols)
    objective = float(info.objective_function_value)
    if has_solution and abs(objective - float(lp.col_cost_ @ x)) > 1e-9 * max(1.0, abs(objective)):
        logger.warning(
            "HiGHS reported objective %.12g for a solution costing %.12g; not trusting it",
            objective,
            float(lp.col_cost_ @ x),
        )
        status = "failed"
    row_dual = np.asarray(solution.row_dual, dtype=float) if solution.dual_valid else np.zeros(next_row)
    bound = float(info.mip_dual_bound) if integer else float(info.objective_function_value)
    return _Run(status, x, row_dual, objective, bound, has_solution)


@dataclass(frozen=True)
class LpSolution:
    """LP-optimal multipliers and the matching primal choice of every query."""

    dual: Dual
    index: np.ndarray
    """Per query, the model with the largest LP value (the integral choice where the LP is integral)."""
    fractional: np.ndarray
    """Per query, whether the LP splits it between models."""
    exact: bool
    """The dual was proven LP-optimal (otherwise it is only the best bound found before the deadline)."""


def lp_dual(
    problem: Problem, objective: np.ndarray, need: float | None, start: Dual, *, deadline: float
) -> LpSolution | None:
    """Refines Lagrangian multipliers to the LP optimum by solving the LP on a small working set.

    Queries whose best model beats the second best by a wide reduced-cost margin are fixed to it; HiGHS
    solves the LP of the others against the residual caps and quality. If the new multipliers keep every
    fixed query on its model, primal and dual are complementary, so both are LP-optimal; otherwise the
    queries that would move join the working set and the LP is solved again.

    Args:
        problem: The instance (caps, quality, mask).
        objective: N×M objective (scaled cost, or minus quality), ``inf`` on forbidden pairs.
        need: Right-hand side of the quality row, or None without one.
        start: Multipliers to start from (e.g. from :func:`dual_ascent`).
        deadline: ``time.perf_counter()`` value to stop at.

    Returns:
        The LP solution, or None when the LP is infeasible even on the whole batch.
    """
    n, m = problem.n, problem.m
    quality = problem.quality
    binding = np.flatnonzero(problem.binding)
    lam, mu = start.lam, start.mu.copy()
    best = start
    target = min(n, max(256, 32 * (m + 1)))
    working = np.zeros(n, dtype=bool)
    for _ in range(25):
        reduced = objective + mu[None, :]
        if need is not None and lam > 0:
            reduced = reduced - lam * quality
        choice = cheapest_index(reduced, quality, 1e-12)
        if target > working.sum():
            rc = reduced - reduced.min(axis=1)[:, None]
            margin = np.partition(rc, 1, axis=1)[:, 1] if m > 1 else np.full(n, np.inf)
            open_rows = np.flatnonzero(~working)
            if target - working.sum() >= len(open_rows):
                working[:] = True
            else:
                k = int(target - working.sum())
                working[open_rows[np.argpartition(margin[open_rows], k)[:k]]] = True
        fixed = np.flatnonzero(~working)
        members = np.flatnonzero(working)
        load = np.bincount(choice[fixed], minlength=m)
        residual = problem.capacity - load
        if (residual[binding] < 0).any():
            # Fixed queries alone overfill a model: the ones that lose least by leaving it join the LP.
            rc = reduced - reduced.min(axis=1)[:, None]
            margin = np.partition(rc, 1, axis=1)[:, 1] if m > 1 else np.full(n, np.inf)
            for j in binding[residual[binding] < 0].tolist():
                on_j = fixed[choice[fixed] == j]
                extra = min(len(on_j), int(-residual[j]) + target)
                working[on_j[np.argpartition(margin[on_j], extra - 1)[:extra]]] = True
            continue
        pair_q, pair_j = np.nonzero(problem.allowed[members])
        run = _run_highs(
            col_cost=objective[members[pair_q], pair_j],
            col_query=pair_q,
            col_model=pair_j,
            col_quality=quality[members[pair_q], pair_j],
            n_queries=len(members),
            need=None if need is None else need - float(quality[fixed, choice[fixed]].sum()),
            caps={int(j): float(residual[j]) for j in binding},
            integer=False,
            time_limit=max(0.05, deadline - time.perf_counter()),
        )
        if run.status == "infeasible":
            if working.all():
                return None
            target = min(n, 4 * max(target, int(working.sum())))
            continue
        if run.status != "optimal":
            break
        n_members = len(members)
        new_lam = max(0.0, float(run.row_dual[n_members])) if need is not None else 0.0
        offset = n_members + (1 if need is not None else 0)
        new_mu = np.zeros(m)
        used = [int(j) for j in binding if (pair_j == j).any()]
        for k, j in enumerate(used):
            new_mu[j] = max(0.0, -float(run.row_dual[offset + k]))
        bound, rc = evaluate_dual(problem, objective, new_lam, new_mu, need)
        if bound > best.bound:
            best = Dual(new_lam, new_mu, bound)
        lam, mu = new_lam, new_mu
        movers = fixed[rc[fixed, choice[fixed]] > 1e-7]  # HiGHS's dual feasibility tolerance
        if not len(movers):
            index = choice.copy()
            values = np.zeros((n_members, m))
            values[pair_q, pair_j] = run.x
            index[members] = values.argmax(axis=1)
            fractional = np.zeros(n, dtype=bool)
            fractional[members] = values.max(axis=1) < 1.0 - 1e-9
            return LpSolution(Dual(new_lam, new_mu, bound), index, fractional, True)
        working[movers] = True
        if time.perf_counter() > deadline:
            break
    logger.debug("working-set LP stopped before proving LP optimality; using bound %.12g", best.bound)
    return LpSolution(best, choice, np.zeros(n, dtype=bool), False)


def max_quality_assignment(problem: Problem, *, deadline: float | None = None) -> np.ndarray:
    """The assignment with the highest total predicted quality the caps and mask allow.

    Without binding caps every query takes its best model. With caps this is a transportation problem
    (totally unimodular), solved as an LP whose vertex is integral.
    """
    quality = problem.quality
    best = np.where(problem.allowed, quality, -np.inf).argmax(axis=1)
    if not problem.capped or problem.respects_caps(best):
        return best
    deadline = time.perf_counter() + 60.0 if deadline is None else deadline
    objective = np.where(problem.allowed, -quality, np.inf)
    start = dual_ascent(problem, objective, None, deadline=deadline)
    solution = lp_dual(problem, objective, None, start, deadline=deadline)
    if solution is not None and solution.exact and problem.respects_caps(solution.index):
        return solution.index
    logger.info("working-set LP did not settle the max-quality assignment; solving the full LP")
    pair_i, pair_j = np.nonzero(problem.allowed)
    run = _run_highs(
        col_cost=-quality[pair_i, pair_j],
        col_query=pair_i,
        col_model=pair_j,
        col_quality=quality[pair_i, pair_j],
        n_queries=problem.n,
        need=None,
        caps={int(j): float(problem.capacity[j]) for j in np.flatnonzero(problem.binding)},
        integer=True,
        time_limit=max(1.0, deadline - time.perf_counter()),
    )
    values = np.zeros((problem.n, problem.m))
    values[pair_i, pair_j] = run.x
    return values.argmax(axis=1)


@dataclass(frozen=True)
class _Restricted:
    index: np.ndarray | None
    proven: bool
    """HiGHS proved the MIP over the kept pairs optimal."""
    bound: float
    """Lower bound on every assignment that uses only kept pairs (scaled units)."""


def _mip_need(problem: Problem, need: float) -> float:
    """Quality row right-hand side for HiGHS: a hair above ``need`` so its 1e-9 tolerance still meets it.

    The hair is at most half the tolerance band ``N·α·QUALITY_RTOL``, so an assignment that meets α exactly
    is never cut off.
    """
    return need + min(2.0 * _FEASIBILITY_TOL, 0.5 * (problem.n * problem.min_quality - problem.quality_floor()))


_DP_STATE_LIMIT = 200_000
"""Most partial solutions the dynamic program keeps per step before it hands the MIP to HiGHS instead."""

_DP_STATE_LIMIT_CAPPED = 20_000
"""The same limit when capped models are involved: partial solutions then differ by their loads too and
multiply fast, while HiGHS copes better with caps, so the program gives up early."""

_DP_CHOICE_LIMIT = 20_000
"""Most ways to split one group of identical queries over its models before the MIP goes to HiGHS."""


def _compositions(total: int, parts: int) -> np.ndarray:
    """Every way to split ``total`` identical queries over ``parts`` models (rows of non-negative counts)."""
    if parts == 1:
        return np.array([[total]], dtype=np.int64)
    blocks = []
    for first in range(total + 1):
        rest = _compositions(total - first, parts - 1)
        blocks.append(np.column_stack([np.full(len(rest), first, dtype=np.int64), rest]))
    return np.vstack(blocks)


def _suffix_bounds(quality: np.ndarray, costs: np.ndarray, copies: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """LP lower bound on the cost of groups k.. as a function of the quality they must add, for every k.

    Each bound is the lower convex hull of the groups' (quality, cost) options, scaled by their copies and
    merged by slope: a convex piecewise-linear curve given by its breakpoints.
    """
    k_count = len(copies)
    rows = np.arange(k_count)
    hull = lower_hull(costs, quality)
    base_q = quality[rows, hull.start] * copies
    base_c = costs[rows, hull.start] * copies
    gain_q = (quality[hull.query, hull.target] - quality[hull.query, hull.source]) * copies[hull.query]
    gain_c = (costs[hull.query, hull.target] - costs[hull.query, hull.source]) * copies[hull.query]
    tail_q = np.concatenate([np.cumsum(base_q[::-1])[::-1], [0.0]])
    tail_c = np.concatenate([np.cumsum(base_c[::-1])[::-1], [0.0]])
    bounds = []
    for k in range(k_count + 1):
        mask = hull.query >= k
        xs = np.concatenate([[tail_q[k]], tail_q[k] + np.cumsum(gain_q[mask])])
        ys = np.concatenate([[tail_c[k]], tail_c[k] + np.cumsum(gain_c[mask])])
        bounds.append((xs, ys))
    return bounds


def _lp_bound(curve: tuple[np.ndarray, np.ndarray], required: np.ndarray) -> np.ndarray:
    xs, ys = curve
    out = np.interp(required, xs, ys)
    out[required > xs[-1] + 1e-12 * max(1.0, abs(xs[-1]))] = np.inf
    return out


def _group_dp(
    quality: np.ndarray,
    costs: np.ndarray,
    keep: np.ndarray,
    copies: np.ndarray,
    need: float,
    budget: float,
    deadline: float,
    room: dict[int, int],
    mu: np.ndarray,
) -> tuple[str, np.ndarray | None]:
    """Exact minimum-cost split of groups of identical queries over their kept models, quality >= ``need``.

    A dynamic program over groups that keeps only Pareto-optimal partial solutions (more quality, less cost,
    and, per capped model, no more load) and drops any whose cost plus the LP bound of the groups still to
    come exceeds ``budget`` (an incumbent's cost). It replaces HiGHS on the restricted problem: a knapsack
    with few distinct quality steps, where branch and bound needs thousands of nodes to close the last gap.

    Args:
        quality: K×M qualities of each group's queries.
        costs: K×M scaled costs.
        keep: K×M pairs still allowed.
        copies: Queries in each group.
        need: Quality the groups must add.
        budget: Cost to beat (inf without an incumbent).
        deadline: ``time.perf_counter()`` value at which to give up.
        room: Residual cap of each binding model.
        mu: LP multipliers of the caps (length M): the bound prices capped models at ``c + μ`` and refunds
            ``μ`` per unit of room still free, which is valid for any μ >= 0 and tight at the LP optimum.

    Returns:
        ``("optimal", counts)`` with the K×M counts, ``("none", None)`` when nothing costs at most ``budget``
        (so the incumbent is optimal, or the problem infeasible when ``budget`` is inf), or
        ``("gave_up", None)`` when the state space grew too large or the deadline passed.
    """
    k_count, m = keep.shape
    capped = np.array([j for j in room if keep[:, j].any()], dtype=np.int64)
    limit = np.array([room[int(j)] for j in capped], dtype=np.int64)
    price = np.zeros(m)
    price[capped] = np.maximum(mu[capped], 0.0)
    refund = price[capped]
    masked = np.where(keep, costs + price[None, :], np.inf)
    bounds = _suffix_bounds(quality, masked, copies)
    radix = np.cumprod(np.concatenate([[1], limit[:-1] + 1])) if len(capped) else np.zeros(0, dtype=np.int64)
    packable = not len(capped) or float(np.prod((limit + 1).astype(float))) < 2**62
    state_limit = _DP_STATE_LIMIT_CAPPED if len(capped) else _DP_STATE_LIMIT
    slack = 1e-12 * max(1.0, abs(budget)) if math.isfinite(budget) else math.inf
    state_q = np.zeros(1)
    state_c = np.zeros(1)
    state_load = np.zeros((1, len(capped)), dtype=np.int64)
    parents: list[np.ndarray] = []
    picks: list[np.ndarray] = []
    splits: list[np.ndarray] = []
    for k in range(k_count):
        models = np.flatnonzero(keep[k])
        if math.comb(int(copies[k]) + len(models) - 1, len(models) - 1) > _DP_CHOICE_LIMIT:
            return "gave_up", None
        split = _compositions(int(copies[k]), len(models))
        full = np.zeros((len(split), m), dtype=np.int64)
        full[:, models] = split
        width = len(split)
        new_q = (state_q[:, None] + (split @ quality[k, models])[None, :]).ravel()
        new_c = (state_c[:, None] + (split @ costs[k, models])[None, :]).ravel()
        promise = new_c + _lp_bound(bounds[k + 1], need - new_q)
        if len(capped):
            new_load = (state_load[:, None, :] + full[None, :, capped]).reshape(-1, len(capped))
            promise -= (limit[None, :] - new_load) @ refund
        alive = promise <= budget + slack
        if len(capped):
            alive &= (new_load <= limit[None, :]).all(axis=1)
        alive = np.flatnonzero(alive)
        if not len(alive):
            return "none", None
        # Pareto filter within each load vector: drop a partial solution when another with the same loads
        # has at least its quality for at most its cost.
        if len(capped) and packable:
            _, group = np.unique(new_load[alive] @ radix, return_inverse=True)
        elif len(capped):
            _, group = np.unique(new_load[alive], axis=0, return_inverse=True)
            group = group.reshape(-1)
        else:
            group = np.zeros(len(alive), dtype=np.int64)
        _, cost_rank = np.unique(new_c[alive], return_inverse=True)
        order = np.lexsort((cost_rank, -new_q[alive], group))
        alive, group, cost_rank = alive[order], group[order], cost_rank.reshape(-1)[order]
        shifted = cost_rank - group * (len(alive) + 1)  # later groups sort below earlier ones: a segmented min
        running = np.minimum.accumulate(shifted)
        better = shifted < np.concatenate([[np.iinfo(np.int64).max], running[:-1]])
        alive = alive[better]
        if len(alive) > state_limit or time.perf_counter() > deadline:
            return "gave_up", None
        parents.append(alive // width)
        picks.append(alive % width)
        splits.append(split)
        state_q, state_c = new_q[alive], new_c[alive]
        state_load = new_load[alive] if len(capped) else np.zeros((len(alive), 0), dtype=np.int64)
    done = np.flatnonzero(state_q >= need)
    if not len(done):
        return "none", None
    state = int(done[np.argmin(state_c[done])])
    counts = np.zeros((k_count, m), dtype=np.int64)
    for k in range(k_count - 1, -1, -1):
        counts[k, np.flatnonzero(keep[k])] = splits[k][picks[k][state]]
        state = int(parents[k][state])
    return "optimal", counts


def _solve_restricted(
    problem: Problem,
    costs: np.ndarray,
    keep: np.ndarray,
    need: float,
    time_limit: float,
    best_cost: float = math.inf,
    mu: np.ndarray | None = None,
) -> _Restricted:
    """Solves the MIP over the kept pairs; queries with one kept pair are fixed to it.

    ``best_cost`` is the cost of an incumbent that uses only kept pairs (inf if none); the dynamic program
    prunes with it, and reports "nothing cheaper" as a proof that the incumbent is optimal here. ``mu`` are
    the caps' LP multipliers, which tighten its bound. HiGHS takes over when the program gives up.
    """
    mu = np.zeros(problem.m) if mu is None else mu
    m = problem.m
    quality = problem.quality
    counts = keep.sum(axis=1)
    free = np.flatnonzero(counts > 1)
    fixed = np.flatnonzero(counts == 1)
    index = keep.argmax(axis=1)
    load = np.bincount(index[fixed], minlength=m)
    residual = problem.capacity - load
    binding = np.flatnonzero(problem.binding)
    if (residual[binding] < 0).any():
        return _Restricted(None, True, math.inf)
    fixed_cost = math.fsum(costs[fixed, index[fixed]].tolist())
    rest_need = _mip_need(problem, need) - float(quality[fixed, index[fixed]].sum())
    if not len(free):
        ok = rest_need <= 0
        return _Restricted(index if ok else None, True, fixed_cost if ok else math.inf)
    # Identical free queries (same kept models, costs and qualities) become one integer column per model:
    # batches repeat prompts, and n copies of a binary choice are n! symmetric solutions for branch and bound.
    signature = np.concatenate(
        [keep[free], np.where(keep[free], costs[free], 0.0), np.where(keep[free], quality[free], 0.0)], axis=1
    )
    kinds, kind_of, copies = np.unique(signature, axis=0, return_inverse=True, return_counts=True)
    kind_of = kind_of.reshape(-1)
    representative = free[np.unique(kind_of, return_index=True)[1]]
    order = np.argsort(kind_of, kind="stable")
    starts = np.concatenate([[0], np.cumsum(copies)])
    counts_per: np.ndarray | None = None
    outcome, counts_per = _group_dp(
        quality[representative],
        costs[representative],
        keep[representative],
        copies,
        rest_need,
        best_cost - fixed_cost,
        time.perf_counter() + (min(0.2 * time_limit, 1.0) if len(binding) else 0.5 * time_limit),
        {int(j): int(residual[j]) for j in binding},
        mu,
    )
    logger.debug("restricted DP: %d free queries (%d distinct): %s", len(free), len(kinds), outcome)
    if outcome == "none":
        return _Restricted(None, True, best_cost)
    if counts_per is not None:
        index = index.copy()
        for k in range(len(kinds)):
            members = free[order[starts[k] : starts[k + 1]]]
            index[members] = np.repeat(np.arange(m), counts_per[k])
        return _Restricted(index, True, math.fsum(costs[np.arange(problem.n), index].tolist()))
    pair_q, pair_j = np.nonzero(keep[representative])
    run = _run_highs(
        col_cost=costs[representative[pair_q], pair_j],
        col_query=pair_q,
        col_model=pair_j,
        col_quality=quality[representative[pair_q], pair_j],
        n_queries=len(kinds),
        need=rest_need,
        caps={int(j): float(residual[j]) for j in binding},
        integer=True,
        time_limit=time_limit,
        multiplicity=copies,
    )
    logger.debug(
        "restricted MIP: %d free queries (%d distinct), %d columns, status %s",
        len(free),
        len(kinds),
        len(pair_q),
        run.status,
    )
    if run.status == "infeasible":
        return _Restricted(None, True, math.inf)
    bound = fixed_cost + run.bound if math.isfinite(run.bound) else -math.inf
    if not run.has_solution:
        return _Restricted(None, False, bound)
    counts_per = np.zeros((len(kinds), m), dtype=np.int64)
    counts_per[pair_q, pair_j] = np.rint(run.x).astype(np.int64)
    if not (counts_per.sum(axis=1) == copies).all():
        return _Restricted(None, False, bound)
    index = index.copy()
    for k in range(len(kinds)):
        members = free[order[starts[k] : starts[k + 1]]]
        index[members] = np.repeat(np.arange(m), counts_per[k])
    return _Restricted(index, run.status == "optimal", bound)


def _single(problem: Problem) -> Assignment:
    """One query: the cheapest allowed model that meets α (the caller made sure one does)."""
    row_q = problem.quality[0]
    floor = problem.quality_floor()
    ok = problem.allowed[0] & (row_q >= floor)
    costs = np.where(ok, problem.cost[0], np.inf)
    j = int(cheapest_index(costs[None, :], row_q[None, :])[0])
    return make_assignment(problem, np.array([j]), SolveStatus.OPTIMAL, METHOD)


def solve_exact(problem: Problem, time_limit: float) -> Assignment:
    """Proven-optimal assignment (see the module docstring for how).

    Args:
        problem: Validated instance whose α is reachable (the caller checks) with at least one query.
        time_limit: Seconds for the whole method; past it the best assignment found is returned FEASIBLE.

    Returns:
        The assignment, OPTIMAL unless the time limit stopped the proof.
    """
    started = time.perf_counter()
    deadline = started + time_limit
    if problem.n == 1:
        return _single(problem)
    rows = np.arange(problem.n)
    costs, scale = scaled_costs(problem)
    need = problem.quality_floor()
    cheapest = cheapest_index(costs, problem.quality)
    if problem.meets_quality(cheapest) and problem.respects_caps(cheapest):
        return make_assignment(problem, cheapest, SolveStatus.OPTIMAL, METHOD)

    fractional = np.zeros(problem.n, dtype=bool)
    if problem.capped:
        dual = dual_ascent(problem, costs, need, deadline=started + 0.2 * time_limit)
        incumbent, _ = heuristic(problem, costs, need, deadline=started + 0.3 * time_limit, dual=dual)
        value = math.fsum(costs[rows, incumbent].tolist()) if incumbent is not None else math.inf
        if value - dual.bound > GAP_RTOL * max(1.0, abs(dual.bound)):
            lp = lp_dual(problem, costs, need, dual, deadline=started + 0.5 * time_limit)
            if lp is not None and lp.dual.bound > dual.bound:
                dual = lp.dual
                fractional = lp.fractional
                better, _ = heuristic(problem, costs, need, deadline=started + 0.6 * time_limit, dual=dual)
                if better is not None and math.fsum(costs[rows, better].tolist()) < value:
                    incumbent = better
    else:
        # Without caps the heuristic's multiplier is the exact LP optimum (hull slope λ*).
        incumbent, dual = heuristic(problem, costs, need, deadline=started + 0.6 * time_limit)
    lower, rc = evaluate_dual(problem, costs, dual.lam, dual.mu, need)
    if incumbent is not None and not (problem.meets_quality(incumbent) and problem.respects_caps(incumbent)):
        incumbent = None
    best_cost = math.fsum(costs[rows, incumbent].tolist()) if incumbent is not None else math.inf
    tolerance = GAP_RTOL * max(1.0, abs(lower))
    if best_cost - lower <= tolerance:
        return make_assignment(problem, incumbent, SolveStatus.OPTIMAL, METHOD)

    finite_rc = rc[np.isfinite(rc)]
    positive = np.sort(finite_rc[finite_rc > _RC_TOL])
    first = float(positive[min(_FIRST_FREE, len(positive) - 1)]) if len(positive) else 0.0
    delta = min(best_cost - lower, first)
    global_bound = lower
    proven = False
    for attempt in range(8):
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            break
        keep = rc <= delta * (1 + 1e-9) + _RC_TOL
        if attempt == 0:
            keep |= fractional[:, None] & problem.allowed
        if incumbent is not None:
            keep[rows, incumbent] = True
        outcome = _solve_restricted(problem, costs, keep, need, remaining, best_cost, dual.mu)
        found = outcome.index
        if found is not None and problem.meets_quality(found) and problem.respects_caps(found):
            value = math.fsum(costs[rows, found].tolist())
            if value < best_cost:
                incumbent, best_cost = found, value
        elif found is not None:
            logger.debug("restricted MIP answer missed the quality floor by rounding; tightening")
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
    if incumbent is None:
        logger.warning("exact method found no assignment within %.1f s; returning the max-quality one", time_limit)
        incumbent = max_quality_assignment(problem, deadline=time.perf_counter() + max(1.0, time_limit))
        best_cost = math.fsum(costs[rows, incumbent].tolist())
    if proven:
        return make_assignment(problem, incumbent, SolveStatus.OPTIMAL, METHOD)
    gap = max(0.0, best_cost - global_bound) * scale
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
