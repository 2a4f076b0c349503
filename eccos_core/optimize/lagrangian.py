"""Lagrangian dual of the routing problem: lower bounds, reduced costs and a fast heuristic.

Dualising the quality row with λ >= 0 and each cap with μ_j >= 0 gives, for *any* such multipliers, the bound

    cost(x) >= Σ_i min_j (c_ij - λ q_ij + μ_j) + λ·need - Σ_j μ_j L_j + Σ_ij rc_ij x_ij,

where ``rc_ij = c_ij - λ q_ij + μ_j - min_k (c_ik - λ q_ik + μ_k) >= 0``. The first part is the dual value
(a lower bound on every feasible assignment, so the reported gap is honest whatever multipliers we found);
the reduced costs ``rc`` say how much using pair (i, j) costs above that bound, which is what the exact
method uses to discard pairs.

Without caps the best λ is found exactly: each query walks the lower convex hull of its (quality, cost)
points as λ grows, and λ* is the hull slope at which the batch's quality first reaches ``need`` (the LP
relaxation of this multiple-choice knapsack has at most one fractional query). With caps, λ and μ are
improved by exact coordinate steps, and the per-multiplier assignment is repaired to meet caps and α.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np

from eccos_core.optimize.assignment import (
    GAP_RTOL,
    Assignment,
    Problem,
    SolveStatus,
    make_assignment,
)

logger = logging.getLogger(__name__)

METHOD = "lagrangian"


@dataclass(frozen=True)
class Dual:
    """Multipliers and the lower bound they prove (in the scaled cost units of :func:`scaled_costs`)."""

    lam: float
    """Multiplier of the quality row (>= 0)."""
    mu: np.ndarray
    """Multiplier of each model's cap (>= 0; 0 for models whose cap cannot bind)."""
    bound: float
    """Dual value: no feasible assignment costs less."""


def scaled_costs(problem: Problem) -> tuple[np.ndarray, float]:
    """Costs divided by the largest allowed cost, with ``inf`` where a pair is not allowed.

    Real costs are ~1e-5 USD per query; solver tolerances (1e-7 on reduced costs, 1e-6 on MIP gaps) are
    absolute, so unscaled they would swamp the differences that decide the optimum.
    """
    scale = float(problem.cost[problem.allowed].max()) if problem.allowed.any() else 0.0
    scale = scale if scale > 0 else 1.0
    return np.where(problem.allowed, problem.cost / scale, np.inf), scale


def evaluate_dual(
    problem: Problem, costs: np.ndarray, lam: float, mu: np.ndarray, need: float | None
) -> tuple[float, np.ndarray]:
    """Dual value and reduced costs of multipliers ``(lam, mu)``.

    Args:
        problem: The validated instance (for caps and quality).
        costs: Scaled costs with ``inf`` on forbidden pairs.
        lam: Quality multiplier (ignored when ``need`` is None).
        mu: Per-model cap multipliers (only binding models may be non-zero).
        need: Total quality to reach, or None when the quality row is absent.

    Returns:
        ``(bound, rc)``: the lower bound and the N×M reduced costs (``inf`` on forbidden pairs).
    """
    reduced = costs + mu[None, :]
    if need is not None and lam > 0:
        reduced = reduced - lam * problem.quality
    best = reduced.min(axis=1)
    bound = math.fsum(best.tolist()) - float(mu @ problem.capacity)
    if need is not None:
        bound += lam * need
    return bound, reduced - best[:, None]


def cheapest_index(costs: np.ndarray, quality: np.ndarray, tol: float = 0.0) -> np.ndarray:
    """Per query, the cheapest model; among those within ``tol`` of it the highest quality (then lowest index).

    Breaking ties toward quality matters: at λ = 0 many models cost the same, and the first of them is often
    the weakest, which would leave a needless quality deficit to repair.
    """
    low = costs.min(axis=1)
    return np.where(costs <= (low + tol)[:, None], quality, -np.inf).argmax(axis=1)


@dataclass(frozen=True)
class Hull:
    """Moves along every query's lower convex hull, sorted by slope (the λ at which each becomes worth it)."""

    start: np.ndarray
    query: np.ndarray
    slope: np.ndarray
    source: np.ndarray
    target: np.ndarray
    cumulative: np.ndarray
    """Total quality after applying the moves up to and including each one."""


