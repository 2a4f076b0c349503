"""Instrumentation events: one per routing decision, one per routed answer.

Both go through ``llama_index.core.instrumentation.get_dispatcher("llamaindex_eccos...")``, so any
``BaseEventHandler`` on the root dispatcher (Arize Phoenix, Langfuse, your own) sees them, with the ``span_id``
of the LLM call they belong to.

Example:
    >>> from llama_index.core.instrumentation import get_dispatcher
    >>> from llama_index.core.instrumentation.event_handlers import BaseEventHandler
    >>> class Costs(BaseEventHandler):
    ...     total: float = 0.0
    ...     def handle(self, event, **kwargs):
    ...         if isinstance(event, ECCOSResponseEvent):
    ...             self.total += event.cost
    >>> get_dispatcher().add_event_handler(Costs())  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from llama_index.core.bridge.pydantic import Field
from llama_index.core.instrumentation.events import BaseEvent


class ECCOSRoutingEvent(BaseEvent):
    """The router chose a model for one call, before anything was sent."""

    model: str = Field(description="Pool name of the model the call is planned for.")
    p_success: float = Field(description="Predicted probability that this model answers well.")
    predicted_cost: float = Field(description="Predicted USD cost on this model (prompt + predicted completion).")
    predicted_output_tokens: float = Field(description="Predicted completion tokens on this model.")
    input_tokens: int = Field(description="Prompt tokens of the call.")
    min_quality: float = Field(description="Mean success the call's batch had to reach.")
    status: str = Field(description="Plan status: optimal, feasible or quality_unreachable.")
    message: str = Field(default="", description="Why a target was out of reach, or empty.")
    chain: list[str] = Field(default_factory=list, description="Fallback models, in the order they would be tried.")
    batch_index: int = Field(description="Position of the call in its batch (0 for a single call).")
    batch_size: int = Field(description="Calls planned together with this one (1 for a single call).")
    plan: dict[str, Any] = Field(default_factory=dict, description="The whole decision, ``QueryPlan.to_dict()``.")

    @classmethod
    def class_name(cls) -> str:
        """Class name."""
        return "ECCOSRoutingEvent"


class ECCOSResponseEvent(BaseEvent):
    """A routed call was answered: which model answered, what it cost, which fallbacks were taken."""

    model: str = Field(description="Pool name of the model that answered (differs from planned after a fallback).")
    planned_model: str = Field(description="Pool name of the model the router planned.")
    cost: float = Field(description="Actual USD cost of the answer.")
    input_tokens: int = Field(description="Prompt tokens billed.")
    output_tokens: int = Field(description="Completion tokens billed.")
    fallbacks: list[dict[str, str]] = Field(
        default_factory=list, description="Failed attempts before the answer: model, error_type, error."
    )
    metadata: dict[str, Any] = Field(default_factory=dict, description="``RoutedResponse.to_metadata()``.")

    @classmethod
    def class_name(cls) -> str:
        """Class name."""
        return "ECCOSResponseEvent"


__all__ = ["ECCOSResponseEvent", "ECCOSRoutingEvent"]
