"""Per-batch guarantee: route so that *this* batch's realized success reaches α with probability 1 − δ.

The quality guard (:mod:`eccos_core.calibration`) makes ``min_quality = α`` hold *on average*: over many
batches, realized success is α. A single batch of n queries scatters around that mean by roughly
``sqrt(α(1 − α) / n)`` (its outcomes are coin flips even when every probability is right), so about half of all
batches land below α. :class:`BatchMargin` measures that scatter where the guard was measured, on the
training queries' out-of-fold predictions: it draws random batches, routes each at the guard's target for α,
and records how far each batch's realized success fell below the mean of its batches. Shortfalls are
standardised by the coin-flip standard error ``sqrt(m(1 − m) / n)``, pooled over α and batch size, and their
conformal (1 − δ)-quantile gives the margin

    margin(n, 1 − δ) = bias⁺ + q₁₋δ · sqrt(α(1 − α) / n),

where ``bias⁺`` is any mean shortfall of batches below what the guard measured on all queries at once.
Routing at ``guard.target(α + margin)`` then reaches α in a fraction ≥ 1 − δ of batches, *if* new queries are
exchangeable with the logs (drawn from the same mix of tasks); a shift in the query mix is not covered by any
held-out estimate. Where α + margin is above what routing reached on held-out data, no guarantee can be given.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from eccos_core.calibration import QualityGuard, _knots, _mapping
from eccos_core.errors import PredictorStateError


@dataclass(frozen=True)
class BatchMargin:
    """Margin (in realized-success units) that turns the guard's mean promise into a per-batch one."""

    residuals: tuple[float, ...]
    """Sorted standardised shortfalls ``(m − realized) / sqrt(m(1 − m) / n)`` of simulated batches, ``m`` the mean
    realized success of the batches routed at the same target."""
    bias: float
    """Largest mean shortfall of simulated batches below the guard's measured success, over the batch sizes, ≥ 0."""
    batch_sizes: tuple[int, ...]
    """Batch sizes simulated."""
    alphas: tuple[float, ...]
    """α values simulated."""

    @classmethod
    def fit(
        cls,
        out_of_fold_quality: np.ndarray,
        scores: np.ndarray,
        cost: np.ndarray,
        guard: QualityGuard,
        *,
        batch_sizes: Sequence[int] = (25, 50, 100, 200),
        alphas: Sequence[float] | None = None,
        n_batches: int = 40,
        seed: int = 0,
        method: str = "auto",
        time_limit: float = 10.0,
    ) -> BatchMargin:
        """Simulate routed batches on out-of-fold predictions and record how far each fell short of α.

        Args:
            out_of_fold_quality: N×M calibrated quality predicted for the training queries without their own
                outcomes (the predictor's ``out_of_fold.quality``, as the guard was fitted on).
            scores: N×M logged scores (NaN = no outcome; such pairs are not offered).
            cost: N×M cost matrix of the same queries.
            guard: The fitted quality guard (maps α to the internal target).
            batch_sizes: Batch sizes to simulate (sizes above half the queries are skipped).
            alphas: α values to simulate; default five points across the guard's measured range.
            n_batches: Random batches per (size, α). The default, 40 (800 simulated batches in all), takes about
                4 s on the bundled logs' 4,790 training queries (2 CPU cores), whatever the size of the logs;
                24 took 2.6 s but left the ``bias`` term noisier (0.007 instead of 0.0004 there), which every
                guaranteed plan then pays for.
            seed: Seeds the batch draws.
            method: Optimizer method for :func:`eccos_core.optimize.solve`.
            time_limit: Seconds each solve may take (as the router's ``time_limit``).
        """
        from eccos_core.optimize import solve

        allowed = ~np.isnan(scores)
        usable = allowed.any(axis=1)
        quality, cost, allowed = np.asarray(out_of_fold_quality)[usable], cost[usable], allowed[usable]
        filled = np.where(allowed, scores[usable], 0.0)
        n = len(quality)
        sizes = tuple(int(s) for s in batch_sizes if 2 <= s <= n // 2) or (max(2, n // 2),)
        if alphas is None:
            lo, hi = guard.alphas[0], guard.max_quality
            alphas = np.linspace(lo + 0.2 * (hi - lo), hi - 0.1 * (hi - lo), 5).round(4).tolist()
        rng = np.random.default_rng(seed)
        residuals: list[float] = []
        drift: dict[int, list[float]] = {s: [] for s in sizes}
        for size in sizes:
            for alpha in alphas:
                target = guard.target(alpha)
                realized = np.empty(n_batches)
                for b in range(n_batches):
                    rows = rng.choice(n, size, replace=False)
                    picked = solve(
                        cost[rows], quality[rows], target, allowed=allowed[rows], method=method, time_limit=time_limit
                    )
                    realized[b] = filled[rows, picked.model_index].mean()
                # noise around this cell's own mean (centring per cell keeps α's where routing overshoots, e.g.
                # everything to one cheap model, from passing their slack on to α's where it binds), and drift:
                # how far batches of this size fall below what the guard measured on all queries at this target
                mean = float(realized.mean())
                spread = _scale(mean, size) * math.sqrt((n_batches - 1) / n_batches)
                residuals.extend(((mean - realized) / spread).tolist())
                drift[size].append(float(np.interp(target, guard.targets, guard.alphas)) - mean)
        bias = max(0.0, *(float(np.mean(v)) for v in drift.values()))
        return cls(tuple(sorted(round(r, 6) for r in residuals)), bias, sizes, tuple(float(a) for a in alphas))

    def margin(self, batch_size: int, confidence: float, alpha: float | None = None) -> float:
        """Realized-success margin for a batch of ``batch_size`` queries at ``confidence`` = 1 − δ.

        Grows as the batch shrinks (its mean scatters more) and as the confidence rises. ``alpha`` sets the
        outcome variance ``α(1 − α)``; without it 0.5, the largest, which is conservative.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if not 0.0 < confidence < 1.0:
            raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")
        count = len(self.residuals)
        # conformal quantile: the ceil((B + 1)(1 − δ))-th smallest of B exchangeable residuals
        k = math.ceil((count + 1) * confidence)
        q = self.residuals[min(k, count) - 1] if count else 0.0
        return float(self.bias + max(0.0, q) * _scale(0.5 if alpha is None else alpha, batch_size))

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "residuals": list(self.residuals),
            "bias": self.bias,
            "batch_sizes": list(self.batch_sizes),
            "alphas": list(self.alphas),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BatchMargin:
        """Inverse of :meth:`to_dict`.

        Raises:
            PredictorStateError: A key is missing, the residuals are not finite or not sorted, ``bias`` is not a
                finite number ≥ 0, a batch size is not a positive integer or an α lies outside [0, 1]: such a
                margin would load and then fail (or promise nonsense) at plan time.
        """
        _mapping(data, ("residuals", "bias", "batch_sizes", "alphas"), "a batch margin")
        residuals = _knots(data["residuals"], "margin 'residuals'")
        bias = data["bias"]
        if isinstance(bias, bool) or not isinstance(bias, numbers.Real) or not 0.0 <= float(bias) < math.inf:
            raise PredictorStateError(f"margin 'bias' must be a finite number >= 0, got {bias!r}")
        sizes = data["batch_sizes"]
        if not isinstance(sizes, list) or not sizes or not all(_positive_int(s) for s in sizes):
            raise PredictorStateError(f"margin 'batch_sizes' must be a non-empty list of positive integers: {sizes!r}")
        alphas = data["alphas"]
        if not isinstance(alphas, list) or not alphas:
            raise PredictorStateError("margin 'alphas' must be a non-empty list of numbers in [0, 1]")
        checked = [_knots([a], "margin 'alphas'", low=0.0, high=1.0)[0] for a in alphas]
        return cls(residuals, float(bias), tuple(int(s) for s in sizes), tuple(checked))


def _positive_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and int(value) >= 1


def _scale(alpha: float, batch_size: int) -> float:
    """Standard deviation of a batch's mean success if each outcome were a coin flip with probability α."""
    a = min(max(alpha, 0.05), 0.95)
    return math.sqrt(a * (1.0 - a) / batch_size)
