"""How a router comes to be and learns: fitting, saving, loading, the bundled default, feedback.

:class:`RouterLifecycle` is the part of :class:`~eccos_core.router.Router` that builds, persists and refits it;
the router itself routes and sends. The training queries become a routing problem here
(:func:`out_of_fold_problem`), on which :func:`~eccos_core.targets.fit_targets` fits every target.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from typing_extensions import Self

from eccos_core import feedback
from eccos_core.calibration import QualityGuard
from eccos_core.dual import DualPrices
from eccos_core.errors import ConfigError, InputError, PredictorStateError
from eccos_core.lengths import logged_lengths
from eccos_core.logs import RoutingLogs
from eccos_core.messages import Query, count_text_tokens
from eccos_core.persistence import load_router, save_router
from eccos_core.planner import clean, clean_tokens, streams_namespace
from eccos_core.predictors.base import Prediction, Predictor
from eccos_core.pricing import ModelSpec, cost_matrix, validate_pool
from eccos_core.priors import MIN_PROBE, WAYS_IN, Evidence, PoolView, ProbeFit
from eccos_core.probe import DEFAULT_PROBE, probe_outcomes
from eccos_core.targets import Targets, fit_targets

if TYPE_CHECKING:
    from eccos_core.guarantee import BatchMargin
    from eccos_core.planner import Planner

logger = logging.getLogger("eccos.router")


class RouterLifecycle:
    """Fit, save, load and refit a router (mixed into :class:`~eccos_core.router.Router`)."""

    planner: Planner
    max_concurrency: int

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # pragma: no cover - the router defines it
        raise NotImplementedError

    @property
    def models(self) -> tuple[ModelSpec, ...]:
        """The pool, in column order."""
        return self.planner.pool

    @property
    def predictor(self) -> Predictor:
        """Predicts p(success) and output tokens per (query, model)."""
        return self.planner.predictor

    @property
    def guard(self) -> QualityGuard:
        """Turns ``min_quality`` into a batch's internal target (part of :attr:`targets`)."""
        return self.planner.guard

    @property
    def margin(self) -> BatchMargin | None:
        """The per-batch margin behind ``confidence=`` (``None``: this router cannot give the guarantee)."""
        return self.planner.margin

    @property
    def dual(self) -> DualPrices:
        """Per-call prices: one online stream per ``min_quality`` / per-call budget over the fitted curve."""
        return self.planner.dual

    @property
    def probes(self) -> Mapping[str, ProbeFit]:
        """The probe fits of the pool models onboarded with one (:meth:`onboard`)."""
        return self.planner.columns.probes

    @property
    def targets(self) -> Targets:
        """Guard, per-batch margin and per-call curve: how ``min_quality`` becomes a target (:mod:`targets`)."""
        return self.planner.targets

    def reset_dual(self, min_quality: float | None = None, *, budget: float | None = None) -> None:
        """Forget what the per-call prices learned from recent calls: of one stream, or (no argument) of all.

        The fitted curve stays; the next call of a reset stream is priced from the training queries alone.
        """
        self.planner.dual.reset(min_quality, budget)

    def spec(self, name: str) -> ModelSpec:
        """The pool entry called ``name``.

        Raises:
            ConfigError: No pool model has that name.
        """
        for spec in self.models:
            if spec.name == name:
                return spec
        raise ConfigError(f"model {name!r} is not in the pool {list(self.planner.names)}")

    @property
    def method(self) -> str:
        """Optimizer method passed to :func:`eccos_core.optimize.solve`."""
        return self.planner.method

    @property
    def time_limit(self) -> float:
        """Seconds the optimizer may spend on one batch."""
        return self.planner.time_limit

    @classmethod
    def fit(
        cls,
        models: Sequence[ModelSpec],
        logs: RoutingLogs,
        predictor: Predictor | None = None,
        *,
        calibrate: bool = True,
        **kwargs: Any,
    ) -> Self:
        """Fit a predictor on routing logs and, from its out-of-fold predictions, the quality guard and prices.

        The guard is what makes ``min_quality`` mean *realized* success: it routes the training queries with
        predictions made without their own outcomes and measures how far the optimizer's picks fall short.
        The per-call prices (:mod:`eccos_core.dual`) are measured the same way, routing those queries one at a
        time, and so is the per-batch margin behind ``confidence=`` (:mod:`eccos_core.guarantee`), routing
        random batches of them.

        Args:
            models: The pool; every model must have outcomes in ``logs``, or a ``like`` model that has.
            logs: Routing logs to learn from.
            predictor: Unfitted predictor to use; default
                :class:`~eccos_core.predictors.retrieval.RetrievalPredictor`.
            calibrate: Fit the quality guard, the per-call prices and the batch margin (needs
                ``predictor.out_of_fold``); else ``min_quality`` bounds predicted success and ``confidence=`` is
                refused.
            **kwargs: Passed to :class:`Router` (``method``, ``time_limit``, ``max_concurrency``).

        Raises:
            ConfigError: A pool model has no outcome anywhere in ``logs``.
        """
        pool = validate_pool(models)
        logged = set(logs.models)
        absent = [m.name for m in pool if m.name not in logged and m.like not in logged]
        if absent:
            raise ConfigError(
                f"the routing logs have no outcomes for pool models {absent} (they cover {sorted(logs.models)}); "
                f"add logs for them, drop them from the pool, or {WAYS_IN.split(', or ')[0]}"
            )
        if predictor is None:
            from eccos_core.predictors.retrieval import RetrievalPredictor

            predictor = RetrievalPredictor()
        predictor.fit(logs)
        problem = out_of_fold_problem(pool, logs, predictor) if calibrate else None
        if problem is None:
            return cls(pool, predictor, None, **kwargs)
        oof, scores, cost = problem
        return cls(pool, predictor, fit_targets(oof, scores, cost, method=kwargs.get("method", "auto")), **kwargs)

    def with_models(self, models: Sequence[ModelSpec]) -> Self:
        """The same router over another pool (other endpoints, prices or a subset of the models).

        Same predictor, targets and settings; the per-call streams live in the same store, so a router over the
        same model names shares them, and one over other names keeps its own.

        Raises:
            ConfigError: The pool is empty, has duplicate names or non-ModelSpec entries.
            PredictorStateError: The predictor does not know some pool models.
        """
        return self._over(models, self.probes, self.evidence)

    def _over(
        self, models: Sequence[ModelSpec], probes: Mapping[str, ProbeFit], evidence: Mapping[str, Evidence]
    ) -> Self:
        """A router with the same predictor, targets, settings and streams over ``models`` (with ``probes``)."""
        return type(self)(
            models,
            self.predictor,
            self.targets,
            method=self.method,
            time_limit=self.time_limit,
            max_concurrency=self.max_concurrency,
            prices=self.dual,
            probes=probes,
            lengths=self.lengths,
            evidence=evidence,
        )

    def onboard(
        self,
        spec: ModelSpec,
        outcomes: RoutingLogs | None = None,
        *,
        n: int = DEFAULT_PROBE,
        log: str | Path | None = None,
        **collect_options: Any,
    ) -> Self:
        """A copy of the router with ``spec`` joined, predicted from its outcomes on a probe set (:class:`ProbeFit`).

        ``outcomes`` are graded answers of ``spec.name`` to a few hundred questions the router was not fitted on,
        stratified by task. Without them, ``spec`` is asked the first ``n`` questions of the shipped probe set
        (:mod:`eccos_core.probe`; graded answers appended to ``log``, resumed from it when it exists; a temporary
        file without one); ``collect_options`` go to :func:`~eccos_core.collect.acollect` (``limit_usd``,
        ``concurrency``, ``max_tokens``, ...). From an event loop, ``await`` :meth:`aonboard` instead.

        The fitted models' predictions for those questions are the features; the new model is their weighted
        logistic blend, and its output length the probe answers' mean. The targets stay: with no training outcomes
        of the new model, fitting them again would give the same ones. A model of the same name is replaced.

        Raises:
            InputError: Fewer than 10 outcomes of ``spec.name``, or only successes or failures.
            CollectError: The probe could not be asked (its log is held by another run, or disagrees with it).
        """
        if outcomes is None:
            outcomes = asyncio.run(probe_outcomes(spec, n, log, **collect_options))
        return self._joined(spec, outcomes)

    async def aonboard(
        self,
        spec: ModelSpec,
        outcomes: RoutingLogs | None = None,
        *,
        n: int = DEFAULT_PROBE,
        log: str | Path | None = None,
        **collect_options: Any,
    ) -> Self:
        """:meth:`onboard` from an event loop (the probe's calls are awaited)."""
        if outcomes is None:
            outcomes = await probe_outcomes(spec, n, log, **collect_options)
        return self._joined(spec, outcomes)

    def _joined(self, spec: ModelSpec, outcomes: RoutingLogs) -> Self:
        """The copy with ``spec`` fitted from ``outcomes`` (see :meth:`onboard`)."""
        scores = outcomes.scores([spec.name])[:, 0]
        seen = np.flatnonzero(~np.isnan(scores))
        inputs = list(self.predictor.models)
        quality = np.zeros((0, len(inputs)))
        if len(seen) >= MIN_PROBE:  # fewer: ProbeFit.fit says what is missing, before anything is embedded
            quality = clean(self.predictor.predict([outcomes.queries[i] for i in seen]).select(inputs)).quality
        lengths = outcomes.matrix("output_tokens", [spec.name])[seen, 0]
        fit = ProbeFit.fit(quality, scores[seen], inputs, output_tokens=lengths)
        evidence = Evidence(tuple(inputs))
        for row, score in zip(quality, scores[seen], strict=True):
            evidence.add(row, score)
        models = [m for m in self.models if m.name != spec.name] + [spec]
        return self._over(models, {**self.probes, spec.name: fit}, {**self.evidence, spec.name: evidence})

    def save(self, path: str | Path) -> Path:
        """Write the router into directory ``path``.

        Pool (credentials redacted), targets (guard, batch margin, per-call curve), the per-call streams (when they
        live in this process) and predictor.
        """
        settings = {"method": self.method, "time_limit": self.time_limit, "max_concurrency": self.max_concurrency}
        return save_router(
            path,
            self.models,
            self.predictor,
            self.targets,
            settings,
            self.dual,
            self.probes,
            self.lengths,
            self.evidence,
        )

    @classmethod
    def load(cls, path: str | Path, models: Sequence[ModelSpec] | None = None) -> Self:
        """Read a router written by :meth:`save`.

        Credentials are never saved, so a loaded pool reaches providers with LiteLLM's environment variables
        (``OPENAI_API_KEY``, ...) unless ``models`` supplies the real pool.

        Raises:
            PredictorStateError: A file of the saved router or its predictor is missing or unreadable.
            ConfigError: ``models`` names other models than the saved pool.
        """
        saved = load_router(path, models)
        settings = saved.settings
        targets = saved.targets
        try:
            prices = None
            if saved.streams is not None:
                columns = PoolView.build(saved.pool, saved.predictor.models, saved.probes)
                namespace = streams_namespace(targets, columns)
                prices = DualPrices.from_dict(saved.streams, targets.curve, namespace)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise PredictorStateError(
                f"{Path(path)}: the saved per-call streams are not valid ({exc}); save it again"
            ) from None
        try:
            return cls(
                saved.pool,
                saved.predictor,
                targets,
                method=str(settings.get("method", "auto")),
                time_limit=float(settings.get("time_limit", 10.0)),
                max_concurrency=settings.get("max_concurrency", 8),
                prices=prices,
                probes=saved.probes,
                lengths=saved.lengths,
                evidence=saved.evidence,
            )
        except InputError as exc:
            raise PredictorStateError(f"{Path(path) / 'router.json'}: {exc}") from None

    @classmethod
    def default(cls, cache_dir: str | Path | None = None) -> Self:
        """The bundled pool, with a predictor and guard fitted on the bundled logs' training split.

        The fitted router ships in the package (``eccos build-default`` rebuilds it); when it is missing or
        stale, the router is fitted once and cached under ``cache_dir`` (default ``$ECCOS_CACHE_DIR``, else
        ``~/.cache/eccos``). The held-out split (``split_logs(..., test_frac=0.2, seed=0)[1]``) is never
        fitted on, so ``eccos demo`` can evaluate on it honestly.
        """
        from eccos_core import default_router
        from eccos_core.bundled import bundled_models

        models = bundled_models()
        return default_router.resolve(
            load=lambda path: cls.load(path, models=models),
            fit=lambda: cls.fit_default(models),
            save=lambda router, path: router.save(path),
            cache_dir=cache_dir,
        )

    @classmethod
    def fit_default(cls, models: Sequence[ModelSpec] | None = None) -> Self:
        """Fit the default router from scratch on the bundled training split (what ships in the package).

        Its predictor is the :class:`~eccos_core.predictors.fused.FusedPredictor` (seed 0: the same files every
        time); ``eccos build-default`` writes it to ``eccos_core/data/default-router/``.
        """
        from eccos_core.bundled import bundled_logs, bundled_models
        from eccos_core.logs import split_logs
        from eccos_core.predictors.fused import FusedPredictor

        train, _ = split_logs(bundled_logs(), test_frac=0.2, seed=0)
        # fused: the best of the predictors on all three shared data sets (benchmarks/results/predictors.txt)
        return cls.fit(models or bundled_models(), train, predictor=FusedPredictor())

    def record_outcome(self, query: Query, model: str, score: float, output_tokens: float | None = None) -> None:
        """Add what ``model`` did on ``query`` to the retrieval store: the next similar query sees it at once.

        The calibration and the quality guard are not touched; call :meth:`refit` on your own schedule. The
        store is saved with :meth:`save`. Thread-safe.

        Raises:
            InputError: Unknown model, a score outside [0, 1] or negative tokens.
            PredictorStateError: The predictor cannot learn from outcomes (only the retrieval predictor can).
        """
        feedback.record_outcome(self, query, model, score, output_tokens)

    def refit(self) -> QualityGuard:
        """Refit the calibration and every target (guard, batch margin, per-call curve) on what the store holds.

        Returns the guard. Per-call streams start afresh on the new curve. Also gives a router saved without a
        batch margin the one ``confidence=`` needs.
        """
        return feedback.refit(self)


