"""HiGHS, quietly: the one place that builds and runs a HiGHS model for the optimizer.

Every model the methods hand to HiGHS has the same shape: one column per kept (query, model) pair, one
``= 1`` row per query (``= count`` when identical queries are merged), an optional ``>=`` quality row and a
``<=`` row per capped model. :func:`run_highs` builds it column-wise straight from numpy arrays and reports
what came back in a :class:`HighsRun`; :func:`quiet_highs` makes the instance (PuLP's ILP uses it too, to
absorb HiGHS's one-time banner).

``highspy`` is imported on first use, so importing the optimizer does not load it.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import highspy

logger = logging.getLogger(__name__)

FEASIBILITY_TOL = 1e-9
"""Primal and MIP feasibility tolerance given to HiGHS (its defaults, 1e-7 and 1e-6, are looser than the
1e-9 relative tolerance promised on the quality constraint)."""

MIP_REL_GAP = 1e-10
"""HiGHS stops when its gap is below this; HiGHS's default 1e-4 would not be a proof of optimality."""

DUAL_TOL = 1e-7
"""HiGHS's dual feasibility tolerance: reduced costs it reports as optimal may be this far below zero."""

_banner_lock = threading.Lock()
_banner_done = False


def _highspy() -> Any:
    """The ``highspy`` module, imported on first use (it loads a native library, ~10 ms)."""
    import highspy

    return highspy


def quiet_highs() -> highspy.Highs:
    """A HiGHS instance that prints nothing.

    ``highspy.Highs()`` writes a copyright banner to the C-level stdout the first time one is built in a
    process, before any option can be set; the library must not print, so the first construction runs with
    file descriptor 1 pointed at ``/dev/null``. Later instances (PuLP's included) never print it again.
    """
    global _banner_done
    highspy = _highspy()
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
class HighsRun:
    """What one HiGHS run returned."""

    status: str
    """``optimal``, ``infeasible``, ``time_limit`` (a solution may exist) or ``failed``."""
    x: np.ndarray
    """Column values (zeros without a solution)."""
    row_dual: np.ndarray
    """Row duals: query rows first, then the quality row (when present), then one row per capped model that
    has a column, in the order of ``caps``."""
    cap_rows: dict[int, int]
    """Row of each capped model that got one."""
    objective: float
    bound: float
    """MIP dual bound (the objective for an LP)."""
    has_solution: bool


def _matrix(
    col_query: np.ndarray, col_model: np.ndarray, col_quality: np.ndarray, n_queries: int, need: bool, caps: dict
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[int, int], int]:
    """Column-wise (start, index, value) arrays: per column its query row, quality row and cap row, in order."""
    n_cols = len(col_query)
    cap_rows: dict[int, int] = {}
    next_row = n_queries + (1 if need else 0)
    row_of_model = np.full(int(col_model.max()) + 1 if n_cols else 1, -1, dtype=np.int64)
    for j in caps:
        if j < len(row_of_model) and (col_model == j).any():
            cap_rows[j] = next_row
            row_of_model[j] = next_row
            next_row += 1
    index = np.full((n_cols, 3), -1, dtype=np.int64)
    value = np.zeros((n_cols, 3))
    index[:, 0], value[:, 0] = col_query, 1.0
    if need:
        nonzero = col_quality != 0
        index[nonzero, 1], value[nonzero, 1] = n_queries, col_quality[nonzero]
    cap_row = row_of_model[col_model] if n_cols else np.zeros(0, dtype=np.int64)
    index[:, 2], value[:, 2] = cap_row, np.where(cap_row >= 0, 1.0, 0.0)
    present = index >= 0
    start = np.concatenate([[0], np.cumsum(present.sum(axis=1))])
    return start, index[present], value[present], cap_rows, next_row


