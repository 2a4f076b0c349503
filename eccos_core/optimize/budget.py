"""Budget mode: the most mean predicted quality a batch can buy for a total cost budget.

The mirror of :func:`eccos_core.optimize.solve`: choose one allowed model per query maximising
``mean_i quality[i, x_i]`` subject to ``Σ_i cost[i, x_i] <= budget`` and at most ``capacity[j]`` queries on
model ``j``. Without caps this is a multiple-choice knapsack; its LP relaxation is solved exactly by walking
every query's lower convex hull of (quality, cost) in order of price (the quality a dollar buys), which gives
the Lagrangian price ``ν`` of the budget and a bound. With caps that the uncapped plan breaks, HiGHS solves the
LP (through SciPy) for ``ν`` and the cap prices ``μ_j``. Then:

1. an incumbent: the LP's integral part, its fractional queries on their cheaper option, the money left spent
   greedily on the upgrades that buy the most quality;
2. reduced-cost fixing: an option whose Lagrangian penalty exceeds the gap between the bound and the incumbent
   cannot be in a better plan, and a query with one option left is fixed;
3. a depth-first search over the few queries left, pruned by the same bound, until proven or out of time.

The result carries the bound, so ``gap`` is honest when the time limit stops the search.

    >>> import numpy as np
    >>> cost = np.array([[1.0, 4.0], [1.0, 4.0]])
    >>> quality = np.array([[0.6, 0.9], [0.2, 0.9]])
    >>> a = solve_budget(cost, quality, budget=5.0)
    >>> a.model_index.tolist(), a.status.value, round(a.expected_quality, 2)
    ([0, 1], 'optimal', 0.75)

The per-query hulls (:func:`lower_hulls`) are shared with per-call routing (:mod:`eccos_core.dual`): routing a
query at price λ (``argmin_j cost − λ·quality``) picks the hull vertex whose breakpoint interval holds λ.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from eccos_core.errors import CapacityError, InputError
from eccos_core.optimize.assignment import SolveStatus

_TIE = 1e-12
"""Relative tolerance for ties in cost or quality."""
MAX_OPEN = 48
"""Queries left open after reduced-cost fixing beyond which the search is skipped (the plan is then
``feasible`` with its gap, at most one query's upgrade in the LP bound)."""
NODE_LIMIT = 200_000
"""Search nodes before the search stops with the best plan found."""


@dataclass(frozen=True)
class Hulls:
    """Each query's lower convex hull of (quality, cost) over its allowed models, cheapest vertex first.

    Routing query ``i`` at price λ ≥ 0 (minimising ``cost − λ·quality``, ties to the higher quality) picks
    ``models[i, s]`` where ``s`` counts the breakpoints ``breaks[i] <= λ``.
    """

    models: np.ndarray
    """N×M int: hull vertices in order of rising quality and cost; padded by repeating the last vertex."""
    breaks: np.ndarray
    """N×(M−1) prices at which each query moves to its next vertex (increasing; ``inf`` past the last)."""
    quality: np.ndarray
    """N×M quality of each vertex (padded like ``models``)."""
    cost: np.ndarray
    """N×M cost of each vertex."""

    @property
    def dq(self) -> np.ndarray:
        """N×(M−1) quality gained at each breakpoint (0 past the last)."""
        return np.diff(self.quality, axis=1)

    @property
    def dc(self) -> np.ndarray:
        """N×(M−1) cost added at each breakpoint (0 past the last)."""
        return np.diff(self.cost, axis=1)

    def step(self, price: float) -> np.ndarray:
        """Hull position of every query at ``price`` (ties to the higher quality)."""
        return (self.breaks <= price).sum(axis=1)

    def choose(self, price: float) -> np.ndarray:
        """Model column of every query routed at ``price``."""
        return self.models[np.arange(len(self.models)), self.step(price)]


def lower_hulls(cost: np.ndarray, quality: np.ndarray, allowed: np.ndarray | None = None) -> Hulls:
    """The per-query hulls of :class:`Hulls` (vectorised over queries; M−1 steps)."""
    cost = np.asarray(cost, dtype=float)
    quality = np.asarray(quality, dtype=float)
    n, m = cost.shape
    ok = np.ones((n, m), dtype=bool) if allowed is None else np.asarray(allowed, dtype=bool)
    rows = np.arange(n)
    scale = float(np.abs(cost[ok]).max()) if ok.any() else 1.0
    # start at the cheapest allowed model, ties to the higher quality
    start_key = np.where(ok, cost, np.inf)
    cheapest = start_key.min(axis=1, keepdims=True)
    tied = ok & (start_key <= cheapest + _TIE * (scale or 1.0))
    cur = np.argmax(np.where(tied, quality, -np.inf), axis=1)
    models = np.empty((n, m), dtype=int)
    breaks = np.full((n, max(m - 1, 0)), np.inf)
    models[:, 0] = cur
    for s in range(m - 1):
        da = quality - quality[rows, cur][:, None]
        dc = cost - cost[rows, cur][:, None]
        better = ok & (da > _TIE)
        slope = np.where(better, np.maximum(dc, 0.0) / np.where(better, da, 1.0), np.inf)
        best = slope.min(axis=1)
        # among equal slopes, jump to the highest quality (collinear middle vertices are never strictly best)
        on = better & (slope <= best[:, None] * (1 + 1e-12) + 1e-300)
        nxt = np.argmax(np.where(on, quality, -np.inf), axis=1)
        moving = np.isfinite(best)
        if s > 0:  # convexity: a later break is never below an earlier one (guards against rounding)
            best = np.where(moving, np.maximum(best, breaks[:, s - 1]), best)
        breaks[:, s] = np.where(moving, best, np.inf)
        cur = np.where(moving, nxt, cur)
        models[:, s + 1] = cur
    return Hulls(models, breaks, quality[rows[:, None], models], cost[rows[:, None], models])


@dataclass(frozen=True)
class BudgetAssignment:
    """The model chosen for every query of a batch under a cost budget, and what the choice promises."""

    model_index: np.ndarray
    """Column of the chosen model for each query (int, length N)."""
    status: SolveStatus
    """``optimal`` (proven best for the budget), ``feasible`` (within the budget, ``gap`` bounds the loss) or
    ``quality_unreachable`` (no assignment fits the budget: the cheapest one is returned and the message says
    what it costs)."""
    expected_quality: float
    """Mean predicted quality of the chosen models."""
    expected_cost: float
    """Sum of the chosen costs (USD)."""
    bound: float
    """Upper bound on the mean quality any assignment within the budget reaches."""
    price: float
    """Lagrangian price of the budget: mean-quality units bought per USD at the margin (0 when it is slack)."""
    method: str = "budget"
    """Solver name."""
    message: str = ""
    """One human sentence on the outcome."""

    @property
    def gap(self) -> float:
        """``bound − expected_quality`` in mean-quality units; 0.0 when proven optimal."""
        return max(0.0, self.bound - self.expected_quality) if self.status is SolveStatus.FEASIBLE else 0.0


def solve_budget(
    cost: Any,
    quality: Any,
    budget: float,
    capacity: Sequence[int | None] | None = None,
    *,
    allowed: Any = None,
    time_limit: float = 10.0,
) -> BudgetAssignment:
    """Chooses one model per query: the highest mean predicted quality whose total cost fits ``budget``.

    Args:
        cost: N×M costs in USD (finite, >= 0).
        quality: N×M predicted p(success) in [0, 1].
        budget: Most the batch may cost in total (USD, >= 0).
        capacity: Optional length-M caps, each a non-negative int or None (uncapped).
        allowed: Optional N×M bool mask; False means model j cannot take query i.
        time_limit: Seconds the exact search may take; past it the best plan found is returned ``feasible``
            with its ``gap``.

    Returns:
        The :class:`BudgetAssignment`. When even the cheapest assignment the caps allow exceeds the budget, it
        is returned with status ``quality_unreachable`` rather than raising: the batch is still routed.

    Raises:
        InputError: Malformed inputs; the message says what to fix.
        CapacityError: The caps (with the mask) cannot hold every query.
    """
    started = time.perf_counter()
    cost, quality, ok, caps, budget = _validate(cost, quality, budget, capacity, allowed, time_limit)
    n, m = cost.shape
    if n == 0:
        return BudgetAssignment(np.zeros(0, dtype=int), SolveStatus.OPTIMAL, math.nan, 0.0, math.nan, 0.0)
    hulls = lower_hulls(cost, quality, ok)
    lp = _hull_lp(hulls, budget)
    capped = caps is not None and any(c is not None for c in caps)
    base = hulls.models[:, 0]
    if lp is None:  # even the cheapest model of every query is over budget
        if not capped or _respects(base, caps, m):
            return _unreachable(cost, quality, base, budget)
        chosen = _min_cost_capped(cost, ok, caps)
        return _unreachable(cost, quality, chosen, budget)
    price, bound_total, chosen = lp
    if capped and not _respects(chosen, caps, m):
        capped_lp = _capped_lp(cost, quality, ok, caps, budget)
        if capped_lp is None:
            return _unreachable(cost, quality, _min_cost_capped(cost, ok, caps), budget)
        price, mu, bound_total, chosen = capped_lp
    else:
        mu = np.zeros(m)
        caps = None  # the uncapped optimum respects them (checked again after the search)
    chosen = _fill(cost, quality, ok, chosen, budget, caps, m)
    best = _search(cost, quality, ok, caps, budget, price, mu, bound_total, chosen, started + time_limit)
    if caps is None and capacity is not None and not _respects(best.chosen, capacity, m):
        # the search left the uncapped hull; redo it with the caps priced in
        capped_lp = _capped_lp(cost, quality, ok, capacity, budget)
        if capped_lp is None:
            return _unreachable(cost, quality, _min_cost_capped(cost, ok, capacity), budget)
        price, mu, bound_total, start = capped_lp
        start = _fill(cost, quality, ok, start, budget, capacity, m)
        best = _search(cost, quality, ok, capacity, budget, price, mu, bound_total, start, started + time_limit)
    rows = np.arange(n)
    total_q = float(quality[rows, best.chosen].sum())
    bound = min(best.bound, bound_total) / n
    proven = best.proven or bound * n - total_q <= 1e-9 * max(1.0, abs(total_q))
    status = SolveStatus.OPTIMAL if proven else SolveStatus.FEASIBLE
    spent = float(cost[rows, best.chosen].sum())
    message = (
        ""
        if proven
        else f"time limit hit: mean quality {total_q / n:.6f}, at most {bound - total_q / n:.2e} below the best"
    )
    return BudgetAssignment(
        best.chosen, status, total_q / n, spent, max(bound, total_q / n), float(price), message=message
    )


# ------------------------------------------------------------------------------------------------ inputs
def _validate(
    cost: Any, quality: Any, budget: Any, capacity: Any, allowed: Any, time_limit: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int | None] | None, float]:
    cost = np.asarray(cost, dtype=float)
    quality = np.asarray(quality, dtype=float)
    if cost.ndim != 2 or cost.shape != quality.shape:
        raise InputError(f"cost and quality must be N×M arrays of one shape, got {cost.shape} and {quality.shape}")
    n, m = cost.shape
    if m == 0:
        raise InputError("the pool is empty: cost and quality need at least one model column")
    ok = np.ones((n, m), dtype=bool) if allowed is None else np.asarray(allowed, dtype=bool)
    if ok.shape != cost.shape:
        raise InputError(f"allowed must have the shape of cost {cost.shape}, got {ok.shape}")
    if isinstance(budget, bool) or not isinstance(budget, (int, float, np.floating, np.integer)):
        raise InputError(f"budget must be a number of USD, got {budget!r}")
    budget = float(budget)
    if not math.isfinite(budget) or budget < 0:
        raise InputError(f"budget must be a finite, non-negative number of USD, got {budget!r}")
    if isinstance(time_limit, bool) or not isinstance(time_limit, (int, float)) or not time_limit > 0:
        raise InputError(f"time_limit must be a positive number of seconds, got {time_limit!r}")
    caps: list[int | None] | None = None
    if capacity is not None:
        if len(capacity) != m:
            raise InputError(f"capacity has {len(capacity)} entries for {m} models; give one per model (None = no cap)")
        caps = []
        for j, cap in enumerate(capacity):
            if cap is not None and (isinstance(cap, bool) or int(cap) != cap or cap < 0):
                raise InputError(f"capacity[{j}] must be a non-negative integer or None, got {cap!r}")
            caps.append(None if cap is None else int(cap))
            if cap == 0:
                ok[:, j] = False
    bad = ok & ~(np.isfinite(cost) & (cost >= 0))
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise InputError(f"cost[{i}, {j}] = {cost[i, j]!r}: costs must be finite USD amounts >= 0")
    bad = ok & ~((quality >= 0) & (quality <= 1))
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise InputError(f"quality[{i}, {j}] = {quality[i, j]!r}: predicted quality must lie in [0, 1]")
    empty = np.flatnonzero(~ok.any(axis=1))
    if len(empty):
        raise CapacityError(f"query {int(empty[0])} has no allowed model with room (mask and zero caps)")
    if caps is not None and all(c is not None for c in caps) and sum(caps) < n:  # type: ignore[arg-type]
        raise CapacityError(f"the caps {caps} hold {sum(caps)} queries, fewer than the batch's {n}")  # type: ignore[arg-type]
    return np.where(ok, cost, 0.0), np.where(ok, quality, 0.0), ok, caps, budget


