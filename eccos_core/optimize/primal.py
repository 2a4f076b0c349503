"""From multipliers to a feasible assignment: cap repair, quality fill and local search.

The Lagrangian method returns what these build (with the dual bound as its honest gap); the exact method uses
them for a first incumbent, and the reachability check for a cheap witness that α is reachable. At N = 10^6
every pass over the N×M matrix costs tens of milliseconds, so the fill and the local search look at all
queries once and then work only on the few that can still matter.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np

from eccos_core.optimize.assignment import Problem
from eccos_core.optimize.dual import HULL_ROWS, Dual, cheapest_index, lower_hull, reduced_costs

_FILL_COVER = 8.0
"""The fill's candidates can gain this many times the deficit at most (their hulls' first, cheapest steps
gain less than that, and full models skip some)."""

_FILL_SPARE = 1024
"""Queries added to the fill's candidates beyond those whose upgrades cover the deficit."""

_IMPROVE_ROWS = 8192
"""Queries the local search looks at (those with the largest saving move), besides any whose saving move
also gains quality."""


def heuristic(
    problem: Problem, costs: np.ndarray, need: float, dual: Dual, *, deadline: float, start: np.ndarray | None = None
) -> np.ndarray | None:
    """A feasible assignment built from multipliers: their choices, repaired to the caps, filled to α, improved.

    Args:
        problem: The instance.
        costs: Scaled costs with ``inf`` on forbidden pairs.
        need: Total quality to reach.
        dual: Multipliers whose cheapest choices are the starting point (and whose reduced costs rank the
            queries to move off over-full models).
        deadline: ``time.perf_counter()`` value to stop the local search at.
        start: The starting assignment, when the caller has a better one (the LP's choices).

    Returns:
        The assignment, or None when repair could not meet the caps and α (the caller then falls back to an
        exact solve).
    """
    if start is None:
        start = cheapest_index(reduced_costs(costs, problem.quality, dual.lam, dual.mu), problem.quality, 1e-12)
    index = start.copy()
    if problem.capped:

        def reduced(rows: np.ndarray) -> np.ndarray:
            return reduced_costs(costs[rows], problem.quality[rows], dual.lam, dual.mu)

        index = repair_caps(problem, reduced, index)
        if index is None:
            return None
    room = problem.capacity - np.bincount(index, minlength=problem.m)
    index = fill_quality(problem, costs, index, need, room)
    if index is None:
        return None
    return improve(problem, costs, index, need, deadline=deadline)


def repair_caps(problem: Problem, reduced: Callable[[np.ndarray], np.ndarray], index: np.ndarray) -> np.ndarray | None:
    """Moves the queries that lose least (in reduced cost) off every over-full model.

    Each round moves, for every over-full model, its excess queries in order of regret to their cheapest model
    with room (no more than that model's room); queries left over try again next round, against the new room.
    ``reduced`` gives the reduced costs of some rows (``inf`` on forbidden pairs): only the over-full models'
    queries are ever priced.
    """
    index = index.copy()
    room = problem.capacity - np.bincount(index, minlength=problem.m)
    for _ in range(4 * problem.m + 8):
        over = np.flatnonzero(room < 0)
        if not len(over):
            return index
        moved = 0
        for j in over.tolist():
            members = np.flatnonzero(index == j)
            prices = reduced(members)
            alternatives = np.where((room > 0)[None, :], prices, np.inf)
            alternatives[:, j] = np.inf
            target = alternatives.argmin(axis=1)
            regret = alternatives[np.arange(len(members)), target] - prices[:, j]
            movable = np.flatnonzero(np.isfinite(regret))
            excess = min(int(-room[j]), len(movable))
            if excess < len(movable):  # only the `excess` smallest regrets move this round
                movable = movable[np.argpartition(regret[movable], excess)[:excess]]
            take = movable[np.argsort(regret[movable], kind="stable")]
            chosen = target[take]
            rank = _rank_within(chosen)
            fits = rank < room[chosen]
            index[members[take[fits]]] = chosen[fits]
            shift = np.bincount(chosen[fits], minlength=problem.m)
            room -= shift
            room[j] += int(fits.sum())
            moved += int(fits.sum())
        if not moved:
            return None
    return index if (room >= 0).all() else None


def _rank_within(labels: np.ndarray) -> np.ndarray:
    """Each entry's position among the entries with the same label, in the given order."""
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    starts = np.flatnonzero(np.concatenate([[True], sorted_labels[1:] != sorted_labels[:-1]]))
    counts = np.diff(np.concatenate([starts, [len(labels)]]))
    rank = np.empty(len(labels), dtype=np.int64)
    rank[order] = np.arange(len(labels)) - np.repeat(starts, counts)
    return rank


