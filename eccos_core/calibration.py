"""Making ``min_quality`` mean realized success, not predicted success.

Two corrections, both learned from out-of-fold predictions on the training logs (predictions made for each
training query without its own outcome, so they err the way predictions on new queries do):

* :class:`IsotonicCalibration` maps each model's raw predicted quality to the success rate actually observed at
  that prediction level (per-model isotonic regression), so ``p = 0.8`` means right four times in five.
* :class:`QualityGuard` corrects the optimizer's selection bias. Even calibrated predictions are noisy, and an
  optimizer that minimises cost subject to mean predicted quality picks exactly the (query, model) pairs whose
  predictions are too optimistic. The guard routes the out-of-fold predictions at a grid of internal targets,
  measures the realized success each one gives, and inverts that curve: ``target(alpha)`` is the internal target
  whose realized success on held-out data reached ``alpha``.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from eccos_core.errors import PredictorStateError

logger = logging.getLogger(__name__)

MIN_OUTCOMES = 20
"""Logged outcomes a model needs before its predictions stand on its own record.

A model with fewer is reported with a warning when a predictor is fitted, and its predicted quality is shrunk
toward the pool's mean success (:func:`thin_prior`): without it, a model logged once, correctly, is predicted
``p = 1.00`` for every query and takes every query at moderate ``min_quality``. Its isotonic calibration is not
fitted either (identity), since a monotone fit to a handful of outcomes maps predictions to 0 or 1."""


def thin_prior(score_sum: np.ndarray, score_count: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per model, a prior p(success) and its weight in pseudo-outcomes, for shrinking thin models.

    A model with ``c < MIN_OUTCOMES`` logged outcomes is given ``MIN_OUTCOMES - c`` pseudo-outcomes at the pool's
    mean success (a Beta prior centred on it), so its prior is its own mean pulled toward the pool's, and the
    fewer outcomes it has, the harder. A model with ``MIN_OUTCOMES`` or more gets no pseudo-outcomes: its prior
    is its own mean success.

    Args:
        score_sum: Per model, the sum of its logged scores.
        score_count: Per model, how many outcomes it has.

    Returns:
        ``(prior, pseudo)``: the prior mean and the number of pseudo-outcomes behind it, per model.
    """
    score_sum, score_count = np.asarray(score_sum, dtype=float), np.asarray(score_count, dtype=float)
    total = score_count.sum()
    pool_mean = float(score_sum.sum() / total) if total > 0 else 0.5
    pseudo = np.clip(MIN_OUTCOMES - score_count, 0.0, None)
    prior = (score_sum + pseudo * pool_mean) / np.maximum(score_count + pseudo, 1.0)
    return prior, pseudo


def warn_thin_models(models: Sequence[str], scores: np.ndarray) -> list[str]:
    """Warn about models with fewer than :data:`MIN_OUTCOMES` logged outcomes (at fit time); returns them."""
    counts = (~np.isnan(np.asarray(scores, dtype=float))).sum(axis=0)
    thin = {name: int(count) for name, count in zip(models, counts, strict=True) if count < MIN_OUTCOMES}
    if thin:
        logger.warning(
            "models with fewer than %d logged outcomes: %s; their predictions are shrunk toward the pool's mean "
            "success until more outcomes are logged (eccos collect)",
            MIN_OUTCOMES,
            ", ".join(f"{name} ({count})" for name, count in thin.items()),
        )
    return list(thin)