def lower_hull(costs: np.ndarray, quality: np.ndarray, start: np.ndarray | None = None) -> Hull:
    """Every query's moves along the lower convex hull of its (quality, cost) points, sorted by slope.

    Each query starts at ``start`` (default: its cheapest point) and moves to ever higher quality; the slope
    of a move is the λ above which the move lowers ``cost - λ·quality``. Sorted over the batch, the moves
    trace the LP relaxation's optimal cost as a function of the quality required.
    """
    n, m = costs.shape
    rows = np.arange(n)
    current = cheapest_index(costs, quality) if start is None else start.copy()
    start = current.copy()
    active = np.ones(n, dtype=bool)
    queries, slopes, sources, targets, gains = [], [], [], [], []
    for _ in range(m):
        here_c = costs[rows, current]
        here_q = quality[rows, current]
        rise = quality - here_q[:, None]
        ok = (rise > 0) & np.isfinite(costs) & active[:, None]
        slope = np.full(costs.shape, np.inf)
        np.divide(costs - here_c[:, None], rise, out=slope, where=ok)
        low = slope.min(axis=1)
        moving = np.isfinite(low)
        if not moving.any():
            break
        # Among equal slopes jump to the highest quality: collinear points in between are never needed.
        nxt = np.where(slope == low[:, None], quality, -np.inf).argmax(axis=1)
        idx = np.flatnonzero(moving)
        queries.append(idx)
        slopes.append(low[idx])
        sources.append(current[idx])
        targets.append(nxt[idx])
        gains.append(quality[idx, nxt[idx]] - here_q[idx])
        current = np.where(moving, nxt, current)
        active = moving
    if not queries:
        empty = np.zeros(0)
        none = empty.astype(np.int64)
        return Hull(start, none, empty, none, none, empty)
    query = np.concatenate(queries)
    slope = np.concatenate(slopes)
    order = np.lexsort((np.concatenate([np.full(len(q), k) for k, q in enumerate(queries)]), slope))
    base = float(quality[rows, start].sum())
    return Hull(
        start=start,
        query=query[order],
        slope=slope[order],
        source=np.concatenate(sources)[order],
        target=np.concatenate(targets)[order],
        cumulative=base + np.cumsum(np.concatenate(gains)[order]),
    )


def _apply(hull: Hull, count: int) -> np.ndarray:
    """Assignment after the first ``count`` hull moves (each query ends on its last move's target)."""
    index = hull.start.copy()
    if count > 0:
        # A query's moves appear in increasing slope order, so its last applied move is the latest one.
        moved = hull.query[:count][::-1]
        queries, first = np.unique(moved, return_index=True)
        index[queries] = hull.target[:count][::-1][first]
    return index


def best_lambda(costs: np.ndarray, quality: np.ndarray, need: float) -> float:
    """Exact maximiser over λ >= 0 of the dual for fixed (already added) cap multipliers.

    Returns ``inf`` when even the highest-quality model of every query cannot reach ``need``.
    """
    hull = lower_hull(costs, quality)
    base = float(quality[np.arange(len(costs)), hull.start].sum())
    if base >= need:
        return 0.0
    k = int(np.searchsorted(hull.cumulative, need))
    if k >= len(hull.cumulative):
        return math.inf
    return float(hull.slope[k])


def _best_mu(reduced: np.ndarray, j: int, cap: int) -> float:
    """Best μ_j with the other multipliers fixed; ``reduced`` holds reduced costs without μ_j in column j."""
    if reduced.shape[1] == 1:
        return 0.0
    others = np.delete(reduced, j, axis=1).min(axis=1)
    advantage = others - reduced[:, j]
    advantage = advantage[np.isfinite(reduced[:, j])]
    if len(advantage) <= cap:
        return 0.0
    # The model keeps the queries whose advantage exceeds μ_j: the (cap+1)-th largest sets μ_j.
    kth = np.partition(advantage, len(advantage) - cap - 1)[len(advantage) - cap - 1]
    return max(0.0, float(kth))


