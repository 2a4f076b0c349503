"""Planning: predictions + quality guard + pool → a :class:`RoutingPlan`. Nothing here calls a provider.

For a batch of queries the planner

1. normalizes each query to chat messages and reads off its *needs* (tools, images, a response schema,
   ``max_tokens``) and its prompt tokens;
2. masks out the models that cannot serve a query (context window, missing capability, a zero cap);
3. predicts p(success) and output tokens per (query, model), prices each pair, and asks the optimizer for the
   cheapest assignment whose mean p(success) reaches the guard's internal target for ``min_quality``;
4. fixes each query's fallback chain: the other models it may go to if its provider fails, cheapest first
   among those that keep the batch's mean on target, then by quality; caps and capabilities bind them too.

Two more problems share steps 1–3:

* **one call at a time** (:meth:`Planner.plan_call`): with ``policy="dual"`` the call goes to
  ``argmin_j cost − λ·p(success)`` at its stream's price λ (:mod:`eccos_core.dual`), which keeps the *mean*
  over the calls routed with that ``min_quality``; ``policy="strict"`` makes the call reach it on its own
  (the N = 1 batch);
* **a budget** instead of ``min_quality``: the highest mean predicted quality whose total predicted cost fits
  (:func:`eccos_core.optimize.budget.solve_budget`), or, for single calls, a price that keeps the mean
  predicted cost per call within the budget.
"""

from __future__ import annotations

import logging
import math
import numbers
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from eccos_core.calibration import QualityGuard
from eccos_core.dual import DualPrices, prices_namespace
from eccos_core.errors import CapabilityError, CapacityError, ContextWindowError, InputError
from eccos_core.guarantee import BatchMargin
from eccos_core.lengths import OutputLengths, logged_lengths
from eccos_core.messages import Message, Needs, count_input_tokens, needs_of, normalize, query_text
from eccos_core.optimize import SolveStatus
from eccos_core.plans import QueryPlan, RoutingPlan
from eccos_core.policies import budget as budget_policy
from eccos_core.policies import joint, per_call
from eccos_core.policies.stores import MemoryStore
from eccos_core.predictors.base import Prediction, Predictor
from eccos_core.pricing import ModelSpec
from eccos_core.priors import PoolView, ProbeFit
from eccos_core.targets import Targets, require_margin
from eccos_core.validation import (
    DEFAULT_POLICY,
    POLICIES,
    check_alpha,
    check_confidence,
    check_policy,
    resolve_capacity,
    single_call_confidence_error,
)

logger = logging.getLogger("eccos.planner")

Capacity = Mapping[str, int | None] | Sequence[int | None] | None
"""Per-batch caps: ``{name: cap}`` or one entry per pool model (``None`` = no cap)."""

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``: called by a large plan as it goes (stage ``"predict"``, then ``"solve"``)."""

PROGRESS_CHUNK = 2048
"""Queries predicted per step of a large batch; between steps the plan reports progress. The encoder batches
within a step anyway, so the steps cost nothing measurable (at ~6 ms per query on 2 CPU cores a step takes
about 12 s, and a 50,000-query plan about five minutes, most of it embedding)."""


@dataclass(frozen=True)
class PlannedBatch:
    """A plan with the normalized messages it was made for (what dispatch sends)."""

    plan: RoutingPlan
    messages: tuple[list[Message], ...]
    caps: tuple[int | None, ...]


@dataclass(frozen=True)
class CallInputs:
    """What pricing one call needs (:meth:`Planner.call_inputs`)."""

    messages: list[Message]
    tokens: np.ndarray
    """Prompt tokens, shape (1,)."""
    allowed: np.ndarray
    """1×M: the models that can take the call."""
    prediction: Prediction
    """The predictor's output for the call (its own model order)."""


