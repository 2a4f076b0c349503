"""Retrieval predictor (the paper's ECCOS-R): what did each model do on the most similar past queries?

Queries are embedded with all-MiniLM-L6-v2 into unit vectors held in a faiss inner-product index. For a new
query, the ``k`` most similar logged queries vote: each model's predicted quality and output length are the
similarity-weighted means over the neighbours that model answered, falling back to the model's global mean when
none did. A model with fewer than ``MIN_OUTCOMES`` logged outcomes is shrunk toward the pool's mean success
(:func:`eccos_core.calibration.thin_prior`), so a model logged once is not predicted certain. Predicted
qualities are then calibrated per model (isotonic regression fitted on leave-one-out predictions for the
training queries), so that they are probabilities rather than neighbour averages.

The store learns from feedback: :meth:`RetrievalPredictor.add_outcomes` adds observed outcomes to the store and
the index at once (thread-safe), so the next similar query is predicted with them; :meth:`recalibrate` refits
the calibration on everything stored, when the caller chooses (``eccos_core.feedback.refit``).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from eccos_core.calibration import MIN_OUTCOMES, IsotonicCalibration, thin_prior, warn_thin_models
from eccos_core.errors import InputError, PredictorStateError
from eccos_core.logs import RoutingLogs
from eccos_core.messages import count_text_tokens
from eccos_core.predictors.base import (
    MANIFEST,
    Prediction,
    Predictor,
    load_array,
    read_manifest,
    register,
    write_manifest,
)
from eccos_core.predictors.encoder import ENCODER_NAME, SentenceEncoder, query_key

_FILES = ("embeddings.npy", "scores.npy", "output_tokens.npy", "calibration.json")


@dataclass(frozen=True)
class Recalibration:
    """What :meth:`RetrievalPredictor.recalibrate` fitted on: the store's rows at that moment."""

    out_of_fold: Prediction
    """Leave-one-out (and cross-calibrated) predictions for every stored query."""
    scores: np.ndarray
    """N×M observed scores of the stored queries (NaN where a model has none)."""
    input_tokens: np.ndarray
    """Prompt tokens of each stored query (NaN where a predictor saved before feedback existed lacks them)."""


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
        self.encoder = encoder if encoder is not None else SentenceEncoder()  # an empty CachedEncoder is falsy
        self.show_progress = show_progress
        self.models: tuple[str, ...] = ()
        self.out_of_fold: Prediction | None = None
        self._embeddings: np.ndarray | None = None
        self._scores: np.ndarray | None = None
        self._tokens: np.ndarray | None = None
        self._calibration: IsotonicCalibration | None = None
        self._index: Any = None  # faiss.IndexFlatIP
        self._input_tokens: np.ndarray | None = None
        self._n = 0
        self._keys: list[str] = []
        self._rows: dict[str, list[int]] = {}
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ fitting
    def fit(self, logs: RoutingLogs) -> RetrievalPredictor:
        """Embed the logged queries, index them and fit the calibration on leave-one-out predictions."""
        if len(logs) < 2:
            raise InputError(f"need at least 2 logged queries to fit a retrieval predictor, got {len(logs)}")
        models = tuple(logs.models)
        embeddings = self.encoder.encode(logs.queries, show_progress=self.show_progress)
        input_tokens = np.array([count_text_tokens(q) for q in logs.queries], dtype=float)
        with self._lock:
            self._set_state(
                models,
                embeddings,
                logs.scores(models),
                logs.matrix("output_tokens", models),
                None,
                input_tokens=input_tokens,
                keys=[query_key(q) for q in logs.queries],
            )
        self.recalibrate()
        return self

    def recalibrate(self) -> Recalibration:
        """Refit the calibration and the out-of-fold predictions on everything stored now.

        Leave-one-out predictions for every stored query (its own outcomes excluded), a per-model isotonic
        calibration on them, and cross-calibrated out-of-fold predictions for the quality guard, exactly as
        :meth:`fit` does. The search runs on a snapshot of the store, so predictions and :meth:`add_outcomes`
        go on meanwhile; outcomes added during it wait for the next recalibration.
        """
        with self._lock:
            if self._index is None:
                raise PredictorStateError("RetrievalPredictor is not fitted: call fit(logs) or load(dir) first")
            snapshot = RetrievalPredictor(self.k, calibrate=False, encoder=self.encoder)
            assert self._embeddings is not None and self._scores is not None and self._tokens is not None
            assert self._input_tokens is not None
            snapshot._set_state(
                self.models,
                self._embeddings,
                self._scores,
                self._tokens,
                None,
                input_tokens=self._input_tokens,
            )
        assert snapshot._embeddings is not None and snapshot._scores is not None
        models, scores = snapshot.models, snapshot._scores
        warn_thin_models(models, scores)
        quality, tokens = snapshot._vote(*snapshot._search(snapshot._embeddings, leave_one_out=True))
        calibration = None
        if self.calibrate:
            calibration = IsotonicCalibration.fit(quality, scores)
            # out-of-fold means out of the calibration's fold too: each half is calibrated by the other half,
            # else the guard would measure the calibration on the very outcomes it was fitted to
            half = np.random.default_rng(0).permutation(len(quality)) % 2 == 0
            cross = np.empty_like(quality)
            for fit_rows, apply_rows in ((half, ~half), (~half, half)):
                cross[apply_rows] = IsotonicCalibration.fit(quality[fit_rows], scores[fit_rows]).apply(
                    quality[apply_rows]
                )
            out_of_fold = Prediction(models, np.clip(cross, 0.0, 1.0), tokens)
        else:
            out_of_fold = Prediction(models, np.clip(quality, 0.0, 1.0), tokens)
        with self._lock:
            self._calibration = calibration
            self.out_of_fold = out_of_fold
        assert snapshot._input_tokens is not None
        return Recalibration(out_of_fold, scores, snapshot._input_tokens)

    def row_keys(self) -> list[str]:
        """The key (:func:`query_key` of the text) of each stored query, in row order."""
        with self._lock:
            return list(self._keys)

    def length_counts(self) -> dict[str, int]:
        """Per model: stored queries with a logged output length (0: its lengths are unknown to this predictor)."""
        with self._lock:
            if self._index is None:
                raise PredictorStateError("RetrievalPredictor is not fitted: call fit(logs) or load(dir) first")
            return {name: int(n) for name, n in zip(self.models, self._token_count, strict=True)}

    @property
    def n_queries(self) -> int:
        """Queries in the store (logged at fit, or added since as new queries by :meth:`add_outcomes`)."""
        return self._n

    def add_outcomes(
        self,
        queries: Sequence[str],
        model: str,
        scores: Sequence[float],
        output_tokens: Sequence[float | None] | None = None,
    ) -> int:
        """Add what ``model`` did on ``queries`` to the store and the index, so the next prediction sees it.

        A query whose exact text is stored without an outcome of ``model`` gets the outcome in that row; any
        other becomes a new stored query (so a repeated observation counts as one more neighbour). The
        calibration stays as it is until :meth:`recalibrate`. Safe to call from several threads at once, and
        while others predict.

        Args:
            queries: Query texts (what the router embeds: the last user message).
            model: The model that answered; one the predictor was fitted on.
            scores: Observed success of each answer, in [0, 1].
            output_tokens: Tokens each answer had (``None``, or ``None`` entries, where unknown).

        Returns:
            How many new stored queries were added (the others filled empty cells of stored ones).

        Raises:
            PredictorStateError: The predictor is unfitted or was fitted without ``model``.
            InputError: Lengths differ, a query is empty, a score is outside [0, 1], a token count is negative.
        """
        if self._index is None:
            raise PredictorStateError("RetrievalPredictor is not fitted: call fit(logs) or load(dir) first")
        if model not in self.models:
            raise PredictorStateError(
                f"the predictor was fitted without model {model!r} (it knows {list(self.models)}); refit it on "
                "routing logs that include that model to learn from its outcomes"
            )
        texts, observed, lengths = _check_outcomes(queries, scores, output_tokens)
        j = self.models.index(model)
        keys = [query_key(q) for q in texts]
        with self._lock:
            unknown = list(dict.fromkeys(q for q, key in zip(texts, keys, strict=True) if key not in self._rows))
        fresh: dict[str, tuple[np.ndarray, float]] = {}
        if unknown:  # embed outside the lock: predictions go on meanwhile
            vectors = stored_precision(self.encoder.encode(unknown))
            fresh = {q: (v, float(count_text_tokens(q))) for q, v in zip(unknown, vectors, strict=True)}
        added: list[np.ndarray] = []
        with self._lock:
            for text, key, score, length in zip(texts, keys, observed, lengths, strict=True):
                rows = self._rows.get(key, [])
                row = next((r for r in rows if np.isnan(self._score_buf[r, j])), None)
                if row is None:
                    vector, prompt = (
                        (self._emb_buf[rows[0]].copy(), float(self._prompt_buf[rows[0]])) if rows else fresh[text]
                    )
                    row = self._append_row(key, vector, prompt)
                    added.append(vector)
                self._score_buf[row, j] = score
                self._score_sum[j] += score
                self._score_count[j] += 1
                if length is not None:
                    old = self._token_buf[row, j]
                    if not np.isnan(old):
                        self._token_sum[j] -= old
                        self._token_count[j] -= 1
                    self._token_buf[row, j] = length
                    self._token_sum[j] += length
                    self._token_count[j] += 1
            if added:
                self._index.add(np.ascontiguousarray(np.stack(added), dtype=np.float32))
            self._views()
        return len(added)

    def _set_state(
        self,
        models: tuple[str, ...],
        embeddings: np.ndarray,
        scores: np.ndarray,
        tokens: np.ndarray,
        calibration: IsotonicCalibration | None,
        *,
        input_tokens: np.ndarray | None = None,
        keys: Sequence[str] | None = None,
    ) -> None:
        """Replace the store; the caller holds the lock. Buffers get room to grow by :meth:`add_outcomes`."""
        n = len(embeddings)
        self.models = models
        self._calibration = calibration
        capacity = max(64, n + n // 4)
        self._emb_buf = np.zeros((capacity, embeddings.shape[1]), dtype=np.float32)
        self._emb_buf[:n] = stored_precision(embeddings)
        self._score_buf = np.full((capacity, len(models)), np.nan)
        self._score_buf[:n] = scores
        self._token_buf = np.full((capacity, len(models)), np.nan)
        self._token_buf[:n] = tokens
        self._prompt_buf = np.full(capacity, np.nan)
        if input_tokens is not None:
            self._prompt_buf[:n] = input_tokens
        self._n = n
        self._keys = list(keys) if keys is not None else [""] * n
        self._rows = {}
        for row, key in enumerate(self._keys):
            if key:
                self._rows.setdefault(key, []).append(row)
        import faiss  # loads with the first fitted or loaded predictor, not at import

        self._index = faiss.IndexFlatIP(embeddings.shape[1])
        self._index.add(np.ascontiguousarray(self._emb_buf[:n]))
        scores, tokens = self._score_buf[:n], self._token_buf[:n]
        self._score_sum, self._score_count = np.nansum(scores, axis=0), (~np.isnan(scores)).sum(axis=0).astype(float)
        self._token_sum, self._token_count = np.nansum(tokens, axis=0), (~np.isnan(tokens)).sum(axis=0).astype(float)
        self._views()

    def _views(self) -> None:
        """Point the public-facing arrays at the filled part of the buffers and refresh the fallback means."""
        n = self._n
        self._embeddings = self._emb_buf[:n]
        self._scores = self._score_buf[:n]
        self._tokens = self._token_buf[:n]
        self._input_tokens = self._prompt_buf[:n]
        with np.errstate(invalid="ignore", divide="ignore"):
            self._score_mean = np.where(self._score_count > 0, self._score_sum / self._score_count, 0.0)
            self._token_mean = np.where(self._token_count > 0, self._token_sum / self._token_count, 0.0)

    def _append_row(self, key: str, vector: np.ndarray, prompt_tokens: float) -> int:
        """Store one new query with no outcomes yet; buffers double when full, so a stream of adds stays linear."""
        row = self._n
        if row == len(self._emb_buf):
            grow = len(self._emb_buf)
            self._emb_buf = np.concatenate([self._emb_buf, np.zeros_like(self._emb_buf[:grow])])
            self._score_buf = np.concatenate([self._score_buf, np.full_like(self._score_buf[:grow], np.nan)])
            self._token_buf = np.concatenate([self._token_buf, np.full_like(self._token_buf[:grow], np.nan)])
            self._prompt_buf = np.concatenate([self._prompt_buf, np.full(grow, np.nan)])
        self._emb_buf[row] = vector
        self._prompt_buf[row] = prompt_tokens
        self._n = row + 1
        self._keys.append(key)
        self._rows.setdefault(key, []).append(row)
        return row

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
        with self._lock:  # the store may grow meanwhile (add_outcomes): search and vote on one state
            return self._finish(*self._vote(*self._search(embeddings, leave_one_out=False)))

    def _search(self, embeddings: np.ndarray, *, leave_one_out: bool) -> tuple[np.ndarray, np.ndarray]:
        assert self._index is not None
        if embeddings.shape[1] != self._index.d:
            raise PredictorStateError(
                f"the encoder gives {embeddings.shape[1]}-dimensional embeddings but the stored queries have "
                f"{self._index.d}: the predictor was saved with another encoder or edited; refit it"
            )
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
        """Similarity-weighted means over the neighbours, quality shrunk toward a prior for thin models.

        A model with fewer than :data:`~eccos_core.calibration.MIN_OUTCOMES` logged outcomes gets its prior
        (:func:`~eccos_core.calibration.thin_prior`: its mean pulled toward the pool's) as extra votes worth
        ``k · pseudo-outcomes / MIN_OUTCOMES`` neighbours, so one lucky answer cannot read as ``p = 1``. Other
        models vote exactly as in the paper's ECCOS-R.
        """
        assert self._scores is not None and self._tokens is not None
        weights = np.clip(sims, 1e-6, None)[:, :, None]
        prior, pseudo = thin_prior(self._score_sum, self._score_count)
        return (
            _weighted_mean(self._scores[idx], weights, prior, pseudo * self.k / MIN_OUTCOMES),
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
        with self._lock:  # one consistent snapshot, even while other threads add outcomes
            assert self._scores is not None and self._tokens is not None and self._input_tokens is not None
            embeddings, scores, tokens = self._embeddings.copy(), self._scores.copy(), self._tokens.copy()
            input_tokens, keys = self._input_tokens.copy(), list(self._keys)
            calibration = None if self._calibration is None else self._calibration.to_dict()
            out_of_fold = self.out_of_fold
        path.mkdir(parents=True, exist_ok=True)
        (path / MANIFEST).unlink(missing_ok=True)  # written last: a directory with a manifest is complete
        np.save(path / "embeddings.npy", embeddings.astype(np.float16))
        np.save(path / "scores.npy", scores)
        np.save(path / "output_tokens.npy", tokens)
        np.save(path / "input_tokens.npy", input_tokens)
        np.save(path / "query_keys.npy", np.array(keys, dtype="S32"))
        (path / "calibration.json").write_text(json.dumps(calibration), encoding="utf-8")
        files = [*_FILES, *_OPTIONAL_FILES[:2]]
        if out_of_fold is not None:
            np.save(path / "oof_quality.npy", out_of_fold.quality)
            np.save(path / "oof_output_tokens.npy", out_of_fold.output_tokens)
            files += _OPTIONAL_FILES[2:]
        else:
            for name in _OPTIONAL_FILES[2:]:  # stale predictions of an earlier save would not match this one
                (path / name).unlink(missing_ok=True)
        write_manifest(
            path,
            self.kind,
            checksums=files,
            k=self.k,
            calibrate=self.calibrate,
            models=list(self.models),
            models_sha256=_names_sha256(self.models),
            n_queries=len(embeddings),
            dim=int(embeddings.shape[1]),
            encoder={
                "name": ENCODER_NAME,
                "max_seq_length": self.encoder.max_seq_length,
                "dtype": self.encoder.dtype,
            },
        )
        return path

    @classmethod
    def load(cls, path: str | Path) -> RetrievalPredictor:
        """Read a predictor written by :meth:`save`, checking every file against the manifest.

        Every file must match the sha256 the manifest recorded for it, and the state must be one a fit could
        have produced: arrays of ``n_queries`` rows and one column per model, scores in [0, 1] (NaN where a
        model has no outcome), finite embeddings, non-negative token counts, calibration knots per model.

        Raises:
            PredictorStateError: Naming the file that is missing, edited, truncated or inconsistent.
        """
        return _read(path)


def _read(path: str | Path) -> RetrievalPredictor:
    """:meth:`RetrievalPredictor.load`'s work: every file checked against the manifest, then the state set."""
    path = Path(path)
    manifest = read_manifest(path, _FILES, _MANIFEST_KEYS)
    where = path / MANIFEST
    if manifest["kind"] != RetrievalPredictor.kind:
        raise PredictorStateError(f"{path} holds a {manifest['kind']!r} predictor, not {RetrievalPredictor.kind!r}")
    encoder_info = manifest["encoder"]
    if not isinstance(encoder_info, dict) or encoder_info.get("name") != ENCODER_NAME:
        name = encoder_info.get("name") if isinstance(encoder_info, dict) else encoder_info
        raise PredictorStateError(f"{path} was built with encoder {name!r}; refit it with {ENCODER_NAME}")
    models, n, k, dim = _check_manifest(manifest, where)
    m = len(models)
    unrecorded = [f for f in (*_FILES, *_OPTIONAL_FILES) if (path / f).is_file() and f not in manifest["checksums"]]
    if unrecorded:
        raise PredictorStateError(f"{where} records no checksum for {unrecorded}; save the predictor again")
    embeddings = load_array(path / "embeddings.npy", (n, dim)).astype(np.float32)
    scores = load_array(path / "scores.npy", (n, m), low=0.0, high=1.0, allow_nan=True)
    tokens = load_array(path / "output_tokens.npy", (n, m), low=0.0, allow_nan=True)
    # written since the store learns from feedback; older saves lack them (no merging, no prompt sizes)
    input_tokens = (
        load_array(path / "input_tokens.npy", (n,), low=0.0, allow_nan=True)
        if (path / "input_tokens.npy").is_file()
        else None
    )
    keys = None
    if (path / "query_keys.npy").is_file():
        raw_keys = load_array(path / "query_keys.npy", (n,))
        keys = [key.decode("ascii", "replace") for key in raw_keys.tolist()] if raw_keys.dtype.kind == "S" else []
        if len(keys) != n or not all(_HEX.fullmatch(key) for key in keys):
            raise PredictorStateError(f"{path / 'query_keys.npy'} must hold 32-digit hex query keys; save again")
    calibration = _load_calibration(path / "calibration.json", m)
    try:
        encoder = SentenceEncoder(
            max_seq_length=int(encoder_info.get("max_seq_length", 256)),
            dtype=str(encoder_info.get("dtype", "auto")),
        )
    except (TypeError, ValueError) as exc:
        raise PredictorStateError(f"{where}: unusable encoder settings ({exc}); save the predictor again") from None
    predictor = RetrievalPredictor(k=k, calibrate=manifest["calibrate"], encoder=encoder)
    predictor._set_state(
        models,
        embeddings,
        scores,
        tokens,
        calibration,
        input_tokens=input_tokens,
        keys=keys,
    )
    if (path / "oof_quality.npy").is_file() and (path / "oof_output_tokens.npy").is_file():
        # out-of-fold rows cover the store as of the last fit or recalibrate(); outcomes added since (feedback)
        # are stored after them, so there may be fewer rows than stored queries, never more
        oof_quality = load_array(path / "oof_quality.npy", (None, m), low=0.0, high=1.0)
        rows = len(oof_quality)
        if rows > n:
            raise PredictorStateError(
                f"{path / 'oof_quality.npy'} has {rows} rows for {n} stored queries; save the predictor again"
            )
        oof_tokens = load_array(path / "oof_output_tokens.npy", (rows, m), low=0.0, allow_nan=True)
        predictor.out_of_fold = Prediction(models, oof_quality, oof_tokens)
    return predictor


_OPTIONAL_FILES = ("input_tokens.npy", "query_keys.npy", "oof_quality.npy", "oof_output_tokens.npy")
_MANIFEST_KEYS = ("kind", "k", "calibrate", "models", "models_sha256", "n_queries", "encoder", "checksums")
_HEX = re.compile(r"[0-9a-f]{32}")


def _names_sha256(models: Sequence[str]) -> str:
    """sha256 of the model names in column order: a reordered ``models`` list would mislabel every column."""
    return hashlib.sha256(json.dumps(list(models)).encode("utf-8")).hexdigest()


def _check_manifest(manifest: dict, where: Path) -> tuple[tuple[str, ...], int, int, int | None]:
    """``(models, n_queries, k, dim)`` of a retrieval manifest, each checked, or a :class:`PredictorStateError`.

    ``dim`` (the embedding width) is ``None`` for a predictor saved before it was recorded.
    """
    models = manifest["models"]
    if (
        not isinstance(models, list)
        or not models
        or not all(isinstance(name, str) and name for name in models)
        or len(set(models)) != len(models)
    ):
        raise PredictorStateError(f"{where}: 'models' must be a non-empty list of distinct model names")
    if manifest["models_sha256"] != _names_sha256(models):
        raise PredictorStateError(
            f"{where}: 'models' does not match the checksum saved with it (reordered or renamed after save, which "
            "would mislabel the predictions of every model); save the predictor again"
        )
    if not isinstance(manifest["calibrate"], bool):
        raise PredictorStateError(f"{where}: 'calibrate' must be true or false, got {manifest['calibrate']!r}")

    def count(key: str) -> int:
        value = manifest[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise PredictorStateError(f"{where}: {key!r} must be an integer >= 1, got {value!r}")
        return value

    return tuple(models), count("n_queries"), count("k"), count("dim") if "dim" in manifest else None


def _load_calibration(path: Path, models: int) -> IsotonicCalibration | None:
    """The saved calibration (``null`` = none), checked to have knots for each of ``models`` columns."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise PredictorStateError(
            f"{path} is not valid JSON ({type(exc).__name__}); save the predictor again"
        ) from None
    if data is None:
        return None
    try:
        calibration = IsotonicCalibration.from_dict(data)
    except PredictorStateError as exc:
        raise PredictorStateError(f"{path}: {exc}") from None
    if len(calibration.x) != models:
        raise PredictorStateError(f"{path} calibrates {len(calibration.x)} models, the predictor has {models}")
    return calibration


def stored_precision(embeddings: np.ndarray) -> np.ndarray:
    """``embeddings`` rounded to the float16 they are saved in, returned as float32.

    The in-memory store then holds exactly what a save writes, so a loaded predictor predicts bit for bit what the
    fitted one did, whatever precision the encoder ran in on this CPU (bfloat16 outputs fit float16's mantissa;
    float32 outputs do not).
    """
    return np.asarray(embeddings, dtype=np.float32).astype(np.float16).astype(np.float32)


def _check_outcomes(
    queries: Sequence[str], scores: Sequence[float], output_tokens: Sequence[float | None] | None
) -> tuple[list[str], list[float], list[float | None]]:
    """Validated copies of :meth:`RetrievalPredictor.add_outcomes`'s arguments."""
    if isinstance(queries, str):
        raise InputError("add_outcomes takes a sequence of query strings, not a single string")
    texts = list(queries)
    observed = list(scores)
    lengths: list[float | None] = [None] * len(texts) if output_tokens is None else list(output_tokens)
    if not len(texts) == len(observed) == len(lengths):
        raise InputError(
            f"add_outcomes got {len(texts)} queries, {len(observed)} scores and {len(lengths)} output token counts; "
            "give one of each per query"
        )
    for i, (text, score, length) in enumerate(zip(texts, observed, lengths, strict=True)):
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"query {i} must be a non-empty string")
        if isinstance(score, bool) or not isinstance(score, (int, float, np.number)) or not 0.0 <= score <= 1.0:
            raise InputError(f"query {i}: score must be a number in [0, 1] (1 = answered correctly), got {score!r}")
        if length is not None and (
            isinstance(length, bool)
            or not isinstance(length, (int, float, np.number))
            or not np.isfinite(length)
            or length < 0
        ):
            raise InputError(f"query {i}: output_tokens must be a non-negative number or None, got {length!r}")
    return texts, [float(v) for v in observed], [None if v is None else float(v) for v in lengths]


def _weighted_mean(
    values: np.ndarray, weights: np.ndarray, fallback: np.ndarray, prior_weight: np.ndarray | None = None
) -> np.ndarray:
    """Similarity-weighted mean over neighbours (axis 1), ignoring NaN; ``fallback`` where none are known.

    ``prior_weight`` (per model) adds ``fallback`` as that much extra neighbour weight: the shrinkage of thin
    models toward their prior.
    """
    known = ~np.isnan(values)
    w = weights * known
    total = w.sum(axis=1)
    weighted = (w * np.where(known, values, 0.0)).sum(axis=1)
    if prior_weight is not None:
        weighted = weighted + prior_weight[None, :] * fallback[None, :]
        total = total + prior_weight[None, :]
    mean = weighted / np.where(total > 0, total, 1.0)
    return np.where(total > 0, mean, fallback[None, :])
