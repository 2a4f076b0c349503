"""Output lengths where no log has them: predicted from a model's own calls, similar models, else a default.

Cost is ``input_tokens · in_price + output_tokens · out_price``, so a predicted output length of 0 hides half the
bill and every output price from the optimizer. The bundled logs (and many public ones) log scores only. For a
pool model whose predictor learned no lengths, the predicted length of each query is, in this order:

1. **its own calls** (``"calls (N)"``): every dispatched answer's real ``completion_tokens`` is observed
   (:meth:`OutputLengths.observe`; no grading needed). The mean of N calls is shrunk toward the fallback below by
   :data:`PSEUDO_CALLS` call's worth, so one long first answer does not swing it;
2. **similar models** (``"similar models"``): the mean of the pool models' predicted lengths for that query,
   over the models whose logs carry lengths (the predictor's kNN or trained length head);
3. **the pool's calls** (``"pool calls (N)"``): where no model's logs carry lengths, the mean length of the N
   answers any model gave (the same traffic, so the best guess for a model not yet asked);
4. **a default** (``"default"``): :data:`DEFAULT_OUTPUT_TOKENS`, before any answer.

A model joined from a probe whose answers logged their lengths uses the probe's mean (``"probe"``;
:class:`~eccos_core.priors.ProbeFit`). Every plan names the source of its model's length
(``QueryPlan.length``); a model with lengths in its own logs is predicted from them as before (``None``).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Collection, Mapping
from typing import Any

import numpy as np

from eccos_core.predictors.base import Prediction, Predictor

DEFAULT_OUTPUT_TOKENS = 256.0
"""Output tokens predicted for a model nothing is known about: a short chat answer, a few paragraphs. Replaced
as soon as the model has answered a call (its own length) or a pool model with logged lengths predicts one."""

PSEUDO_CALLS = 1.0
"""Calls' worth of weight the fallback keeps next to a model's own observed mean."""

CALLS, SIMILAR, POOL_CALLS, DEFAULT, PROBE_LENGTH = "calls", "similar models", "pool calls", "default", "probe"
"""Sources of a predicted output length (``QueryPlan.length``)."""


def logged_lengths(predictor: Predictor) -> frozenset[str] | None:
    """Predictor models whose training logs carried output lengths; ``None`` where the predictor cannot tell."""
    counts = getattr(predictor, "length_counts", None)
    if counts is None:
        return None
    return frozenset(name for name, n in counts().items() if n > 0)


class OutputLengths:
    """The output tokens of every answer the router's dispatcher got back, per model (thread-safe)."""

    def __init__(self, observed: Mapping[str, tuple[int, float]] | None = None) -> None:
        self._observed: dict[str, list[float]] = {
            name: [float(n), float(s)] for name, (n, s) in (observed or {}).items()
        }
        self._lock = threading.Lock()

    def observe(self, model: str, output_tokens: float) -> None:
        """Count one answer of ``model`` with ``output_tokens`` (ignored unless a finite non-negative number)."""
        tokens = float(output_tokens)
        if not (math.isfinite(tokens) and tokens >= 0.0):
            return
        with self._lock:
            entry = self._observed.setdefault(model, [0.0, 0.0])
            entry[0] += 1.0
            entry[1] += tokens

    def calls(self, model: str) -> tuple[int, float]:
        """How many answers of ``model`` were observed, and their summed output tokens."""
        with self._lock:
            n, total = self._observed.get(model, (0.0, 0.0))
        return int(n), float(total)

    def fill(self, prediction: Prediction, unlogged: Collection[str]) -> Prediction:
        """``prediction`` with the output tokens of every ``unlogged`` column predicted as the module doc says."""
        columns = [j for j, name in enumerate(prediction.models) if name in unlogged]
        if not columns:
            return prediction
        known = [j for j in range(len(prediction.models)) if j not in columns]
        tokens = prediction.output_tokens.copy()
        if known:
            fallback = tokens[:, known].mean(axis=1)
        else:
            n, total = self.pooled()
            fallback = np.full(len(tokens), total / n if n else DEFAULT_OUTPUT_TOKENS)
        for j in columns:
            n, total = self.calls(prediction.models[j])
            tokens[:, j] = (total + PSEUDO_CALLS * fallback) / (n + PSEUDO_CALLS) if n else fallback
        return Prediction(prediction.models, prediction.quality, tokens)

    def pooled(self) -> tuple[int, float]:
        """Answers observed of every model together, and their summed output tokens."""
        with self._lock:
            return int(sum(n for n, _ in self._observed.values())), float(sum(t for _, t in self._observed.values()))

    def source(self, model: str, unlogged: Collection[str], pool: Collection[str]) -> str:
        """Where :meth:`fill` takes ``model``'s length from (``unlogged``: the pool models it fills)."""
        n, _ = self.calls(model)
        if n:
            return f"{CALLS} ({n})"
        if any(name not in unlogged for name in pool):
            return SIMILAR
        pooled, _ = self.pooled()
        return f"{POOL_CALLS} ({pooled})" if pooled else DEFAULT

    def to_dict(self) -> dict[str, Any]:
        """JSON form: model → ``[calls, summed output tokens]``."""
        with self._lock:
            return {name: [int(n), total] for name, (n, total) in sorted(self._observed.items())}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OutputLengths:
        """Inverse of :meth:`to_dict` (``ValueError`` on counts that no calls give)."""
        observed: dict[str, tuple[int, float]] = {}
        for name, value in data.items():
            n, total = int(value[0]), float(value[1])
            if n < 0 or not (math.isfinite(total) and total >= 0.0):
                raise ValueError(f"model {name!r}: {value!r} is not a count of calls and their output tokens")
            observed[str(name)] = (n, total)
        return cls(observed)


__all__ = [
    "CALLS",
    "DEFAULT",
    "DEFAULT_OUTPUT_TOKENS",
    "POOL_CALLS",
    "PROBE_LENGTH",
    "PSEUDO_CALLS",
    "SIMILAR",
    "OutputLengths",
    "logged_lengths",
]