class Planner:
    """Decides where each query of a batch goes; shared by the router, the framework shells and the proxy.

    It prepares a plan's inputs (messages, needs, prompt tokens, the allowed models, predictions) and hands them
    to a policy of :mod:`eccos_core.policies`: joint (a batch, or ``policy="strict"``), budget, or per call.
    """

    @property
    def progress_chunk(self) -> int:
        """Queries predicted (and reported) per step of a large batch (:data:`PROGRESS_CHUNK`)."""
        return PROGRESS_CHUNK

    def __init__(
        self,
        pool: Sequence[ModelSpec],
        predictor: Predictor,
        targets: Targets,
        *,
        method: str = "auto",
        time_limit: float = 10.0,
        progress: Progress | None = None,
        prices: DualPrices | None = None,
        probes: Mapping[str, ProbeFit] | None = None,
        lengths: OutputLengths | None = None,
    ) -> None:
        self.pool = tuple(pool)
        self.names = tuple(m.name for m in self.pool)
        self.predictor = predictor
        self._logged = logged_lengths(predictor)
        self.columns = self._columns(probes, lengths or OutputLengths(), targets)
        """Where each pool column's prediction comes from: its own logs, a ``like`` model, or a probe."""
        self.priors = self.columns.priors
        """Pool models not predicted from their own logs (name → the ``like`` model, or ``probe of N``): named in
        every plan."""
        self.targets = targets
        """Guard, per-batch margin and per-call curve: how ``min_quality`` becomes a target (:mod:`targets`)."""
        self.dual = self._prices(prices or DualPrices(), targets)
        """Per-call prices: one stream per ``min_quality`` or per-call budget, over the fitted curve, in a store."""
        self.method = method
        self.time_limit = time_limit
        self.progress = progress
        """Optional ``progress(stage, done, total)`` callback for large plans; progress is also logged at INFO
        (never printed: the library does not write to stdout)."""
        self._context = np.array([math.inf if m.max_input_tokens is None else m.max_input_tokens for m in self.pool])

    # ---------------------------------------------------------------------------------------- inputs
    @property
    def guard(self) -> QualityGuard:
        """The quality guard (part of :attr:`targets`)."""
        return self.targets.guard

    @property
    def margin(self) -> BatchMargin | None:
        """The per-batch margin behind ``confidence=`` (part of :attr:`targets`; ``None``: refused)."""
        return self.targets.margin

    def retarget(self, targets: Targets) -> None:
        """Route with refitted ``targets`` from now on; per-call streams start afresh on the new curve."""
        if isinstance(self.dual.store, MemoryStore):
            self.dual.reset()  # the old targets' streams (a shared store's expire on their own)
        self.targets = targets
        self.dual = self._prices(self.dual, targets)
        if (self.columns.logged is not None) != targets.output_lengths:  # lengths as the new targets were fitted
            self.reprobe(self.columns.probes)

    def reprobe(self, probes: Mapping[str, ProbeFit]) -> None:
        """Predict the models without logs from these probe fits from now on (their per-call streams start afresh)."""
        self.columns = self._columns(probes, self.columns.lengths, self.targets)
        self.priors = self.columns.priors
        self.dual = self._prices(self.dual, self.targets)

    def _columns(self, probes: Mapping[str, ProbeFit] | None, lengths: OutputLengths, targets: Targets) -> PoolView:
        """The pool's columns over the predictor, lengths filled only where ``targets`` were fitted with them."""
        logged = self._logged if targets.output_lengths else None
        return PoolView.build(self.pool, self.predictor.models, probes, lengths=lengths, logged=logged)

    def _prices(self, prices: DualPrices, targets: Targets) -> DualPrices:
        """``prices`` for this pool and ``targets``: their streams, keyed by what the prices depend on."""
        namespace = streams_namespace(targets, self.columns)
        return prices if prices.namespace == namespace else prices.over(targets.curve, namespace)

    def predict(self, texts: Sequence[str]) -> Prediction:
        """The predictor's output for query texts, columns in pool order, safe for the optimizer.

        A batch larger than :data:`PROGRESS_CHUNK` is predicted in steps of that size, reporting progress to the
        logger (INFO) and to :attr:`progress` after each.
        """
        texts = list(texts)
        if len(texts) <= PROGRESS_CHUNK:
            return clean(self.view(self.predictor.predict(texts)))
        started, parts = time.perf_counter(), []
        for start in range(0, len(texts), PROGRESS_CHUNK):
            parts.append(self.view(self.predictor.predict(texts[start : start + PROGRESS_CHUNK])))
            self.report("predict", min(start + PROGRESS_CHUNK, len(texts)), len(texts), started)
        quality = np.concatenate([part.quality for part in parts])
        tokens = np.concatenate([part.output_tokens for part in parts])
        return clean(Prediction(self.names, quality, tokens))

    def view(self, prediction: Prediction) -> Prediction:
        """The predictor's output in pool columns, priors predicted as their ``like`` model (:mod:`priors`)."""
        return self.columns(prediction)

    def report(self, stage: str, done: int, total: int, started: float) -> None:
        """Log a large plan's progress (INFO) and pass it to :attr:`progress`."""
        logger.info("plan: %s %d/%d queries (%.1f s)", stage, done, total, time.perf_counter() - started)
        if self.progress is not None:
            self.progress(stage, done, total)

    def prepare(self, queries: Sequence[Any]) -> tuple[list[Message], ...]:
        """Normalize a batch of queries to message lists, checking the batch is a non-empty sequence."""
        if isinstance(queries, (str, Mapping)) or not isinstance(queries, Sequence):
            raise InputError(
                f"plan takes a sequence of queries, got {type(queries).__name__}; wrap a single prompt in a list"
            )
        if len(queries) == 0:
            raise InputError("the batch is empty: give at least one query")
        return tuple(normalize(query, i) for i, query in enumerate(queries))

    def plan(
        self,
        queries: Sequence[Any],
        min_quality: float | None,
        capacity: Capacity = None,
        options: Mapping[str, Any] = {},
        *,
        budget: float | None = None,
        confidence: float | None = None,
    ) -> PlannedBatch:
        """Plan a batch; ``options`` are the LiteLLM options it will be sent with (they decide its needs).

        Give ``min_quality`` (the cheapest plan reaching it) or ``budget`` (the best plan costing at most that
        many USD in total), not both; ``confidence`` asks that this batch reach ``min_quality`` with that
        probability (:meth:`~eccos_core.targets.Targets.batch`).
        """
        alpha, budget = check_goal(min_quality, budget)
        confidence = check_confidence(confidence, budget)
        if confidence is not None:
            require_margin(self.targets.margin)  # before the batch is embedded
        messages = self.prepare(queries)
        needs = [needs_of(m, options) for m in messages]
        tokens = np.array([count_input_tokens(m) for m in messages], dtype=float)
        caps = resolve_capacity(capacity, self.names, [m.capacity for m in self.pool])
        prediction = self.predict([query_text(m) for m in messages])
        if budget is not None:
            return PlannedBatch(budget_policy.plan(self, prediction, tokens, budget, caps, needs), messages, caps)
        return PlannedBatch(joint.plan(self, prediction, tokens, alpha, caps, needs, confidence), messages, caps)

    def plan_call(
        self,
        query: Any,
        min_quality: float | None,
        capacity: Capacity = None,
        options: Mapping[str, Any] = {},
        *,
        policy: str = DEFAULT_POLICY,
        budget: float | None = None,
    ) -> PlannedBatch:
        """Plan one call.

        ``policy="dual"`` routes it at the price of its stream (one per ``min_quality`` or per-call ``budget``),
        which keeps the mean over the calls, and records it there; ``policy="strict"`` plans it as a batch of
        one (the call itself must reach ``min_quality`` or fit ``budget``). A ``confidence`` among ``options`` is
        refused (:func:`single_call_confidence_error`).
        """
        if "confidence" in options:
            raise single_call_confidence_error()
        policy = check_policy(policy)
        if policy == "strict":
            return self.plan([query], min_quality, capacity, options, budget=budget)
        alpha, budget = check_goal(min_quality, budget)
        caps = resolve_capacity(capacity, self.names, [m.capacity for m in self.pool])
        call = self.call_inputs(query, caps, options)
        plan = per_call.price_call(self, call.prediction, call.tokens, call.allowed, alpha, budget)
        return PlannedBatch(plan, [call.messages], caps)

    def call_inputs(
        self, query: Any, caps: Sequence[int | None], options: Mapping[str, Any] = {}, offered: np.ndarray | None = None
    ) -> CallInputs:
        """One call's messages, prompt tokens, allowed models (1×M) and prediction: what pricing it needs.

        ``offered`` (length M) narrows the models further (the LiteLLM plugin: the group's deployments); a typed
        error when none can take the call.
        """
        messages = self.prepare([query])[0]
        tokens = np.array([count_input_tokens(messages)], dtype=float)
        allowed = self.allowed(tokens, caps, [needs_of(messages, options)])
        if offered is not None:
            allowed = allowed & np.asarray(offered, dtype=bool)[None, :]
            if not allowed.any():
                raise CapabilityError("none of the offered models can take this call (context window or capabilities)")
        return CallInputs(messages, tokens, allowed, self.predict([query_text(messages)]))

    def plan_prediction(
        self,
        prediction: Prediction,
        input_tokens: Sequence[float] | np.ndarray,
        min_quality: float | None,
        capacity: Capacity = None,
        *,
        budget: float | None = None,
        confidence: float | None = None,
    ) -> RoutingPlan:
        """Plan from predictions already made (offline evaluation predicts once for many α or budgets)."""
        alpha, budget = check_goal(min_quality, budget)
        confidence = check_confidence(confidence, budget)
        tokens = np.asarray(input_tokens, dtype=float).reshape(-1)
        if len(tokens) != prediction.quality.shape[0]:
            raise InputError(
                f"input_tokens has {len(tokens)} entries for a prediction of {prediction.quality.shape[0]} queries"
            )
        if len(tokens) == 0:
            raise InputError("the batch is empty: give at least one query")
        caps = resolve_capacity(capacity, self.names, [m.capacity for m in self.pool])
        if budget is not None:
            return budget_policy.plan(self, clean(self.view(prediction)), tokens, budget, caps, None)
        return joint.plan(self, clean(self.view(prediction)), tokens, alpha, caps, None, confidence)

    # ---------------------------------------------------------------------------------------- solving
    def allowed(self, tokens: np.ndarray, caps: Sequence[int | None], needs: Sequence[Needs] | None) -> np.ndarray:
        """N×M mask of the models that can serve each query; a typed error when some query has none."""
        fits = tokens[:, None] <= self._context[None, :]
        blocked = np.flatnonzero(~fits.any(axis=1))
        if len(blocked):
            i, widest = int(blocked[0]), int(np.argmax(self._context))
            raise ContextWindowError(
                f"query {i} has {int(tokens[i])} input tokens, more than every model's context window; the "
                f"largest is {int(self._context[widest])} tokens ({self.names[widest]!r}): shorten the prompt "
                "or add a model with a longer context to the pool"
            )
        allowed = fits & np.array([cap is None or cap > 0 for cap in caps])[None, :]
        for i, need in enumerate(needs or ()):
            lacking = [m.missing(need) for m in self.pool]
            allowed[i] &= np.array([not lack for lack in lacking])
            if need.describe() and not allowed[i].any():
                detail = "; ".join(
                    f"{m.name} lacks {', '.join(lack)}" for m, lack in zip(self.pool, lacking, strict=False) if lack
                )
                raise CapabilityError(
                    f"query {i} needs {', '.join(need.describe())} and no pool model can serve it ({detail}); "
                    "add a model that can, or set its supports_* / max_output_tokens in the models file"
                )
        return allowed

    def assemble(
        self,
        index: np.ndarray,
        prediction: Prediction,
        tokens: np.ndarray,
        cost: np.ndarray,
        allowed: np.ndarray,
        caps: Sequence[int | None],
        chains: Sequence[tuple[str, ...]],
        status: SolveStatus,
        message: str,
        solver: str,
        *,
        min_quality: float,
        target: float,
        budget: float | None = None,
        confidence: float | None = None,
        margin: float | None = None,
    ) -> RoutingPlan:
        """The :class:`RoutingPlan` of a solved batch: one :class:`QueryPlan` per query, in input order."""
        quality = prediction.quality
        rows = np.arange(len(index))
        entries = tuple(
            QueryPlan(
                index=i,
                model=self.names[j],
                p_success=float(quality[i, j]),
                output_tokens=float(prediction.output_tokens[i, j]),
                cost=float(cost[i, j]),
                input_tokens=int(tokens[i]),
                chain=chains[i],
                allowed=tuple(n for n, ok in zip(self.names, allowed[i], strict=False) if ok),
                status=status,
                message=message,
                solver=solver,
                batch_size=len(index),
                min_quality=min_quality,
                budget=budget,
                confidence=confidence,
                margin=margin,
                prior=self.priors.get(self.names[j]),
                length=self.columns.length_source(self.names[j]),
            )
            for i, j in zip(rows.tolist(), index.tolist(), strict=True)
        )
        return RoutingPlan(
            queries=entries,
            min_quality=min_quality,
            target_quality=target,
            expected_quality=float(quality[rows, index].mean()),
            expected_cost=float(cost[rows, index].sum()),
            status=status,
            message=message,
            solver=solver,
            budget=budget,
            caps=dict(zip(self.names, caps, strict=True)),
            confidence=confidence,
            margin=margin,
        )

    def solver_error(self, exc: CapacityError) -> CapacityError:
        """The optimizer's cap error with its columns named: it speaks in columns, the caller knows names."""
        columns = ", ".join(f"{j}={name}" for j, name in enumerate(self.names))
        return CapacityError(f"{exc} (model columns: {columns})")


