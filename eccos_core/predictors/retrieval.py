"""Retrieval predictor (the paper's ECCOS-R): what did each model do on the most similar past queries?

Queries are embedded with all-MiniLM-L6-v2 into unit vectors held in a faiss inner-product index. For a new
query, the ``k`` most similar logged queries vote: each model's predicted quality and output length are the
similarity-weighted means over the neighbours that model answered, falling back to the model's global mean when
none did. Predicted qualities are then calibrated per model (isotonic regression fitted on leave-one-out
predictions for the training queries), so that they are probabilities rather than neighbour averages.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import faiss
import numpy as np

from eccos_core.calibration import IsotonicCalibration
from eccos_core.errors import InputError, PredictorStateError
from eccos_core.logs import RoutingLogs
from eccos_core.predictors.base import (
    Prediction,
    Predictor,
    load_array,
    read_manifest,
    register,
    write_manifest,
)
from eccos_core.predictors.encoder import ENCODER_NAME, SentenceEncoder

_FILES = ("embeddings.npy", "scores.npy", "output_tokens.npy", "calibration.json")


@register
class RetrievalPredictor(Predictor):
    """k-nearest-neighbour predictor over embedded routing logs.

    Example:
        >>> from eccos_core import RetrievalPredictor, load_logs
        >>> predictor = RetrievalPredictor(k=16).fit(load_logs("logs.jsonl"))  # doctest: +SKIP
        >>> predictor.predict(["What is 17 * 23?"]).quality.shape  # doctest: +SKIP
        (1, 9)
    """

    kind = "retrieval"

    def __init__(
        self,
        k: int = 16,
        *,
        calibrate: bool = True,
        encoder: SentenceEncoder | None = None,
        show_progress: bool = False,
    ) -> None:
        """Configure the predictor; nothing is loaded or embedded until :meth:`fit`.

        Args:
            k: Neighbours that vote for each query.
            calibrate: Fit per-model isotonic calibration on leave-one-out predictions.
            encoder: Sentence encoder; the default is all-MiniLM-L6-v2 from the installed package.
            show_progress: Show a progress bar while embedding the logs (the CLI turns it on).
        """
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        self.k = k
        self.calibrate = calibrate
        self.encoder = encoder or SentenceEncoder()
        self.show_progress = show_progress
        self.models: tuple[str, ...] = ()
        self.out_of_fold: Prediction | None = None
        self._embeddings: np.ndarray | None = None
        self._scores: np.ndarray | None = None
        self._tokens: np.ndarray | None = None
        self._calibration: IsotonicCalibration | None = None
        self._index: faiss.Index | None = None

    # ------------------------------------------------------------------ fitting
    def fit(self, logs: RoutingLogs) -> RetrievalPredictor:
        """Embed the logged queries, index them and fit the calibration on leave-one-out predictions."""
        if len(logs) < 2:
            raise InputError(f"need at least 2 logged queries to fit a retrieval predictor, got {len(logs)}")
        models = tuple(logs.models)
        embeddings = self.encoder.encode(logs.queries, show_progress=self.show_progress)
        self._set_state(models, embeddings, logs.scores(models), logs.matrix("output_tokens", models), None)
        quality, tokens = self._vote(*self._search(embeddings, leave_one_out=True))
        if self.calibrate:
            self._calibration = IsotonicCalibration.fit(quality, self._scores)
            # out-of-fold means out of the calibration's fold too: each half is calibrated by the other half,
            # else the guard would measure the calibration on the very outcomes it was fitted to
            half = np.random.default_rng(0).permutation(len(quality)) % 2 == 0
            cross = np.empty_like(quality)
            for fit_rows, apply_rows in ((half, ~half), (~half, half)):
                cross[apply_rows] = IsotonicCalibration.fit(quality[fit_rows], self._scores[fit_rows]).apply(
                    quality[apply_rows]
                )
            self.out_of_fold = Prediction(models, np.clip(cross, 0.0, 1.0), tokens)
        else:
            self.out_of_fold = self._finish(quality, tokens)
        return self

    def _set_state(
        self,
        models: tuple[str, ...],
        embeddings: np.ndarray,
        scores: np.ndarray,
        tokens: np.ndarray,
        calibration: IsotonicCalibration | None,
    ) -> None:
        self.models = models
        self._embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        self._scores = scores
        self._tokens = tokens
        self._calibration = calibration
        self._index = faiss.IndexFlatIP(self._embeddings.shape[1])
        self._index.add(self._embeddings)
        with np.errstate(invalid="ignore"):
            self._score_mean = np.where(np.isnan(scores).all(0), 0.0, np.nanmean(_nan_safe(scores), axis=0))
            self._token_mean = np.where(np.isnan(tokens).all(0), 0.0, np.nanmean(_nan_safe(tokens), axis=0))

    # --------------------------------------------------------------- predicting
    def predict(self, queries: Sequence[str]) -> Prediction:
        """Predict p(success) and output tokens of every fitted model for each query."""
        if self._index is None:
            raise PredictorStateError("RetrievalPredictor is not fitted: call fit(logs) or load(dir) first")
        if isinstance(queries, str):
            raise InputError("predict takes a sequence of query strings, not a single string")
        if not queries:
            return Prediction(self.models, np.zeros((0, len(self.models))), np.zeros((0, len(self.models))))
        embeddings = self.encoder.encode(queries)
        return self._finish(*self._vote(*self._search(embeddings, leave_one_out=False)))

    def _search(self, embeddings: np.ndarray, *, leave_one_out: bool) -> tuple[np.ndarray, np.ndarray]:
        assert self._index is not None
        k = min(self.k, self._index.ntotal - (1 if leave_one_out else 0))
        sims, idx = self._index.search(embeddings, k + (1 if leave_one_out else 0))
        if leave_one_out:
            # drop each query's own entry (or, if exact duplicates pushed it out, the last neighbour)
            own = idx == np.arange(len(idx))[:, None]
            drop = np.where(own.any(1), own.argmax(1), k)
            keep = np.ones_like(idx, dtype=bool)
            keep[np.arange(len(idx)), drop] = False
            sims, idx = sims[keep].reshape(len(idx), k), idx[keep].reshape(len(idx), k)
        return sims, idx

    def _vote(self, sims: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        assert self._scores is not None and self._tokens is not None
        weights = np.clip(sims, 1e-6, None)[:, :, None]
        return (
            _weighted_mean(self._scores[idx], weights, self._score_mean),
            _weighted_mean(self._tokens[idx], weights, self._token_mean),
        )

    def _finish(self, quality: np.ndarray, tokens: np.ndarray) -> Prediction:
        if self._calibration is not None:
            quality = self._calibration.apply(quality)
        return Prediction(self.models, np.clip(quality, 0.0, 1.0), tokens)

    # ------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write embeddings, outcomes and calibration as ``.npy`` and JSON (no pickle)."""
        if self._embeddings is None:
            raise PredictorStateError("cannot save an unfitted RetrievalPredictor: call fit(logs) first")
        path = Path(path)
        write_manifest(
            path,
            self.kind,
            k=self.k,
            calibrate=self.calibrate,
            models=list(self.models),
            n_queries=len(self._embeddings),
            encoder={
                "name": ENCODER_NAME,
                "max_seq_length": self.encoder.max_seq_length,
                "dtype": self.encoder.dtype,
            },
        )
        np.save(path / "embeddings.npy", self._embeddings.astype(np.float16))
        np.save(path / "scores.npy", self._scores)
        np.save(path / "output_tokens.npy", self._tokens)
        calibration = None if self._calibration is None else self._calibration.to_dict()
        (path / "calibration.json").write_text(json.dumps(calibration), encoding="utf-8")
        if self.out_of_fold is not None:
            np.save(path / "oof_quality.npy", self.out_of_fold.quality)
            np.save(path / "oof_output_tokens.npy", self.out_of_fold.output_tokens)
        return path

    @classmethod
    def load(cls, path: str | Path) -> RetrievalPredictor:
        """Read a predictor written by :meth:`save`, checking every file agrees with the manifest."""
        path = Path(path)
        manifest = read_manifest(path, _FILES)
        if manifest.get("kind") != cls.kind:
            raise PredictorStateError(f"{path} holds a {manifest.get('kind')!r} predictor, not {cls.kind!r}")
        encoder_info = manifest.get("encoder", {})
        if encoder_info.get("name") != ENCODER_NAME:
            raise PredictorStateError(
                f"{path} was built with encoder {encoder_info.get('name')!r}; refit it with {ENCODER_NAME}"
            )
        models = tuple(manifest["models"])
        embeddings = load_array(path / "embeddings.npy").astype(np.float32)
        scores = load_array(path / "scores.npy")
        tokens = load_array(path / "output_tokens.npy")
        n, m = int(manifest["n_queries"]), len(models)
        if embeddings.shape[0] != n or scores.shape != (n, m) or tokens.shape != (n, m):
            raise PredictorStateError(
                f"{path}: arrays do not match the manifest ({n} queries × {m} models); save the predictor again"
            )
        predictor = cls(
            k=int(manifest["k"]),
            calibrate=bool(manifest["calibrate"]),
            encoder=SentenceEncoder(
                max_seq_length=int(encoder_info.get("max_seq_length", 256)),
                dtype=str(encoder_info.get("dtype", "auto")),
            ),
        )
        calibration = json.loads((path / "calibration.json").read_text(encoding="utf-8"))
        predictor._set_state(
            models,
            embeddings,
            scores,
            tokens,
            None if calibration is None else IsotonicCalibration.from_dict(calibration),
        )
        if (path / "oof_quality.npy").is_file() and (path / "oof_output_tokens.npy").is_file():
            predictor.out_of_fold = Prediction(
                models, load_array(path / "oof_quality.npy"), load_array(path / "oof_output_tokens.npy")
            )
        return predictor


def _nan_safe(matrix: np.ndarray) -> np.ndarray:
    """``matrix`` with all-NaN columns set to 0 so ``nanmean`` does not warn."""
    out = matrix.copy()
    out[:, np.isnan(matrix).all(0)] = 0.0
    return out


def _weighted_mean(values: np.ndarray, weights: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Similarity-weighted mean over neighbours (axis 1), ignoring NaN; ``fallback`` where none are known."""
    known = ~np.isnan(values)
    w = weights * known
    total = w.sum(axis=1)
    mean = (w * np.where(known, values, 0.0)).sum(axis=1) / np.where(total > 0, total, 1.0)
    return np.where(total > 0, mean, fallback[None, :])
