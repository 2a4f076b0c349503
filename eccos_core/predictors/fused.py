"""Fused predictor: the trained network and the retrieval predictor, blended and recalibrated.

The two err differently: retrieval knows exactly what happened on near-duplicate queries but averages over a
handful of noisy neighbours; the network generalises over the whole log but smooths over the specific. So

    quality = calibrate(γ · trained + (1 − γ) · retrieval),   tokens = δ · trained + (1 − δ) · retrieval,

with γ and δ chosen on the two parts' *out-of-fold* predictions (held-out data both parts produced without
each query's own outcome): δ minimises the absolute token error; γ, together with whether to put a per-model
isotonic calibration on top, minimises the Brier score (the calibrated candidates scored cross-fitted in halves,
exactly as :class:`RetrievalPredictor` calibrates, so the fused :attr:`out_of_fold` is still out of fold for
the quality guard). The test split is never looked at.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from eccos_core.calibration import IsotonicCalibration
from eccos_core.errors import InputError, PredictorStateError
from eccos_core.logs import RoutingLogs
from eccos_core.predictors.base import Prediction, Predictor, read_manifest, register, write_manifest
from eccos_core.predictors.encoder import SentenceEncoder
from eccos_core.predictors.retrieval import Recalibration, RetrievalPredictor, query_key
from eccos_core.predictors.trained import CachedEncoder, TrainedPredictor

_GRID = np.round(np.linspace(0.0, 1.0, 41), 3)
"""Weights tried for γ and δ (steps of 0.025)."""
_OOF = "out_of_fold.safetensors"
_LEARNED = "learned.json"
"""The trained part's predictions for queries added by feedback (keyed like the retrieval store's rows)."""


@register
class FusedPredictor(Predictor):
    """γ-blend of :class:`TrainedPredictor` and :class:`RetrievalPredictor`, isotonic-calibrated.

    Example:
        >>> from eccos_core.bundled import bundled_logs
        >>> predictor = FusedPredictor().fit(bundled_logs())  # doctest: +SKIP
        >>> predictor.gamma, predictor.delta  # doctest: +SKIP
        (0.55, 0.5)
    """

    kind = "fused"

    def __init__(
        self,
        retrieval: RetrievalPredictor | None = None,
        trained: TrainedPredictor | None = None,
        *,
        gamma: float | None = None,
        delta: float | None = None,
        calibrate: bool | None = None,
        encoder: SentenceEncoder | None = None,
        show_progress: bool = False,
    ) -> None:
        """Configure the parts; nothing is embedded or trained until :meth:`fit`.

        Args:
            retrieval: The retrieval part; default ``RetrievalPredictor(k=16)``.
            trained: The trained part; default ``TrainedPredictor()``.
            gamma: Fix the quality weight of the trained part instead of choosing it (1 = trained only).
            delta: Fix the token weight of the trained part instead of choosing it.
            calibrate: Isotonic calibration of the blended quality; ``None`` (default) decides on the
                out-of-fold predictions, together with γ: calibrate when the cross-fitted calibration gives the
                lowest Brier score (a blend dominated by the network, trained on the outcomes with cross-entropy,
                can already be calibrated, and then isotonic steps only add noise).
            encoder: Shared by both parts (wrapped in a :class:`CachedEncoder` so each query is embedded once).
            show_progress: Progress bars while fitting.
        """
        for name, value in (("gamma", gamma), ("delta", delta)):
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {value}")
        shared = encoder if isinstance(encoder, CachedEncoder) else CachedEncoder(encoder)
        self.retrieval = retrieval or RetrievalPredictor(show_progress=show_progress)
        self.trained = trained or TrainedPredictor(show_progress=show_progress)
        self.retrieval.encoder = self.trained.encoder = self.encoder = shared
        self.fixed = (gamma, delta)
        self.calibrate = calibrate
        self.gamma: float = 0.5 if gamma is None else gamma
        """Weight of the trained part in quality (chosen by :meth:`fit` unless fixed)."""
        self.delta: float = 0.5 if delta is None else delta
        """Weight of the trained part in output tokens (chosen by :meth:`fit` unless fixed)."""
        self.models: tuple[str, ...] = ()
        self.out_of_fold: Prediction | None = None
        self._calibration: IsotonicCalibration | None = None
        self._learned: dict[str, tuple[list[float], list[float]]] = {}
        """Per query added by :meth:`add_outcomes` (retrieval store key): the trained part's quality and tokens."""

    # ------------------------------------------------------------------------------------------ fitting
    def fit(self, logs: RoutingLogs) -> FusedPredictor:
        """Fit both parts (embedding every query once), then choose γ, δ and the calibration."""
        with self.encoder.remembering():
            self.retrieval.fit(logs)
            self.trained.fit(logs)
        return self.combine(logs)

    @classmethod
    def from_parts(
        cls, retrieval: RetrievalPredictor, trained: TrainedPredictor, logs: RoutingLogs, **options: Any
    ) -> FusedPredictor:
        """Fuse two parts already fitted on ``logs`` (ablations and benchmarks reuse one training this way)."""
        return cls(retrieval, trained, encoder=retrieval.encoder, **options).combine(logs)

    def combine(self, logs: RoutingLogs) -> FusedPredictor:
        """Choose γ, δ and the calibration from the fitted parts' out-of-fold predictions on ``logs``."""
        models = tuple(self.retrieval.models)
        if tuple(self.trained.models) != models:
            raise InputError(f"the parts were fitted on different pools: {models} vs {self.trained.models}")
        r_oof, t_oof = self.retrieval.out_of_fold, self.trained.out_of_fold
        if r_oof is None or t_oof is None or len(r_oof.quality) != len(logs):
            raise PredictorStateError("fit both parts on these logs first: their out-of-fold predictions are needed")
        scores = logs.scores(models)
        tokens = logs.matrix("output_tokens", models)
        gamma, delta = self.fixed
        gamma, calibrate = self._choose_quality(t_oof.quality, r_oof.quality, scores, gamma)
        seen = ~np.isnan(tokens)
        if delta is None and seen.any():
            errors = [
                np.abs(d * t_oof.output_tokens + (1 - d) * r_oof.output_tokens - tokens)[seen].mean() for d in _GRID
            ]
            delta = float(_GRID[int(np.argmin(errors))])
        elif delta is None:
            delta = 0.5  # no logged lengths: both parts predict each model's mean, so δ changes nothing
        self.models, self.gamma, self.delta = models, gamma, delta
        self._blend_out_of_fold(t_oof, r_oof, scores, calibrate)
        return self

    def _blend_out_of_fold(
        self, trained: Prediction, retrieval: Prediction, scores: np.ndarray, calibrate: bool
    ) -> None:
        """Set :attr:`out_of_fold` from the parts' out-of-fold predictions at the chosen γ and δ.

        With ``calibrate`` the isotonic calibration is refitted on them too (and the out-of-fold quality is
        cross-calibrated); without, there is none.
        """
        quality = self.gamma * trained.quality + (1 - self.gamma) * retrieval.quality
        self._calibration = IsotonicCalibration.fit(quality, scores) if calibrate else None
        oof_quality = self._cross_calibrated(quality, scores) if calibrate else quality
        oof_tokens = self.delta * trained.output_tokens + (1 - self.delta) * retrieval.output_tokens
        self.out_of_fold = Prediction(self.models, np.clip(oof_quality, 0.0, 1.0), oof_tokens)

    def _choose_quality(
        self, trained: np.ndarray, retrieval: np.ndarray, scores: np.ndarray, gamma: float | None
    ) -> tuple[float, bool]:
        """γ and whether to calibrate: the pair whose out-of-fold blend has the lowest Brier score.

        Each γ of the grid (or the fixed one) is scored twice, as it is and cross-calibrated (each half of the
        queries calibrated on the other half, so the score is held out), and the best pair wins. Choosing γ by
        the calibrated score alone and then deciding whether to calibrate would pick γ for a blend that may not
        be served: isotonic steps fitted on half the queries are noisy and can hide the best uncalibrated blend.
        """
        grid = _GRID if gamma is None else np.array([gamma])
        options = (False, True) if self.calibrate is None else (bool(self.calibrate),)
        best = (math.inf, float(grid[0]), options[0])
        for g in grid:
            blend = g * trained + (1 - g) * retrieval
            for calibrate in options:
                brier = _brier(self._cross_calibrated(blend, scores) if calibrate else blend, scores)
                if brier < best[0] - 1e-12:  # a tie keeps the earlier pair: the lower γ, no calibration
                    best = (brier, float(g), calibrate)
        return best[1], best[2]

    @staticmethod
    def _cross_calibrated(quality: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Each half of the queries calibrated by an isotonic fit on the other half (as retrieval does)."""
        half = np.random.default_rng(0).permutation(len(quality)) % 2 == 0
        out = np.empty_like(quality)
        for fit_rows, apply_rows in ((half, ~half), (~half, half)):
            out[apply_rows] = IsotonicCalibration.fit(quality[fit_rows], scores[fit_rows]).apply(quality[apply_rows])
        return out

    # --------------------------------------------------------------------------------------- predicting
    def length_counts(self) -> dict[str, int]:
        """Per model: stored queries with a logged output length (the retrieval part's store)."""
        return self.retrieval.length_counts()

    def predict(self, queries: Sequence[str]) -> Prediction:
        """Blend the two parts' predictions (each query embedded once) and calibrate."""
        if not self.models:
            raise PredictorStateError("FusedPredictor is not fitted: call fit(logs) or load(dir) first")
        if isinstance(queries, str):
            raise InputError("predict takes a sequence of query strings, not a single string")
        with self.encoder.remembering():
            r = self.retrieval.predict(queries).select(self.models)
            t = self.trained.predict(queries).select(self.models)
        quality = self.gamma * t.quality + (1 - self.gamma) * r.quality
        if self._calibration is not None:
            quality = self._calibration.apply(quality)
        tokens = self.delta * t.output_tokens + (1 - self.delta) * r.output_tokens
        return Prediction(self.models, np.clip(quality, 0.0, 1.0), tokens)

    # ---------------------------------------------------------------------------------------- feedback
    def add_outcomes(
        self,
        queries: Sequence[str],
        model: str,
        scores: Sequence[float],
        output_tokens: Sequence[float | None] | None = None,
    ) -> int:
        """Learn from what ``model`` did on ``queries`` (see :meth:`RetrievalPredictor.add_outcomes`).

        The retrieval part stores them, so the next similar query is predicted with them. The network stays as
        trained; its predictions for these queries are kept for :meth:`recalibrate` (they are out of sample).
        """
        if not self.models:
            raise PredictorStateError("FusedPredictor is not fitted: call fit(logs) or load(dir) first")
        with self.encoder.remembering():
            added = self.retrieval.add_outcomes(queries, model, scores, output_tokens)
            texts = [q for q in dict.fromkeys(queries) if query_key(q) not in self._learned]
            if texts:
                t = self.trained.predict(texts).select(self.models)
                for text, quality, tokens in zip(texts, t.quality, t.output_tokens, strict=True):
                    self._learned[query_key(text)] = (quality.tolist(), tokens.tolist())
        return added

    def recalibrate(self) -> Recalibration:
        """Refit the blend's calibration and out-of-fold predictions on everything stored now (γ, δ kept).

        The retrieval part recomputes its leave-one-out predictions over its store; the network's out-of-fold
        predictions cover the training queries and its kept predictions the queries added since (a query whose
        network prediction was not kept is blended from retrieval alone).
        """
        r = self.retrieval.recalibrate()
        assert self.out_of_fold is not None
        n = len(r.scores)
        t_quality, t_tokens = r.out_of_fold.quality.copy(), r.out_of_fold.output_tokens.copy()
        trained_oof = self.trained.out_of_fold.select(self.models) if self.trained.out_of_fold is not None else None
        known = 0 if trained_oof is None else min(len(trained_oof.quality), n)
        if trained_oof is not None:
            t_quality[:known], t_tokens[:known] = trained_oof.quality[:known], trained_oof.output_tokens[:known]
        for row, key in enumerate(self.retrieval.row_keys()[known:n], start=known):
            if key in self._learned:
                t_quality[row], t_tokens[row] = self._learned[key]
        trained = Prediction(self.models, t_quality, t_tokens)
        self._blend_out_of_fold(trained, r.out_of_fold, r.scores, self._calibration is not None)
        assert self.out_of_fold is not None
        return Recalibration(self.out_of_fold, r.scores, r.input_tokens)

    # ------------------------------------------------------------------------------------- persistence
    def save(self, path: str | Path) -> Path:
        """Write both parts into subdirectories, then γ, δ and the calibration as JSON (no pickle)."""
        from safetensors.numpy import save_file

        if not self.models:
            raise PredictorStateError("cannot save an unfitted FusedPredictor: call fit(logs) first")
        path = Path(path)
        self.retrieval.save(path / "retrieval")
        self.trained.save(path / "trained")
        files = []
        if self.out_of_fold is not None:
            oof = {"quality": self.out_of_fold.quality, "output_tokens": self.out_of_fold.output_tokens}
            save_file({k: np.ascontiguousarray(v, dtype=np.float64) for k, v in oof.items()}, str(path / _OOF))
            files.append(_OOF)
        if self._learned:
            (path / _LEARNED).write_text(json.dumps(self._learned), encoding="utf-8")
            files.append(_LEARNED)
        write_manifest(
            path,
            self.kind,
            checksums=files,
            models=list(self.models),
            gamma=self.gamma,
            delta=self.delta,
            fixed=list(self.fixed),
            calibrate=self.calibrate,
            calibration=None if self._calibration is None else self._calibration.to_dict(),
        )
        return path

    @classmethod
    def load(cls, path: str | Path, models: Sequence[str] | None = None) -> FusedPredictor:
        """Read a predictor written by :meth:`save`; ``models``, when given, must be the pool it was fitted on."""
        from safetensors.numpy import load_file

        path = Path(path)
        manifest = read_manifest(path)
        if manifest.get("kind") != cls.kind:
            raise PredictorStateError(f"{path} holds a {manifest.get('kind')!r} predictor, not {cls.kind!r}")
        saved = tuple(manifest["models"])
        if models is not None and tuple(models) != saved:
            raise PredictorStateError(
                f"{path} was fitted for the pool {list(saved)}, not {list(models)}: refit it on logs of this pool"
            )
        retrieval = RetrievalPredictor.load(path / "retrieval")
        trained = TrainedPredictor.load(path / "trained", models=saved)
        if tuple(retrieval.models) != saved:
            raise PredictorStateError(f"{path}: the retrieval part knows {retrieval.models}, the manifest {saved}")
        fixed = manifest.get("fixed", [None, None])
        predictor = cls(retrieval, trained, gamma=fixed[0], delta=fixed[1], encoder=retrieval.encoder)
        predictor.models, predictor.gamma, predictor.delta = saved, float(manifest["gamma"]), float(manifest["delta"])
        predictor.calibrate = manifest.get("calibrate")
        if manifest["calibration"] is not None:
            predictor._calibration = IsotonicCalibration.from_dict(manifest["calibration"])
            if len(predictor._calibration.x) != len(saved):
                raise PredictorStateError(f"{path}: calibration covers {len(predictor._calibration.x)} models")
        if (path / _OOF).is_file():
            oof = load_file(str(path / _OOF))
            predictor.out_of_fold = Prediction(saved, oof["quality"], oof["output_tokens"])
        if (path / _LEARNED).is_file():
            predictor._learned = _read_learned(path / _LEARNED, len(saved))
        return predictor


def _read_learned(path: Path, models: int) -> dict[str, tuple[list[float], list[float]]]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        learned = {str(k): ([float(x) for x in v[0]], [float(x) for x in v[1]]) for k, v in raw.items()}
    except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError):
        raise PredictorStateError(f"{path} is not a map of query key to [quality, tokens]: save again") from None
    if any(len(q) != models or len(t) != models for q, t in learned.values()):
        raise PredictorStateError(f"{path}: rows must have {models} values per model list")
    return learned


def _brier(quality: np.ndarray, scores: np.ndarray) -> float:
    seen = ~np.isnan(scores)
    return float(np.mean((quality[seen] - scores[seen]) ** 2))