def _knots(value: Any, what: str, *, low: float = -math.inf, high: float = math.inf) -> tuple[float, ...]:
    """A non-empty list of finite numbers in [low, high] that never decreases, as a tuple."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
        raise PredictorStateError(f"{what} must be a non-empty list of numbers")
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(float(v)):
            raise PredictorStateError(f"{what} must hold finite numbers, got {v!r}")
        out.append(float(v))
    if any(not low <= v <= high for v in out):
        raise PredictorStateError(f"{what} must lie in [{low}, {high}]")
    if np.any(np.diff(out) < 0):
        raise PredictorStateError(f"{what} must never decrease")
    return tuple(out)


def _mapping(data: Any, keys: Sequence[str], what: str) -> None:
    if not isinstance(data, dict):
        raise PredictorStateError(f"{what} must be a JSON object with {list(keys)}")
    missing = [key for key in keys if key not in data]
    if missing:
        raise PredictorStateError(f"{what} lacks {missing}")


@dataclass(frozen=True)
class IsotonicCalibration:
    """Per-model monotone map from raw predicted quality to observed success rate, as knots."""

    x: tuple[tuple[float, ...], ...]
    """Per model, increasing raw-quality knots."""
    y: tuple[tuple[float, ...], ...]
    """Per model, calibrated quality at each knot."""

    @classmethod
    def fit(cls, raw: np.ndarray, scores: np.ndarray) -> IsotonicCalibration:
        """Fit one isotonic regression per column of ``raw`` (N×M) against observed ``scores`` (NaN = unseen)."""
        from sklearn.isotonic import IsotonicRegression

        xs, ys = [], []
        for j in range(raw.shape[1]):
            seen = ~np.isnan(scores[:, j])
            if seen.sum() < MIN_OUTCOMES:  # too few outcomes for a monotone fit: identity (see MIN_OUTCOMES)
                xs.append((0.0, 1.0))
                ys.append((0.0, 1.0))
                continue
            iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
            iso.fit(raw[seen, j], scores[seen, j])
            xs.append(tuple(float(v) for v in iso.X_thresholds_))
            ys.append(tuple(float(v) for v in iso.y_thresholds_))
        return cls(tuple(xs), tuple(ys))

    def apply(self, raw: np.ndarray) -> np.ndarray:
        """Calibrated copy of an N×M raw quality matrix."""
        out = np.empty_like(raw, dtype=float)
        for j in range(raw.shape[1]):
            out[:, j] = np.interp(raw[:, j], self.x[j], self.y[j])
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"x": [list(v) for v in self.x], "y": [list(v) for v in self.y]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IsotonicCalibration:
        """Inverse of :meth:`to_dict`.

        Raises:
            PredictorStateError: The knot lists are missing, of unequal lengths, not finite, decreasing, or
                (calibrated values) outside [0, 1]: such a calibration would load and then fail at plan time.
        """
        _mapping(data, ("x", "y"), "a calibration")
        xs, ys = data["x"], data["y"]
        if not isinstance(xs, list) or not isinstance(ys, list) or len(xs) != len(ys) or not xs:
            raise PredictorStateError("a calibration needs 'x' and 'y' lists with one knot list per model each")
        x = tuple(_knots(v, f"calibration x[{j}]") for j, v in enumerate(xs))
        y = tuple(_knots(v, f"calibration y[{j}]", low=0.0, high=1.0) for j, v in enumerate(ys))
        unequal = [j for j, (a, b) in enumerate(zip(x, y, strict=True)) if len(a) != len(b)]
        if unequal:
            raise PredictorStateError(f"calibration knot lists x and y differ in length for models {unequal}")
        return cls(x, y)


@dataclass(frozen=True)
class QualityGuard:
    """Maps a user's ``min_quality`` to the internal target the optimizer must reach.

    ``alphas[k]`` is the realized success measured on held-out training data (less ``z`` standard errors) when
    the optimizer was given the internal target ``targets[k]``; both increase with ``k``. :meth:`target` inverts
    that curve.
    """

    alphas: tuple[float, ...]
    """Realized success at each grid target (monotone non-decreasing)."""
    targets: tuple[float, ...]
    """Internal targets of the grid (increasing)."""

    @classmethod
    def identity(cls) -> QualityGuard:
        """A guard that passes ``min_quality`` through unchanged."""
        return cls((0.0, 1.0), (0.0, 1.0))

    @classmethod
    def fit(
        cls,
        out_of_fold: Any,
        scores: np.ndarray,
        cost: np.ndarray,
        *,
        grid: Sequence[float] | None = None,
        method: str = "auto",
        z: float = 1.0,
    ) -> QualityGuard:
        """Measure realized success of routing the out-of-fold predictions at each internal target.

        Args:
            out_of_fold: A :class:`~eccos_core.predictors.base.Prediction` for the training queries, made
                without each query's own outcome.
            scores: N×M observed scores of the same queries (NaN where a model has no outcome; such pairs
                are not offered to the optimizer).
            cost: N×M cost matrix of the same queries.
            grid: Internal targets to try; default 0.00, 0.02, …, 1.00.
            method: Optimizer method passed to :func:`eccos_core.optimize.solve`.
            z: Standard errors subtracted from each measured success rate before it is trusted: the held-out
                queries are a sample, and a promise of α should hold on the next sample too.
        """
        from sklearn.isotonic import IsotonicRegression

        from eccos_core.optimize import SolveStatus, solve

        quality = np.asarray(out_of_fold.quality, dtype=float)
        allowed = ~np.isnan(scores)
        usable = allowed.any(axis=1)
        quality, scores, cost, allowed = quality[usable], scores[usable], cost[usable], allowed[usable]
        filled = np.where(allowed, scores, 0.0)
        rows = np.arange(len(quality))
        targets: list[float] = []
        realized: list[float] = []

        def measure(chosen: np.ndarray) -> float:
            got = filled[rows, chosen]
            return float(got.mean() - z * got.std() / np.sqrt(len(got)))

        for t in np.linspace(0.0, 1.0, 51) if grid is None else grid:
            assignment = solve(cost, quality, float(t), allowed=allowed, method=method)
            if assignment.status == SolveStatus.QUALITY_UNREACHABLE:
                # the top of the range: the best assignment the predictions allow, between two grid points
                if not targets or assignment.expected_quality > targets[-1] + 1e-6:
                    targets.append(float(assignment.expected_quality))
                    realized.append(measure(assignment.model_index))
                break
            targets.append(float(t))
            realized.append(measure(assignment.model_index))
        if len(targets) < 2:
            logger.warning("quality guard: fewer than two feasible targets; passing min_quality through")
            return cls.identity()
        monotone = IsotonicRegression(increasing=True).fit(targets, realized).predict(targets)
        logger.info(
            "quality guard: realized success %.3f..%.3f over internal targets %.2f..%.2f",
            monotone[0],
            monotone[-1],
            targets[0],
            targets[-1],
        )
        return cls(tuple(float(a) for a in monotone), tuple(targets))

    @property
    def max_quality(self) -> float:
        """The highest realized success measured on held-out training data: above it, α is out of reach."""
        return float(self.alphas[-1])

    def reachable(self, alpha: float) -> bool:
        """Whether routing reached ``alpha`` in realized success on held-out training data."""
        return alpha <= self.max_quality + 1e-9

    def target(self, alpha: float) -> float:
        """Smallest internal target whose held-out realized success reached ``alpha`` (clipped to [0, 1]).

        Above the measured range the last measured shortfall is added, so the optimizer is asked for more than
        ``alpha`` and reports ``quality_unreachable`` when the pool cannot deliver it.
        """
        alphas, targets = np.asarray(self.alphas), np.asarray(self.targets)
        if alpha > alphas[-1]:
            return float(min(1.0, alpha + max(0.0, targets[-1] - alphas[-1])))
        # first grid point reaching alpha, interpolated between it and its predecessor
        k = int(np.searchsorted(alphas, alpha, side="left"))
        if k == 0:
            return float(min(targets[0], alpha))
        a0, a1, t0, t1 = alphas[k - 1], alphas[k], targets[k - 1], targets[k]
        frac = 1.0 if a1 <= a0 else (alpha - a0) / (a1 - a0)
        return float(np.clip(t0 + frac * (t1 - t0), 0.0, 1.0))

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"alphas": list(self.alphas), "targets": list(self.targets)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QualityGuard:
        """Inverse of :meth:`to_dict`.

        Raises:
            PredictorStateError: ``alphas`` / ``targets`` missing, of unequal length, shorter than two, not
                finite, decreasing, or outside [-1, 1] / [0, 1] (realized success less its standard error may dip
                below 0; an internal target may not).
        """
        _mapping(data, ("alphas", "targets"), "a quality guard")
        alphas = _knots(data["alphas"], "guard 'alphas'", low=-1.0, high=1.0)
        targets = _knots(data["targets"], "guard 'targets'", low=0.0, high=1.0)
        if len(alphas) != len(targets) or len(alphas) < 2:
            raise PredictorStateError(
                f"guard 'alphas' and 'targets' must be two equally long lists of at least 2 points, got "
                f"{len(alphas)} and {len(targets)}"
            )
        return cls(alphas, targets)
