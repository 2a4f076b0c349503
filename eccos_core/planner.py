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
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from eccos_core.calibration import QualityGuard
from eccos_core.dual import Decision, DualPrices
from eccos_core.errors import CapabilityError, CapacityError, ContextWindowError, InputError
from eccos_core.guarantee import BatchMargin
from eccos_core.messages import Message, Needs, count_input_tokens, needs_of, normalize, query_text
from eccos_core.optimize import SolveStatus, solve
from eccos_core.optimize.budget import solve_budget
from eccos_core.predictors.base import Prediction, Predictor
from eccos_core.pricing import ModelSpec, cost_matrix
from eccos_core.targets import BatchGoal, Targets, require_margin
from eccos_core.validation import (
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

"""How a single call is routed: ``"dual"`` keeps the mean over the calls (a price on quality), ``"strict"``
makes every call reach ``min_quality`` (or fit ``budget``) on its own."""

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``: called by a large plan as it goes (stage ``"predict"``, then ``"solve"``)."""

PROGRESS_CHUNK = 2048
"""Queries predicted per step of a large batch; between steps the plan reports progress. The encoder batches
within a step anyway, so the steps cost nothing measurable (at ~6 ms per query on 2 CPU cores a step takes
about 12 s, and a 50,000-query plan about five minutes, most of it embedding)."""


@dataclass(frozen=True)
class QueryPlan:
    """Where one query goes, what the router predicted for it there, and where it goes if that fails."""

    index: int
    """Position of the query in its batch."""
    model: str
    """Pool name of the chosen model."""
    p_success: float
    """Predicted probability that the chosen model answers well."""
    output_tokens: float
    """Predicted completion tokens on the chosen model."""
    cost: float
    """Predicted USD cost on the chosen model (prompt + predicted completion)."""
    input_tokens: int
    """Prompt tokens, counted with :data:`~eccos_core.messages.TOKENIZER_MODEL`'s tokenizer."""
    chain: tuple[str, ...]
    """Fallbacks in the order they are tried when the chosen model's provider fails."""
    allowed: tuple[str, ...]
    """Every pool model that could serve this query (window, capabilities, caps)."""
    status: SolveStatus
    """Status of the batch's plan (see :attr:`RoutingPlan.status`)."""
    message: str
    """The batch plan's explanation (why a target was unreachable, a gap), or ``""``."""
    solver: str
    """Optimizer method that produced the batch's plan."""
    batch_size: int
    """Queries planned together with this one."""
    min_quality: float
    """The requested mean success of the batch (0.0 in budget mode)."""
    budget: float | None = None
    """Budget mode: the batch's total budget (USD), or for a single call priced per call the budget per call."""
    price: float | None = None
    """Per-call routing: the price λ (USD per unit of p(success)) the call was routed at; ``None`` for a batch
    plan, or when the target was out of reach and the call went to its best model."""
    confidence: float | None = None
    """The batch's requested confidence (see :attr:`RoutingPlan.confidence`), or ``None``."""
    margin: float | None = None
    """The realized-success margin the batch was routed with for its confidence (see :attr:`RoutingPlan.margin`)."""

    @classmethod
    def direct(cls, model: str, index: int = 0) -> QueryPlan:
        """A plan that sends to ``model`` alone, with no prediction and no fallback (collection, pinned calls)."""
        return cls(
            index=index,
            model=model,
            p_success=float("nan"),
            output_tokens=float("nan"),
            cost=float("nan"),
            input_tokens=0,
            chain=(),
            allowed=(model,),
            status=SolveStatus.OPTIMAL,
            message="sent to a fixed model, not routed",
            solver="direct",
            batch_size=1,
            min_quality=0.0,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (for response metadata and traces)."""
        out = asdict(self)
        out["status"] = self.status.value
        out["chain"] = list(self.chain)
        out["allowed"] = list(self.allowed)
        return out


@dataclass(frozen=True)
class RoutingPlan:
    """The assignment of a whole batch, with what the optimizer could and could not promise."""

    queries: tuple[QueryPlan, ...]
    """One entry per query, in the order given."""
    min_quality: float
    """The caller's requested mean success."""
    target_quality: float
    """The mean predicted p(success) the optimizer had to reach: the quality guard's correction of
    ``min_quality`` for the optimizer's selection bias."""
    expected_quality: float
    """Mean predicted p(success) of the plan."""
    expected_cost: float
    """Sum of predicted USD costs of the plan."""
    status: SolveStatus
    """``optimal``; ``feasible``; or ``quality_unreachable`` (the plan maximises quality instead; the message says
    why).

    ``feasible`` means the plan meets the target quality (and every cap) but is not proven the cheapest that
    does: the optimizer stopped at the router's ``time_limit`` (as it can on very large batches with binding
    caps) or used a heuristic, and returned the best plan found. Its cost is at most ``gap`` above the optimum,
    where the message gives the gap when the solver bounded it. Every promise of the plan holds; only its
    optimality is unproven. Raise ``time_limit`` for a proof."""
    message: str
    """The planner's explanation, e.g. the best reachable quality when the target is out of reach."""
    solver: str
    """Optimizer method that produced the plan."""
    budget: float | None = None
    """Budget mode: the total budget (USD) of a batch, or the budget per call of a single call priced per call."""
    caps: Mapping[str, int | None] = field(default_factory=dict)
    """Per-model caps this batch was planned under (``None`` = no cap); dispatch keeps fallbacks within them."""
    confidence: float | None = None
    """Per-batch guarantee: the requested probability that *this* batch's realized mean success reaches
    ``min_quality`` (queries exchangeable with the routing logs); ``None``: ``min_quality`` holds on average
    over batches."""
    margin: float | None = None
    """With :attr:`confidence`: the realized-success margin for a batch of this size
    (:meth:`eccos_core.guarantee.BatchMargin.margin`); the batch was routed at the guard's target for
    ``min_quality + margin``. ``None`` without a confidence."""

    @property
    def models(self) -> list[str]:
        """Chosen model names, one per query, in order."""
        return [q.model for q in self.queries]


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
    """Decides where each query of a batch goes; shared by the router, the framework shells and the proxy."""

    def __init__(
        self,
        pool: Sequence[ModelSpec],
        predictor: Predictor,
        targets: Targets,
        *,
        method: str = "auto",
        time_limit: float = 10.0,
        progress: Progress | None = None,
        dual: DualPrices | None = None,
    ) -> None:
        self.targets = targets
        """Guard, per-batch margin and per-call curve: how ``min_quality`` becomes a target (:mod:`targets`)."""
        self.dual = dual if dual is not None else DualPrices(targets.curve)
        """Per-call prices: one online stream per ``min_quality`` or per-call budget, over the fitted curve."""
        self.pool = tuple(pool)
        self.names = tuple(m.name for m in self.pool)
        self.predictor = predictor
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
        self.targets = targets
        self.dual = self.dual.with_curve(targets.curve)

    def predict(self, texts: Sequence[str]) -> Prediction:
        """The predictor's output for query texts, columns in pool order, safe for the optimizer.

        A batch larger than :data:`PROGRESS_CHUNK` is predicted in steps of that size, reporting progress to the
        logger (INFO) and to :attr:`progress` after each.
        """
        texts = list(texts)
        if len(texts) <= PROGRESS_CHUNK:
            return clean(self.predictor.predict(texts).select(self.names))
        started, parts = time.perf_counter(), []
        for start in range(0, len(texts), PROGRESS_CHUNK):
            parts.append(self.predictor.predict(texts[start : start + PROGRESS_CHUNK]).select(self.names))
            self._report("predict", min(start + PROGRESS_CHUNK, len(texts)), len(texts), started)
        quality = np.concatenate([part.quality for part in parts])
        tokens = np.concatenate([part.output_tokens for part in parts])
        return clean(Prediction(self.names, quality, tokens))

    def _report(self, stage: str, done: int, total: int, started: float) -> None:
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
            return PlannedBatch(self.solve_budget(prediction, tokens, budget, caps, needs), messages, caps)
        return PlannedBatch(self.solve(prediction, tokens, alpha, caps, needs, confidence), messages, caps)

    def plan_call(
        self,
        query: Any,
        min_quality: float | None,
        capacity: Capacity = None,
        options: Mapping[str, Any] = {},
        *,
        policy: str = "dual",
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
        plan = self.price_call(call.prediction, call.tokens, call.allowed, alpha, budget)
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
            return self.solve_budget(clean(prediction.select(self.names)), tokens, budget, caps, None)
        return self.solve(clean(prediction.select(self.names)), tokens, alpha, caps, None, confidence)

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

    def solve(
        self,
        prediction: Prediction,
        tokens: np.ndarray,
        alpha: float,
        caps: Sequence[int | None],
        needs: Sequence[Needs] | None,
        confidence: float | None = None,
    ) -> RoutingPlan:
        """The optimizer's plan for a batch whose predictions, tokens and needs are known."""
        goal = self.targets.batch(alpha, len(tokens), confidence)
        target = goal.target  # out of the guard's measured range: the best assignment the caps allow
        allowed = self.allowed(tokens, caps, needs)
        quality = prediction.quality
        cost = cost_matrix(self.pool, tokens, prediction.output_tokens)
        started = time.perf_counter()
        large = len(tokens) > PROGRESS_CHUNK
        if large:
            self._report("solve", 0, len(tokens), started)
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
        except CapacityError as exc:
            raise self._solver_error(exc) from None
        if large:
            self._report("solve", len(tokens), len(tokens), started)
        index = np.asarray(assignment.model_index, dtype=int)
        status, message = self._status(assignment.status, assignment.message, goal)
        chains = self._chains(index, quality, cost, allowed, caps, target)
        plan = self._assemble(
            index, prediction, tokens, cost, allowed, caps, chains, status, message, assignment.method,
            min_quality=alpha, target=target, confidence=goal.confidence, margin=goal.margin,
        )  # fmt: skip
        entries = plan.queries
        logger.debug(
            "planned %d queries at min_quality %.3f (internal target %.3f): %s, quality %.3f, cost $%.6g via %s",
            len(entries),
            alpha,
            target,
            status.value,
            plan.expected_quality,
            plan.expected_cost,
            plan.solver,
        )
        return plan

    def solve_budget(
        self,
        prediction: Prediction,
        tokens: np.ndarray,
        budget: float,
        caps: Sequence[int | None],
        needs: Sequence[Needs] | None,
    ) -> RoutingPlan:
        """The best plan (mean predicted quality) whose total predicted cost fits ``budget`` USD."""
        allowed = self.allowed(tokens, caps, needs)
        quality = prediction.quality
        cost = cost_matrix(self.pool, tokens, prediction.output_tokens)
        try:
            found = solve_budget(
                cost,
                quality,
                budget,
                list(caps) if any(c is not None for c in caps) else None,
                allowed=None if allowed.all() else allowed,
                time_limit=self.time_limit,
            )
        except CapacityError as exc:
            raise self._solver_error(exc) from None
        index = np.asarray(found.model_index, dtype=int)
        message = found.message
        if found.status is SolveStatus.FEASIBLE and not message:
            message = f"within {found.gap:.2e} of the best mean quality the budget buys (not proven optimal)"
        if found.status is SolveStatus.QUALITY_UNREACHABLE:
            logger.info("%s", message)
        chains = self._budget_chains(index, quality, cost, allowed, caps, budget)
        return self._assemble(
            index, prediction, tokens, cost, allowed, caps, chains, found.status, message, found.method,
            min_quality=0.0, target=0.0, budget=budget,
        )  # fmt: skip

    def _assemble(
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

    def _solver_error(self, exc: CapacityError) -> CapacityError:
        """The optimizer's cap error with its columns named: it speaks in columns, the caller knows names."""
        columns = ", ".join(f"{j}={name}" for j, name in enumerate(self.names))
        return CapacityError(f"{exc} (model columns: {columns})")

    def price_call(
        self,
        prediction: Prediction,
        tokens: np.ndarray,
        allowed: np.ndarray,
        alpha: float | None,
        budget: float | None,
    ) -> RoutingPlan:
        """Route one call at its stream's price (per ``min_quality``, or per-call ``budget``) and record it."""
        quality = prediction.quality
        cost = cost_matrix(self.pool, tokens, prediction.output_tokens)
        if budget is None:
            assert alpha is not None
            target, reachable = self.targets.per_call(alpha)
            decision = self.dual.quality_stream(alpha, target).route(quality[0], cost[0], allowed[0])
        else:
            reachable = True
            decision = self.dual.budget_stream(budget).route(quality[0], cost[0], allowed[0])
        status, message = self._call_status(decision, alpha, budget, reachable)
        j = decision.model
        entry = QueryPlan(
            index=0,
            model=self.names[j],
            p_success=float(quality[0, j]),
            output_tokens=float(prediction.output_tokens[0, j]),
            cost=float(cost[0, j]),
            input_tokens=int(tokens[0]),
            chain=tuple(self.names[k] for k in decision.order[1:]),
            allowed=tuple(n for n, ok in zip(self.names, allowed[0], strict=False) if ok),
            status=status,
            message=message,
            solver="dual" if budget is None else "dual-budget",
            batch_size=1,
            min_quality=0.0 if alpha is None else alpha,
            budget=budget,
            price=decision.price if math.isfinite(decision.price) else None,
        )
        return RoutingPlan(
            queries=(entry,),
            min_quality=entry.min_quality,
            target_quality=decision.target if budget is None else 0.0,
            expected_quality=entry.p_success,
            expected_cost=entry.cost,
            status=status,
            message=message,
            solver=entry.solver,
            budget=budget,
        )

    def _call_status(
        self, decision: Decision, alpha: float | None, budget: float | None, reachable: bool
    ) -> tuple[SolveStatus, str]:
        """A per-call plan's status: what the stream's price promises, and when it cannot."""
        if budget is not None:
            if not decision.met:
                return SolveStatus.QUALITY_UNREACHABLE, (
                    f"budget ${budget:.6g} per call is below what recent calls cost on their cheapest models; "
                    "routed to the cheapest"
                )
            return SolveStatus.FEASIBLE, (
                f"priced per call at {decision.price:.6g} USD per unit of p(success): the mean predicted cost of "
                f"the calls routed with budget ${budget:.6g} stays within it, not each call's own"
            )
        if not reachable:
            best = self.targets.per_call_best
            message = (
                f"min_quality {alpha:.3f} is unreachable: on held-out training queries this router's best per-call "
                f"routing reached {best:.3f} realized success; routed the call to its highest-quality model"
            )
            logger.info("%s", message)
            return SolveStatus.QUALITY_UNREACHABLE, message
        if not decision.met:
            message = (
                f"recent calls are harder than the training queries: even on their best models their mean predicted "
                f"p(success) is below {decision.target:.3f}, the internal target for min_quality {alpha:.3f}; "
                "routed the call to its highest-quality model"
            )
            logger.info("%s", message)
            return SolveStatus.QUALITY_UNREACHABLE, message
        return SolveStatus.FEASIBLE, (
            f"priced per call at {decision.price:.6g} USD per unit of p(success): min_quality {alpha:.3f} holds for "
            "the mean of the calls routed with it, not for each call on its own (policy='strict' for that)"
        )

    def _status(self, status: SolveStatus, message: str, goal: BatchGoal) -> tuple[SolveStatus, str]:
        """The plan's status and a message that names the user's ``min_quality`` and the internal target apart."""
        alpha, target = goal.alpha, goal.target
        asked = f"min_quality {alpha:.3f}"
        if goal.confidence is not None:
            asked += (
                f" at confidence {goal.confidence:.3g} (a margin of {goal.margin:.3f} for a batch of "
                f"{goal.batch_size}: {min(1.0, alpha + (goal.margin or 0.0)):.3f} realized success)"
            )
        refused = "; the guarantee cannot be given" if goal.confidence is not None else ""
        if not goal.reachable:
            message = (
                f"{asked} is unreachable: on held-out training queries this router's best routing reached "
                f"{self.targets.guard.max_quality:.3f} realized success{refused}; routed every query to the "
                "highest-quality model the caps allow"
            )
            status = SolveStatus.QUALITY_UNREACHABLE
        elif status is SolveStatus.QUALITY_UNREACHABLE:
            message = (
                f"{asked} needs a mean predicted p(success) of {target:.3f} on this batch (the guard's correction "
                f"for selection bias), which its models cannot reach{refused}; routed to the best they can: "
                f"{message}"
            )
        if status is SolveStatus.QUALITY_UNREACHABLE:
            logger.info("%s", message)
        elif status is SolveStatus.FEASIBLE:
            proof = f" ({message})" if message else ""
            message = (
                f"meets the target {target:.3f} but is not proven the cheapest plan that does: the optimizer stopped "
                f"at its time limit ({self.time_limit:g} s) or used a heuristic{proof}"
            )
            logger.info("%s", message)
        return status, message

    def _chains(
        self,
        index: np.ndarray,
        quality: np.ndarray,
        cost: np.ndarray,
        allowed: np.ndarray,
        caps: Sequence[int | None],
        target: float,
    ) -> list[tuple[str, ...]]:
        """Each query's fallbacks, fixed at plan time.

        Allowed models with room under their caps: cheapest first among those that keep the batch's mean
        predicted quality on target, then the rest by quality.
        """
        n = len(index)
        counts = np.bincount(index, minlength=len(self.pool))
        room = np.array([cap is None or counts[j] < cap for j, cap in enumerate(caps)])
        rows = np.arange(n)
        total = float(quality[rows, index].sum())
        chains = []
        for i in range(n):
            others = total - quality[i, index[i]]
            candidates = [j for j in np.flatnonzero(allowed[i] & room) if j != index[i]]
            keeps = [j for j in candidates if (others + quality[i, j]) / n >= target - 1e-9]
            rest = [j for j in candidates if j not in keeps]
            ordered = sorted(keeps, key=lambda j: (cost[i, j], -quality[i, j]))
            ordered += sorted(rest, key=lambda j: (-quality[i, j], cost[i, j]))
            chains.append(tuple(self.names[j] for j in ordered))
        return chains

    def _budget_chains(
        self,
        index: np.ndarray,
        quality: np.ndarray,
        cost: np.ndarray,
        allowed: np.ndarray,
        caps: Sequence[int | None],
        budget: float,
    ) -> list[tuple[str, ...]]:
        """Each query's fallbacks in budget mode.

        Allowed models with room under their caps: best first among those that keep the batch within budget,
        then the rest, cheapest first.
        """
        n = len(index)
        counts = np.bincount(index, minlength=len(self.pool))
        room = np.array([cap is None or counts[j] < cap for j, cap in enumerate(caps)])
        rows = np.arange(n)
        total = float(cost[rows, index].sum())
        chains = []
        for i in range(n):
            others = total - cost[i, index[i]]
            candidates = [j for j in np.flatnonzero(allowed[i] & room) if j != index[i]]
            keeps = [j for j in candidates if others + cost[i, j] <= budget * (1 + 1e-12)]
            rest = [j for j in candidates if j not in keeps]
            ordered = sorted(keeps, key=lambda j: (-quality[i, j], cost[i, j]))
            ordered += sorted(rest, key=lambda j: (cost[i, j], -quality[i, j]))
            chains.append(tuple(self.names[j] for j in ordered))
        return chains


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
