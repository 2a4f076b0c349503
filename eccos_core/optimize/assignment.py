"""What every optimizer method takes and returns: the validated problem and the chosen assignment.

The problem: N queries, M models, cost ``c[i, j]`` (USD), predicted quality ``q[i, j]`` (p(success)),
``target`` α, optional per-model caps ``L[j]`` and an optional ``allowed[i, j]`` mask. Choose one allowed
model per query minimising the total cost subject to ``mean_i q[i, x_i] >= α`` and at most ``L[j]`` queries
on model ``j``.

Every method validates its inputs through :func:`validate_problem`, so they reject the same bad inputs with
the same typed errors and messages, and they all report through :class:`Assignment`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from functools import cached_property
from typing import Any

import numpy as np

from eccos_core.errors import CapacityError, InputError
from eccos_core.validation import check_alpha, check_cap

QUALITY_RTOL = 1e-9
"""Relative tolerance of the quality constraint: an assignment meets α when its mean predicted quality is at
least ``α * (1 - QUALITY_RTOL)``. Solvers work in floating point, so an exact ``>=`` would make an assignment
whose mean equals α up to rounding flip between feasible and infeasible."""

GAP_RTOL = 1e-9
"""A solution whose cost is within this fraction of a proven lower bound is reported as optimal (gap 0)."""


class SolveStatus(str, Enum):
    """How much the returned assignment promises."""

    OPTIMAL = "optimal"
    """Meets ``target`` and is proven to be the cheapest assignment that does."""
    FEASIBLE = "feasible"
    """Meets ``target`` without a proof of optimality (time limit hit, or a heuristic with a gap)."""
    QUALITY_UNREACHABLE = "quality_unreachable"
    """No assignment the caps and the mask allow reaches ``target``; the highest-quality one is returned
    (cheapest among those)."""


@dataclass(frozen=True)
class Assignment:
    """The model chosen for every query of a batch, and what the choice promises.

    Example:
        >>> import numpy as np
        >>> from eccos_core.optimize import solve
        >>> a = solve(np.array([[1.0, 3.0]]), np.array([[0.5, 0.9]]), target=0.8)
        >>> a.model_index.tolist(), a.status.value
        ([1], 'optimal')
    """

    model_index: np.ndarray
    """Column of the chosen model for each query (int, length N)."""
    status: SolveStatus
    """Whether the assignment is proven optimal, only feasible, or best-effort because α is out of reach."""
    expected_quality: float
    """Mean predicted quality of the chosen models (NaN for an empty batch: there is nothing to average)."""
    expected_cost: float
    """Sum of the chosen costs (USD)."""
    method: str
    """Method that produced the assignment (``"exact"``, ``"ilp"``, ``"lagrangian"``, ``"per-query"``; what
    ``"auto"`` chose is named here)."""
    gap: float = 0.0
    """Upper bound on ``expected_cost`` minus the optimum (USD); 0.0 when proven optimal."""
    message: str = ""
    """One human sentence on the outcome; says why when α is out of reach and what the best reachable is."""


@dataclass(frozen=True)
class Problem:
    """A validated instance. Built only by :func:`validate_problem`; the methods trust its invariants.

    ``cost`` and ``quality`` are finite float arrays with 0 wherever ``allowed`` is False, so the methods can
    do arithmetic on them without masking first. ``allowed`` already excludes models whose cap is 0. Without a
    mask they are the caller's own float arrays (not copied: at N = 10^6 a copy is tens of megabytes); no
    method writes to them.
    """

    cost: np.ndarray
    """N×M costs, USD, >= 0 (0 where not allowed)."""
    quality: np.ndarray
    """N×M predicted p(success) in [0, 1] (0 where not allowed)."""
    allowed: np.ndarray
    """N×M bool: model j may take query i (mask given by the caller, minus models capped at 0)."""
    target: float
    """α in [0, 1]."""
    capacity: np.ndarray
    """Per-model cap as int64, ``N`` where uncapped (a cap of N or more cannot bind)."""
    binding: np.ndarray
    """Per-model bool: the cap is below the number of queries the model may take, so it can bind."""
    caps_given: bool
    """The caller passed caps (changes only how messages are worded)."""
    mask_given: bool
    """The caller passed an ``allowed`` mask (changes only how messages are worded)."""

    @property
    def n(self) -> int:
        """Number of queries."""
        return int(self.cost.shape[0])

    @property
    def m(self) -> int:
        """Number of models."""
        return int(self.cost.shape[1])

    @cached_property
    def unmasked(self) -> bool:
        """Whether every pair is allowed (no mask, no model capped at 0): then nothing needs masking."""
        return bool(self.allowed.all())

    @property
    def capped(self) -> bool:
        """Whether any cap can bind; without one the problem separates per query except for α."""
        return bool(self.binding.any())

    def without_caps(self) -> Problem:
        """The same instance with every cap lifted (models capped at 0 stay excluded through ``allowed``)."""
        return Problem(
            cost=self.cost,
            quality=self.quality,
            allowed=self.allowed,
            target=self.target,
            capacity=np.full(self.m, self.n, dtype=np.int64),
            binding=np.zeros(self.m, dtype=bool),
            caps_given=False,
            mask_given=self.mask_given,
        )

    def with_target(self, target: float) -> Problem:
        """The same instance with another α (used to find the cheapest of the highest-quality assignments)."""
        return Problem(
            cost=self.cost,
            quality=self.quality,
            allowed=self.allowed,
            target=float(target),
            capacity=self.capacity,
            binding=self.binding,
            caps_given=self.caps_given,
            mask_given=self.mask_given,
        )

    def quality_floor(self) -> float:
        """Least total predicted quality that counts as meeting α (see :data:`QUALITY_RTOL`)."""
        return self.n * self.target * (1.0 - QUALITY_RTOL)

    def meets_quality(self, model_index: np.ndarray) -> bool:
        """Whether an assignment reaches α within :data:`QUALITY_RTOL`.

        numpy's pairwise sum errs by far less than the tolerance band (N·α·1e-9), even at N = 10^6.
        """
        rows = np.arange(self.n)
        return float(self.quality[rows, model_index].sum()) >= self.quality_floor()

    def respects_caps(self, model_index: np.ndarray) -> bool:
        """Whether an assignment uses only allowed pairs and stays within every cap."""
        rows = np.arange(self.n)
        if not bool(self.allowed[rows, model_index].all()):
            return False
        load = np.bincount(model_index, minlength=self.m)
        return bool((load <= self.capacity).all())


def _as_matrix(name: str, value: Any) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} must be an N×M array of numbers (queries × models): {exc}") from exc
    if array.ndim != 2:
        raise InputError(
            f"{name} must be a 2-D N×M array (one row per query, one column per model), got shape {array.shape}"
        )
    return array


def _as_mask(value: Any, shape: tuple[int, int]) -> np.ndarray:
    raw = np.asarray(value)
    if raw.shape != shape:
        raise InputError(f"allowed has shape {raw.shape} but cost is {shape}: give one bool per (query, model)")
    if raw.dtype == bool:
        return raw.copy()
    if raw.size and not np.isin(raw, (0, 1)).all():
        raise InputError("allowed must hold only True/False (or 1/0): True where the model may take the query")
    return raw.astype(bool)


def _check_entries(name: str, array: np.ndarray, allowed: np.ndarray | None, low: float, high: float) -> None:
    if allowed is None and array.size:
        least, most = float(array.min()), float(array.max())  # NaN propagates into both
        if math.isfinite(least) and math.isfinite(most) and least >= low and most <= high:
            return
    if allowed is None:
        allowed = np.ones(array.shape, dtype=bool)
    bad = allowed & ~(np.isfinite(array) & (array >= low) & (array <= high))
    if bad.any():
        i, j = (int(k) for k in np.argwhere(bad)[0])
        count = int(bad.sum())
        bound = f">= {low:g}" if math.isinf(high) else f"in [{low:g}, {high:g}]"
        entries = "entry" if count == 1 else "entries"
        raise InputError(
            f"{name}[{i}, {j}] is {float(array[i, j])!r} ({count} bad {entries}): every {name} must be finite "
            f"and {bound}; fix the {name} matrix (or mark the pair as not allowed)"
        )


def _check_capacity(capacity: Sequence[int | None] | None, n: int, m: int) -> tuple[np.ndarray, bool]:
    if capacity is None:
        return np.full(m, n, dtype=np.int64), False
    if isinstance(capacity, (str, bytes)) or not hasattr(capacity, "__len__"):
        raise InputError(f"capacity must be a sequence of {m} ints or None (one per model), got {capacity!r}")
    if len(capacity) != m:
        raise InputError(
            f"capacity has {len(capacity)} entries but there are {m} models: give one int (or None = uncapped) "
            "per model column"
        )
    caps = np.full(m, n, dtype=np.int64)
    for j, cap in enumerate(capacity):
        if cap is None:
            continue
        caps[j] = min(int(check_cap(cap, f"column {j}")), n)
    return caps, True


def _check_room(allowed: np.ndarray, caps: np.ndarray, raw_total: int) -> None:
    """Raises :class:`CapacityError` unless some assignment places every query within the caps.

    A total of caps >= N is not enough once a mask restricts which model takes which query, so this solves
    the bipartite max-flow (source → query → allowed model → sink, model edge capacity = its cap).
    """
    n, m = allowed.shape
    if raw_total < n:
        raise CapacityError(
            f"the per-model caps sum to {raw_total} for a batch of {n} queries: raise capacity (or pass None for "
            "an uncapped model) so the caps add up to at least the batch size"
        )
    if allowed.all():
        return
    import scipy.sparse as sp  # only masked, capped batches need the max-flow check
    from scipy.sparse.csgraph import breadth_first_order, maximum_flow

    source, sink = n + m, n + m + 1
    qi, mj = np.nonzero(allowed)
    heads = np.concatenate([np.full(n, source), qi, n + np.arange(m)])
    tails = np.concatenate([np.arange(n), n + mj, np.full(m, sink)])
    weights = np.concatenate([np.ones(n + len(qi)), caps]).astype(np.int32)
    graph = sp.csr_matrix((weights, (heads, tails)), shape=(n + m + 2, n + m + 2))
    result = maximum_flow(graph, source, sink)
    if result.flow_value >= n:
        return
    residual = (graph - result.flow).tocsr()  # flow is antisymmetric: reverse edges get their flow back
    residual.data = (residual.data > 0).astype(np.int8)
    residual.eliminate_zeros()
    reachable = breadth_first_order(residual.tocsr(), source, return_predecessors=False)
    full = sorted(int(v) - n for v in reachable if n <= v < n + m)
    raise CapacityError(
        f"the caps and the allowed mask can place only {result.flow_value} of the {n} queries (the caps sum to "
        f"{raw_total} for a batch of {n}, but the queries' allowed models run out of room): raise capacity of "
        f"model column(s) {full}, or allow more models for the queries they can take"
    )


def validate_problem(
    cost: Any,
    quality: Any,
    target: Any,
    capacity: Sequence[int | None] | None = None,
    allowed: Any = None,
) -> Problem:
    """Checks and normalises the inputs shared by every method.

    Entries where ``allowed`` is False are not checked (callers may mark an unusable model with ``inf`` cost or
    NaN quality) and are zeroed, so the methods never see a non-finite number.

    Args:
        cost: N×M costs in USD (finite, >= 0).
        quality: N×M predicted p(success) (in [0, 1]).
        target: The mean predicted quality to reach, in [0, 1].
        capacity: Length-M caps, each a non-negative int or None (uncapped); None for no caps at all.
        allowed: Optional N×M bool mask; False means model j cannot take query i.

    Returns:
        The validated :class:`Problem`.

    Raises:
        InputError: A value is malformed; the message names it and what to fix.
        CapacityError: No assignment fits every query within the caps (and the mask).
    """
    checked = check_alpha(target, "target")
    cost_array = _as_matrix("cost", cost)
    quality_array = _as_matrix("quality", quality)
    if cost_array.shape != quality_array.shape:
        raise InputError(
            f"cost has shape {cost_array.shape} but quality has shape {quality_array.shape}: both must be "
            "N×M (one row per query, one column per model)"
        )
    n, m = cost_array.shape
    given = None if allowed is None else _as_mask(allowed, (n, m))
    _check_entries("cost", cost_array, given, 0.0, math.inf)
    _check_entries("quality", quality_array, given, 0.0, 1.0)
    mask = np.ones((n, m), dtype=bool) if given is None else given
    caps, caps_given = _check_capacity(capacity, n, m)
    if n:
        blocked = np.flatnonzero(~mask.any(axis=1))
        if len(blocked):
            shown = blocked[:10].tolist()
            more = f" and {len(blocked) - 10} more" if len(blocked) > 10 else ""
            raise InputError(
                f"quer{'y' if len(blocked) == 1 else 'ies'} {shown}{more} ha{'s' if len(blocked) == 1 else 've'} "
                "no allowed model: allow at least one model for every query (or drop those queries)"
            )
    raw_total = sum(n if c is None else int(c) for c in capacity) if capacity is not None else n * m
    mask &= (caps > 0)[None, :]
    if caps_given and n:
        _check_room(mask, caps, raw_total if m else 0)
    counts = mask.sum(axis=0)
    binding = caps < counts
    everywhere = bool(counts.min(initial=n) == n)  # nothing to zero out: keep the caller's arrays, uncopied
    return Problem(
        cost=cost_array if everywhere else np.where(mask, cost_array, 0.0),
        quality=quality_array if everywhere else np.where(mask, quality_array, 0.0),
        allowed=mask,
        target=checked,
        capacity=caps,
        binding=binding,
        caps_given=caps_given,
        mask_given=allowed is not None,
    )


def make_assignment(
    problem: Problem,
    model_index: np.ndarray,
    status: SolveStatus,
    method: str,
    *,
    gap: float = 0.0,
    message: str = "",
) -> Assignment:
    """Builds the :class:`Assignment` of a chosen index, computing its quality and cost the same way for all."""
    index = np.asarray(model_index, dtype=np.int64)
    rows = np.arange(problem.n)
    mean = float(np.mean(problem.quality[rows, index])) if problem.n else math.nan
    total = math.fsum(problem.cost[rows, index].tolist())
    gap = 0.0 if status is SolveStatus.OPTIMAL else max(0.0, float(gap))
    if not message:
        if status is SolveStatus.OPTIMAL:
            message = f"optimal: mean predicted quality {mean:.4f} >= target {problem.target:g}"
        else:
            message = (
                f"feasible: mean predicted quality {mean:.4f} >= target {problem.target:g}; cost is "
                f"at most {gap:.6g} USD above the optimum"
            )
    return Assignment(
        model_index=index,
        status=status,
        expected_quality=mean,
        expected_cost=total,
        method=method,
        gap=gap,
        message=message,
    )


def floor_str(value: float, places: int = 4) -> str:
    """Formats a quality rounded down, so a reachable maximum is never shown as reaching α."""
    for digits in range(places, 16):
        scaled = math.floor(value * 10**digits + 1e-9) / 10**digits
        if scaled > 0.0 or value <= 0.0:
            return f"{scaled:.{digits}f}".rstrip("0").rstrip(".") or "0"
    return f"{value:.3g}"


def best_reach(problem: Problem, reached: float) -> str:
    """Says what the best assignment the caps and the mask allow reaches, e.g. "the best ... reaches 0.61"."""
    if problem.caps_given and problem.mask_given:
        who = "the best assignment the caps and the allowed mask permit"
    elif problem.caps_given:
        who = "the best assignment the caps allow"
    elif problem.mask_given:
        who = "the best assignment the allowed mask permits"
    else:
        who = "the best assignment (every query on its highest-quality model)"
    return f"{who} reaches {floor_str(reached)}"


def unreachable_fix(problem: Problem) -> str:
    """What the caller can change when α is out of reach."""
    return "lower the target" + (" or raise capacity" if problem.caps_given else "") + " or add stronger models"


def unreachable_message(problem: Problem, reached: float) -> str:
    """The sentence of a QUALITY_UNREACHABLE result: says α is out of reach and what the best reaches."""
    return (
        f"target {problem.target:g} is unreachable: {best_reach(problem, reached)}; returned the "
        f"highest-quality assignment, cheapest among those ({unreachable_fix(problem)})"
    )


def empty_assignment(method: str) -> Assignment:
    """The assignment of an empty batch: nothing to route, trivially optimal."""
    return Assignment(
        model_index=np.zeros(0, dtype=np.int64),
        status=SolveStatus.OPTIMAL,
        expected_quality=math.nan,
        expected_cost=0.0,
        method=method,
        gap=0.0,
        message="empty batch: nothing to assign",
    )