def run_highs(
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
) -> HighsRun:
    """Builds and solves ``min cost·x`` with one row per query (= 1), a quality row and cap rows.

    Args:
        col_cost: Objective of each column (one column per kept (query, model) pair).
        col_query: Local query row of each column.
        col_model: Model of each column (for its cap row).
        col_quality: Quality of each column (its coefficient in the quality row).
        n_queries: Number of query rows.
        need: Right-hand side of the quality row (``>=``), or None to leave the row out.
        caps: Residual cap of each model that gets a ``<=`` row.
        integer: Solve as a MIP (integer columns) rather than an LP.
        time_limit: Seconds for HiGHS.
        multiplicity: Copies of each query row (identical queries merged into one integer column per model,
            bounded by the count, with row right-hand side = count); None means 1 each.

    Returns:
        The :class:`HighsRun`. No starting solution is passed to a MIP: HiGHS 1.16 with presolve on can return
        a given start as "optimal" with a wrong objective, so the proof would be void. For the same reason the
        objective HiGHS reports is checked against ``col_cost·x`` before a status is trusted.
    """
    highspy = _highspy()
    n_cols = len(col_cost)
    copies = np.ones(n_queries) if multiplicity is None else np.asarray(multiplicity, dtype=float)
    start, index, value, cap_rows, n_rows = _matrix(
        np.asarray(col_query), np.asarray(col_model), np.asarray(col_quality, dtype=float), n_queries,
        need is not None, caps,
    )  # fmt: skip
    row_lower = [copies] + ([np.array([need])] if need is not None else [])
    row_upper = [copies] + ([np.array([math.inf])] if need is not None else [])
    row_lower.append(np.full(len(cap_rows), -math.inf))
    row_upper.append(np.array([float(caps[j]) for j in cap_rows]))
    lp = highspy.HighsLp()
    lp.num_col_ = n_cols
    lp.num_row_ = n_rows
    lp.col_cost_ = np.asarray(col_cost, dtype=float)
    lp.col_lower_ = np.zeros(n_cols)
    lp.col_upper_ = copies[col_query]
    lp.row_lower_ = np.concatenate(row_lower)
    lp.row_upper_ = np.concatenate(row_upper)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = start.astype(np.int32)
    lp.a_matrix_.index_ = index.astype(np.int32)
    lp.a_matrix_.value_ = value
    if integer:
        lp.integrality_ = [highspy.HighsVarType.kInteger] * n_cols
    highs = quiet_highs()
    highs.setOptionValue("time_limit", max(0.01, float(time_limit)))
    highs.setOptionValue("primal_feasibility_tolerance", FEASIBILITY_TOL)
    highs.setOptionValue("random_seed", 0)
    if integer:
        highs.setOptionValue("mip_rel_gap", MIP_REL_GAP)
        highs.setOptionValue("mip_abs_gap", 0.0)
        highs.setOptionValue("mip_feasibility_tolerance", FEASIBILITY_TOL)
    else:
        highs.setOptionValue("solver", "simplex")
    highs.passModel(lp)
    highs.run()
    return _collect(highs, lp.col_cost_, n_rows, cap_rows, integer)


def _collect(highs: Any, col_cost: np.ndarray, n_rows: int, cap_rows: dict[int, int], integer: bool) -> HighsRun:
    """Reads status, solution, duals and bounds back from a finished run."""
    highspy = _highspy()
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
    x = np.asarray(solution.col_value, dtype=float) if has_solution else np.zeros(len(col_cost))
    objective = float(info.objective_function_value)
    if has_solution and abs(objective - float(col_cost @ x)) > 1e-9 * max(1.0, abs(objective)):
        logger.warning(
            "HiGHS reported objective %.12g for a solution costing %.12g; not trusting it",
            objective,
            float(col_cost @ x),
        )
        status = "failed"
    row_dual = np.asarray(solution.row_dual, dtype=float) if solution.dual_valid else np.zeros(n_rows)
    bound = float(info.mip_dual_bound) if integer else objective
    return HighsRun(status, x, row_dual, cap_rows, objective, bound, has_solution)