def dual_ascent(
    problem: Problem,
    costs: np.ndarray,
    need: float | None,
    *,
    deadline: float,
    sweeps: int = 60,
) -> Dual:
    """Improves (λ, μ) by exact coordinate steps until the bound stops rising.

    Each step maximises the dual over one multiplier with the others fixed (λ through the hull slopes, μ_j
    through the (L_j+1)-th largest advantage of model j), so the bound never decreases. Coordinate ascent
    can stall on a kink short of the optimum; callers only rely on the bound being valid.
    """
    m = problem.m
    mu = np.zeros(m)
    lam = 0.0
    binding = np.flatnonzero(problem.binding)
    best = Dual(lam, mu.copy(), -math.inf)
    for sweep in range(sweeps):
        if need is not None:
            lam = best_lambda(costs + mu[None, :], problem.quality, need)
            if not math.isfinite(lam):
                break
        for j in binding:
            reduced = costs + mu[None, :]
            if need is not None and lam > 0:
                reduced = reduced - lam * problem.quality
            reduced[:, j] -= mu[j]
            mu[j] = _best_mu(reduced, int(j), int(problem.capacity[j]))
        bound, _ = evaluate_dual(problem, costs, lam, mu, need)
        improved = bound - best.bound
        if bound > best.bound:
            best = Dual(lam, mu.copy(), bound)
        if not binding.size or improved <= 1e-12 * max(1.0, abs(bound)) or time.perf_counter() > deadline:
            logger.debug("dual ascent stopped after %d sweeps at bound %.12g", sweep + 1, best.bound)
            break
    return best


def _fill_quality(
    problem: Problem, costs: np.ndarray, index: np.ndarray, need: float, room: np.ndarray
) -> np.ndarray | None:
    """Upgrades queries until the total quality reaches ``need``, cheapest extra cost per quality first.

    Upgrades follow each query's lower hull from where it stands (never a dearer, lower-quality model), in
    increasing slope over the whole batch, skipping models that are full; a few rounds recompute the hulls
    after models fill up.
    """
    rows = np.arange(problem.n)
    quality = problem.quality
    index = index.copy()
    for _ in range(8):
        total = float(quality[rows, index].sum())
        if total >= need:
            return index
        here_c = costs[rows, index][:, None]
        here_q = quality[rows, index][:, None]
        up = (quality > here_q) & (costs >= here_c) & (room > 0)[None, :]
        up[rows, index] = True
        hull = lower_hull(np.where(up, costs, np.inf), quality, start=index)
        for k in range(len(hull.query)):
            i, source, target = int(hull.query[k]), int(hull.source[k]), int(hull.target[k])
            if index[i] != source or room[target] <= 0:
                continue
            room[source] += 1
            room[target] -= 1
            index[i] = target
            total += float(quality[i, target] - quality[i, source])
            if total >= need:
                break
        else:
            if not len(hull.query):
                return None
    return index if float(quality[rows, index].sum()) >= need else None


def improve(
    problem: Problem, costs: np.ndarray, index: np.ndarray, need: float, *, deadline: float, rounds: int = 200
) -> np.ndarray:
    """Local search: moves queries to cheaper models while quality stays >= ``need`` and caps hold."""
    rows = np.arange(problem.n)
    quality = problem.quality
    index = index.copy()
    room = problem.capacity - np.bincount(index, minlength=problem.m)
    for _ in range(rounds):
        here_q = quality[rows, index]
        slack = float(here_q.sum()) - need
        saving = costs - costs[rows, index][:, None]
        change = quality - here_q[:, None]
        ok = (saving < 0) & (change >= -slack) & np.isfinite(costs) & (room > 0)[None, :]
        if not ok.any():
            break
        saving = np.where(ok, saving, 0.0)
        best_j = saving.argmin(axis=1)
        gain = saving[rows, best_j]
        movers = np.flatnonzero(gain < 0)
        movers = movers[np.argsort(gain[movers], kind="stable")]
        moved = 0
        for i in movers.tolist():
            j = int(best_j[i])
            dq = float(quality[i, j] - quality[i, index[i]])
            if room[j] <= 0 or dq < -slack:
                continue
            room[index[i]] += 1
            room[j] -= 1
            index[i] = j
            slack += dq
            moved += 1
        if moved == 0 or time.perf_counter() > deadline:
            break
    return index


def _repair_caps(problem: Problem, reduced: np.ndarray, index: np.ndarray) -> np.ndarray | None:
    """Moves the queries that lose least (in reduced cost) off every over-full model."""
    room = problem.capacity - np.bincount(index, minlength=problem.m)
    for j in np.flatnonzero(room < 0).tolist():
        members = np.flatnonzero(index == j)
        alternatives = np.where((room > 0)[None, :], reduced[members], np.inf)
        alternatives[:, j] = np.inf
        regret = alternatives.min(axis=1) - reduced[members, j]
        for k in np.argsort(regret, kind="stable").tolist():
            if room[j] >= 0:
                break
            i = int(members[k])
            options = np.where(room > 0, reduced[i], np.inf)
            options[j] = np.inf
            target = int(options.argmin())
            if not np.isfinite(options[target]):
                continue
            index[i] = target
            room[target] -= 1
            room[j] += 1
        if room[j] < 0:
            return None
    return index


