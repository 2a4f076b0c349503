"""The small problem left after reduced-cost fixing, solved exactly.

Reduced-cost fixing leaves a knapsack: the few queries with more than one kept model must add the quality the
fixed ones lack, at least cost, within the caps' residual room. Predicted qualities repeat (k-of-K votes,
per-task rates), so it has few distinct quality steps, and HiGHS's branch and bound can need thousands of
nodes and seconds to close the last 1e-6 of gap. It is therefore solved first by a dynamic program over
Pareto-optimal (quality, cost, capped loads) partial solutions pruned with the LP bound of the groups still to
come. The program's budget starts just above the dual bound and grows eightfold until a solution fits: with a
tight budget nearly every partial solution is pruned, so the program settles continuous-valued instances as
well as repeating ones in milliseconds. HiGHS takes over only when the state space grows too large.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np

from eccos_core.optimize.assignment import Problem
from eccos_core.optimize.dual import lower_hull
from eccos_core.optimize.highs import FEASIBILITY_TOL, run_highs

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Restricted:
    """The outcome of one restricted solve."""

    index: np.ndarray | None
    """The restricted optimum (or an assignment HiGHS found before its time limit), None when there is none."""
    proven: bool
    """The restricted problem was settled: ``index`` is its optimum, or nothing in it beats the budget."""
    bound: float
    """Lower bound on every assignment that uses only kept pairs (scaled units)."""


def mip_need(problem: Problem, need: float) -> float:
    """Quality right-hand side for HiGHS: a hair above ``need`` so its 1e-9 tolerance still meets it.

    The hair is at most half the tolerance band ``N·α·QUALITY_RTOL``, so an assignment that meets α exactly
    is never cut off.
    """
    return need + min(2.0 * FEASIBILITY_TOL, 0.5 * (problem.n * problem.target - problem.quality_floor()))


_DP_STATE_LIMIT = 200_000
"""Most partial solutions the dynamic program keeps per step before it hands the MIP to HiGHS instead."""

_DP_STATE_LIMIT_CAPPED = 200_000
"""The same limit when capped models are involved (partial solutions then differ by their loads too). With
the budgets grown step by step and decisive groups first, the program still beats HiGHS there: on 100 free
queries with five binding caps it settles in about 2 s what HiGHS's branch and bound needs 7 s for."""

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


@dataclass(frozen=True)
class _Caps:
    """The binding caps the dynamic program tracks loads of, and how its LP bound prices them."""

    models: np.ndarray
    """Capped model columns some group may use."""
    limit: np.ndarray
    """Residual room of each."""
    refund: np.ndarray
    """``μ`` of each (clipped at 0): refunded per unit of room still free."""
    radix: np.ndarray
    """Mixed-radix weights that pack a load vector into one integer."""
    packable: bool
    """Whether every load vector packs into an int64."""


def _dp_caps(keep: np.ndarray, room: dict[int, int], mu: np.ndarray) -> tuple[_Caps, np.ndarray]:
    """The caps of :func:`_group_dp` and the price (length M) its LP bound adds to each model's cost."""
    m = keep.shape[1]
    capped = np.array([j for j in room if keep[:, j].any()], dtype=np.int64)
    limit = np.array([room[int(j)] for j in capped], dtype=np.int64)
    price = np.zeros(m)
    price[capped] = np.maximum(mu[capped], 0.0)
    refund = price[capped]
    radix = np.cumprod(np.concatenate([[1], limit[:-1] + 1])) if len(capped) else np.zeros(0, dtype=np.int64)
    packable = not len(capped) or float(np.prod((limit + 1).astype(float))) < 2**62
    return _Caps(capped, limit, refund, radix, packable), price


