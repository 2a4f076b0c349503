"""The router: a thin facade over the planner (decides) and the dispatcher (sends).

Example:
    >>> from eccos_core import Router
    >>> router = Router.default()  # doctest: +SKIP
    >>> router.plan(["What is 17 * 23?", "Prove Fermat's little theorem."], min_quality=0.6).models  # doctest: +SKIP
    ['gemma-2-9b-it', 'llama-3.3-nemotron-super-49b-v1']
    >>> router.complete("What is 17 * 23?", min_quality=0.6).text  # doctest: +SKIP
    '391'
    >>> for chunk in router.stream("Tell me a joke", min_quality=0.6):  # doctest: +SKIP
    ...     print(chunk.choices[0].delta.content or "", end="")

A :class:`~eccos_core.errors.DispatchError` raised here carries ``index`` (the query's position in its batch),
``fallbacks`` (one :class:`Fallback` per model tried) and, from :meth:`Router.batch` / :meth:`Router.abatch`,
``results`` (every item's result or exception, in order).
"""

from __future__ import annotations

import asyncio
import logging
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from eccos_core.batching import arun_all, check_concurrency, finish, run_all
from eccos_core.dispatch import AsyncRoutedStream, Dispatcher, Fallback, Ledger, RoutedResponse, RoutedStream
from eccos_core.dual import DualPrices
from eccos_core.errors import InputError, PredictorStateError
from eccos_core.lengths import OutputLengths
from eccos_core.lifecycle import RouterLifecycle, out_of_fold_problem, training_problem
from eccos_core.messages import TOKENIZER_MODEL, Message, Query, check_options
from eccos_core.optimize import METHODS
from eccos_core.planner import Capacity, PlannedBatch, Planner, QueryPlan, RoutingPlan
from eccos_core.predictors.base import Prediction, Predictor
from eccos_core.pricing import ModelSpec, validate_pool
from eccos_core.priors import Evidence, ProbeFit
from eccos_core.redaction import redact
from eccos_core.targets import Targets
from eccos_core.validation import DEFAULT_POLICY

logger = logging.getLogger("eccos.router")


