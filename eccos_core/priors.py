"""Models without logs of their own: each is predicted as a fitted model it names (``ModelSpec.like``), a prior.

A pool may hold models the predictor was never fitted on: a fine-tune, a quantization, a new release of a model
whose logs it has. ``ModelSpec(name="my-llama", like="llama-3.1-8b-instruct", like_offset=-0.05)`` routes
``my-llama`` as if it were ``llama-3.1-8b-instruct`` (at its own prices, context window and capabilities), its
predicted p(success) moved by the offset. Every plan says so (``QueryPlan.prior``), and once the predictor is
refitted on logs that include the model, its own predictions take over.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from eccos_core.errors import PredictorStateError
from eccos_core.predictors.base import Prediction
from eccos_core.pricing import ModelSpec

WAYS_IN = (
    "give it a prior with ModelSpec(..., like='<a fitted model it resembles>') (like: in a models file), or "
    "collect graded outcomes for it (eccos collect) and refit (Router.fit(models, logs))"
)
"""How a model without logs joins a pool (named by every error about one)."""


def prediction_sources(pool: Sequence[ModelSpec], known: Sequence[str]) -> dict[str, str]:
    """Per pool model, the predictor column its predictions come from: its own, else its ``like`` model's.

    Raises:
        PredictorStateError: A model the predictor does not know has no ``like``, or names one it does not know.
    """
    known_set = set(known)
    sources: dict[str, str] = {}
    unknown: list[str] = []
    for spec in pool:
        if spec.name in known_set:
            sources[spec.name] = spec.name
        elif spec.like is not None and spec.like in known_set:
            sources[spec.name] = spec.like
        else:
            unknown.append(spec.name)
    if unknown:
        bad_like = [f"{s.name!r} is like {s.like!r}" for s in pool if s.name in unknown and s.like is not None]
        detail = f" ({'; '.join(bad_like)}, which the predictor does not know either)" if bad_like else ""
        raise PredictorStateError(
            f"the predictor was fitted without pool models {unknown}{detail}; it knows {list(known)}. For each: "
            f"{WAYS_IN}; or drop it from the pool"
        )
    return sources


def priors(pool: Sequence[ModelSpec], sources: Mapping[str, str]) -> dict[str, str]:
    """The pool models predicted as another model (name → the ``like`` model), for plans and metadata."""
    return {spec.name: sources[spec.name] for spec in pool if sources[spec.name] != spec.name}


def pool_view(prediction: Prediction, pool: Sequence[ModelSpec], sources: Mapping[str, str]) -> Prediction:
    """``prediction`` with one column per pool model, in pool order.

    A prior's column is its ``like`` model's, its p(success) moved by ``like_offset`` (clipped to [0, 1]).
    """
    names = tuple(spec.name for spec in pool)
    if all(sources[n] == n or n in prediction.models for n in names):  # already in pool columns
        return prediction.select(names)
    view = prediction.select([sources[n] for n in names])
    offsets = np.array([spec.like_offset if sources[spec.name] != spec.name else 0.0 for spec in pool])
    quality = view.quality if not offsets.any() else np.clip(view.quality + offsets[None, :], 0.0, 1.0)
    return Prediction(names, quality, view.output_tokens)


__all__ = ["WAYS_IN", "pool_view", "prediction_sources", "priors"]