def _upgrade_rows(
    problem: Problem, costs: np.ndarray, index: np.ndarray, room: np.ndarray, deficit: float
) -> tuple[np.ndarray, np.ndarray]:
    """The queries worth upgrading (cheapest extra cost per quality first) and their allowed upgrades.

    An upgrade is a model with higher quality, no lower cost and room. Up to :data:`HULL_ROWS` queries all
    are candidates; above, only those whose first upgrade is cheapest per unit of quality, enough of them to
    cover :data:`_FILL_COVER` times the deficit (plus :data:`_FILL_SPARE`), so the hulls stay small.
    """
    rows = np.arange(problem.n)
    rise = problem.quality - problem.quality[rows, index][:, None]
    extra = costs - costs[rows, index][:, None]
    up = rise > 0
    up &= extra >= 0
    up &= extra < np.inf
    up &= (room > 0)[None, :]
    np.copyto(rise, 0.0, where=~up)  # in place: at N = 10^6 each fresh N×M array costs page faults
    gain = rise.max(axis=1)
    if problem.n > HULL_ROWS:
        np.divide(extra, rise, out=extra, where=up)
        np.copyto(extra, np.inf, where=~up)
        slope = extra.min(axis=1)
        del extra, rise
        count = 4 * _FILL_SPARE
        while True:
            pick = np.argpartition(slope, count)[:count] if count < problem.n else rows
            pick = pick[np.argsort(slope[pick], kind="stable")]
            covered = np.cumsum(gain[pick])
            if covered[-1] >= _FILL_COVER * deficit or count >= problem.n:
                break
            count *= 4
        enough = int(np.searchsorted(covered, _FILL_COVER * deficit)) + _FILL_SPARE
        candidates = np.sort(pick[:enough][gain[pick[:enough]] > 0])
    else:
        candidates = np.flatnonzero(gain > 0)
    allowed = up[candidates]
    allowed[np.arange(len(candidates)), index[candidates]] = True
    return candidates, allowed


def fill_quality(
    problem: Problem, costs: np.ndarray, index: np.ndarray, need: float, room: np.ndarray
) -> np.ndarray | None:
    """Upgrades queries until the total quality reaches ``need``, cheapest extra cost per quality first.

    Upgrades follow each query's lower hull from where it stands (never a dearer, lower-quality model), in
    increasing slope over the batch, skipping models that are full; a few rounds recompute the hulls after
    models fill up.
    """
    rows = np.arange(problem.n)
    quality = problem.quality
    index = index.copy()
    for _ in range(8):
        total = math.fsum(quality[rows, index].tolist())
        if total >= need:
            return index
        candidates, up = _upgrade_rows(problem, costs, index, room, need - total)
        if not len(candidates):
            return None
        hull = lower_hull(np.where(up, costs[candidates], np.inf), quality[candidates], start=index[candidates])
        for k in range(len(hull.query)):
            i = int(candidates[hull.query[k]])
            source, target = int(hull.source[k]), int(hull.target[k])
            if index[i] != source or room[target] <= 0:
                continue
            room[source] += 1
            room[target] -= 1
            index[i] = target
            total += float(quality[i, target] - quality[i, source])
            if total >= need:
                break
    return index if math.fsum(quality[rows, index].tolist()) >= need else None


def improve(
    problem: Problem, costs: np.ndarray, index: np.ndarray, need: float, *, deadline: float, rounds: int = 200
) -> np.ndarray:
    """Local search: moves queries to cheaper models while quality stays >= ``need`` and caps hold.

    Only queries with a cheaper model with room that the quality slack could ever allow are searched (one
    that loses no more than the slack plus every quality-gaining saving move in the batch), and of those the
    :data:`_IMPROVE_ROWS` that save most, plus every query with a quality-gaining saving move. (A model that is
    full at the start may get room as others leave it; at N = 10^6 not looking there is the price of a local
    search that takes milliseconds.)
    """
    rows = np.arange(problem.n)
    quality = problem.quality
    index = index.copy()
    room = problem.capacity - np.bincount(index, minlength=problem.m)
    here_q = quality[rows, index]
    slack = float(here_q.sum()) - need
    saving = costs - costs[rows, index][:, None]
    change = quality - here_q[:, None]
    ok = (saving < 0) & (room > 0)[None, :]
    gaining = ok & (change > 0)
    # Quality-gaining moves can add to the slack, at most the room of the model they move to.
    most = np.where(gaining, change, 0.0).max(axis=0)
    reach = slack + float((np.minimum(np.count_nonzero(gaining, axis=0), room) * most).sum())
    ok &= change >= -reach
    del change
    np.copyto(saving, 0.0, where=~ok)
    best = saving.min(axis=1)
    del saving, ok
    candidates = np.flatnonzero(best < 0)
    if len(candidates) > _IMPROVE_ROWS:
        top = candidates[np.argpartition(best[candidates], _IMPROVE_ROWS)[:_IMPROVE_ROWS]]
        candidates = np.union1d(top, np.flatnonzero(gaining.any(axis=1)))
    if not len(candidates):
        return index
    local = _improve_rows(costs[candidates], quality[candidates], index[candidates], slack, room, deadline, rounds)
    index[candidates] = local
    return index


def _improve_rows(
    costs: np.ndarray,
    quality: np.ndarray,
    index: np.ndarray,
    slack: float,
    room: np.ndarray,
    deadline: float,
    rounds: int,
) -> np.ndarray:
    """:func:`improve`'s rounds on the candidate queries (``room`` and ``slack`` are the whole batch's)."""
    rows = np.arange(len(costs))
    index = index.copy()
    for _ in range(rounds):
        here_q = quality[rows, index]
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


def quick_feasible(problem: Problem, top: np.ndarray) -> np.ndarray | None:
    """A cheap witness that α is reachable under the caps, or None when this quick try does not find one.

    Every query starts on its highest-quality model (``top``); over-full models shed the queries that lose
    least quality. None does not prove α unreachable, only that the exact max-quality problem must decide.
    """

    def lost(rows: np.ndarray) -> np.ndarray:
        if problem.unmasked:
            return -problem.quality[rows]
        return np.where(problem.allowed[rows], -problem.quality[rows], np.inf)

    index = repair_caps(problem, lost, top)
    if index is not None and problem.meets_quality(index) and problem.respects_caps(index):
        return index
    return None