def _dp_extend(
    state: tuple[np.ndarray, np.ndarray, np.ndarray],
    split: np.ndarray,
    models: np.ndarray,
    quality_k: np.ndarray,
    costs_k: np.ndarray,
    caps: _Caps,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Every partial solution times every split of the next group: quality, cost and (when capped) loads."""
    state_q, state_c, state_load = state
    new_q = (state_q[:, None] + (split @ quality_k[models])[None, :]).ravel()
    new_c = (state_c[:, None] + (split @ costs_k[models])[None, :]).ravel()
    if not len(caps.models):
        return new_q, new_c, None
    full = np.zeros((len(split), len(quality_k)), dtype=np.int64)
    full[:, models] = split
    new_load = (state_load[:, None, :] + full[None, :, caps.models]).reshape(-1, len(caps.models))
    return new_q, new_c, new_load


def _dp_prune(
    new_q: np.ndarray,
    new_c: np.ndarray,
    new_load: np.ndarray | None,
    caps: _Caps,
    bound: tuple[np.ndarray, np.ndarray],
    need: float,
    cutoff: float,
) -> np.ndarray:
    """Partial solutions that fit their caps and whose cost plus the LP bound of the rest is at most ``cutoff``."""
    promise = new_c + _lp_bound(bound, need - new_q)
    if new_load is not None:
        promise -= (caps.limit[None, :] - new_load) @ caps.refund
    alive = promise <= cutoff
    if new_load is not None:
        alive &= (new_load <= caps.limit[None, :]).all(axis=1)
    return np.flatnonzero(alive)


def _dp_pareto(
    alive: np.ndarray, new_q: np.ndarray, new_c: np.ndarray, new_load: np.ndarray | None, caps: _Caps
) -> np.ndarray:
    """Pareto filter: drops each partial solution another with its loads matches in quality for no more cost."""
    if new_load is not None and caps.packable:
        _, group = np.unique(new_load[alive] @ caps.radix, return_inverse=True)
    elif new_load is not None:
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
    return alive[better]


def _dp_trace(
    keep: np.ndarray, splits: list[np.ndarray], parents: list[np.ndarray], picks: list[np.ndarray], state: int
) -> np.ndarray:
    """The K×M counts of the split that ends in final partial solution ``state``, traced back group by group."""
    k_count, m = keep.shape
    counts = np.zeros((k_count, m), dtype=np.int64)
    for k in range(k_count - 1, -1, -1):
        counts[k, np.flatnonzero(keep[k])] = splits[k][picks[k][state]]
        state = int(parents[k][state])
    return counts


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
    come exceeds ``budget``. It replaces HiGHS on the restricted problem: a knapsack with few distinct
    quality steps, where branch and bound needs thousands of nodes to close the last gap.

    Args:
        quality: K×M qualities of each group's queries.
        costs: K×M scaled costs.
        keep: K×M pairs still allowed.
        copies: Queries in each group.
        need: Quality the groups must add.
        budget: Most cost of interest: partial solutions that cannot end at or below it are pruned.
        deadline: ``time.perf_counter()`` value at which to give up.
        room: Residual cap of each binding model.
        mu: LP multipliers of the caps (length M): the bound prices capped models at ``c + μ`` and refunds
            ``μ`` per unit of room still free, which is valid for any μ >= 0 and tight at the LP optimum.

    Returns:
        ``("optimal", counts)`` with the K×M counts of the cheapest split (which costs at most ``budget``),
        ``("none", None)`` when nothing costs at most ``budget`` (so an incumbent of that cost is optimal, or
        the problem infeasible when ``budget`` is inf), or
        ``("gave_up", None)`` when the state space grew too large or the deadline passed.
    """
    k_count = len(keep)
    caps, price = _dp_caps(keep, room, mu)
    masked = np.where(keep, costs + price[None, :], np.inf)
    bounds = _suffix_bounds(quality, masked, copies)
    state_limit = _DP_STATE_LIMIT_CAPPED if len(caps.models) else _DP_STATE_LIMIT
    slack = 1e-12 * max(1.0, abs(budget)) if math.isfinite(budget) else math.inf
    state = (np.zeros(1), np.zeros(1), np.zeros((1, len(caps.models)), dtype=np.int64))
    parents: list[np.ndarray] = []
    picks: list[np.ndarray] = []
    splits: list[np.ndarray] = []
    for k in range(k_count):
        models = np.flatnonzero(keep[k])
        if math.comb(int(copies[k]) + len(models) - 1, len(models) - 1) > _DP_CHOICE_LIMIT:
            return "gave_up", None
        split = _compositions(int(copies[k]), len(models))
        width = len(split)
        new_q, new_c, new_load = _dp_extend(state, split, models, quality[k], costs[k], caps)
        alive = _dp_prune(new_q, new_c, new_load, caps, bounds[k + 1], need, budget + slack)
        if not len(alive):
            return "none", None
        alive = _dp_pareto(alive, new_q, new_c, new_load, caps)
        if len(alive) > state_limit or time.perf_counter() > deadline:
            return "gave_up", None
        parents.append(alive // width)
        picks.append(alive % width)
        splits.append(split)
        loads = new_load[alive] if new_load is not None else np.zeros((len(alive), 0), dtype=np.int64)
        state = (new_q[alive], new_c[alive], loads)
    state_q, state_c, _ = state
    done = np.flatnonzero((state_q >= need) & (state_c <= budget + slack))
    if not len(done):
        return "none", None
    return "optimal", _dp_trace(keep, splits, parents, picks, int(done[np.argmin(state_c[done])]))


def _deepening(
    quality: np.ndarray,
    costs: np.ndarray,
    keep: np.ndarray,
    copies: np.ndarray,
    need: float,
    span: tuple[float, float, float],
    deadline: float,
    room: dict[int, int],
    mu: np.ndarray,
) -> tuple[str, np.ndarray | None]:
    """Runs :func:`_group_dp` with budgets ``floor + δ/8``, twice as much each time, up to ``budget``.

    ``span`` is ``(floor, budget, δ)``: a lower bound on the groups' cost (the dual bound less the fixed
    queries' cost), the budget to beat (inf without an incumbent) and the reduced-cost threshold the kept pairs
    were chosen with, which sets the first step. The first budget that holds a solution gives the optimum; the
    partial solutions a budget lets through grow steeply with it, so small steps are cheaper than one big one.
    Groups whose choices swing quality most go first: the LP bound then prunes the rest hardest.
    """
    floor, budget, delta = span
    budgets = []
    if math.isfinite(floor) and delta > 0:
        step = delta / 8.0
        while floor + step < budget and len(budgets) < 16:
            budgets.append(floor + step)
            step *= 2.0
    budgets.append(budget)
    span_q = np.where(keep, quality, -np.inf).max(axis=1) - np.where(keep, quality, np.inf).min(axis=1)
    order = np.argsort(-span_q * copies, kind="stable")
    for limit in budgets:
        outcome, counts = _group_dp(
            quality[order], costs[order], keep[order], copies[order], need, limit, deadline, room, mu
        )
        if outcome != "none":
            if counts is not None:
                counts[order] = counts.copy()
            return outcome, counts
    return "none", None


@dataclass(frozen=True)
class _Groups:
    """Identical free queries (same kept models, costs and qualities), merged."""

    representative: np.ndarray
    """One query of each group."""
    copies: np.ndarray
    """Queries in each group."""
    members: list[np.ndarray]
    """The queries of each group."""


def _group(problem: Problem, costs: np.ndarray, keep: np.ndarray, free: np.ndarray) -> _Groups:
    """Merges identical free queries (same kept models, costs and qualities).

    Batches repeat prompts, and n copies of a binary choice are n! symmetric solutions for branch and bound;
    one integer column per model does instead.
    """
    quality = problem.quality
    signature = np.concatenate(
        [keep[free], np.where(keep[free], costs[free], 0.0), np.where(keep[free], quality[free], 0.0)], axis=1
    )
    _, kind_of, copies = np.unique(signature, axis=0, return_inverse=True, return_counts=True)
    kind_of = kind_of.reshape(-1)
    representative = free[np.unique(kind_of, return_index=True)[1]]
    order = np.argsort(kind_of, kind="stable")
    starts = np.concatenate([[0], np.cumsum(copies)])
    members = [free[order[starts[k] : starts[k + 1]]] for k in range(len(copies))]
    return _Groups(representative, copies, members)


def _spread(index: np.ndarray, groups: _Groups, counts: np.ndarray) -> np.ndarray:
    """The assignment that puts ``counts[k, j]`` queries of group k on model j."""
    index = index.copy()
    for k, members in enumerate(groups.members):
        index[members] = np.repeat(np.arange(counts.shape[1]), counts[k])
    return index


def solve_restricted(
    problem: Problem,
    costs: np.ndarray,
    keep: np.ndarray,
    need: float,
    time_limit: float,
    *,
    best_cost: float = math.inf,
    mu: np.ndarray | None = None,
    floor: float = -math.inf,
    delta: float = 0.0,
) -> Restricted:
    """Solves the MIP over the kept pairs; queries with one kept pair are fixed to it.

    Args:
        problem: The instance.
        costs: Scaled costs (``inf`` on forbidden pairs).
        keep: N×M pairs still allowed; every query keeps at least one.
        need: Total quality to reach.
        time_limit: Seconds for the dynamic program and HiGHS together.
        best_cost: Cost of an incumbent that uses only kept pairs (inf if none): the program prunes with it,
            and "nothing cheaper" proves the incumbent optimal here.
        mu: The caps' LP multipliers, which tighten the program's bound.
        floor: A lower bound on every assignment (the dual bound); the program's budgets start there.
        delta: The reduced-cost threshold ``keep`` was chosen with (sets the first budget step).

    Returns:
        The :class:`Restricted` outcome.
    """
    started = time.perf_counter()
    mu = np.zeros(problem.m) if mu is None else mu
    counts = keep.sum(axis=1)
    free = np.flatnonzero(counts > 1)
    fixed = np.flatnonzero(counts == 1)
    index = keep.argmax(axis=1)
    residual = problem.capacity - np.bincount(index[fixed], minlength=problem.m)
    binding = np.flatnonzero(problem.binding)
    if (residual[binding] < 0).any():
        return Restricted(None, True, math.inf)
    fixed_cost = math.fsum(costs[fixed, index[fixed]].tolist())
    rest_need = mip_need(problem, need) - float(problem.quality[fixed, index[fixed]].sum())
    if not len(free):
        ok = rest_need <= 0
        return Restricted(index if ok else None, True, fixed_cost if ok else math.inf)
    groups = _group(problem, costs, keep, free)
    # A cap with room for every free query that may use it cannot bind here.
    room = {int(j): int(residual[j]) for j in binding if residual[j] < int(keep[free, j].sum())}
    rep = groups.representative
    outcome, counts_per = _deepening(
        problem.quality[rep],
        costs[rep],
        keep[rep],
        groups.copies,
        rest_need,
        (floor - fixed_cost, best_cost - fixed_cost, delta),
        time.perf_counter() + 0.5 * time_limit,
        room,
        mu,
    )
    logger.debug("restricted DP: %d free queries (%d distinct): %s", len(free), len(rep), outcome)
    if outcome == "none":
        return Restricted(None, True, best_cost)
    if counts_per is not None:
        index = _spread(index, groups, counts_per)
        return Restricted(index, True, math.fsum(costs[np.arange(problem.n), index].tolist()))
    remaining = max(0.05, time_limit - (time.perf_counter() - started))
    return _highs_restricted(problem, costs, keep, groups, (rest_need, fixed_cost), room, index, remaining)


def _highs_restricted(
    problem: Problem,
    costs: np.ndarray,
    keep: np.ndarray,
    groups: _Groups,
    rest: tuple[float, float],
    room: dict[int, int],
    index: np.ndarray,
    time_limit: float,
) -> Restricted:
    """The restricted MIP through HiGHS, for when the dynamic program's state space grows too large."""
    rest_need, fixed_cost = rest
    rep = groups.representative
    pair_q, pair_j = np.nonzero(keep[rep])
    run = run_highs(
        col_cost=costs[rep[pair_q], pair_j],
        col_query=pair_q,
        col_model=pair_j,
        col_quality=problem.quality[rep[pair_q], pair_j],
        n_queries=len(rep),
        need=rest_need,
        caps={j: float(r) for j, r in room.items()},
        integer=True,
        time_limit=time_limit,
        multiplicity=groups.copies,
    )
    logger.debug("restricted MIP: %d distinct free queries, %d columns, status %s", len(rep), len(pair_q), run.status)
    if run.status == "infeasible":
        return Restricted(None, True, math.inf)
    bound = fixed_cost + run.bound if math.isfinite(run.bound) else -math.inf
    if not run.has_solution:
        return Restricted(None, False, bound)
    counts = np.zeros((len(rep), problem.m), dtype=np.int64)
    counts[pair_q, pair_j] = np.rint(run.x).astype(np.int64)
    if not (counts.sum(axis=1) == groups.copies).all():
        return Restricted(None, False, bound)
    return Restricted(_spread(index, groups, counts), run.status == "optimal", bound)
