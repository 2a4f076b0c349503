"""The router: plan a batch of LLM calls onto the cheapest models that keep quality up, then call them.

A call goes through three steps, each usable on its own:

1. :meth:`Router.plan` predicts, for every query and pool model, p(success) and output length, turns them into
   an expected cost per pair, and asks the optimizer for the cheapest assignment whose mean p(success) reaches
   the :class:`~eccos_core.calibration.QualityGuard`'s internal target for ``min_quality``. Nothing is sent.
2. :meth:`Router.complete` / :meth:`Router.batch` (and their ``a``-prefixed async twins) plan, then send each
   query to its model through LiteLLM.
3. When a provider fails, the query moves to the cheapest other model that keeps the batch on target, and the
   failure is recorded in :attr:`RoutedResponse.fallbacks` with every credential redacted.

Example:
    >>> from eccos_core.router import Router
    >>> router = Router.default()  # doctest: +SKIP
    >>> router.plan(["What is 17 * 23?", "Prove Fermat's little theorem."], min_quality=0.8).models  # doctest: +SKIP
    ['gemma-2-9b-it', 'llama-3.3-nemotron-super-49b-v1']
    >>> router.complete("What is 17 * 23?", min_quality=0.8).text  # doctest: +SKIP
    '391'

A :class:`~eccos_core.errors.DispatchError` raised here carries ``index`` (the query's position in its batch),
``fallbacks`` (one :class:`Fallback` per model tried) and, from :meth:`Router.batch` / :meth:`Router.abatch`,
``results`` (every item's result or exception, in order).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import importlib.metadata
import json
import logging
import math
import numbers
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from eccos_core.calibration import QualityGuard
from eccos_core.errors import (
    CapacityError,
    ConfigError,
    ContextWindowError,
    DispatchError,
    InputError,
    PredictorStateError,
)
from eccos_core.logs import RoutingLogs, split_logs
from eccos_core.optimize import solve
from eccos_core.predictors.base import Prediction, Predictor, load_predictor
from eccos_core.pricing import (
    ModelSpec,
    cost_matrix,
    count_tokens,
    is_secret_param,
    validate_pool,
    write_models,
)

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

logger = logging.getLogger("eccos.router")

Message = Mapping[str, Any]
"""One OpenAI-style chat message: ``{"role": "user", "content": "..."}``."""
Query = str | Sequence[Message]
"""A prompt string (sent as one user message) or a list of chat messages."""

TOKENIZER_MODEL = "gpt-4o-mini"
"""Prompt tokens are counted once with this model's tokenizer (bundled with LiteLLM) and reused for the whole
pool: per-model tokenizers differ by a few percent, while loading one (e.g. Llama's, from the Hugging Face hub)
can take seconds or fail offline, which single-call planning cannot afford."""

_ROUTER_FILE = "router.json"
_MODELS_FILE = "models.json"
_GUARD_FILE = "guard.json"
_PREDICTOR_DIR = "predictor"
_FORMAT = "eccos-router/1"
_REDACTED = "***"
_RESERVED_KWARGS = ("model", "messages")
_MIN_SECRET_LENGTH = 4


# --------------------------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class QueryPlan:
    """Where one query goes and what the router predicted for it there."""

    model: str
    """Pool name of the chosen model."""
    p_success: float
    """Predicted probability that the chosen model answers well."""
    output_tokens: float
    """Predicted completion tokens on the chosen model."""
    cost: float
    """Predicted USD cost on the chosen model (prompt + predicted completion)."""
    input_tokens: int
    """Prompt tokens, counted with :data:`TOKENIZER_MODEL`'s tokenizer."""


@dataclass(frozen=True)
class RoutingPlan:
    """The assignment of a whole batch, with what the optimizer could and could not promise."""

    queries: tuple[QueryPlan, ...]
    """One entry per query, in the order given."""
    min_quality: float
    """The caller's requested mean success."""
    target_quality: float
    """Internal mean-p(success) target the optimizer had to reach (the quality guard's correction of
    ``min_quality`` for the optimizer's selection bias)."""
    expected_quality: float
    """Mean predicted p(success) of the plan."""
    expected_cost: float
    """Sum of predicted USD costs of the plan."""
    status: str
    """``"optimal"``, ``"feasible"`` (solver stopped at its time limit) or ``"quality_unreachable"`` (no
    assignment reaches the target; the plan then maximises quality)."""
    message: str
    """The solver's explanation, e.g. the best reachable quality when the target is out of reach."""
    solver: str
    """Optimizer method that produced the plan."""

    @property
    def models(self) -> list[str]:
        """Chosen model names, one per query, in order."""
        return [q.model for q in self.queries]


@dataclass(frozen=True)
class Fallback:
    """One failed attempt at a provider; the text never contains a credential."""

    model: str
    """Pool name of the model that failed."""
    error_type: str
    """Exception class name (e.g. ``InternalServerError``, ``RateLimitError``)."""
    error: str
    """The error message with every credential of the pool and call replaced by ``***``."""


@dataclass(frozen=True)
class RoutedResponse:
    """A provider's answer to one routed query, with what it actually cost."""

    response: Any
    """LiteLLM ``ModelResponse`` as returned by the provider that answered."""
    model: str
    """Pool name of the model that answered (differs from ``plan.model`` after a fallback)."""
    plan: QueryPlan
    """What the router planned for this query."""
    input_tokens: int
    """Prompt tokens billed, from the response's usage."""
    output_tokens: int
    """Completion tokens billed, from the response's usage."""
    cost: float
    """USD: billed tokens × the answering model's prices in the pool."""
    fallbacks: tuple[Fallback, ...] = ()
    """Every failed attempt before the answer, in order."""

    @property
    def text(self) -> str:
        """Content of the first choice (``""`` when the provider sent none)."""
        try:
            return self.response.choices[0].message.content or ""
        except (AttributeError, IndexError, TypeError):
            return ""


# ---------------------------------------------------------------------------------------- internal state
@dataclass(frozen=True)
class _Batch:
    """A plan plus the matrices dispatch needs to choose fallbacks."""

    messages: tuple[list[Message], ...]
    plan: RoutingPlan
    assignment: np.ndarray
    quality: np.ndarray
    cost: np.ndarray
    allowed: np.ndarray
    capacity: tuple[int | None, ...]
    secrets: tuple[str, ...] = field(default=(), repr=False)


# ------------------------------------------------------------------------------------------------ router
class Router:
    """Routes LLM calls to the cheapest pool models whose predicted mean success reaches ``min_quality``.

    Example:
        >>> from eccos_core.bundled import bundled_logs, bundled_models
        >>> router = Router.fit(bundled_models(), bundled_logs())  # doctest: +SKIP
        >>> plan = router.plan(["What is 2 + 2?"], min_quality=0.7)  # doctest: +SKIP
        >>> reply = router.complete([{"role": "user", "content": "What is 2 + 2?"}], 0.7)  # doctest: +SKIP
        >>> reply.model, reply.cost, reply.text  # doctest: +SKIP
    """

    def __init__(
        self,
        models: Sequence[ModelSpec],
        predictor: Predictor,
        guard: QualityGuard | None = None,
        *,
        method: str = "auto",
        time_limit: float = 10.0,
        max_concurrency: int = 8,
    ) -> None:
        """Check the pool and the predictor agree; nothing is loaded or contacted.

        Args:
            models: The pool. Its names must be models the predictor was fitted on (a subset is fine).
            predictor: A fitted predictor (see :meth:`fit` to fit one on routing logs).
            guard: Maps ``min_quality`` to the optimizer's internal target; ``None`` passes it through, so
                ``min_quality`` then bounds *predicted* rather than realized success.
            method: Optimizer method for :func:`eccos_core.optimize.solve` (``"auto"`` picks by batch size).
            time_limit: Seconds the optimizer may spend on one batch before returning its best feasible plan.
            max_concurrency: Provider calls in flight at once in :meth:`batch` / :meth:`abatch`.

        Raises:
            ConfigError: The pool is empty, has duplicate names or non-ModelSpec entries.
            PredictorStateError: The predictor is unfitted or does not know some pool models.
            InputError: ``time_limit`` or ``max_concurrency`` is not positive.
        """
        self._pool = validate_pool(models)
        self._names = tuple(m.name for m in self._pool)
        known = tuple(getattr(predictor, "models", None) or ())
        if not known:
            raise PredictorStateError(
                "the predictor is not fitted: call predictor.fit(logs) or Router.fit(models, logs), "
                "or load a saved one with load_predictor(dir)"
            )
        missing = [name for name in self._names if name not in known]
        if missing:
            raise PredictorStateError(
                f"the predictor was fitted without pool models {missing} (it knows {list(known)}); "
                "refit it on routing logs that include them, or drop them from the pool"
            )
        if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise InputError(f"max_concurrency must be a positive integer, got {max_concurrency!r}")
        if not isinstance(time_limit, (int, float)) or not time_limit > 0:
            raise InputError(f"time_limit must be a positive number of seconds, got {time_limit!r}")
        self.predictor = predictor
        """Predicts p(success) and output tokens per (query, model)."""
        self.guard = guard if guard is not None else QualityGuard.identity()
        """Turns ``min_quality`` into the optimizer's internal target."""
        self.method = method
        """Optimizer method passed to :func:`eccos_core.optimize.solve`."""
        self.time_limit = float(time_limit)
        """Optimizer time limit per batch, in seconds."""
        self.max_concurrency = max_concurrency
        """Provider calls in flight at once in :meth:`batch` / :meth:`abatch`."""
        self._in_price = np.array([m.input_cost_per_token for m in self._pool], dtype=float)
        self._out_price = np.array([m.output_cost_per_token for m in self._pool], dtype=float)
        self._context = np.array(
            [math.inf if m.max_input_tokens is None else float(m.max_input_tokens) for m in self._pool]
        )
        self._pool_secrets = _secrets_in([m.litellm_params for m in self._pool])

    def __repr__(self) -> str:
        return f"Router(models={list(self._names)}, predictor={type(self.predictor).__name__}, method={self.method!r})"

    # ---------------------------------------------------------------------------------- construction
    @property
    def models(self) -> tuple[ModelSpec, ...]:
        """The pool, in column order of every matrix the router builds."""
        return self._pool

    def spec(self, name: str) -> ModelSpec:
        """The pool entry called ``name`` (e.g. to stream from the model a plan chose).

        Raises:
            ConfigError: No pool model has that name.
        """
        try:
            return self._pool[self._names.index(name)]
        except ValueError:
            raise ConfigError(f"model {name!r} is not in the pool {list(self._names)}") from None

    @classmethod
    def fit(
        cls,
        models: Sequence[ModelSpec],
        logs: RoutingLogs,
        predictor: Predictor | None = None,
        *,
        calibrate: bool = True,
        **kwargs: Any,
    ) -> Router:
        """Fit a predictor on routing logs and, from its out-of-fold predictions, the quality guard.

        The guard is what makes ``min_quality`` mean *realized* success: it routes the training queries with
        predictions made without their own outcomes and measures how far the optimizer's picks fall short.

        Args:
            models: The pool; every name must have outcomes in ``logs``.
            logs: Routing logs to learn from.
            predictor: Unfitted predictor to use; default :class:`~eccos_core.predictors.retrieval.RetrievalPredictor`.
            calibrate: Fit the quality guard (needs ``predictor.out_of_fold``); else ``min_quality`` bounds
                predicted success.
            **kwargs: Passed to :class:`Router` (``method``, ``time_limit``, ``max_concurrency``).

        Raises:
            ConfigError: A pool model has no outcome anywhere in ``logs``.
        """
        pool = validate_pool(models)
        names = [m.name for m in pool]
        logged = set(logs.models)
        absent = [name for name in names if name not in logged]
        if absent:
            raise ConfigError(
                f"the routing logs have no outcomes for pool models {absent} (they cover {sorted(logged)}); "
                "add logs for them or drop them from the pool"
            )
        if predictor is None:
            from eccos_core.predictors.retrieval import RetrievalPredictor

            predictor = RetrievalPredictor()
        predictor.fit(logs)
        guard: QualityGuard | None = None
        out_of_fold = getattr(predictor, "out_of_fold", None)
        if calibrate and out_of_fold is not None:
            oof = out_of_fold.select(names)
            input_tokens = np.array([count_tokens(q, TOKENIZER_MODEL) for q in logs.queries], dtype=float)
            cost = cost_matrix(pool, input_tokens, _clean_tokens(oof.output_tokens))
            guard = QualityGuard.fit(oof, logs.scores(names), cost, method=kwargs.get("method", "auto"))
        elif calibrate:
            logger.warning(
                "%s has no out-of-fold predictions; min_quality will bound predicted, not realized, success",
                type(predictor).__name__,
            )
        return cls(pool, predictor, guard, **kwargs)

    def save(self, path: str | Path) -> Path:
        """Write the router into directory ``path``: pool (credentials redacted), guard and predictor.

        Returns:
            ``path``, ready for :meth:`load`.
        """
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.predictor.save(path / _PREDICTOR_DIR)
        write_models(self._pool, path / _MODELS_FILE)
        (path / _GUARD_FILE).write_text(json.dumps(self.guard.to_dict(), indent=2) + "\n", encoding="utf-8")
        settings = {
            "format": _FORMAT,
            "method": self.method,
            "time_limit": self.time_limit,
            "max_concurrency": self.max_concurrency,
        }
        (path / _ROUTER_FILE).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path, models: Sequence[ModelSpec] | None = None) -> Router:
        """Read a router written by :meth:`save`.

        Credentials are never saved, so a loaded pool reaches providers with LiteLLM's environment variables
        (``OPENAI_API_KEY``, ...) unless ``models`` supplies the real pool.

        Args:
            path: Directory written by :meth:`save`.
            models: The pool with its credentials; its names must be those of the saved pool.

        Raises:
            PredictorStateError: A file of the saved router or its predictor is missing or unreadable.
            ConfigError: ``models`` names other models than the saved pool.
        """
        path = Path(path)
        missing = [name for name in (_ROUTER_FILE, _MODELS_FILE, _GUARD_FILE) if not (path / name).is_file()]
        if not (path / _PREDICTOR_DIR).is_dir():
            missing.append(_PREDICTOR_DIR + "/")
        if missing:
            raise PredictorStateError(
                f"{path} is not a complete saved router: {missing} missing; save it again with Router.save"
            )
        settings = _read_json(path / _ROUTER_FILE)
        if settings.get("format") != _FORMAT:
            raise PredictorStateError(
                f"{path / _ROUTER_FILE} has format {settings.get('format')!r}, expected {_FORMAT!r}; save it again"
            )
        saved = _read_saved_pool(path / _MODELS_FILE)
        if models is None:
            pool = saved
        else:
            pool = validate_pool(models)
            given, stored = {m.name for m in pool}, {m.name for m in saved}
            if given != stored:
                raise ConfigError(
                    f"the pool given to Router.load does not match the one saved in {path}: "
                    f"missing {sorted(stored - given)}, not saved {sorted(given - stored)}"
                )
        guard = QualityGuard.from_dict(_read_json(path / _GUARD_FILE))
        import eccos_core.predictors.retrieval  # noqa: F401  (registers the built-in predictor kind)

        predictor = load_predictor(path / _PREDICTOR_DIR)
        return cls(
            pool,
            predictor,
            guard,
            method=str(settings.get("method", "auto")),
            time_limit=float(settings.get("time_limit", 10.0)),
            max_concurrency=int(settings.get("max_concurrency", 8)),
        )

    @classmethod
    def default(cls, cache_dir: str | Path | None = None) -> Router:
        """The bundled pool, with a predictor and guard fitted on the bundled logs' training split.

        Fitting takes a while, so the result is cached under ``<cache_dir>/default-<hash>`` (``cache_dir``
        defaults to ``$ECCOS_CACHE_DIR``, else ``~/.cache/eccos``); the hash covers the bundled data, the eccos
        version and the code that shapes the fitted state, so an upgrade refits instead of loading stale state.
        The held-out split (``split_logs(..., test_frac=0.2, seed=0)[1]``) is never fitted on, so ``eccos demo``
        can evaluate on it honestly. The cache is published by renaming a finished temporary directory, so
        concurrent processes never load a half-written one.
        """
        from eccos_core.bundled import bundled_logs, bundled_models

        root = Path(cache_dir or os.environ.get("ECCOS_CACHE_DIR") or Path.home() / ".cache" / "eccos")
        path = root.expanduser() / f"default-{_default_cache_key()}"
        models = bundled_models()
        if path.is_dir():
            try:
                router = cls.load(path, models=models)
                logger.debug("loaded the default router from %s", path)
                return router
            except (PredictorStateError, ConfigError, ValueError, KeyError) as exc:
                logger.warning("cached default router in %s is unusable (%s); refitting it", path, exc)
        logger.info("fitting the default router on the bundled routing logs (once; cached in %s)", path)
        train, _ = split_logs(bundled_logs(), test_frac=0.2, seed=0)
        router = cls.fit(models, train)
        _publish(router, path)
        return router

    # ------------------------------------------------------------------------------------------ planning
    def predict(self, queries: Sequence[str]) -> Prediction:
        """The predictor's output for query texts, with columns in pool order."""
        return _clean(self.predictor.predict(list(queries)).select(self._names))

    def plan(
        self,
        queries: Sequence[Query],
        min_quality: float,
        capacity: Mapping[str, int | None] | Sequence[int | None] | None = None,
    ) -> RoutingPlan:
        """Choose a model for every query; nothing is sent.

        Args:
            queries: Each a prompt string or an OpenAI-style message list. The predictor sees the text of the
                last user message (all text if there is none).
            min_quality: Mean success in [0, 1] the batch must reach.
            capacity: Most queries each model may take in this batch, as ``{name: int}`` (overriding the
                pool's ``capacity`` for those models) or one entry per pool model (``None`` = no cap).

        Raises:
            InputError: Empty batch, empty message list, a message with no text, ``min_quality`` outside
                [0, 1], a malformed ``capacity``.
            ConfigError: ``capacity`` names a model not in the pool.
            ContextWindowError: A prompt is longer than every model's context window.
            CapacityError: The caps cannot hold the batch.
        """
        return self._plan(queries, min_quality, capacity).plan

    def plan_prediction(
        self,
        prediction: Prediction,
        input_tokens: Sequence[float] | np.ndarray,
        min_quality: float,
        capacity: Mapping[str, int | None] | Sequence[int | None] | None = None,
    ) -> RoutingPlan:
        """Plan from predictions already made (for offline evaluation, which predicts once for many α).

        Args:
            prediction: Predictions for the batch; columns are selected to the pool by name.
            input_tokens: Prompt tokens per query.
            min_quality: As in :meth:`plan`.
            capacity: As in :meth:`plan`.
        """
        alpha = _check_alpha(min_quality)
        tokens = np.asarray(input_tokens, dtype=float).reshape(-1)
        if len(tokens) != prediction.quality.shape[0]:
            raise InputError(
                f"input_tokens has {len(tokens)} entries for a prediction of {prediction.quality.shape[0]} queries"
            )
        if len(tokens) == 0:
            raise InputError("the batch is empty: give at least one query")
        return self._solve(_clean(prediction.select(self._names)), tokens, alpha, capacity).plan

    def _plan(self, queries: Sequence[Query], min_quality: float, capacity: Any) -> _Batch:
        if isinstance(queries, str) or not isinstance(queries, Sequence):
            raise InputError(
                f"plan takes a sequence of queries, got {type(queries).__name__}; wrap a single prompt in a list"
            )
        if len(queries) == 0:
            raise InputError("the batch is empty: give at least one query")
        alpha = _check_alpha(min_quality)
        messages = tuple(_normalize(query, i) for i, query in enumerate(queries))
        texts = [_query_text(m) for m in messages]
        tokens = np.array([_count_input_tokens(m) for m in messages], dtype=float)
        prediction = self.predict(texts)
        return replace(self._solve(prediction, tokens, alpha, capacity), messages=messages, secrets=self._pool_secrets)

    def _solve(self, prediction: Prediction, tokens: np.ndarray, alpha: float, capacity: Any) -> _Batch:
        caps = self._capacity(capacity)
        allowed = tokens[:, None] <= self._context[None, :]
        blocked = np.flatnonzero(~allowed.any(axis=1))
        if len(blocked):
            i = int(blocked[0])
            widest = int(np.argmax(self._context))
            raise ContextWindowError(
                f"query {i} has {int(tokens[i])} input tokens, more than every model's context window; the "
                f"largest is {int(self._context[widest])} tokens ({self._names[widest]!r}): shorten the prompt "
                "or add a model with a longer context to the pool"
            )
        quality = prediction.quality
        cost = cost_matrix(self._pool, tokens, prediction.output_tokens)
        reachable = self.guard.reachable(alpha)
        # out of the guard's measured range, route to the best assignment the caps allow
        target = float(np.clip(self.guard.target(alpha), 0.0, 1.0)) if reachable else 1.0
        try:
            assignment = solve(
                cost,
                quality,
                target,
                list(caps) if any(c is not None for c in caps) else None,
                allowed=None if allowed.all() else allowed,
                method=self.method,
                time_limit=self.time_limit,
            )
        except CapacityError as exc:  # the optimizer speaks in columns; the caller knows models by name
            columns = ", ".join(f"{j}={name}" for j, name in enumerate(self._names))
            raise CapacityError(f"{exc} (model columns: {columns})") from None
        index = np.asarray(assignment.model_index, dtype=int)
        rows = np.arange(len(index))
        entries = tuple(
            QueryPlan(
                model=self._names[j],
                p_success=float(quality[i, j]),
                output_tokens=float(prediction.output_tokens[i, j]),
                cost=float(cost[i, j]),
                input_tokens=int(tokens[i]),
            )
            for i, j in zip(rows.tolist(), index.tolist(), strict=True)
        )
        status = assignment.status.value
        message = assignment.message
        if not reachable:
            status = "quality_unreachable"
            message = (
                f"min_quality {alpha:.3f} is unreachable: on held-out training queries this router's best "
                f"routing reached {self.guard.max_quality:.3f} realized success; routed every query to the "
                "highest-quality model the caps allow"
            )
        plan = RoutingPlan(
            queries=entries,
            min_quality=alpha,
            target_quality=target,
            expected_quality=float(quality[rows, index].mean()),
            expected_cost=float(cost[rows, index].sum()),
            status=status,
            message=message,
            solver=assignment.method,
        )
        if status == "quality_unreachable":
            logger.warning(
                "min_quality %.3f (internal target %.3f) is out of reach for this batch: %s",
                alpha,
                target,
                plan.message or f"best mean predicted quality {plan.expected_quality:.3f}",
            )
        logger.debug(
            "planned %d queries at min_quality %.3f (target %.3f): %s, quality %.3f, cost $%.6g via %s",
            len(entries),
            alpha,
            target,
            status,
            plan.expected_quality,
            plan.expected_cost,
            plan.solver,
        )
        return _Batch((), plan, index, quality, cost, allowed, caps)

    def _capacity(self, capacity: Any) -> tuple[int | None, ...]:
        caps: list[int | None] = [m.capacity for m in self._pool]
        if capacity is None:
            return tuple(caps)
        if isinstance(capacity, Mapping):
            unknown = [name for name in capacity if name not in self._names]
            if unknown:
                raise ConfigError(
                    f"capacity names models {unknown} that are not in the pool; pool models: {list(self._names)}"
                )
            for name, cap in capacity.items():
                caps[self._names.index(name)] = _check_cap(cap, name)
            return tuple(caps)
        if isinstance(capacity, (str, bytes)) or not isinstance(capacity, Sequence | np.ndarray):
            raise InputError(
                f"capacity must be a dict {{model name: int}} or one entry per pool model, got {capacity!r}"
            )
        if len(capacity) != len(self._pool):
            raise InputError(
                f"capacity has {len(capacity)} entries but the pool has {len(self._pool)} models "
                f"{list(self._names)}; give one per model (None = no cap) or a dict {{name: int}}"
            )
        return tuple(_check_cap(cap, name) for cap, name in zip(capacity, self._names, strict=True))

    # ---------------------------------------------------------------------------------------- dispatch
    def complete(
        self,
        messages: Query,
        min_quality: float,
        *,
        capacity: Mapping[str, int | None] | Sequence[int | None] | None = None,
        **litellm_kwargs: Any,
    ) -> RoutedResponse:
        """Route one call and send it, falling back to other models if its provider fails.

        Args:
            messages: A prompt string or an OpenAI-style message list.
            min_quality: Success in [0, 1] this call should have.
            capacity: As in :meth:`plan`.
            **litellm_kwargs: Passed to ``litellm.completion`` for whichever model answers (``temperature``,
                ``max_tokens``, ``timeout``, ``num_retries`` (default 0: the router's fallback replaces
                retries), ...).

        Raises:
            DispatchError: Every model that could take the call failed; ``fallbacks`` lists why.
        """
        kwargs = _check_kwargs(litellm_kwargs)
        batch = self._plan([messages], min_quality, capacity)
        return self._dispatch(batch, 0, kwargs)

    async def acomplete(
        self,
        messages: Query,
        min_quality: float,
        *,
        capacity: Mapping[str, int | None] | Sequence[int | None] | None = None,
        **litellm_kwargs: Any,
    ) -> RoutedResponse:
        """Async :meth:`complete`, through ``litellm.acompletion``; planning runs off the event loop."""
        kwargs = _check_kwargs(litellm_kwargs)
        batch = await asyncio.to_thread(self._plan, [messages], min_quality, capacity)
        return await self._adispatch(batch, 0, kwargs)

    def batch(
        self,
        queries: Sequence[Query],
        min_quality: float,
        *,
        capacity: Mapping[str, int | None] | Sequence[int | None] | None = None,
        return_exceptions: bool = False,
        **litellm_kwargs: Any,
    ) -> list[RoutedResponse | Exception]:
        """Plan a batch jointly (mean success ≥ ``min_quality``), then send every item concurrently.

        Items come back in input order and none is ever dropped: an item whose every model failed holds a
        :class:`~eccos_core.errors.DispatchError` (with ``return_exceptions=True``), or, by default, every
        other item still finishes and then that error is raised with ``results`` holding the whole list.

        Args:
            queries: Prompt strings or message lists.
            min_quality: Mean success in [0, 1] the batch should reach.
            capacity: As in :meth:`plan`.
            return_exceptions: Put an item's error in its slot instead of raising.
            **litellm_kwargs: As in :meth:`complete`.
        """
        kwargs = _check_kwargs(litellm_kwargs)
        batch = self._plan(queries, min_quality, capacity)
        n = len(batch.messages)
        results: list[RoutedResponse | Exception] = []
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, n), thread_name_prefix="eccos") as pool:
            futures = [pool.submit(self._dispatch, batch, i, kwargs) for i in range(n)]
            for future in futures:
                error = future.exception()
                results.append(future.result() if error is None else _as_exception(error))
        return _finish_batch(results, return_exceptions)

    async def abatch(
        self,
        queries: Sequence[Query],
        min_quality: float,
        *,
        capacity: Mapping[str, int | None] | Sequence[int | None] | None = None,
        return_exceptions: bool = False,
        **litellm_kwargs: Any,
    ) -> list[RoutedResponse | Exception]:
        """Async :meth:`batch`: at most ``max_concurrency`` calls in flight, results in input order."""
        kwargs = _check_kwargs(litellm_kwargs)
        batch = await asyncio.to_thread(self._plan, queries, min_quality, capacity)
        semaphore = asyncio.Semaphore(self.max_concurrency)

        async def one(i: int) -> RoutedResponse:
            async with semaphore:
                return await self._adispatch(batch, i, kwargs)

        gathered = await asyncio.gather(*(one(i) for i in range(len(batch.messages))), return_exceptions=True)
        results = [item if isinstance(item, RoutedResponse) else _as_exception(item) for item in gathered]
        return _finish_batch(results, return_exceptions)

    def _dispatch(self, batch: _Batch, i: int, kwargs: dict[str, Any]) -> RoutedResponse:
        import litellm

        secrets = _call_secrets(batch, kwargs)
        j: int | None = int(batch.assignment[i])
        tried: set[int] = set()
        fallbacks: list[Fallback] = []
        while j is not None:
            spec = self._pool[j]
            tried.add(j)
            try:
                response = litellm.completion(**self._call(spec, batch.messages[i], kwargs))
            except Exception as exc:  # any provider failure moves the item to another model
                j = self._fall_back(batch, i, tried, spec, exc, secrets, fallbacks)
                continue
            return self._routed(response, j, batch.plan.queries[i], fallbacks)
        raise _dispatch_error(i, fallbacks)

    async def _adispatch(self, batch: _Batch, i: int, kwargs: dict[str, Any]) -> RoutedResponse:
        import litellm

        secrets = _call_secrets(batch, kwargs)
        j: int | None = int(batch.assignment[i])
        tried: set[int] = set()
        fallbacks: list[Fallback] = []
        while j is not None:
            spec = self._pool[j]
            tried.add(j)
            try:
                response = await litellm.acompletion(**self._call(spec, batch.messages[i], kwargs))
            except Exception as exc:  # any provider failure moves the item to another model
                j = self._fall_back(batch, i, tried, spec, exc, secrets, fallbacks)
                continue
            return self._routed(response, j, batch.plan.queries[i], fallbacks)
        raise _dispatch_error(i, fallbacks)

    @staticmethod
    def _call(spec: ModelSpec, messages: list[Message], kwargs: dict[str, Any]) -> dict[str, Any]:
        options = {**spec.litellm_params, **kwargs}
        options.setdefault("num_retries", 0)
        return {"model": spec.litellm_model, "messages": messages, **options}

    def _fall_back(
        self,
        batch: _Batch,
        i: int,
        tried: set[int],
        spec: ModelSpec,
        exc: Exception,
        secrets: tuple[str, ...],
        fallbacks: list[Fallback],
    ) -> int | None:
        """Record a failed attempt and pick the next model for item ``i`` (``None`` when none is left)."""
        failure = Fallback(spec.name, type(exc).__name__, redact(str(exc), secrets))
        fallbacks.append(failure)
        following = self._next_model(batch, i, tried)
        logger.warning(
            "query %d: model %r failed with %s; %s",
            i,
            spec.name,
            failure.error_type,
            f"falling back to {self._names[following]!r}" if following is not None else "no model left to try",
        )
        logger.debug("query %d: model %r error: %s", i, spec.name, failure.error)
        return following

    def _next_model(self, batch: _Batch, i: int, tried: set[int]) -> int | None:
        """Cheapest untried model that keeps the batch's mean predicted quality on target, else the best one.

        Models with room left under their cap (counting the plan's assignments) are preferred; a capped model
        is used only when nothing else remains, since losing the answer is worse than exceeding a cap.
        """
        candidates = [j for j in range(len(self._pool)) if batch.allowed[i, j] and j not in tried]
        if not candidates:
            return None
        planned = int(batch.assignment[i])
        counts = np.bincount(batch.assignment, minlength=len(self._pool))
        roomy = [j for j in candidates if batch.capacity[j] is None or counts[j] < batch.capacity[j]]
        candidates = roomy or candidates
        n = len(batch.assignment)
        rows = np.arange(n)
        others = float(batch.quality[rows, batch.assignment].sum() - batch.quality[i, planned])
        target = batch.plan.target_quality
        feasible = [j for j in candidates if (others + batch.quality[i, j]) / n >= target - 1e-9]
        if feasible:
            return min(feasible, key=lambda j: (batch.cost[i, j], -batch.quality[i, j]))
        return max(candidates, key=lambda j: (batch.quality[i, j], -batch.cost[i, j]))

    def _routed(self, response: Any, j: int, plan: QueryPlan, fallbacks: list[Fallback]) -> RoutedResponse:
        usage = getattr(response, "usage", None)
        prompt = getattr(usage, "prompt_tokens", None)
        completion = getattr(usage, "completion_tokens", None)
        input_tokens = int(prompt) if prompt is not None else plan.input_tokens
        if completion is None:
            text = RoutedResponse(response, "", plan, 0, 0, 0.0).text
            completion = count_tokens(text, TOKENIZER_MODEL) if text else 0
        output_tokens = int(completion)
        return RoutedResponse(
            response=response,
            model=self._names[j],
            plan=plan,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost=float(input_tokens * self._in_price[j] + output_tokens * self._out_price[j]),
            fallbacks=tuple(fallbacks),
        )


