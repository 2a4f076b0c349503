"""Lagrangian dual of the routing problem: multipliers, the bound they prove, reduced costs and hulls.

Dualising the quality row with λ >= 0 and each cap with μ_j >= 0 gives, for *any* such multipliers, the bound

    cost(x) >= Σ_i min_j (c_ij - λ q_ij + μ_j) + λ·need - Σ_j μ_j L_j + Σ_ij rc_ij x_ij,

where ``rc_ij = c_ij - λ q_ij + μ_j - min_k (c_ik - λ q_ik + μ_k) >= 0``. The first part is the dual value
(a lower bound on every feasible assignment, so a gap measured against it is honest whatever multipliers were
found); the reduced costs ``rc`` say how much using pair (i, j) costs above that bound, which is what the exact
method uses to discard pairs.

Without caps the best λ is found exactly: each query walks the lower convex hull of its (quality, cost)
points as λ grows, and λ* is the hull slope at which the batch's quality first reaches ``need`` (the LP
relaxation of this multiple-choice knapsack has at most one fractional query). :func:`crossing` finds it;
for large batches it first brackets λ* by bisection, so hulls are built only for the queries that move.

Every method shares these pieces: :mod:`~eccos_core.optimize.lp` builds the LP-optimal multipliers with caps
on them, :mod:`~eccos_core.optimize.exact` fixes pairs by reduced cost, and the heuristics of
:mod:`~eccos_core.optimize.primal` follow the hulls.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from eccos_core.optimize.assignment import Problem

HULL_ROWS = 50_000
"""Most queries whose hulls are built at once. Larger batches bracket λ* by bisection first: each step is
one pass over the N×M matrix, and the queries whose choice still changes inside the bracket get hulls."""


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
    scale = float(problem.cost.max(initial=0.0)) if problem.n else 0.0  # forbidden pairs hold 0
    scale = scale if scale > 0 else 1.0
    costs = problem.cost / scale
    costs[~problem.allowed] = np.inf
    return costs, scale


def reduced_costs(
    objective: np.ndarray, quality: np.ndarray, lam: float, mu: np.ndarray, out: np.ndarray | None = None
) -> np.ndarray:
    """``objective - λ·quality + μ_j``, written into ``out`` when given.

    At N = 10^6 every N×M temporary is tens of megabytes; the callers that loop reuse one buffer.
    """
    out = np.multiply(quality, -lam, out=out)
    out += objective
    if mu.any():
        out += mu[None, :]
    return out


def evaluate_dual(
    problem: Problem, costs: np.ndarray, lam: float, mu: np.ndarray, need: float | None
) -> tuple[float, np.ndarray]:
    """Dual value and reduced costs of multipliers ``(lam, mu)``.

    Args:
        problem: The validated instance (for caps and quality).
        costs: Scaled costs with ``inf`` on forbidden pairs (or another objective, e.g. minus quality).
        lam: Quality multiplier (ignored when ``need`` is None).
        mu: Per-model cap multipliers (only models whose cap can bind may be non-zero).
        need: Total quality to reach, or None when the quality row is absent.

    Returns:
        ``(bound, rc)``: the lower bound and the N×M reduced costs (``inf`` on forbidden pairs).
    """
    lam = lam if need is not None else 0.0
    rc = reduced_costs(costs, problem.quality, lam, mu)
    best = rc.min(axis=1)
    bound = float(best.sum()) - float(mu @ problem.capacity)
    if need is not None:
        bound += lam * need
    rc -= best[:, None]
    return bound, rc


def cheapest_index(costs: np.ndarray, quality: np.ndarray, tol: float = 0.0) -> np.ndarray:
    """Per query, the cheapest model; among those within ``tol`` of it the highest quality (then lowest index).

    Breaking ties toward quality matters: at λ = 0 many models cost the same, and the first of them is often
    the weakest, which would leave a needless quality deficit to repair. Only the rows with a tie are looked at
    twice (at N = 10^6 a full second pass costs more than the first).
    """
    rows = np.arange(len(costs))
    index = costs.argmin(axis=1)
    low = costs[rows, index] + tol
    tied = np.flatnonzero(np.count_nonzero(costs <= low[:, None], axis=1) > 1)
    if len(tied):
        index[tied] = np.where(costs[tied] <= low[tied, None], quality[tied], -np.inf).argmax(axis=1)
    return index


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
        return Hull(start, none, empty, none, none, empty + float(quality[rows, start].sum()))
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


def apply_moves(hull: Hull, count: int) -> np.ndarray:
    """Assignment after the first ``count`` hull moves (each query ends on its last move's target)."""
    index = hull.start.copy()
    if count > 0:
        # A query's moves appear in increasing slope order, so its last applied move is the latest one.
        moved = hull.query[:count][::-1]
        queries, first = np.unique(moved, return_index=True)
        index[queries] = hull.target[:count][::-1][first]
    return index


@dataclass(frozen=True)
class Crossing:
    """Where the uncapped LP relaxation meets the quality row: λ* and the LP's choice of every query."""

    lam: float
    """λ*: the hull slope at which the batch's quality first reaches ``need`` (0 when the cheapest choices
    already reach it, ``inf`` when even the best ones cannot)."""
    index: np.ndarray
    """Every query's LP choice just below λ* (its highest-quality choice when ``lam`` is inf)."""
    query: int
    """The query the LP splits (the crossing move's), or -1 when none is split."""
    target: int
    """The model the split query moves toward, or -1."""


def crossing(costs: np.ndarray, quality: np.ndarray, need: float, guess: float | None = None) -> Crossing:
    """The uncapped LP optimum: λ*, and which query it splits between which two models.

    Args:
        costs: N×M objective with ``inf`` on forbidden pairs.
        quality: N×M qualities.
        need: Total quality the batch must reach.
        guess: A λ close to λ* (e.g. the last one, when the caller adjusts other multipliers step by step);
            without one a sample's λ* is the first guess.

    Returns:
        The :class:`Crossing`. Up to :data:`HULL_ROWS` queries it walks the hulls directly; above, it brackets
        λ* by bisection and walks only the hulls of the queries that still move inside the bracket.
    """
    if len(costs) > HULL_ROWS:
        return _bracketed_crossing(costs, quality, need, guess)
    return _hull_crossing(costs, quality, need, None, 0.0)


def _hull_crossing(
    costs: np.ndarray, quality: np.ndarray, need: float, start: np.ndarray | None, floor: float
) -> Crossing:
    hull = lower_hull(costs, quality, start)
    if float(quality[np.arange(len(costs)), hull.start].sum()) >= need:
        return Crossing(floor, hull.start, -1, -1)
    k = int(np.searchsorted(hull.cumulative, need))
    if k >= len(hull.cumulative):
        return Crossing(math.inf, apply_moves(hull, len(hull.query)), -1, -1)
    return Crossing(float(hull.slope[k]), apply_moves(hull, k), int(hull.query[k]), int(hull.target[k]))


def _quality_at(costs: np.ndarray, quality: np.ndarray, lam: float, buffer: np.ndarray) -> tuple[float, np.ndarray]:
    """Total quality and choices of the queries' cheapest ``cost - λ·quality`` models (ties: higher quality)."""
    choice = cheapest_index(reduced_costs(costs, quality, lam, np.zeros(0), out=buffer), quality)
    return float(quality[np.arange(len(costs)), choice].sum()), choice


def _bracketed_crossing(costs: np.ndarray, quality: np.ndarray, need: float, guess: float | None) -> Crossing:
    """:func:`crossing` for large batches: a sample's λ*, a bracket around it, bisection, then hulls."""
    n = len(costs)
    buffer = np.empty_like(costs)
    total, choice = _quality_at(costs, quality, 0.0, buffer)
    if total >= need:
        return Crossing(0.0, choice, -1, -1)
    if float(quality.max(axis=1).sum()) < need:  # forbidden pairs hold quality 0, never above an allowed one
        return Crossing(math.inf, _best_quality(costs, quality), -1, -1)
    width = 0.005  # a caller's guess is the last λ*, which moved little
    if guess is None:
        sample = np.sort(np.random.default_rng(0).choice(n, HULL_ROWS // 4, replace=False))
        guess, width = _hull_crossing(costs[sample], quality[sample], need * len(sample) / n, None, 0.0).lam, 0.03
    guess = guess if math.isfinite(guess) and guess > 0 else 1.0
    low, low_choice = 0.0, choice
    high, high_choice = math.inf, np.zeros(0, dtype=np.int64)
    lam = (1.0 - width) * guess
    for _ in range(200):  # step out to a bracket, then halve it until few queries change inside it
        if math.isfinite(high):
            changing = int((low_choice != high_choice).sum())
            if changing <= HULL_ROWS or high - low <= 1e-12 * high:
                break
        total, choice = _quality_at(costs, quality, lam, buffer)
        if total >= need:
            high, high_choice = lam, choice
        else:
            low, low_choice = lam, choice
        if not math.isfinite(high):
            lam *= 1.0 + 2.0 * width if lam < guess else 4.0
        elif low == 0.0:
            lam = high * (1.0 - 2.0 * width if high >= guess * (1.0 - width) else 0.5)
        else:
            lam = 0.5 * (low + high)
    if not math.isfinite(high):
        high_choice = _best_quality(costs, quality)
    rows = np.flatnonzero(low_choice != high_choice)
    if not len(rows):
        return Crossing(high, high_choice, -1, -1)
    rest = need - (float(quality[np.arange(n), low_choice].sum()) - float(quality[rows, low_choice[rows]].sum()))
    sub = _hull_crossing(costs[rows], quality[rows], rest, low_choice[rows], low)
    index = low_choice.copy()
    index[rows] = sub.index
    return Crossing(sub.lam, index, int(rows[sub.query]) if sub.query >= 0 else -1, sub.target)


def _best_quality(costs: np.ndarray, quality: np.ndarray) -> np.ndarray:
    """Per query, its highest-quality allowed model (cheapest among equals)."""
    return cheapest_index(np.where(np.isfinite(costs), -quality, np.inf), -costs)
