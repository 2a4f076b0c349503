"""The LP relaxation with caps priced in: LP-optimal multipliers (λ, μ) found on small working sets.

Without a cap that binds, the LP optimum is the hull crossing of :func:`~eccos_core.optimize.dual.crossing`
and no LP solver runs. With caps the method first asks whether they can bind at all: when the uncapped LP
optimum already respects every cap, μ = 0 is optimal and that is the answer.

Otherwise the caps are priced by multipliers μ_j, and the LP is solved on a *working set*. Under near-optimal
(λ, μ) almost every query has one clearly cheapest model (a wide margin to its second best); those are fixed
there, and HiGHS solves the LP of the few others against the residual caps and quality. Its duals are the new
multipliers; when every fixed query still prefers its model under them, primal and dual are complementary and
both LP-optimal. Queries that would move join the working set and the LP is solved again.

HiGHS's simplex takes seconds on the whole LP of 10^4 queries, so the working set must stay small, which
needs a good start. The start comes from the same method on a random sample (1/8 of the queries, caps and
quality scaled to match, recursively down to a sample HiGHS solves whole): the multipliers are prices per
query, and a sample's prices are close to the batch's.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np

from eccos_core.optimize.assignment import Problem
from eccos_core.optimize.dual import HULL_ROWS, Dual, cheapest_index, crossing, reduced_costs
from eccos_core.optimize.highs import DUAL_TOL, run_highs

logger = logging.getLogger(__name__)

BASE_ROWS = 400
"""A sample this small is solved whole by HiGHS (about 0.05 s at M = 9)."""

LEVEL = 8
"""Each level of the start-up samples is this many times smaller than the one above."""

TARGET = 300
"""Queries in a working set before the movers are added."""

APPROX_ROWS = 50_000
"""With ``exact=False`` the working sets stop at a sample of at most this many queries; its multipliers are
then only priced on the whole batch (a valid bound, a little below the LP optimum)."""

_NEWTON_STEPS = 8
"""Most Newton steps of :func:`balance` at each level, before its working sets."""

_ROUNDS = 40
"""Most working-set LPs per level before the best multipliers so far are returned as not proven."""


@dataclass(frozen=True)
class LpSolution:
    """LP-optimal (or best found) multipliers and the matching primal choice of every query."""

    dual: Dual
    index: np.ndarray
    """Per query, the model with the largest LP value (the integral choice where the LP is integral)."""
    fractional: np.ndarray
    """Per query, whether the LP splits it between models."""
    exact: bool
    """The dual was proven LP-optimal (otherwise it is only the best bound found)."""


@dataclass(frozen=True)
class _Level:
    """The outcome of one level: multipliers and primal choice, in that level's own queries."""

    lam: float
    mu: np.ndarray
    index: np.ndarray
    fractional: np.ndarray
    exact: bool


def lp_relaxation(
    problem: Problem,
    objective: np.ndarray,
    need: float | None,
    *,
    deadline: float,
    exact: bool = True,
    uncapped: LpSolution | None = None,
) -> LpSolution | None:
    """The LP relaxation's optimum: multipliers, their bound and the LP's choice for every query.

    Args:
        problem: The instance (caps, quality, mask).
        objective: N×M objective (scaled cost, or minus quality), ``inf`` on forbidden pairs.
        need: Right-hand side of the quality row, or None without one.
        deadline: ``time.perf_counter()`` value to stop refining at (the bound stays valid).
        exact: Refine on the whole batch until LP-optimal; False stops at a sample of :data:`APPROX_ROWS`
            queries, which is what the Lagrangian heuristic needs.
        uncapped: The same LP without caps, when the caller has it already.

    Returns:
        The solution (its bound is valid even when not proven optimal), or None when the LP is infeasible.
    """
    free = uncapped
    # With caps the uncapped LP only tells whether they bind: rough multipliers find that out anyway, and a
    # sample can tell that they surely do.
    if free is None and not (problem.capped and (not exact or caps_clearly_bind(problem, objective, need))):
        free = _uncapped(problem, objective, need)
        if free is None:
            return None  # infeasible even without caps
    if not problem.capped or (free is not None and _respects_caps(problem, free)):
        return free
    caps = np.where(problem.binding, problem.capacity, np.inf).astype(float)
    start = Dual(free.dual.lam if free is not None else 0.0, np.zeros(problem.m), -math.inf)
    level = _solve_level(objective, problem.quality, caps, need, start, deadline=deadline, exact=exact)
    if level is None:
        return None
    bound = dual_value(problem, objective, level.lam, level.mu, need)
    return LpSolution(Dual(level.lam, level.mu, bound), level.index, level.fractional, level.exact)


