"""Predictors of per-(query, model) success probability and output length.

Importing this package registers every built-in kind (``retrieval``, ``trained``, ``fused``, ``mlp``, ``mf``), so
:func:`load_predictor` reads any saved one; the torch predictors import torch only when they train or predict.
"""

from typing import Any

from eccos_core.predictors import baselines, fused, retrieval, trained  # noqa: F401  (registers the kinds)
from eccos_core.predictors.base import PREDICTORS, Prediction, Predictor, load_predictor, register

KINDS: tuple[str, ...] = ("retrieval", "trained", "fused", "mlp", "mf")
"""Predictor kinds the CLI offers (``eccos eval --predictor``, ``eccos train --predictor``)."""


def make_predictor(kind: str, *, k: int = 16, show_progress: bool = False, **train_options: Any) -> Predictor:
    """An unfitted predictor of a built-in kind.

    Args:
        kind: One of :data:`KINDS`.
        k: Neighbours of the retrieval predictor (alone or inside ``fused``).
        show_progress: Progress bars while fitting.
        **train_options: :class:`~eccos_core.predictors.trained.TrainConfig` fields for the torch predictors
            (``seed=0``, ``max_epochs=100``, ...); ignored by ``retrieval``.
    """
    if kind == "retrieval":
        return retrieval.RetrievalPredictor(k=k, show_progress=show_progress)
    if kind == "fused":
        return fused.FusedPredictor(
            retrieval.RetrievalPredictor(k=k, show_progress=show_progress),
            trained.TrainedPredictor(show_progress=show_progress, **train_options),
            show_progress=show_progress,
        )
    if kind in ("trained", "mlp", "mf"):
        return PREDICTORS[kind](show_progress=show_progress, **train_options)  # type: ignore[call-arg]
    raise ValueError(f"unknown predictor kind {kind!r}; choose one of {', '.join(KINDS)}")


__all__ = ["KINDS", "PREDICTORS", "Prediction", "Predictor", "load_predictor", "make_predictor", "register"]
