"""Where the user's ``min_quality`` becomes the optimizer's internal target: the only α → target code.

A router carries three calibrations, all fitted together by :func:`fit_targets` on the same out-of-fold
problem (the training queries routed with predictions made without their own outcomes), by ``Router.fit`` and by
``Router.refit`` alike:

- the **quality guard** (:class:`~eccos_core.calibration.QualityGuard`): the target a batch is planned at so its
  *realized* mean success reaches α;
- the **batch margin** (:class:`~eccos_core.guarantee.BatchMargin`): what ``confidence=`` adds to α for a batch
  of a given size;
- the **per-call curve** (:class:`~eccos_core.dual.DualCurve`): what routing calls one at a time at each price
  reached, from which a per-call stream takes its target.

Below the planner the internal target is called ``target``; ``min_quality`` (``alpha`` in code) is always the
user's α.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from eccos_core.calibration import QualityGuard
from eccos_core.dual import DualCurve
from eccos_core.errors import EccosError, PredictorStateError
from eccos_core.guarantee import BatchMargin
from eccos_core.predictors.base import Prediction

FORMAT = "eccos-targets/1"


@dataclass(frozen=True)
class BatchGoal:
    """What the optimizer is asked of one batch: the internal target for ``min_quality`` (and a confidence)."""

    alpha: float
    """The requested mean success, ``min_quality``."""
    target: float
    """Mean predicted p(success) the optimizer must reach (1.0 when ``reachable`` is false: the best plan)."""
    reachable: bool
    """Whether routing reached ``alpha`` (plus ``margin``) in realized success on held-out training queries."""
    batch_size: int
    """Queries in the batch (the margin shrinks as it grows)."""
    confidence: float | None = None
    """The per-batch guarantee asked for, or ``None`` (a promise on average)."""
    margin: float | None = None
    """With ``confidence``: the realized-success margin added to ``alpha`` before the guard maps it."""


@dataclass(frozen=True)
class Targets:
    """A router's fitted calibrations: guard, per-batch margin and per-call curve (one saved unit)."""

    guard: QualityGuard
    margin: BatchMargin | None = None
    """``None``: plans with ``confidence=`` are refused (fitted without out-of-fold predictions)."""
    curve: DualCurve | None = None
    """``None``: per-call streams start at the guard's batch target and learn their price from calls alone."""
    output_lengths: bool = True
    """Fitted on costs that include predicted output lengths for models whose logs give none
    (:mod:`eccos_core.lengths`). ``False`` for a router saved before lengths were predicted: it routes as it was
    fitted (those models at 0 output tokens) until :meth:`Router.refit`."""

    @classmethod
    def identity(cls) -> Targets:
        """No calibration: ``min_quality`` bounds *predicted* success."""
        return cls(QualityGuard.identity())

    # ------------------------------------------------------------------------------------ α → target
    def batch(self, alpha: float, batch_size: int, confidence: float | None = None) -> BatchGoal:
        """The target a batch of ``batch_size`` is routed at for ``min_quality = alpha`` (and ``confidence``).

        Without a confidence: the guard's target for α (a promise on average over batches). With one: the guard's
        target for α + ``margin.margin(batch_size, confidence, alpha)``, so this batch's realized success reaches
        α with probability ≥ ``confidence`` when its queries are exchangeable with the logs. Out of the guard's
        measured range (α, or α + margin) the target is 1.0: the best plan the caps allow, status
        ``quality_unreachable``. The planner and ``eccos eval`` both route through this.

        Raises:
            PredictorStateError: ``confidence`` is given and there is no fitted margin.
        """
        if confidence is None:
            target, reachable = self._guarded(alpha)
            return BatchGoal(alpha, target, reachable, batch_size)
        extra = require_margin(self.margin).margin(batch_size, confidence, alpha)
        target, reachable = self._guarded(min(1.0, alpha + extra))
        return BatchGoal(alpha, target, reachable, batch_size, confidence, extra)

    def per_call(self, alpha: float) -> tuple[float, bool]:
        """``(target, reachable)`` of a per-call stream for ``min_quality = alpha``.

        With a fitted curve: the mean predicted quality of the calls at the price whose realized success reached
        α; without one, the guard's batch target, the stream then learning its price from the calls alone.
        """
        if self.curve is None:
            return self._guarded(alpha)
        price = self.curve.price(alpha)
        target = self.curve.quality_at(price) if math.isfinite(price) else 1.0
        return float(target), self.curve.reachable(alpha)

    @property
    def per_call_best(self) -> float:
        """The best realized success per-call routing reached on held-out training queries."""
        return self.curve.max_success if self.curve is not None else self.guard.max_quality

    def _guarded(self, alpha: float) -> tuple[float, bool]:
        reachable = self.guard.reachable(alpha)
        return (float(np.clip(self.guard.target(alpha), 0.0, 1.0)) if reachable else 1.0), reachable

    # ------------------------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        """JSON form (one file, ``targets.json``, checksummed in ``router.json``)."""
        return {
            "format": FORMAT,
            "guard": self.guard.to_dict(),
            "margin": None if self.margin is None else self.margin.to_dict(),
            "curve": None if self.curve is None else self.curve.to_dict(),
            "output_lengths": self.output_lengths,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Targets:
        """Inverse of :meth:`to_dict`.

        Raises:
            PredictorStateError: Another format, or a part that does not validate (the message names it).
        """
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            found = data.get("format") if isinstance(data, Mapping) else type(data).__name__
            raise PredictorStateError(f"targets: format {found!r}, expected {FORMAT!r}; refit and save the router")
        parts: dict[str, Any] = {}
        for name, kind in (("guard", QualityGuard), ("margin", BatchMargin), ("curve", DualCurve)):
            value = data.get(name)
            if value is None and name != "guard":
                parts[name] = None
                continue
            try:
                parts[name] = kind.from_dict(value)
            except (EccosError, KeyError, TypeError, ValueError, AttributeError) as exc:
                raise PredictorStateError(f"targets: {name} is not valid ({exc}); refit and save the router") from None
        return cls(**parts, output_lengths=data.get("output_lengths") is True)


def fit_targets(out_of_fold: Prediction, scores: np.ndarray, cost: np.ndarray, *, method: str = "auto") -> Targets:
    """Fit guard, margin and per-call curve on one out-of-fold problem (``Router.fit`` and ``refit`` both)."""
    guard = QualityGuard.fit(out_of_fold, scores, cost, method=method)
    margin = BatchMargin.fit(out_of_fold.quality, scores, cost, guard, method=method)
    return Targets(guard, margin, DualCurve.fit(out_of_fold.quality, scores, cost))


def require_margin(margin: BatchMargin | None) -> BatchMargin:
    """``margin``, or the error a ``confidence=`` on a router without one raises (what happened, how to fix it)."""
    if margin is None:
        raise PredictorStateError(
            "confidence= needs the router's per-batch margin, and this router has none: it was fitted without "
            "out-of-fold predictions (calibrate=False, or a predictor that makes none) or saved by an eccos "
            "without confidence=; refit it with Router.fit(models, logs) (or router.refit() for a retrieval "
            "router) and save it again, or plan without confidence"
        )
    return margin


__all__ = ["BatchGoal", "Targets", "fit_targets", "require_margin"]