def caps_clearly_bind(problem: Problem, objective: np.ndarray, need: float | None) -> bool:
    """Whether a sample's uncapped LP overfills some cap by 10 %, so the caps surely bind on the batch.

    The uncapped LP of a large batch costs seconds; when it would only confirm that the caps bind, a sample of
    :data:`~eccos_core.optimize.dual.HULL_ROWS` / 4 queries says so in milliseconds.
    """
    n = problem.n
    if not problem.capped or n <= 2 * HULL_ROWS:
        return False
    rows = np.sort(np.random.default_rng(1).choice(n, HULL_ROWS // 4, replace=False))
    ratio = n / len(rows)
    if need is None:
        index = cheapest_index(objective[rows], problem.quality[rows])
    else:
        cross = crossing(objective[rows], problem.quality[rows], need / ratio)
        if not math.isfinite(cross.lam):
            return False
        index = cross.index
    load = np.bincount(index, minlength=problem.m) * ratio
    binding = problem.binding
    return bool((load[binding] > 1.1 * problem.capacity[binding] + 10.0).any())


def dual_value(problem: Problem, objective: np.ndarray, lam: float, mu: np.ndarray, need: float | None) -> float:
    """The Lagrangian bound of multipliers ``(lam, mu)`` (valid for any λ, μ >= 0)."""
    lam = lam if need is not None else 0.0
    low = reduced_costs(objective, problem.quality, lam, mu).min(axis=1)
    return float(low.sum()) - float(mu @ problem.capacity) + (lam * need if need is not None else 0.0)


def _uncapped(problem: Problem, objective: np.ndarray, need: float | None) -> LpSolution | None:
    """The LP optimum with the caps left out: the hull crossing (no LP solver)."""
    rows = np.arange(problem.n)
    zero = np.zeros(problem.m)
    fractional = np.zeros(problem.n, dtype=bool)
    if need is None:
        index = cheapest_index(objective, problem.quality)
        return LpSolution(Dual(0.0, zero, float(objective[rows, index].sum())), index, fractional, True)
    cross = crossing(objective, problem.quality, need)
    if not math.isfinite(cross.lam):
        return None
    index = cross.index
    bound = float((objective[rows, index] - cross.lam * problem.quality[rows, index]).sum()) + cross.lam * need
    if cross.query >= 0:
        fractional[cross.query] = True
    return LpSolution(Dual(cross.lam, zero, bound), index, fractional, True)


def _respects_caps(problem: Problem, solution: LpSolution) -> bool:
    """Whether the LP solution, with its split query on either side, stays within every cap."""
    if not problem.respects_caps(solution.index):
        return False
    split = np.flatnonzero(solution.fractional)
    if not len(split) or solution.dual.lam <= 0:
        return True
    i = int(split[0])
    reduced = problem.cost[i] - solution.dual.lam * problem.quality[i]
    ties = np.flatnonzero(problem.allowed[i] & (reduced <= reduced[problem.allowed[i]].min() + 1e-12))
    other = solution.index.copy()
    for j in ties.tolist():
        other[i] = j
        if not problem.respects_caps(other):
            return False
    return True


def _solve_level(
    objective: np.ndarray,
    quality: np.ndarray,
    caps: np.ndarray,
    need: float | None,
    start: Dual,
    *,
    deadline: float,
    exact: bool,
) -> _Level | None:
    """The LP of these queries: a sample's multipliers first (recursively), then working sets on them all."""
    n = len(objective)
    if n <= BASE_ROWS:
        return _refine(objective, quality, caps, need, (start.lam, start.mu), n, deadline)
    size = max(BASE_ROWS, n // LEVEL)
    rows = np.sort(np.random.default_rng(n).choice(n, size, replace=False))
    ratio = size / n
    sample = _solve_level(
        objective[rows],
        quality[rows],
        caps * ratio,
        None if need is None else need * ratio,
        start,
        deadline=deadline,
        exact=exact,
    )
    lam, mu = (sample.lam, sample.mu) if sample is not None else (start.lam, start.mu)
    lam, mu = balance(objective, quality, caps, need, (lam, mu), deadline=deadline)
    if not exact and n > APPROX_ROWS:
        reduced = reduced_costs(objective, quality, lam if need is not None else 0.0, mu)
        index = cheapest_index(reduced, quality, 1e-12)
        return _Level(lam, mu, index, np.zeros(n, dtype=bool), False)
    return _refine(objective, quality, caps, need, (lam, mu), TARGET, deadline)


def balance(
    objective: np.ndarray,
    quality: np.ndarray,
    caps: np.ndarray,
    need: float | None,
    start: tuple[float, np.ndarray],
    *,
    deadline: float,
    steps: int = _NEWTON_STEPS,
    tolerance: float = 0.5,
) -> tuple[float, np.ndarray]:
    """Newton steps on the multipliers until the loads meet the caps and the quality meets ``need``.

    The loads and the quality are step functions of (λ, μ), but over many queries they are nearly smooth:
    a query within ``h`` of a tie between its two cheapest models switches when the multipliers move its
    margin by more than the margin, so counting those queries estimates the Jacobian (as Newton's method for
    semi-discrete optimal transport does). A step that leaves a larger imbalance is halved, from the best
    multipliers so far. A few steps from a sample's multipliers leave the imbalance at a few queries, which the
    working-set LP then settles. It stops when no load is off its cap, nor the quality off ``need``, by more
    than ``tolerance`` (in queries), or when halving no longer helps.
    """
    lam, mu = start[0], start[1].copy()
    best = (lam, mu.copy(), math.inf)
    direction: tuple[np.ndarray, np.ndarray] = (np.zeros(0), np.zeros(0, dtype=np.int64))
    scale = 1.0
    buffer = np.empty_like(objective)
    for _ in range(steps):
        imbalance = _imbalance(objective, quality, caps, need, lam, mu, buffer)
        size = float(np.abs(imbalance.residual).max(initial=0.0))
        if size < best[2]:
            best, scale = (lam, mu.copy(), size), 1.0
            if size <= tolerance or time.perf_counter() > deadline:
                break
            direction = (_newton_step(quality, need, imbalance), imbalance.active)
        else:
            scale *= 0.5
            if scale < 0.1 or time.perf_counter() > deadline:
                break
        step, active = direction
        if not len(step):
            break
        lam, mu = best[0], best[1].copy()
        if need is not None:
            lam, step = max(0.0, lam + scale * float(step[0])), step[1:]
        mu[active] = np.maximum(0.0, mu[active] + scale * step)
    return best[0], best[1]


@dataclass(frozen=True)
class _Imbalance:
    """How far the cheapest choices under some multipliers are from the caps and the quality row."""

    residual: np.ndarray
    """``need - quality`` (when there is a quality row), then ``load - cap`` of each active capped model."""
    active: np.ndarray
    """Capped models with a price or over their cap."""
    first: np.ndarray
    second: np.ndarray
    margin: np.ndarray
    """Per query its cheapest and second-cheapest model, and the reduced-cost gap between them."""


def _imbalance(
    objective: np.ndarray,
    quality: np.ndarray,
    caps: np.ndarray,
    need: float | None,
    lam: float,
    mu: np.ndarray,
    buffer: np.ndarray,
) -> _Imbalance:
    n, m = objective.shape
    rows = np.arange(n)
    reduced = reduced_costs(objective, quality, lam if need is not None else 0.0, mu, out=buffer)
    first = reduced.argmin(axis=1)
    low = reduced[rows, first]
    reduced[rows, first] = np.inf
    second = reduced.argmin(axis=1)
    margin = reduced[rows, second] - low
    load = np.bincount(first, minlength=m)
    capped = np.flatnonzero(np.isfinite(caps))
    active = capped[(mu[capped] > 0) | (load[capped] > caps[capped])]
    gap = [need - float(quality[rows, first].sum())] if need is not None else []
    return _Imbalance(np.array(gap + (load[active] - caps[active]).tolist()), active, first, second, margin)


def _newton_step(quality: np.ndarray, need: float | None, imbalance: _Imbalance) -> np.ndarray:
    """The change of (λ, μ_active) that the near-tie queries say removes the imbalance (empty if none can)."""
    margin = imbalance.margin
    n = len(margin)
    window = min(n - 1, max(64, n // 100))
    if window < 1 or not np.isfinite(margin).any():
        return np.zeros(0)
    h = max(float(np.partition(margin, window)[window]), 1e-12)
    near = np.flatnonzero(margin <= h)
    one, two = imbalance.first[near], imbalance.second[near]
    columns = [quality[near, two] - quality[near, one]] if need is not None else []
    columns += [(one == j).astype(float) - (two == j) for j in imbalance.active.tolist()]
    if not columns:
        return np.zeros(0)
    d = np.column_stack(columns)
    jacobian = d.T @ d / (2.0 * h) + 1e-9 * np.eye(d.shape[1])  # both sides of each tie count
    return np.linalg.lstsq(jacobian, imbalance.residual, rcond=None)[0]


def _refine(
    objective: np.ndarray,
    quality: np.ndarray,
    caps: np.ndarray,
    need: float | None,
    start: tuple[float, np.ndarray],
    target: int,
    deadline: float,
) -> _Level | None:
    """Working-set LPs from ``start`` until no fixed query would move (then LP-optimal) or time is up.

    Returns None when the LP is infeasible even with every query in the working set.
    """
    n, m = objective.shape
    rows = np.arange(n)
    capped = np.flatnonzero(np.isfinite(caps))
    lam, mu = start
    working = np.zeros(n, dtype=bool)
    reduced = np.empty_like(objective)
    last: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # working set, fixed choice, LP values
    choice = np.zeros(n, dtype=np.int64)
    for _ in range(_ROUNDS):
        reduced_costs(objective, quality, lam if need is not None else 0.0, mu, out=reduced)
        choice = reduced.argmin(axis=1)
        low = reduced[rows, choice]
        if last is not None:
            members, fixed_choice, values = last
            fixed = np.ones(n, dtype=bool)
            fixed[members] = False
            movers = fixed & (reduced[rows, fixed_choice] - low > DUAL_TOL)
            if not movers.any():
                return _assemble(objective, members, fixed_choice, values, lam, mu)
            working |= movers
            last = None
        if time.perf_counter() > deadline:
            break
        margin = np.partition(reduced, 1, axis=1)[:, 1] - low if m > 1 else np.full(n, np.inf)
        _grow(working, margin, target)
        if not _fits(working, choice, margin, caps, capped, target):
            continue
        members = np.flatnonzero(working)
        outcome = _working_lp(objective, quality, caps, capped, need, working, choice, deadline)
        if outcome == "infeasible":
            if working.all():
                return None
            target = min(n, 4 * max(target, len(members)))
            continue
        if outcome is None:
            break
        lam, mu, values = outcome
        last = (members, choice.copy(), values)
    logger.debug("working-set LP stopped before proving LP optimality (%d of %d queries in it)", working.sum(), n)
    return _Level(lam, mu, choice, np.zeros(n, dtype=bool), False)


def _grow(working: np.ndarray, margin: np.ndarray, target: int) -> None:
    """Adds the queries with the narrowest margins until the working set holds ``target`` queries."""
    want = target - int(working.sum())
    if want <= 0:
        return
    open_rows = np.flatnonzero(~working)
    if want >= len(open_rows):
        working[:] = True
        return
    working[open_rows[np.argpartition(margin[open_rows], want)[:want]]] = True


def _fits(
    working: np.ndarray, choice: np.ndarray, margin: np.ndarray, caps: np.ndarray, capped: np.ndarray, target: int
) -> bool:
    """Whether the fixed queries alone stay within every cap.

    If not, the closest calls on over-full models join the working set (and False is returned so the caller
    looks again).
    """
    fixed = ~working
    load = np.bincount(choice[fixed], minlength=len(caps))
    over = capped[load[capped] > caps[capped] + 1e-9]
    for j in over.tolist():
        on_j = np.flatnonzero(fixed & (choice == j))
        extra = min(len(on_j), math.ceil(load[j] - caps[j]) + max(1, target // 4))
        working[on_j[np.argpartition(margin[on_j], extra - 1)[:extra]]] = True
    return not len(over)


def _working_lp(
    objective: np.ndarray,
    quality: np.ndarray,
    caps: np.ndarray,
    capped: np.ndarray,
    need: float | None,
    working: np.ndarray,
    choice: np.ndarray,
    deadline: float,
) -> tuple[float, np.ndarray, np.ndarray] | str | None:
    """HiGHS on the working set against the residual caps and quality.

    Returns ``(λ, μ, values)`` with the LP values of the working set's pairs (members × M, row-major), the
    string ``"infeasible"``, or None when HiGHS stopped without an optimum.
    """
    m = objective.shape[1]
    members = np.flatnonzero(working)
    fixed = np.flatnonzero(~working)
    load = np.bincount(choice[fixed], minlength=m)
    pair_q, pair_j = np.nonzero(np.isfinite(objective[members]))
    rest = None if need is None else need - float(quality[fixed, choice[fixed]].sum())
    run = run_highs(
        col_cost=objective[members[pair_q], pair_j],
        col_query=pair_q,
        col_model=pair_j,
        col_quality=quality[members[pair_q], pair_j],
        n_queries=len(members),
        need=rest,
        caps={int(j): float(caps[j] - load[j]) for j in capped},
        integer=False,
        time_limit=max(0.05, deadline - time.perf_counter()),
    )
    if run.status == "infeasible":
        return "infeasible"
    if run.status != "optimal":
        return None
    lam = max(0.0, float(run.row_dual[len(members)])) if need is not None else 0.0
    mu = np.zeros(m)
    for j, row in run.cap_rows.items():
        mu[j] = max(0.0, -float(run.row_dual[row]))
    values = np.zeros((len(members), m))
    values[pair_q, pair_j] = run.x
    return lam, mu, values


def _assemble(
    objective: np.ndarray, members: np.ndarray, choice: np.ndarray, values: np.ndarray, lam: float, mu: np.ndarray
) -> _Level:
    """The LP-optimal level: fixed queries on their choice, working-set queries on their largest LP value."""
    index = choice.copy()
    index[members] = values.argmax(axis=1)
    fractional = np.zeros(len(objective), dtype=bool)
    fractional[members] = values.max(axis=1) < 1.0 - 1e-9
    return _Level(lam, mu, index, fractional, True)


def max_quality_index(problem: Problem, *, deadline: float) -> np.ndarray:
    """The assignment with the highest total predicted quality the caps and mask allow.

    Without binding caps every query takes its best model. With caps this is a transportation problem
    (totally unimodular), so the working-set LP's vertex is integral; HiGHS solves it whole as a MIP only if
    the working sets did not settle it in time.
    """
    quality = problem.quality
    costs = np.where(problem.allowed, problem.cost, np.inf)
    best = cheapest_index(np.where(problem.allowed, -quality, np.inf), -costs)
    if not problem.capped or problem.respects_caps(best):
        return best
    objective = np.where(problem.allowed, -quality, np.inf)
    solution = lp_relaxation(problem, objective, None, deadline=deadline)
    if solution is not None and solution.exact and problem.respects_caps(solution.index):
        return solution.index
    logger.info("working-set LP did not settle the max-quality assignment; solving it whole")
    pair_i, pair_j = np.nonzero(problem.allowed)
    run = run_highs(
        col_cost=objective[pair_i, pair_j],
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