def check_goal(min_quality: Any, budget: Any) -> tuple[float | None, float | None]:
    """Exactly one of ``min_quality`` (checked to [0, 1]) and ``budget`` (finite USD ≥ 0)."""
    if (min_quality is None) == (budget is None):
        raise InputError(
            "give either min_quality (the mean success to reach, cheapest first) or budget (USD to spend, best "
            f"quality first), not {'both' if budget is not None else 'neither'}"
        )
    if budget is None:
        return check_alpha(min_quality), None
    if isinstance(budget, bool) or not isinstance(budget, numbers.Real) or not math.isfinite(float(budget)):
        raise InputError(f"budget must be a finite number of USD, got {budget!r}")
    if float(budget) < 0:
        raise InputError(f"budget must be at least 0 USD, got {budget!r}")
    return None, float(budget)


def clean_tokens(tokens: np.ndarray) -> np.ndarray:
    """Output-token predictions safe to price: finite and ≥ 0."""
    return np.clip(np.nan_to_num(np.asarray(tokens, dtype=float), nan=0.0, posinf=0.0), 0.0, None)


def streams_namespace(targets: Targets, columns: PoolView) -> str:
    """Key prefix of a router's per-call streams: what its prices depend on (targets, models, priors, probes)."""
    parts = {"targets": targets.to_dict(), "columns": columns.fingerprint()}
    return prices_namespace(parts, [m.name for m in columns.pool])


def clean(prediction: Prediction) -> Prediction:
    """Predictions safe for the optimizer: qualities in [0, 1], output tokens finite and ≥ 0."""
    quality = np.clip(np.nan_to_num(np.asarray(prediction.quality, dtype=float), nan=0.0), 0.0, 1.0)
    return Prediction(prediction.models, quality, clean_tokens(prediction.output_tokens))


__all__ = [
    "POLICIES",
    "Capacity",
    "PlannedBatch",
    "Planner",
    "QueryPlan",
    "RoutingPlan",
    "check_goal",
    "check_policy",
    "clean",
    "clean_tokens",
    "single_call_confidence_error",
]
