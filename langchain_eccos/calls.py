"""A ``ChatECCOS`` call as the router sees it, and the two ways it is planned: on its own, or with its batch.

:func:`build_request` splits a call's kwargs into routing settings (``min_quality``, ``confidence``, ``capacity``,
``policy``, ``model``; none of them reaches a provider) and the LiteLLM options sent with it, on top of the
model's own fields. A call planned on its own goes through ``RouterSettings.plan_single`` (:func:`plan_alone`,
as ``Router.complete`` routes it); a batch's calls through one ``Router.plan`` (:func:`plan_joint`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from langchain_core.messages import BaseMessage

from eccos_core.validation import check_policy, single_call_confidence_error
from langchain_eccos.messages import OpenAIMessage, to_openai
from langchain_eccos.routing import pin_capacity

if TYPE_CHECKING:
    from eccos_core.planner import QueryPlan, RoutingPlan
    from langchain_eccos.chat_models import ChatECCOS

_NOT_SENT = ("ls_structured_output_format", "structured_output_format", "stream", "stop")
"""Call kwargs that LangChain uses itself, or that arrive separately (``stop``); never sent as they are."""


@dataclass(frozen=True)
class Request:
    """One call as the router sees it: OpenAI messages, the routing settings and the LiteLLM options."""

    messages: list[OpenAIMessage]
    min_quality: float
    capacity: dict[str, int | None] | None
    options: dict[str, Any]
    confidence: float | None = None
    policy: str | None = None
    """The call's ``policy=`` (``None``: the field's); batches ignore it (they are planned jointly)."""


def _options(model: ChatECCOS, stop: list[str] | None, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The model's call options, then the call's own ``stop`` and kwargs on top."""
    options = dict(model.model_kwargs)
    for key, value in (
        ("temperature", model.temperature),
        ("max_tokens", model.max_tokens),
        ("timeout", model.timeout),
        ("num_retries", model.max_retries),
    ):
        if value is not None:
            options[key] = value
    stop = stop if stop is not None else model.stop
    if stop:
        options["stop"] = list(stop)
    options.update({k: v for k, v in kwargs.items() if k not in _NOT_SENT})
    return options


def build_request(
    model: ChatECCOS, messages: Sequence[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
) -> Request:
    """One call of ``model``: its kwargs split into routing settings and LiteLLM options.

    Routing settings: ``min_quality``, ``confidence`` (batches only), ``capacity``, ``policy`` (single calls)
    and ``model``; none of them reaches a provider.
    """
    options = _options(model, stop, kwargs)
    min_quality = options.pop("min_quality", model.min_quality)
    confidence = options.pop("confidence", None)
    capacity = options.pop("capacity", model.capacity)
    policy = options.pop("policy", None)
    if policy is not None:
        check_policy(policy)
    pinned = options.pop("model", None)
    if pinned is not None:
        capacity = pin_capacity(model.get_router(), capacity, pinned)
    return Request(to_openai(messages), min_quality, capacity, options, confidence, policy)


def plan_alone(model: ChatECCOS, request: Request) -> QueryPlan:
    """Route one call as ``Router.complete`` does (under the model's ``policy``); ``confidence`` is refused."""
    if request.confidence is not None:
        raise single_call_confidence_error()
    return model.plan_single(request.messages, request.min_quality, request.capacity, request.policy, request.options)


def plan_joint(model: ChatECCOS, requests: Sequence[Request]) -> RoutingPlan:
    """One joint plan for a batch's requests (they share settings and options)."""
    first = requests[0]
    return model.get_router().plan(
        [r.messages for r in requests],
        first.min_quality,
        confidence=first.confidence,
        capacity=first.capacity,
        **first.options,
    )


__all__ = ["Request", "build_request", "plan_alone", "plan_joint"]