def heuristic(
    problem: Problem, costs: np.ndarray, need: float, *, deadline: float, dual: Dual | None = None
) -> tuple[np.ndarray | None, Dual]:
    """A feasible assignment and the dual bound it was built from (both in scaled cost units).

    Without caps the multipliers are exact (λ* from the hull slopes); with caps ``dual`` is used when given
    (the exact method passes its LP-optimal one), else found by :func:`dual_ascent`.

    Returns ``(None, dual)`` when repairing the multipliers' assignment could not meet the caps and α; the
    caller then falls back to an exact solve.
    """
    n = problem.n
    rows = np.arange(n)
    if not problem.capped:
        hull = lower_hull(costs, problem.quality)
        base = float(problem.quality[rows, hull.start].sum())
        if base >= need:
            zero = Dual(0.0, np.zeros(problem.m), float(costs[rows, hull.start].sum()))
            return hull.start, zero
        k = int(np.searchsorted(hull.cumulative, need))
        lam = float(hull.slope[k])
        mu = np.zeros(problem.m)
        bound, _ = evaluate_dual(problem, costs, lam, mu, need)
        dual = Dual(lam, mu, bound)
        best: np.ndarray | None = None
        best_cost = math.inf
        room = np.full(problem.m, n, dtype=np.int64)
        for count in (k, k + 1):
            index = _fill_quality(problem, costs, _apply(hull, count), need, room.copy())
            if index is None:
                continue
            index = improve(problem, costs, index, need, deadline=deadline)
            total = float(costs[rows, index].sum())
            if total < best_cost:
                best, best_cost = index, total
        return best, dual
    if dual is None:
        dual = dual_ascent(problem, costs, need, deadline=deadline)
    reduced = costs + dual.mu[None, :] - dual.lam * problem.quality
    index = _repair_caps(problem, reduced, cheapest_index(reduced, problem.quality, 1e-12))
    if index is None:
        return None, dual
    room = problem.capacity - np.bincount(index, minlength=problem.m)
    index = _fill_quality(problem, costs, index, need, room)
    if index is None:
        return None, dual
    return improve(problem, costs, index, need, deadline=deadline), dual


def solve_lagrangian(problem: Problem, time_limit: float) -> Assignment:
    """Fast heuristic for very large batches: Lagrangian multipliers, then repair and local search.

    The gap is the assignment's cost minus the dual bound, so it is an honest upper bound on how far from
    the optimum the answer can be. The caller must have checked that α is reachable.

    Args:
        problem: Validated instance with a reachable α and at least two queries.
        time_limit: Seconds for the whole method, the exact fallback included.

    Returns:
        The assignment; OPTIMAL only when its cost meets the dual bound within :data:`GAP_RTOL`.
    """
    started = time.perf_counter()
    costs, scale = scaled_costs(problem)
    need = problem.quality_floor()
    index, dual = heuristic(problem, costs, need, deadline=started + 0.5 * time_limit)
    if index is None or not problem.meets_quality(index) or not problem.respects_caps(index):
        from eccos_core.optimize.exact import solve_exact

        logger.info("lagrangian repair failed to meet the caps and α; falling back to the exact method")
        remaining = max(0.1, time_limit - (time.perf_counter() - started))
        exact = solve_exact(problem, remaining)
        return make_assignment(
            problem,
            exact.model_index,
            exact.status,
            METHOD,
            gap=exact.gap,
            message="" if exact.status is SolveStatus.OPTIMAL else exact.message,
        )
    rows = np.arange(problem.n)
    total = math.fsum(costs[rows, index].tolist())
    gap = max(0.0, total - dual.bound)
    status = SolveStatus.OPTIMAL if gap <= GAP_RTOL * max(1.0, abs(total)) else SolveStatus.FEASIBLE
    return make_assignment(problem, index, status, METHOD, gap=gap * scale)


def quick_feasible(problem: Problem) -> np.ndarray | None:
    """A cheap witness that α is reachable under the caps, or None when this quick try does not find one.

    Every query starts on its highest-quality model; over-full models shed the queries that lose least
    quality. None does not prove α unreachable, only that the exact max-quality problem must decide.
    """
    objective = np.where(problem.allowed, -problem.quality, np.inf)
    start = cheapest_index(objective, -np.where(problem.allowed, problem.cost, np.inf))
    index = _repair_caps(problem, objective, start)
    if index is not None and problem.meets_quality(index) and problem.respects_caps(index):
        return index
    return None
