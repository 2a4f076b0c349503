"""Models without logs of their own: each is predicted as a fitted model it names (``ModelSpec.like``), a prior.

A pool may hold models the predictor was never fitted on: a fine-tune, a quantization, a new release of a model
whose logs it has. ``ModelSpec(name="my-llama", like="llama-3.1-8b-instruct", like_offset=-0.05)`` routes
``my-llama`` as if it were ``llama-3.1-8b-instruct`` (at its own prices, context window and capabilities), its
predicted p(success) moved by the offset. Every plan says so (``QueryPlan.prior``), and once the predictor is
refitted on logs that include the model, its own predictions take over.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from eccos_core.errors import InputError, PredictorStateError
from eccos_core.lengths import PROBE_LENGTH, OutputLengths
from eccos_core.predictors.base import Prediction
from eccos_core.pricing import ModelSpec

WAYS_IN = (
    "give it a prior with ModelSpec(..., like='<a fitted model it resembles>') (like: in a models file), or "
    "ask it the shipped 200-question probe (eccos onboard --model NAME --models FILE --out DIR; "
    "Router.onboard(spec)), or collect graded outcomes for it (eccos collect) and refit (Router.fit(models, logs))"
)
"""How a model without logs joins a pool (named by every error about one)."""


PESSIMISM = 2.0
"""Standard errors of a probe's success rate taken off a probed model's predictions (:class:`ProbeFit`)."""
MIN_PROBE = 10
"""Fewest graded probe answers a model is fitted from (:meth:`ProbeFit.fit`)."""
PROBE = "probe"
"""Source of a model predicted from its probe outcomes (:class:`ProbeFit`)."""


@dataclass(frozen=True)
class PoolView:
    """Where each pool column's prediction comes from: the model's own, its ``like`` model's, or its probe's."""

    pool: tuple[ModelSpec, ...]
    sources: Mapping[str, str]
    """Per pool model: its own name, its ``like`` model, or :data:`PROBE`."""
    probes: Mapping[str, ProbeFit]
    """The probe fits of the models onboarded with one (:meth:`Router.onboard`)."""
    lengths: OutputLengths = field(default_factory=OutputLengths)
    """Output tokens of the answers dispatched so far (:mod:`eccos_core.lengths`)."""
    unlogged: frozenset[str] = frozenset()
    """Pool models whose output length no log gives: predicted by :attr:`lengths`."""
    logged: frozenset[str] | None = None
    """Predictor models whose logs gave output lengths (``None``: all, as far as the predictor can tell)."""

    @classmethod
    def build(
        cls,
        pool: Sequence[ModelSpec],
        known: Sequence[str],
        probes: Mapping[str, ProbeFit] | None = None,
        *,
        lengths: OutputLengths | None = None,
        logged: frozenset[str] | None = None,
    ) -> PoolView:
        """The view of ``pool`` over a predictor that knows ``known``.

        A model the predictor knows is its own; else one with a probe fit (whose inputs it knows) is its probe's;
        else one with a known ``like`` is a prior.

        Raises:
            PredictorStateError: A model is none of these (the message names the ways in).
        """
        known_set, probes = set(known), dict(probes or {})
        sources: dict[str, str] = {}
        unknown: list[str] = []
        for spec in pool:
            probe = probes.get(spec.name)
            if spec.name in known_set:
                sources[spec.name] = spec.name
            elif probe is not None and set(probe.inputs) <= known_set:
                sources[spec.name] = PROBE
            elif spec.like is not None and spec.like in known_set:
                sources[spec.name] = spec.like
            else:
                unknown.append(spec.name)
        if unknown:
            bad_like = [f"{s.name!r} is like {s.like!r}" for s in pool if s.name in unknown and s.like is not None]
            detail = f" ({'; '.join(bad_like)}, which the predictor does not know either)" if bad_like else ""
            raise PredictorStateError(
                f"the predictor was fitted without pool models {unknown}{detail}; it knows {list(known)}. For "
                f"each: {WAYS_IN}; or drop it from the pool"
            )
        used = {name: fit for name, fit in probes.items() if sources.get(name) == PROBE}
        unlogged = frozenset(
            name
            for name, source in sources.items()
            if logged is not None and (not used[name].output_tokens if source == PROBE else source not in logged)
        )
        return cls(tuple(pool), sources, used, lengths or OutputLengths(), unlogged, logged)

    def length_source(self, name: str) -> str | None:
        """Where pool model ``name``'s predicted output length comes from; ``None``: its own (or like's) logs."""
        if name in self.unlogged:
            return self.lengths.source(name, self.unlogged, self.sources)
        return PROBE_LENGTH if self.sources[name] == PROBE else None

    @property
    def priors(self) -> dict[str, str]:
        """The pool models not predicted from their own logs: name → the ``like`` model, or ``probe of N``."""
        out = {}
        for spec in self.pool:
            source = self.sources[spec.name]
            if source == PROBE:
                out[spec.name] = f"probe of {self.probes[spec.name].probes}"
            elif source != spec.name:
                out[spec.name] = source
        return out

    def fingerprint(self) -> dict[str, Any]:
        """What the view changes about predictions (for the per-call streams' namespace)."""
        likes = {s.name: [s.like, s.like_offset] for s in self.pool if self.sources[s.name] not in (s.name, PROBE)}
        return {"likes": likes, "probes": {name: fit.to_dict() for name, fit in self.probes.items()}}

    def __call__(self, prediction: Prediction) -> Prediction:
        """``prediction`` (the predictor's columns, or already the pool's) with one column per pool model.

        A prior's column is its ``like`` model's, its p(success) moved by ``like_offset`` (clipped to [0, 1]);
        a probed model's is its :class:`ProbeFit` over its inputs, its output length the probe's mean. Output
        lengths no log gives are predicted by :attr:`lengths` (:mod:`eccos_core.lengths`).
        """
        names = tuple(spec.name for spec in self.pool)
        if all(n in prediction.models for n in names):  # already in pool columns (or no model is new)
            return self.lengths.fill(prediction.select(names), self.unlogged)
        quality = np.empty((prediction.quality.shape[0], len(names)))
        tokens = np.empty_like(quality)
        for j, spec in enumerate(self.pool):
            source = self.sources[spec.name]
            if source == PROBE:
                fit = self.probes[spec.name]
                inputs = prediction.select(fit.inputs)
                quality[:, j] = fit.predict(inputs.quality)
                tokens[:, j] = fit.output_tokens or inputs.output_tokens.mean(axis=1)
                continue
            column = prediction.select([source])
            offset = spec.like_offset if source != spec.name else 0.0
            quality[:, j] = np.clip(column.quality[:, 0] + offset, 0.0, 1.0)
            tokens[:, j] = column.output_tokens[:, 0]
        return self.lengths.fill(Prediction(names, quality, tokens), self.unlogged)


@dataclass(frozen=True)
class ProbeFit:
    """A new model predicted from the fitted models' predictions, weighted by its outcomes on a probe set.

    ``p(new succeeds) = sigmoid(intercept + Σ_k coef_k · logit(p_k))`` over the fitted models ``inputs``: a
    logistic regression (L2, ``C``) of the probe's outcomes (scores ≥ 0.5 count as successes) on the fitted models'
    predicted p(success) for the same questions. The new model is represented by how its errors line up with the
    known models' (in the spirit of UniRoute's probe-set representation). The prediction is then lowered by
    ``margin``, ``PESSIMISM`` standard errors of the probe's success rate: a few hundred outcomes are optimistic
    once the optimizer picks the queries the blend likes best (``benchmarks/results/priors.txt``).
    """

    inputs: tuple[str, ...]
    """Fitted models whose predictions are the features (predictor column names)."""
    coef: tuple[float, ...]
    intercept: float
    probes: int
    """Probe questions it was fitted on."""
    margin: float = 0.0
    """Subtracted from every prediction (clipped at 0)."""
    output_tokens: float = 0.0
    """Mean output tokens of the probe's answers (0: not logged; the inputs' predicted lengths are used)."""

    @classmethod
    def fit(
        cls,
        quality: np.ndarray,
        scores: np.ndarray,
        inputs: Sequence[str],
        *,
        c: float = 1.0,
        output_tokens: np.ndarray | None = None,
    ) -> ProbeFit:
        """Fit on the probe: ``quality`` (n×K predictions of ``inputs``), ``scores`` (n outcomes in [0, 1]).

        ``output_tokens`` are the probe answers' lengths, where logged (NaN where not).

        Raises:
            InputError: Fewer than 10 probe outcomes, or no success (or no failure) among them.
        """
        from sklearn.linear_model import LogisticRegression

        scores = np.asarray(scores, dtype=float).reshape(-1)
        labels = scores >= 0.5
        if len(scores) < MIN_PROBE or labels.all() or not labels.any():
            raise InputError(
                f"a probe needs at least {MIN_PROBE} outcomes with both successes and failures, got {len(scores)} "
                f"({int(labels.sum())} successes): probe more questions, or give the model a prior with like="
            )
        model = LogisticRegression(C=c, max_iter=1000).fit(_logit(quality), labels)
        rate = float(labels.mean())
        margin = PESSIMISM * float(np.sqrt(rate * (1.0 - rate) / len(scores)))
        coef = tuple(float(v) for v in model.coef_[0])
        lengths = np.asarray(output_tokens if output_tokens is not None else [], dtype=float)
        length = float(np.nanmean(lengths)) if np.isfinite(lengths).any() else 0.0
        return cls(tuple(inputs), coef, float(model.intercept_[0]), len(scores), margin, length)

    def predict(self, quality: np.ndarray) -> np.ndarray:
        """p(success) of the new model from the ``inputs``' predictions (N×K), less :attr:`margin`."""
        z = self.intercept + _logit(quality) @ np.asarray(self.coef)
        return np.clip(1.0 / (1.0 + np.exp(-z)) - self.margin, 0.0, 1.0)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "inputs": list(self.inputs),
            "coef": list(self.coef),
            "intercept": self.intercept,
            "probes": self.probes,
            "margin": self.margin,
            "output_tokens": self.output_tokens,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProbeFit:
        """Inverse of :meth:`to_dict` (``ValueError`` on a fit no probe gives)."""
        inputs, coef = tuple(str(v) for v in data["inputs"]), tuple(float(v) for v in data["coef"])
        intercept, probes, margin = float(data["intercept"]), int(data["probes"]), float(data.get("margin", 0.0))
        length = float(data.get("output_tokens", 0.0))
        if len(inputs) != len(coef) or not inputs or not np.isfinite([*coef, intercept]).all() or probes < MIN_PROBE:
            raise ValueError("a probe fit needs one finite weight per input model and at least 10 probes")
        if not 0.0 <= margin <= 1.0:
            raise ValueError(f"a probe fit's margin must lie in [0, 1], got {margin!r}")
        if not (math.isfinite(length) and length >= 0.0):
            raise ValueError(f"a probe fit's output_tokens must be a non-negative number, got {length!r}")
        return cls(inputs, coef, intercept, probes, margin, length)


@dataclass
class Evidence:
    """Graded outcomes of a model predicted from the fitted ones (a prior or a probed model): its probe, then feedback.

    Each row is the fitted models' (``inputs``) predicted p(success) for one graded query, and the score. A
    :class:`ProbeFit` is fitted on all rows (:meth:`fit`): ``Router.onboard`` from the probe,
    ``Router.refit`` again once feedback has added rows, so a prior becomes a fitted blend, and a probe sharpens.
    """

    inputs: tuple[str, ...]
    quality: list[list[float]] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, quality: Sequence[float], score: float) -> None:
        """Append one graded query: ``quality`` = the inputs' predicted p(success) for it (thread-safe)."""
        if len(quality) != len(self.inputs):
            raise ValueError(f"{len(quality)} predictions for {len(self.inputs)} input models")
        with self._lock:
            self.quality.append([float(v) for v in quality])
            self.scores.append(float(score))

    def fit(self, output_tokens: float = 0.0) -> ProbeFit | None:
        """The :class:`ProbeFit` of every row (its length ``output_tokens``); ``None`` while they cannot fit one.

        They cannot while fewer than :data:`MIN_PROBE`, or only successes or failures.
        """
        with self._lock:
            quality, scores = np.array(self.quality, dtype=float), np.array(self.scores, dtype=float)
        try:
            fit = ProbeFit.fit(quality, scores, self.inputs)
        except InputError:  # too few outcomes, or all alike: the model stays as it is routed now
            return None
        return dataclasses.replace(fit, output_tokens=output_tokens)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        with self._lock:
            return {
                "inputs": list(self.inputs),
                "quality": [list(r) for r in self.quality],
                "scores": list(self.scores),
            }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Evidence:
        """Inverse of :meth:`to_dict` (``ValueError`` on rows that do not fit the inputs, or scores outside [0, 1])."""
        evidence = cls(tuple(str(v) for v in data["inputs"]))
        for row, score in zip(data["quality"], data["scores"], strict=True):
            if not 0.0 <= float(score) <= 1.0 or not all(0.0 <= float(v) <= 1.0 for v in row):
                raise ValueError("evidence holds a prediction or score outside [0, 1]")
            evidence.add(row, float(score))
        return evidence


def _logit(quality: np.ndarray) -> np.ndarray:
    q = np.clip(np.asarray(quality, dtype=float), 1e-3, 1 - 1e-3)
    return np.log(q / (1 - q))


__all__ = ["MIN_PROBE", "PESSIMISM", "PROBE", "WAYS_IN", "Evidence", "PoolView", "ProbeFit"]