def _respects(chosen: np.ndarray, caps: Sequence[int | None] | None, m: int) -> bool:
    if caps is None:
        return True
    counts = np.bincount(chosen, minlength=m)
    return all(c is None or counts[j] <= c for j, c in enumerate(caps))


def _unreachable(cost: np.ndarray, quality: np.ndarray, chosen: np.ndarray, budget: float) -> BudgetAssignment:
    rows = np.arange(len(chosen))
    spent = float(cost[rows, chosen].sum())
    q = float(quality[rows, chosen].mean())
    message = (
        f"budget ${budget:.6g} is below ${spent:.6g}, the cheapest the allowed models and caps can route this "
        "batch for; routed every query to that cheapest assignment"
    )
    return BudgetAssignment(chosen, SolveStatus.QUALITY_UNREACHABLE, q, spent, q, math.inf, message=message)


# ------------------------------------------------------------------------------------------------ the LP
def _hull_lp(hulls: Hulls, budget: float) -> tuple[float, float, np.ndarray] | None:
    """Uncapped LP by the hull walk: (price ν, LP bound on total quality, integral prefix), or None if over."""
    n = len(hulls.models)
    rows = np.arange(n)
    base_cost = float(hulls.cost[:, 0].sum())
    if base_cost > budget * (1 + 1e-12) + 1e-15:
        return None
    br, dq, dc = hulls.breaks.ravel(), hulls.dq.ravel(), hulls.dc.ravel()
    finite = np.flatnonzero(np.isfinite(br))
    order = finite[np.argsort(br[finite], kind="stable")]
    spent = base_cost + np.cumsum(dc[order])
    k = int(np.searchsorted(spent, budget * (1 + 1e-12) + 1e-15, side="right"))  # increments that fit whole
    steps = np.zeros(n, dtype=int)
    np.add.at(steps, order[:k] // max(hulls.breaks.shape[1], 1), 1)
    chosen = hulls.models[rows, steps]
    total = float(hulls.quality[:, 0].sum() + dq[order[:k]].sum())
    if k == len(order):
        return 0.0, total, chosen  # the budget buys every query's best model: it is slack
    left = budget - (spent[k - 1] if k else base_cost)
    fraction = left / dc[order[k]] if dc[order[k]] > 0 else 0.0
    return 1.0 / float(br[order[k]]), total + fraction * float(dq[order[k]]), chosen


def _capped_lp(
    cost: np.ndarray, quality: np.ndarray, ok: np.ndarray, caps: Sequence[int | None], budget: float
) -> tuple[float, np.ndarray, float, np.ndarray] | None:
    """HiGHS LP with caps: (ν, μ, LP bound on total quality, a rounded start), or None if over budget."""
    from scipy.optimize import linprog
    from scipy.sparse import coo_matrix

    n, m = cost.shape
    ii, jj = np.nonzero(ok)
    k = len(ii)
    capped = [j for j, c in enumerate(caps) if c is not None]
    # rows of A_ub: one per capped model, then the budget
    cap_row = {j: r for r, j in enumerate(capped)}
    sel = np.isin(jj, capped)
    ub_rows = np.concatenate([[cap_row[j] for j in jj[sel]], np.full(k, len(capped))]).astype(int)
    ub_cols = np.concatenate([np.flatnonzero(sel), np.arange(k)])
    ub_vals = np.concatenate([np.ones(int(sel.sum())), cost[ii, jj]])
    a_ub = coo_matrix((ub_vals, (ub_rows, ub_cols)), shape=(len(capped) + 1, k)).tocsr()
    b_ub = np.array([caps[j] for j in capped] + [budget], dtype=float)
    a_eq = coo_matrix((np.ones(k), (ii, np.arange(k))), shape=(n, k)).tocsr()
    res = linprog(-quality[ii, jj], A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=np.ones(n), bounds=(0, 1), method="highs-ipm")
    if res.status == 2:  # infeasible: the caps cannot hold the batch, or its cheapest plan is over budget
        _min_cost_capped(cost, ok, caps)  # raises CapacityError when the caps are the reason
        return None
    if res.status != 0:
        raise InputError(f"the budget LP did not solve ({res.message})")
    marg = -np.asarray(res.ineqlin.marginals, dtype=float)
    mu = np.zeros(m)
    mu[capped] = np.maximum(marg[: len(capped)], 0.0)
    nu = max(float(marg[-1]), 0.0)
    x = np.zeros((n, m))
    x[ii, jj] = res.x
    # integral rows keep their model; fractional rows start on their cheapest fractional option
    frac = np.where(x > 1e-9, cost, np.inf)
    chosen = np.where(x.max(axis=1) > 1 - 1e-9, np.argmax(x, axis=1), np.argmin(frac, axis=1))
    chosen = _repair(cost, quality, ok, chosen, budget, caps, m)
    if not _respects(chosen, caps, m) or cost[np.arange(n), chosen].sum() > budget * (1 + 1e-12) + 1e-15:
        chosen = _min_cost_capped(cost, ok, caps)  # within budget: the LP above was feasible
    return nu, mu, float(-res.fun), chosen


def _min_cost_capped(cost: np.ndarray, ok: np.ndarray, caps: Sequence[int | None]) -> np.ndarray:
    """The cheapest assignment the caps allow (a transportation LP: HiGHS returns an integral vertex)."""
    from scipy.optimize import linprog
    from scipy.sparse import coo_matrix

    n, m = cost.shape
    ii, jj = np.nonzero(ok)
    k = len(ii)
    capped = [j for j, c in enumerate(caps) if c is not None]
    sel = np.isin(jj, capped)
    cap_row = {j: r for r, j in enumerate(capped)}
    a_ub = coo_matrix(
        (np.ones(int(sel.sum())), ([cap_row[j] for j in jj[sel]], np.flatnonzero(sel))), shape=(len(capped), k)
    ).tocsr()
    a_eq = coo_matrix((np.ones(k), (ii, np.arange(k))), shape=(n, k)).tocsr()
    res = linprog(
        cost[ii, jj],
        A_ub=a_ub if capped else None,
        b_ub=np.array([caps[j] for j in capped], dtype=float) if capped else None,
        A_eq=a_eq,
        b_eq=np.ones(n),
        bounds=(0, 1),
        method="highs",
    )
    if res.status != 0:
        raise CapacityError(f"the caps {list(caps)} (with the allowed mask) cannot hold all {n} queries of the batch")
    x = np.zeros((n, m))
    x[ii, jj] = res.x
    return np.argmax(x, axis=1)


# ------------------------------------------------------------------------------------------------ incumbent
def _repair(
    cost: np.ndarray,
    quality: np.ndarray,
    ok: np.ndarray,
    chosen: np.ndarray,
    budget: float,
    caps: Sequence[int | None] | None,
    m: int,
) -> np.ndarray:
    """Make ``chosen`` respect caps and budget: move overflow to models with room, then downgrade if over."""
    chosen = chosen.copy()
    rows = np.arange(len(chosen))
    limits = np.array([np.inf if c is None else c for c in caps]) if caps is not None else np.full(m, np.inf)
    counts = np.bincount(chosen, minlength=m).astype(float)
    for j in np.flatnonzero(counts > limits):
        members = np.flatnonzero(chosen == j)
        # move the members that lose the least quality per dollar saved
        for i in members[np.argsort(quality[members, j])]:
            if counts[j] <= limits[j]:
                break
            room = ok[i] & (counts < limits)
            room[j] = False
            if not room.any():
                continue
            k = int(np.argmin(np.where(room, cost[i], np.inf)))
            counts[j] -= 1
            counts[k] += 1
            chosen[i] = k
    spent = float(cost[rows, chosen].sum())
    while spent > budget * (1 + 1e-12) + 1e-15:
        room = ok & (counts < limits)[None, :]
        saving = cost[rows, chosen][:, None] - cost
        loss = quality[rows, chosen][:, None] - quality
        move = room & (saving > 0)
        if not move.any():
            break
        ratio = np.where(move, np.maximum(loss, 0.0) / np.where(move, saving, 1.0), np.inf)
        i, k = np.unravel_index(int(np.argmin(ratio)), ratio.shape)
        counts[chosen[i]] -= 1
        counts[k] += 1
        spent -= saving[i, k]
        chosen[i] = k
    return chosen


def _fill(
    cost: np.ndarray,
    quality: np.ndarray,
    ok: np.ndarray,
    chosen: np.ndarray,
    budget: float,
    caps: Sequence[int | None] | None,
    m: int,
    rounds: int = 64,
) -> np.ndarray:
    """Spend what is left of the budget on the single upgrades that add the most quality, while any fits."""
    chosen = chosen.copy()
    rows = np.arange(len(chosen))
    limits = np.array([np.inf if c is None else c for c in caps]) if caps is not None else np.full(m, np.inf)
    counts = np.bincount(chosen, minlength=m).astype(float)
    left = budget - float(cost[rows, chosen].sum())
    for _ in range(rounds):
        gain = quality - quality[rows, chosen][:, None]
        extra = cost - cost[rows, chosen][:, None]
        move = ok & (counts < limits)[None, :] & (gain > _TIE) & (extra <= left + 1e-15)
        if not move.any():
            break
        score = np.where(move, gain - 1e-9 * extra / max(abs(left), 1e-300), -np.inf)
        i, k = np.unravel_index(int(np.argmax(score)), score.shape)
        counts[chosen[i]] -= 1
        counts[k] += 1
        left -= extra[i, k]
        chosen[i] = k
    return chosen


# ------------------------------------------------------------------------------------------------ search
@dataclass(frozen=True)
class _Found:
    chosen: np.ndarray
    bound: float
    proven: bool


@dataclass(frozen=True)
class _Tree:
    """What the depth-first search reads: the instance, the Lagrangian penalties and the queries fixed or open."""

    cost: np.ndarray
    quality: np.ndarray
    penalty: np.ndarray
    limits: np.ndarray
    budget: float
    bound: float
    eps: float
    order: np.ndarray
    """The open queries, hardest to decide first."""
    opts: list[np.ndarray]
    """Each open query's options, by penalty."""
    min_cost_after: np.ndarray
    """Least cost of the open queries from each depth on (0 past the last)."""
    fixed: np.ndarray
    fixed_model: np.ndarray
    fixed_q: float


def _lagrangian(
    cost: np.ndarray,
    quality: np.ndarray,
    ok: np.ndarray,
    caps: Sequence[int | None] | None,
    budget: float,
    nu: float,
    mu: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Caps as limits, each option's penalty below its query's best reduced quality, and the bound at (ν, μ)."""
    m = cost.shape[1]
    limits = np.array([np.inf if c is None else c for c in caps]) if caps is not None else np.full(m, np.inf)
    reduced = np.where(ok, quality - nu * cost - mu[None, :], -np.inf)
    top = reduced.max(axis=1)
    penalty = top[:, None] - reduced  # ≥ 0; inf where not allowed
    finite_caps = np.where(np.isfinite(limits), limits, 0.0)
    # the Lagrangian bound at (ν, μ): any plan within budget and caps has total quality ≤ bound − its penalties
    bound = nu * budget + float((mu * finite_caps).sum()) + float(top.sum())
    return limits, penalty, bound


def _search_order(
    cost: np.ndarray, penalty: np.ndarray, keep: np.ndarray, open_rows: np.ndarray
) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """The open queries hardest to decide first, each one's options by penalty, and the least cost still to come."""
    order = open_rows[np.argsort(-np.sort(np.where(keep[open_rows], penalty[open_rows], -np.inf), axis=1)[:, -1])]
    opts = [np.flatnonzero(keep[i])[np.argsort(penalty[i, keep[i]], kind="stable")] for i in order]
    min_cost_after = np.concatenate(
        [np.cumsum([cost[i, o].min() for i, o in zip(order, opts, strict=True)][::-1])[::-1], [0.0]]
    )
    return order, opts, min_cost_after


def _search(
    cost: np.ndarray,
    quality: np.ndarray,
    ok: np.ndarray,
    caps: Sequence[int | None] | None,
    budget: float,
    nu: float,
    mu: np.ndarray,
    bound_total: float,
    start: np.ndarray,
    deadline: float,
) -> _Found:
    """Reduced-cost fixing at the prices (ν, μ), then depth-first search over the queries left open."""
    n, m = cost.shape
    rows = np.arange(n)
    limits, penalty, bound = _lagrangian(cost, quality, ok, caps, budget, nu, mu)
    best = start.copy()
    best_q = float(quality[rows, best].sum())
    eps = 1e-9 * max(1.0, abs(best_q))
    reported = min(bound, bound_total)
    if reported - best_q <= eps:
        return _Found(best, best_q, True)
    keep = penalty <= bound - best_q + eps
    keep[rows, best] |= ok[rows, best]
    options = keep.sum(axis=1)
    open_rows = np.flatnonzero(options > 1)
    fixed = np.flatnonzero(options == 1)
    fixed_model = np.argmax(keep[fixed], axis=1)
    fixed_cost = float(cost[fixed, fixed_model].sum())
    fixed_q = float(quality[fixed, fixed_model].sum())
    counts0 = np.bincount(fixed_model, minlength=m).astype(float)
    base_penalty = float(penalty[fixed, fixed_model].sum())
    if len(open_rows) == 0:
        return _Found(best, best_q, True)
    if len(open_rows) > MAX_OPEN:  # a proof would take exponential time; the bound is already tight
        return _Found(best, reported, False)
    order, opts, min_cost_after = _search_order(cost, penalty, keep, open_rows)
    tree = _Tree(
        cost, quality, penalty, limits, budget, bound, eps, order, opts, min_cost_after, fixed, fixed_model, fixed_q
    )
    best, best_q, timed_out = _depth_first(tree, start, best, best_q, counts0, fixed_cost, base_penalty, deadline)
    if timed_out:
        return _Found(best, reported, False)
    return _Found(best, best_q, True)


def _depth_first(
    tree: _Tree,
    start: np.ndarray,
    best: np.ndarray,
    best_q: float,
    counts0: np.ndarray,
    fixed_cost: float,
    base_penalty: float,
    deadline: float,
) -> tuple[np.ndarray, float, bool]:
    """Depth-first search over the open queries: the best plan found, its total quality, and whether time ran out.

    One loop on purpose: its steps share the running counts, cost, penalty and quality of the partial plan.
    """
    cost, quality, penalty, limits = tree.cost, tree.quality, tree.penalty, tree.limits
    budget, bound, eps = tree.budget, tree.bound, tree.eps
    order, opts, min_cost_after = tree.order, tree.opts, tree.min_cost_after
    assign = np.full(len(order), -1)
    counts = counts0.copy()
    depth, spent, pen = 0, fixed_cost, base_penalty
    cursor = np.zeros(len(order), dtype=int)
    gained = 0.0
    timed_out = False
    steps = 0
    while depth >= 0:
        steps += 1
        if steps > NODE_LIMIT or (steps % 4096 == 0 and time.perf_counter() > deadline):
            timed_out = True
            break
        if cursor[depth] >= len(opts[depth]):
            # exhausted: backtrack
            cursor[depth] = 0
            depth -= 1
            if depth >= 0:
                j = assign[depth]
                i = order[depth]
                counts[j] -= 1
                spent -= cost[i, j]
                pen -= penalty[i, j]
                gained -= quality[i, j]
                assign[depth] = -1
                cursor[depth] += 1
            continue
        i = order[depth]
        j = opts[depth][cursor[depth]]
        p = pen + penalty[i, j]
        if bound - p <= best_q + eps:  # options are sorted by penalty: the rest are no better
            cursor[depth] = len(opts[depth])
            continue
        c = spent + cost[i, j]
        if counts[j] >= limits[j] or c + min_cost_after[depth + 1] > budget * (1 + 1e-12) + 1e-15:
            cursor[depth] += 1
            continue
        assign[depth] = j
        counts[j] += 1
        spent, pen = c, p
        if depth == len(order) - 1:
            total = tree.fixed_q + gained + quality[i, j]
            if total > best_q + eps:
                best = start.copy()
                best[tree.fixed] = tree.fixed_model
                best[order] = assign
                best_q = total
            counts[j] -= 1
            spent -= cost[i, j]
            pen -= penalty[i, j]
            assign[depth] = -1
            cursor[depth] += 1
            continue
        gained += quality[i, j]
        depth += 1
        cursor[depth] = 0
    return best, best_q, timed_out


__all__ = ["BudgetAssignment", "Hulls", "lower_hulls", "solve_budget"]