def out_of_fold_problem(
    pool: Sequence[ModelSpec], logs: RoutingLogs, predictor: Predictor
) -> tuple[Prediction, np.ndarray, np.ndarray] | None:
    """The training queries as a routing problem the guard and the prices are measured on.

    Returns the predictor's out-of-fold predictions (pool columns, cleaned), the logged scores and the
    predicted cost matrix; ``None`` when the predictor makes no out-of-fold predictions.
    """
    out_of_fold = getattr(predictor, "out_of_fold", None)
    if out_of_fold is None:
        logger.warning(
            "%s has no out-of-fold predictions; min_quality will bound predicted, not realized, success",
            type(predictor).__name__,
        )
        return None
    return training_problem(pool, logs, out_of_fold, logged_lengths(predictor))


def training_problem(
    pool: Sequence[ModelSpec], logs: RoutingLogs, out_of_fold: Prediction, logged: frozenset[str] | None = None
) -> tuple[Prediction, np.ndarray, np.ndarray]:
    """:func:`out_of_fold_problem` from out-of-fold predictions already made for ``logs``' queries.

    ``logged``: the models whose logs carry output lengths (``None``: all); the others' lengths are predicted as
    a fresh router predicts them (:mod:`eccos_core.lengths`), so the targets are fitted on the costs it plans with.
    """
    names = [m.name for m in pool]
    oof = clean(PoolView.build(pool, out_of_fold.models, logged=logged)(out_of_fold))
    input_tokens = np.array([count_text_tokens(q) for q in logs.queries], dtype=float)
    cost = cost_matrix(pool, input_tokens, clean_tokens(oof.output_tokens))
    return oof, logs.scores(names), cost


__all__ = ["RouterLifecycle", "out_of_fold_problem", "training_problem"]
