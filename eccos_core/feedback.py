"""Learning from what happened: record observed outcomes into a router, and refit its calibration when you choose.

:func:`record_outcome` adds one observation (this query, this model, this score) to the retrieval predictor's
store and index at once, so the next similar query is predicted with it. It does *not* touch the calibration or
the quality guard: refitting those on every call would make ``min_quality`` drift call by call and cost a
leave-one-out pass over the whole store each time. :func:`refit` refits both on everything stored, on the
schedule the caller picks (every N outcomes, nightly, ...). The store is saved with the router
(:meth:`Router.save`) and comes back with :meth:`Router.load`.

Example:
    >>> from eccos_core.feedback import record_outcome, refit
    >>> reply = router.complete("What is 17 * 23?", min_quality=0.7)  # doctest: +SKIP
    >>> record_outcome(router, "What is 17 * 23?", reply.model, 1.0, reply.output_tokens)  # doctest: +SKIP
    >>> refit(router)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import logging
import math
import numbers
from typing import TYPE_CHECKING, Any

import numpy as np

from eccos_core.calibration import QualityGuard
from eccos_core.errors import InputError, PredictorStateError
from eccos_core.logs import MAX_OUTCOME_VALUE
from eccos_core.messages import normalize, query_text
from eccos_core.planner import clean, clean_tokens
from eccos_core.pricing import cost_matrix
from eccos_core.priors import Evidence
from eccos_core.targets import fit_targets

if TYPE_CHECKING:
    from eccos_core.router import Router

logger = logging.getLogger("eccos.feedback")


def _learner(router: Router, method: str) -> Any:
    predictor = router.predictor
    if not callable(getattr(predictor, method, None)):
        raise PredictorStateError(
            f"{type(predictor).__name__} cannot learn from feedback: build the router with a retrieval or fused "
            "predictor (the default is fused) to record outcomes"
        )
    return predictor


def record_outcome(router: Router, query: Any, model: str, score: float, output_tokens: float | None = None) -> None:
    """Add what ``model`` did on ``query`` to the router's store; the next similar query is predicted with it.

    Thread-safe: several threads may record (and route) at once. The calibration and the quality guard stay as
    they are until :func:`refit`. For a model routed on a prior (``like=``) or a probe, which has no column of its
    own in the predictor, the outcome is kept as evidence (the fitted models' predictions for the query, and the
    score); :func:`refit` fits its blend on all of it (:class:`~eccos_core.priors.Evidence`).

    Args:
        router: A router whose predictor learns from feedback (retrieval, or fused: the default).
        query: The query as it was routed: a prompt string or an OpenAI-style message list (the store keys it
            by the same text the router embeds, the last user message).
        model: Pool name of the model that answered (``RoutedResponse.model``).
        score: How well it answered, in [0, 1] (1 = right; a thumbs-up, a passed test, a grader's score).
        output_tokens: Tokens the answer had (``RoutedResponse.output_tokens``); improves length predictions.

    Raises:
        InputError: ``model`` is not in the pool, ``score`` is outside [0, 1], ``output_tokens`` is negative,
            or the query has no text.
        PredictorStateError: The router's predictor cannot learn from feedback.
    """
    names = [m.name for m in router.models]
    if model not in names:
        raise InputError(f"model {model!r} is not in the router's pool {names}; record the pool name that answered")
    if isinstance(score, bool) or not isinstance(score, numbers.Real) or not 0.0 <= float(score) <= 1.0:
        raise InputError(f"score must be a number in [0, 1] (1 = answered well), got {score!r}")
    if output_tokens is not None and (
        isinstance(output_tokens, bool)
        or not isinstance(output_tokens, numbers.Real)
        or not math.isfinite(output_tokens)
        or not 0 <= output_tokens <= MAX_OUTCOME_VALUE
    ):
        raise InputError(
            f"output_tokens must be a number in [0, {MAX_OUTCOME_VALUE:.0e}] (what the log loader accepts) or None, "
            f"got {output_tokens!r}"
        )
    text = query_text(normalize(query, 0))
    if model in router.planner.priors:  # no column of its own: evidence for its blend of the fitted models
        inputs = router.predictor.models
        quality = clean(router.predictor.predict([text]).select(inputs)).quality[0]
        router.evidence.setdefault(model, Evidence(tuple(inputs))).add(quality, float(score))
        return
    _learner(router, "add_outcomes").add_outcomes(
        [text], model, [float(score)], None if output_tokens is None else [float(output_tokens)]
    )


def refit(router: Router) -> QualityGuard:
    """Refit the router's calibration and every target on everything its store holds now.

    The predictor recomputes leave-one-out predictions for every stored query and refits its per-model
    calibration; the targets (guard, batch margin behind ``confidence=``, per-call curve) are then fitted on
    those predictions by :func:`~eccos_core.targets.fit_targets`, exactly as :meth:`Router.fit` does, and the
    per-call streams start afresh on the new curve. A model routed on a prior or a probe with at least 10 graded
    outcomes recorded (both successes and failures) is refitted on them first: a prior becomes a fitted blend. Outcomes
    recorded while it runs are kept and used by the next refit. Cost grows with the store: about the same as
    :meth:`Router.fit` minus the embedding (a few seconds at 10,000 stored queries on 2 CPU cores).

    Returns:
        The new guard (also set on ``router``).

    Raises:
        PredictorStateError: The router's predictor cannot learn from feedback.
    """
    refitted = _learner(router, "recalibrate").recalibrate()
    if not router.targets.output_lengths:  # saved before lengths were predicted: refit on costs that have them
        router.planner.retarget(dataclasses.replace(router.targets, output_lengths=True))
    _reprobe(router)
    stored = {name: k for k, name in enumerate(refitted.out_of_fold.models)}
    out_of_fold = router.planner.view(refitted.out_of_fold)  # priors and probed models as they are routed
    missing = np.full(len(refitted.scores), np.nan)  # no stored outcomes: offered nowhere in the fit
    scores = np.column_stack(
        [refitted.scores[:, stored[m.name]] if m.name in stored else missing for m in router.models]
    )
    prompt = np.asarray(refitted.input_tokens, dtype=float)
    if np.isnan(prompt).any():
        # a predictor saved before stores kept prompt sizes: price those rows at the mean known size
        known = prompt[~np.isnan(prompt)]
        fill = float(known.mean()) if len(known) else 0.0
        logger.warning(
            "refit: %d stored queries have no prompt size (saved by an older eccos); priced at %.0f tokens",
            int(np.isnan(prompt).sum()),
            fill,
        )
        prompt = np.where(np.isnan(prompt), fill, prompt)
    cost = cost_matrix(router.models, prompt, clean_tokens(out_of_fold.output_tokens))
    targets = fit_targets(out_of_fold, scores, cost, method=router.method)
    router.planner.retarget(targets)
    logger.info(
        "refit on %d stored queries: guard reaches %.3f realized success", len(scores), targets.guard.max_quality
    )
    return targets.guard


def _reprobe(router: Router) -> None:
    """Refit the blend of each model routed on a prior or a probe whose evidence can fit one (:class:`Evidence`)."""
    probes = dict(router.probes)
    for name, evidence in router.evidence.items():
        if name not in router.planner.priors:
            continue
        old = probes.get(name)
        fit = evidence.fit(old.output_tokens if old is not None else 0.0)
        if fit is not None and fit != old:
            probes[name] = fit
            logger.info("refit: %r is predicted from %d graded outcomes", name, fit.probes)
    if probes != router.probes:
        router.planner.reprobe(probes)


__all__ = ["record_outcome", "refit"]
