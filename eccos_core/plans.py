"""What a plan is: one :class:`QueryPlan` per query inside a batch's :class:`RoutingPlan` (no logic)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from eccos_core.optimize import SolveStatus


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
    prior: str | None = None
    """When ``model`` has no logs of its own: the fitted model it was predicted as (``ModelSpec.like``), or
    ``"probe of N"`` for a model joined from N graded probe answers (``Router.onboard``)."""
    length: str | None = None
    """Where ``output_tokens`` comes from when no log of ``model`` gives it: ``"calls (N)"`` (its own N answers),
    ``"probe"``, ``"similar models"``, ``"pool calls (N)"`` or ``"default"`` (:mod:`eccos_core.lengths`);
    ``None``: its logs."""

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


__all__ = ["QueryPlan", "RoutingPlan"]
