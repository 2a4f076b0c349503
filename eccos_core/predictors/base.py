"""The predictor protocol: what every quality / output-length predictor provides.

A predictor has scikit-learn's shape: ``fit(logs) -> self``, ``predict(queries) -> Prediction``,
``save(dir)`` and ``load(dir)`` (JSON and ``.npy`` files, never pickle). Concrete predictors register under a
name so a saved directory can be loaded without knowing its class.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np

from eccos_core.errors import PredictorStateError
from eccos_core.logs import RoutingLogs

MANIFEST = "predictor.json"
P = TypeVar("P", bound="Predictor")


@dataclass(frozen=True)
class Prediction:
    """Predicted outcomes of N queries on M models."""

    models: tuple[str, ...]
    """Column order of both matrices."""
    quality: np.ndarray
    """N×M probability that model j answers query i correctly."""
    output_tokens: np.ndarray
    """N×M expected number of tokens model j writes for query i."""

    def __post_init__(self) -> None:
        shape = (self.quality.shape[0], len(self.models))
        if self.quality.shape != shape or self.output_tokens.shape != shape:
            raise ValueError(
                f"prediction matrices must be {shape}, got {self.quality.shape} and {self.output_tokens.shape}"
            )

    def select(self, models: Sequence[str]) -> Prediction:
        """The same prediction with columns reordered (or subset) to ``models``."""
        missing = [m for m in models if m not in self.models]
        if missing:
            raise PredictorStateError(
                f"the predictor was fitted without models {missing}; refit it on logs that include them"
            )
        idx = [self.models.index(m) for m in models]
        return Prediction(tuple(models), self.quality[:, idx], self.output_tokens[:, idx])

    def rows(self, indices: Sequence[int] | np.ndarray) -> Prediction:
        """The prediction for a subset of the queries."""
        return Prediction(self.models, self.quality[indices], self.output_tokens[indices])


class Predictor(ABC):
    """Predicts, for each query and model, p(success) and output tokens."""

    kind: ClassVar[str]
    """Registry name, written to the saved manifest."""
    models: tuple[str, ...]
    """Models the predictor was fitted on (column order of its predictions)."""
    out_of_fold: Prediction | None
    """Predictions for the training queries made without each query's own outcome (for calibration)."""

    @abstractmethod
    def fit(self: P, logs: RoutingLogs) -> P:
        """Learn from routing logs; returns ``self``."""

    @abstractmethod
    def predict(self, queries: Sequence[str]) -> Prediction:
        """Predict outcomes of every model on each query."""

    @abstractmethod
    def save(self, path: str | Path) -> Path:
        """Write the fitted state into directory ``path`` (JSON and ``.npy``, no pickle)."""

    @classmethod
    @abstractmethod
    def load(cls: type[P], path: str | Path) -> P:
        """Read a predictor written by :meth:`save`."""


PREDICTORS: dict[str, type[Predictor]] = {}