class Router(RouterLifecycle):
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
        targets: Targets | None = None,
        *,
        method: str = "auto",
        time_limit: float = 10.0,
        max_concurrency: int = 8,
        prices: DualPrices | None = None,
        probes: Mapping[str, ProbeFit] | None = None,
        lengths: OutputLengths | None = None,
        evidence: Mapping[str, Evidence] | None = None,
    ) -> None:
        """Check the pool and the predictor agree; nothing is loaded or contacted.

        Args:
            models: The pool. Its names must be models the predictor was fitted on (a subset is fine).
            predictor: A fitted predictor (see :meth:`fit` to fit one on routing logs).
            targets: How ``min_quality`` becomes the optimizer's internal target (quality guard, per-batch margin
                behind ``confidence=``, per-call curve; :func:`~eccos_core.targets.fit_targets`, fitted by
                :meth:`fit`); ``None`` passes it through, so ``min_quality`` then bounds *predicted* rather than
                realized success, and a plan with a confidence raises ``PredictorStateError``.
            method: Optimizer method for :func:`eccos_core.optimize.solve` (``"auto"`` picks by batch size).
            time_limit: Seconds the optimizer may spend on one batch before returning its best feasible plan.
            max_concurrency: Provider calls in flight at once in :meth:`batch` / :meth:`abatch`.
            prices: Where the per-call streams live (:class:`~eccos_core.dual.DualPrices`): by default this
                process's memory; ``DualPrices(store=RedisStore(redis.Redis(...)))`` shares one price per
                ``min_quality`` across processes. Routers over the same pool and targets share its streams.
            probes: Per model without logs of its own, the fit of its probe outcomes (:meth:`onboard` makes them).
            lengths: The output tokens of the answers dispatched so far, which predict the length of a model whose
                logs give none (:mod:`eccos_core.lengths`); a fresh record by default.
            evidence: Per model without logs of its own, its graded outcomes so far (the probe's, then
                :meth:`record_outcome`'s), which :meth:`refit` fits it on (:class:`~eccos_core.priors.Evidence`).

        Raises:
            ConfigError: The pool is empty, has duplicate names or non-ModelSpec entries.
            PredictorStateError: The predictor is unfitted or does not know some pool models.
            InputError: ``method``, ``time_limit`` or ``max_concurrency`` is unusable.
        """
        pool = validate_pool(models)
        known = tuple(getattr(predictor, "models", None) or ())
        if not known:
            raise PredictorStateError(
                "the predictor is not fitted: call predictor.fit(logs) or Router.fit(models, logs), "
                "or load a saved one with load_predictor(dir)"
            )
        if targets is not None and not isinstance(targets, Targets):
            raise InputError(
                f"targets must be an eccos_core.targets.Targets, got {type(targets).__name__}: wrap a quality guard "
                "as Targets(guard), or take a fitted router's router.targets"
            )
        if method not in METHODS:
            raise InputError(f"unknown optimizer method {method!r}: choose one of {', '.join(METHODS)}")
        check_concurrency(max_concurrency)
        if isinstance(time_limit, bool) or not isinstance(time_limit, numbers.Real) or not time_limit > 0:
            raise InputError(f"time_limit must be a positive number of seconds, got {time_limit!r}")
        self.evidence: dict[str, Evidence] = dict(evidence or {})
        """Per model routed on a prior or a probe: its graded outcomes, which :meth:`refit` fits it on."""
        self.lengths = lengths if lengths is not None else OutputLengths()
        """The output tokens of every answer dispatched (shared with the routers made from this one)."""
        self.planner = Planner(
            pool,
            predictor,
            targets or Targets.identity(),
            method=method,
            time_limit=float(time_limit),
            prices=prices,
            probes=probes,
            lengths=self.lengths,
        )
        """Decides where each query goes (no provider calls)."""
        self.dispatcher = Dispatcher(pool, on_answer=self.lengths.observe)
        """Sends planned queries along their fallback chains."""
        self.max_concurrency = int(max_concurrency)
        """Provider calls in flight at once in :meth:`batch` / :meth:`abatch`."""

    def __repr__(self) -> str:
        return (
            f"Router(models={list(self.planner.names)}, predictor={type(self.predictor).__name__}, "
            f"method={self.method!r})"
        )

    # ------------------------------------------------------------------------------------------ planning
    def predict(self, queries: Sequence[str]) -> Prediction:
        """The predictor's output for query texts, with columns in pool order."""
        return self.planner.predict(queries)

    def plan(
        self,
        queries: Sequence[Query],
        min_quality: float | None = None,
        *,
        budget: float | None = None,
        confidence: float | None = None,
        capacity: Capacity = None,
        **options: Any,
    ) -> RoutingPlan:
        """Choose a model (and a fallback chain) for every query; nothing is sent.

        Args:
            queries: Each a prompt string or an OpenAI-style message list. The predictor sees the text of the
                last user message (all text if there is none).
            min_quality: Mean success in [0, 1] the batch must reach, at the least cost.
            budget: Instead of ``min_quality``: total USD the batch may cost (predicted); the plan then has the
                highest mean predicted quality that fits (status ``quality_unreachable`` when even the cheapest
                plan costs more, the message saying how much).
            confidence: Per-batch guarantee: route so that *this* batch's realized mean success reaches
                ``min_quality`` with this probability, in (0, 1), if its queries are exchangeable with the routing
                logs (drawn from the same mix of tasks). Costs more than the plain plan, whose promise holds on
                average over batches; the margin shrinks as the batch grows. Where ``min_quality`` plus the margin
                is beyond what routing reached on held-out data, the status is ``quality_unreachable`` and the
                message says the guarantee cannot be given. ``None`` (default): no guarantee per batch.
            capacity: Most queries each model may take in this batch, as ``{name: int}`` (overriding the
                pool's ``capacity`` for those models) or one entry per pool model (``None`` = no cap).
            **options: The LiteLLM options the queries will be sent with: ``tools``, ``response_format`` and
                ``max_tokens`` restrict each query to the models that support them.

        Raises:
            InputError: Empty batch, empty message list, a message with no text, ``min_quality`` outside
                [0, 1], both or neither of ``min_quality`` and ``budget``, a malformed ``capacity``,
                ``confidence`` not a number strictly between 0 and 1, or given with ``budget``.
            PredictorStateError: ``confidence`` on a router without a fitted batch margin (fitted with
                ``calibrate=False`` or saved by an eccos without it).
            CapabilityError: No pool model supports what some query needs.
            ConfigError: ``capacity`` names a model not in the pool.
            ContextWindowError: A prompt is longer than every model's context window.
            CapacityError: The caps cannot hold the batch.
        """
        return self._decide(
            queries,
            options,
            single=False,
            min_quality=min_quality,
            budget=budget,
            capacity=capacity,
            confidence=confidence,
        ).plan

    def plan_call(
        self,
        messages: Query,
        min_quality: float | None = None,
        *,
        policy: str = DEFAULT_POLICY,
        budget: float | None = None,
        capacity: Capacity = None,
        **options: Any,
    ) -> RoutingPlan:
        """Route one call as :meth:`complete` would, without sending it (for shells that send it themselves).

        Send it with ``router.dispatcher.send(plan.queries[0], messages, **options)``. With ``policy="dual"``
        the call is recorded in its stream's recent calls, so plan each call once. Like every single call it
        refuses ``confidence=`` (a guarantee on a batch's mean; see :meth:`complete`).

        Args:
            messages: A prompt string or an OpenAI-style message list.
            min_quality: As in :meth:`complete`.
            policy: ``"dual"`` or ``"strict"``, as in :meth:`complete`.
            budget: Instead of ``min_quality``: USD per call, as in :meth:`complete`.
            capacity: As in :meth:`plan`.
            **options: The LiteLLM options the call will be sent with (they restrict the models, as in
                :meth:`plan`).
        """
        return self._decide(
            messages, options, single=True, min_quality=min_quality, budget=budget, capacity=capacity, policy=policy
        ).plan

    def plan_prediction(
        self,
        prediction: Prediction,
        input_tokens: Sequence[float] | np.ndarray,
        min_quality: float | None = None,
        capacity: Capacity = None,
        *,
        budget: float | None = None,
        confidence: float | None = None,
    ) -> RoutingPlan:
        """Plan from predictions already made (offline evaluation predicts once for many α or budgets).

        ``min_quality``, ``budget``, ``confidence`` and ``capacity`` as in :meth:`plan`.
        """
        return self.planner.plan_prediction(
            prediction, input_tokens, min_quality, capacity, budget=budget, confidence=confidence
        )

    def _decide(
        self,
        queries: Any,
        options: Any,
        *,
        single: bool,
        min_quality: float | None,
        budget: float | None,
        capacity: Capacity,
        confidence: float | None = None,
        policy: str = DEFAULT_POLICY,
    ) -> PlannedBatch:
        """Every Router entry point's one question to the planner: a joint plan, or (``single``) one call."""
        options = check_options(options)
        if single:
            return self.planner.plan_call(queries, min_quality, capacity, options, policy=policy, budget=budget)
        return self.planner.plan(queries, min_quality, capacity, options, budget=budget, confidence=confidence)

    def _one_call(
        self,
        messages: Query,
        options: Any,
        min_quality: float | None,
        budget: float | None,
        capacity: Capacity,
        policy: str,
    ) -> tuple[QueryPlan, list[Message]]:
        """What the four single-call senders dispatch: the call's plan and its messages (:meth:`_decide`)."""
        batch = self._decide(
            messages, options, single=True, min_quality=min_quality, budget=budget, capacity=capacity, policy=policy
        )
        return batch.plan.queries[0], batch.messages[0]

    # ---------------------------------------------------------------------------------------- dispatch
    def complete(
        self,
        messages: Query,
        min_quality: float | None = None,
        *,
        policy: str = DEFAULT_POLICY,
        budget: float | None = None,
        capacity: Capacity = None,
        **litellm_kwargs: Any,
    ) -> RoutedResponse:
        """Route one call and send it, falling back along its chain if its provider fails.

        Args:
            messages: A prompt string or an OpenAI-style message list.
            min_quality: Mean success in [0, 1] the calls routed with it should have.
            policy: ``"dual"`` (default): the call is routed at a price on quality that keeps the *mean* success
                of the calls made with this ``min_quality`` at or above it (a hard call may go to a cheap model
                when easier ones paid for it), at about what a batch plan of those calls would cost.
                ``"strict"``: this call on its own reaches ``min_quality`` (a batch of one; costlier).
            budget: Instead of ``min_quality``: USD per call. Under ``"dual"`` the calls' mean predicted cost
                stays within it, at the best quality it buys; under ``"strict"`` this call's predicted cost does.
            capacity: As in :meth:`plan` (for a single call only a cap of 0, which excludes a model, matters).
            **litellm_kwargs: Passed to ``litellm.completion`` for whichever model answers (``temperature``,
                ``max_tokens``, ``tools``, ``response_format``, ``timeout`` (default: the model's ``timeout``),
                ``num_retries`` (default 0: the router's fallback replaces retries), ...).

        A single call refuses ``confidence=`` (``InputError``), under either policy: the guarantee is about a
        batch's mean success, and one call's success is 0 or 1 ("succeeds with probability c" is what
        ``policy="strict"`` with ``min_quality=c`` promises on average). Route calls together with :meth:`batch`.

        Raises:
            DispatchError: Every model that could take the call failed; ``fallbacks`` lists why.
            CredentialError: A provider credential is missing or rejected (not retried elsewhere).
        """
        entry, sent = self._one_call(messages, litellm_kwargs, min_quality, budget, capacity, policy)
        return self.dispatcher.send(entry, sent, **litellm_kwargs)

    async def acomplete(
        self,
        messages: Query,
        min_quality: float | None = None,
        *,
        policy: str = DEFAULT_POLICY,
        budget: float | None = None,
        capacity: Capacity = None,
        **litellm_kwargs: Any,
    ) -> RoutedResponse:
        """Async :meth:`complete`, through ``litellm.acompletion``; planning runs off the event loop."""
        entry, sent = await asyncio.to_thread(
            self._one_call, messages, litellm_kwargs, min_quality, budget, capacity, policy
        )
        return await self.dispatcher.asend(entry, sent, **litellm_kwargs)

    def stream(
        self,
        messages: Query,
        min_quality: float | None = None,
        *,
        policy: str = DEFAULT_POLICY,
        budget: float | None = None,
        capacity: Capacity = None,
        **litellm_kwargs: Any,
    ) -> RoutedStream:
        """Route one call (as :meth:`complete`) and stream the answer.

        Iterate for LiteLLM's chunks; ``.result`` holds usage and cost. A provider failure before the first chunk
        falls back along the chain; after it, :class:`~eccos_core.errors.StreamInterruptedError` is raised (a
        restart would repeat text).
        """
        entry, sent = self._one_call(messages, litellm_kwargs, min_quality, budget, capacity, policy)
        return self.dispatcher.stream(entry, sent, **litellm_kwargs)

    async def astream(
        self,
        messages: Query,
        min_quality: float | None = None,
        *,
        policy: str = DEFAULT_POLICY,
        budget: float | None = None,
        capacity: Capacity = None,
        **litellm_kwargs: Any,
    ) -> AsyncRoutedStream:
        """Async :meth:`stream`: ``async for chunk in await router.astream(...)``."""
        entry, sent = await asyncio.to_thread(
            self._one_call, messages, litellm_kwargs, min_quality, budget, capacity, policy
        )
        return self.dispatcher.astream(entry, sent, **litellm_kwargs)

    def batch(
        self,
        queries: Sequence[Query],
        min_quality: float | None = None,
        *,
        budget: float | None = None,
        confidence: float | None = None,
        capacity: Capacity = None,
        return_exceptions: bool = False,
        max_concurrency: int | None = None,
        **litellm_kwargs: Any,
    ) -> list[RoutedResponse | Exception]:
        """Plan a batch jointly, then send every item concurrently.

        The plan is the cheapest whose mean success reaches ``min_quality`` (with probability ``confidence`` for
        this batch, when given: see :meth:`plan`), or the best a total ``budget`` (USD) buys. Items come back in
        input order and none is ever dropped: an item whose every model failed holds a
        :class:`~eccos_core.errors.DispatchError` (with ``return_exceptions=True``), or, by default, every
        other item still finishes and then that error is raised with ``results`` holding the whole list.
        """
        batch = self._decide(
            queries,
            litellm_kwargs,
            single=False,
            min_quality=min_quality,
            budget=budget,
            capacity=capacity,
            confidence=confidence,
        )
        ledger = Ledger.for_plan(batch.plan)
        entries, messages = batch.plan.queries, batch.messages

        def send(i: int) -> RoutedResponse:
            return self.dispatcher.send(entries[i], messages[i], ledger=ledger, **litellm_kwargs)

        results = run_all(send, len(entries), check_concurrency(max_concurrency or self.max_concurrency))
        return finish(results, return_exceptions)

    async def abatch(
        self,
        queries: Sequence[Query],
        min_quality: float | None = None,
        *,
        budget: float | None = None,
        confidence: float | None = None,
        capacity: Capacity = None,
        return_exceptions: bool = False,
        max_concurrency: int | None = None,
        **litellm_kwargs: Any,
    ) -> list[RoutedResponse | Exception]:
        """Async :meth:`batch`: at most ``max_concurrency`` calls in flight, results in input order."""
        batch = await asyncio.to_thread(
            self._decide,
            queries,
            litellm_kwargs,
            single=False,
            min_quality=min_quality,
            budget=budget,
            capacity=capacity,
            confidence=confidence,
        )
        ledger = Ledger.for_plan(batch.plan)
        entries, messages = batch.plan.queries, batch.messages

        async def send(i: int) -> RoutedResponse:
            return await self.dispatcher.asend(entries[i], messages[i], ledger=ledger, **litellm_kwargs)

        results = await arun_all(send, len(entries), check_concurrency(max_concurrency or self.max_concurrency))
        return finish(results, return_exceptions)


def check_router(value: Any) -> Router | None:
    """The shells' ``router=`` field: ``value`` when it is a :class:`Router` or ``None``.

    Anything else is a ``TypeError`` naming what it is.
    """
    if value is not None and not isinstance(value, Router):
        raise TypeError(f"router must be an eccos_core.Router, got {type(value).__name__}")
    return value


__all__ = [
    "TOKENIZER_MODEL",
    "Fallback",
    "QueryPlan",
    "RoutedResponse",
    "RoutedStream",
    "Router",
    "RoutingPlan",
    "out_of_fold_problem",
    "redact",
    "training_problem",
]