# ------------------------------------------------------------------------------------------- redaction
def redact(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every occurrence of each secret replaced by ``***`` (longest secrets first)."""
    for secret in sorted(set(secrets), key=len, reverse=True):
        if len(secret) >= _MIN_SECRET_LENGTH:
            text = text.replace(secret, _REDACTED)
    return text


def _secrets_in(params: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    """Every credential value in LiteLLM parameter mappings, searched through nested mappings."""
    found: list[str] = []

    def walk(mapping: Mapping[str, Any]) -> None:
        for key, value in mapping.items():
            if isinstance(value, Mapping):
                walk(value)
            elif is_secret_param(str(key)) and value is not None and not isinstance(value, bool):
                secret = str(value)
                found.append(secret)
                if secret.lower().startswith("bearer "):
                    found.append(secret[7:])

    for mapping in params:
        walk(mapping)
    return tuple(found)


def _call_secrets(batch: _Batch, kwargs: Mapping[str, Any]) -> tuple[str, ...]:
    return batch.secrets + _secrets_in([kwargs]) if kwargs else batch.secrets


# ------------------------------------------------------------------------------------------ validation
def _check_alpha(min_quality: Any) -> float:
    if isinstance(min_quality, bool) or not isinstance(min_quality, numbers.Real):
        raise InputError(f"min_quality must be a number in [0, 1], got {min_quality!r}")
    alpha = float(min_quality)
    if math.isnan(alpha) or not 0.0 <= alpha <= 1.0:
        raise InputError(f"min_quality must lie in [0, 1] (mean success rate), got {min_quality!r}")
    return alpha


def _check_cap(cap: Any, name: str) -> int | None:
    if cap is None:
        return None
    if isinstance(cap, bool) or not isinstance(cap, numbers.Integral) or int(cap) < 0:
        raise InputError(f"capacity of model {name!r} must be a non-negative integer or None, got {cap!r}")
    return int(cap)


def _check_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    reserved = [key for key in _RESERVED_KWARGS if key in kwargs]
    if reserved:
        raise InputError(f"the router chooses {reserved} itself; pass the prompt as the first argument")
    if kwargs.get("stream"):
        raise InputError(
            "complete/batch do not stream; to stream, plan first and call litellm.completion(stream=True) on "
            "router.spec(plan.models[0])"
        )
    return dict(kwargs)


def _normalize(query: Any, index: int) -> list[Message]:
    """The query as a message list, checking every message has text."""
    if isinstance(query, str):
        if not query.strip():
            raise InputError(f"query {index} is an empty string: give the prompt text")
        return [{"role": "user", "content": query}]
    if isinstance(query, Mapping):
        raise InputError(f"query {index} is a single message; wrap it in a list: [{{'role': 'user', 'content': ...}}]")
    if isinstance(query, bytes) or not isinstance(query, Sequence):
        raise InputError(f"query {index} must be a string or a list of messages, got {type(query).__name__}")
    messages = list(query)
    if not messages:
        raise InputError(
            f"query {index} has an empty message list: give at least one {{'role': 'user', 'content': '...'}}"
        )
    for k, message in enumerate(messages):
        if not isinstance(message, Mapping) or "role" not in message:
            raise InputError(
                f"query {index}, message {k}: expected a dict with 'role' and 'content', got {message!r:.80}"
            )
        text = _message_text(message, index, k)
        if not text.strip() and not (message.get("tool_calls") or message.get("function_call")):
            raise InputError(
                f"query {index}, message {k} (role {message['role']!r}) has no text: give it a non-empty "
                "'content' string or a list with {'type': 'text', 'text': ...} parts"
            )
    return messages


def _message_text(message: Message, index: int = 0, k: int = 0) -> str:
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, Mapping) and part.get("type", "text") == "text":
                parts.append(str(part.get("text") or ""))
        return "\n".join(p for p in parts if p)
    raise InputError(
        f"query {index}, message {k}: 'content' must be a string or a list of parts, got {type(content).__name__}"
    )


def _query_text(messages: list[Message]) -> str:
    """What the predictor sees: the last user message's text, else all text."""
    for message in reversed(messages):
        if message.get("role") == "user":
            text = _message_text(message)
            if text.strip():
                return text
    return "\n".join(t for t in (_message_text(m) for m in messages) if t)


def _count_input_tokens(messages: list[Message]) -> int:
    import litellm

    try:
        return int(litellm.token_counter(model=TOKENIZER_MODEL, messages=list(messages)))
    except Exception:  # LiteLLM rejects some message shapes it cannot count; the text is what matters
        return count_tokens("\n".join(_message_text(m) for m in messages), TOKENIZER_MODEL)


def _clean_tokens(tokens: np.ndarray) -> np.ndarray:
    return np.clip(np.nan_to_num(np.asarray(tokens, dtype=float), nan=0.0, posinf=0.0), 0.0, None)


def _clean(prediction: Prediction) -> Prediction:
    """Predictions safe for the optimizer: qualities in [0, 1], output tokens finite and ≥ 0."""
    quality = np.clip(np.nan_to_num(np.asarray(prediction.quality, dtype=float), nan=0.0), 0.0, 1.0)
    return Prediction(prediction.models, quality, _clean_tokens(prediction.output_tokens))


# -------------------------------------------------------------------------------------------- dispatch
def _as_exception(error: BaseException) -> Exception:
    if not isinstance(error, Exception):  # KeyboardInterrupt, CancelledError: never swallowed
        raise error
    return error


def _dispatch_error(index: int, fallbacks: list[Fallback]) -> DispatchError:
    tried = ", ".join(f"{f.model} ({f.error_type})" for f in fallbacks) or "none could take it"
    error = DispatchError(
        f"query {index}: every model that could take it failed: {tried}; check those providers' endpoints "
        "and credentials (RoutedResponse fallbacks / this error's .fallbacks hold the messages)"
    )
    error.index = index  # type: ignore[attr-defined]
    error.fallbacks = tuple(fallbacks)  # type: ignore[attr-defined]
    error.results = None  # type: ignore[attr-defined]
    return error


def _finish_batch(
    results: list[RoutedResponse | Exception], return_exceptions: bool
) -> list[RoutedResponse | Exception]:
    if return_exceptions:
        return results
    for item in results:
        if isinstance(item, Exception):
            if isinstance(item, DispatchError):
                item.results = results  # type: ignore[attr-defined]
            raise item
    return results


# ------------------------------------------------------------------------------------------ persistence
def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise PredictorStateError(f"{path} is not valid JSON ({exc.msg}); save the router again") from None
    if not isinstance(data, dict):
        raise PredictorStateError(f"{path} must hold a JSON object; save the router again")
    return data


def _read_saved_pool(path: Path) -> tuple[ModelSpec, ...]:
    """The saved pool, minus the redacted credentials (LiteLLM then reads them from the environment)."""
    data = _read_json(path)
    entries = data.get("models")
    if not isinstance(entries, list):
        raise PredictorStateError(f"{path} must hold a 'models' list; save the router again")
    pool = []
    for entry in entries:
        entry = dict(entry)
        params = dict(entry.get("litellm_params") or {})
        entry["litellm_params"] = {k: v for k, v in params.items() if v != _REDACTED}
        pool.append(ModelSpec.from_dict(entry, str(path)))
    return validate_pool(pool)


@functools.lru_cache(maxsize=1)
def _default_cache_key() -> str:
    """Hash of what the default router is fitted from: bundled data, eccos version, predictor/optimizer code.

    Computed once per process: the code that runs is the code imported, even if the files change later.
    """
    package = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    try:
        version = importlib.metadata.version("eccos")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    digest.update(version.encode())
    sources = [package / "data", package / "predictors", package / "optimize", package / "calibration.py"]
    for source in sources:
        files = sorted(source.rglob("*")) if source.is_dir() else [source]
        for file in files:
            if file.is_file() and "__pycache__" not in file.parts:
                digest.update(str(file.relative_to(package)).encode())
                digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def _publish(router: Router, path: Path) -> None:
    """Save ``router`` to ``path`` atomically: write a temporary sibling, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        router.save(staging)
        if path.exists():  # an unusable cache: move it aside first (rename is atomic, rmtree is not)
            stale = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".stale", dir=path.parent))
            with contextlib.suppress(OSError):
                os.replace(path, stale / "old")
            shutil.rmtree(stale, ignore_errors=True)
        os.rename(staging, path)
        logger.info("cached the default router in %s", path)
    except OSError as exc:
        if not (path / _ROUTER_FILE).is_file():  # another process publishing the same cache is fine
            logger.warning("could not cache the default router in %s: %s", path, exc)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


__all__ = [
    "TOKENIZER_MODEL",
    "Fallback",
    "QueryPlan",
    "RoutedResponse",
    "Router",
    "RoutingPlan",
    "redact",
]
