"""The predictor protocol: what every quality / output-length predictor provides.

A predictor has scikit-learn's shape: ``fit(logs) -> self``, ``predict(queries) -> Prediction``,
``save(dir)`` and ``load(dir)`` (JSON and ``.npy`` files, never pickle). Concrete predictors register under a
name so a saved directory can be loaded without knowing its class.
"""

from __future__ import annotations

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


def write_manifest(path: Path, kind: str, **fields: Any) -> None:
    """Write ``predictor.json`` naming the predictor kind and its settings."""
    path.mkdir(parents=True, exist_ok=True)
    (path / MANIFEST).write_text(json.dumps({"kind": kind, **fields}, indent=2) + "\n", encoding="utf-8")


def read_manifest(path: str | Path, required: Sequence[str] = ()) -> dict[str, Any]:
    """Read a saved predictor's manifest, checking the files it needs are present."""
    path = Path(path)
    manifest = path / MANIFEST
    if not manifest.is_file():
        raise PredictorStateError(f"{path} is not a saved predictor: {MANIFEST} is missing; save one with .save()")
    missing = [name for name in required if not (path / name).is_file()]
    if missing:
        raise PredictorStateError(f"saved predictor {path} is missing files {missing}; save it again")
    try:
        return json.loads(manifest.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise PredictorStateError(f"{manifest} is not valid JSON ({exc.msg}); save the predictor again") from None


def load_predictor(path: str | Path) -> Predictor:
    """Load any registered predictor from its saved directory."""
    kind = read_manifest(path).get("kind")
    if kind not in PREDICTORS:
        raise PredictorStateError(f"{path}: unknown predictor kind {kind!r}; known: {sorted(PREDICTORS)}")
    return PREDICTORS[kind].load(path)


def load_array(path: Path) -> np.ndarray:
    """Load one ``.npy`` array without pickle."""
    return np.load(path, allow_pickle=False)