def register(cls: type[P]) -> type[P]:
    """Class decorator adding a predictor to the name → class registry."""
    PREDICTORS[cls.kind] = cls
    return cls


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(path: Path, kind: str, *, checksums: Sequence[str] = (), **fields: Any) -> None:
    """Write ``predictor.json`` naming the predictor kind and its settings.

    Args:
        path: The predictor's directory.
        kind: Registry name of the predictor.
        checksums: Files of ``path``, already written, whose sha256 the manifest records under ``"checksums"``;
            :func:`read_manifest` then refuses a file that was edited, truncated or swapped since. Write the
            manifest last, so a directory with a manifest is complete.
        **fields: The predictor's settings.
    """
    path.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {"kind": kind, **fields}
    if checksums:
        record["checksums"] = {name: file_sha256(path / name) for name in checksums}
    (path / MANIFEST).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def read_manifest(path: str | Path, required: Sequence[str] = (), keys: Sequence[str] = ()) -> dict[str, Any]:
    """Read a saved predictor's manifest, checking the files it needs are present and unchanged.

    Args:
        path: The predictor's directory.
        required: Files that must exist beside the manifest.
        keys: Keys the manifest must hold.

    Raises:
        PredictorStateError: Naming the file: the manifest is missing, not a JSON object or lacks ``keys``; a
            required file is missing; a file listed under ``"checksums"`` is missing or its sha256 differs.
    """
    path = Path(path)
    manifest = path / MANIFEST
    if not manifest.is_file():
        raise PredictorStateError(f"{path} is not a saved predictor: {MANIFEST} is missing; save one with .save()")
    missing = [name for name in required if not (path / name).is_file()]
    if missing:
        raise PredictorStateError(f"saved predictor {path} is missing files {missing}; save it again")
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise PredictorStateError(f"{manifest} is not valid JSON ({exc.msg}); save the predictor again") from None
    except (OSError, ValueError, RecursionError) as exc:
        raise PredictorStateError(
            f"{manifest} cannot be read ({type(exc).__name__}); save the predictor again"
        ) from None
    if not isinstance(data, dict):
        raise PredictorStateError(f"{manifest} must hold a JSON object; save the predictor again")
    absent = [key for key in keys if key not in data]
    if absent:
        raise PredictorStateError(f"{manifest} lacks the keys {absent}; save the predictor again")
    checksums = data.get("checksums", {})
    if not isinstance(checksums, dict) or not all(isinstance(v, str) for v in checksums.values()):
        raise PredictorStateError(f"{manifest}: 'checksums' must map file names to sha256 hex strings")
    for name, expected in checksums.items():
        file = path / name
        if Path(name).name != name or not file.is_file():
            raise PredictorStateError(f"{manifest} records a checksum for {name!r}, which is missing; save it again")
        if file_sha256(file) != expected:
            raise PredictorStateError(
                f"{file} does not match the sha256 recorded in {manifest}: it was edited, truncated or replaced "
                "after it was saved; save the predictor again"
            )
    return data


def load_predictor(path: str | Path) -> Predictor:
    """Load any registered predictor from its saved directory."""
    kind = read_manifest(path).get("kind")
    if kind not in PREDICTORS:
        raise PredictorStateError(f"{path}: unknown predictor kind {kind!r}; known: {sorted(PREDICTORS)}")
    return PREDICTORS[kind].load(path)


def load_array(
    path: Path,
    shape: Sequence[int | None] | None = None,
    *,
    low: float | None = None,
    high: float | None = None,
    allow_nan: bool = False,
) -> np.ndarray:
    """Load one ``.npy`` array without pickle, checking what the caller expects of it.

    Args:
        path: The ``.npy`` file.
        shape: Expected shape; ``None`` entries match any length. ``None`` skips the check.
        low: Smallest allowed value (numeric arrays; NaN entries aside).
        high: Largest allowed value.
        allow_nan: Whether NaN marks "unknown" in this array; infinities are never allowed.

    Raises:
        PredictorStateError: Naming the file: unreadable or truncated, pickled objects, another shape, NaN or
            infinite entries, or values out of range.
    """
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as exc:  # numpy parsing a damaged header raises ValueError, EOFError, SyntaxError, TokenError...
        raise PredictorStateError(
            f"{path} is not a readable .npy array ({type(exc).__name__}: {str(exc)[:200]}); save the predictor again"
        ) from None
    if not isinstance(array, np.ndarray):
        raise PredictorStateError(f"{path} holds an archive, not one array; save the predictor again")
    if shape is not None and (
        array.ndim != len(shape)
        or any(want is not None and got != want for got, want in zip(array.shape, shape, strict=False))
    ):
        expected = "×".join("any" if s is None else str(s) for s in shape)
        raise PredictorStateError(
            f"{path} has shape {array.shape}, expected {expected}: it does not belong to this predictor; save it again"
        )
    if array.dtype.kind in "fc" or low is not None or high is not None:
        if array.dtype.kind not in "biuf":
            raise PredictorStateError(f"{path} holds {array.dtype} values, expected numbers; save the predictor again")
        values = array.astype(np.float64, copy=False)
        nan = np.isnan(values)
        if nan.any() and not allow_nan:
            raise PredictorStateError(f"{path} holds NaN values; save the predictor again")
        known = values[~nan]
        if np.isinf(known).any():
            raise PredictorStateError(f"{path} holds infinite values; save the predictor again")
        if (low is not None and (known < low).any()) or (high is not None and (known > high).any()):
            raise PredictorStateError(f"{path} holds values outside [{low}, {high}]; save the predictor again")
    return array
