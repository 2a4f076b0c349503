"""A ``ChatECCOS`` call as the router sees it, and the two ways it is planned: on its own, or with its batch.

:func:`build_request` splits a call's kwargs into routing settings (``min_quality``, ``confidence``, ``capacity``,
``policy``, ``model``; none of them reaches a provider) and the LiteLLM options sent with it, on top of the
model's own fields. A call planned on its own goes through ``RouterSettings.plan_single`` (:func:`plan_alone`,
as ``Router.complete`` routes it); a batch's calls through one ``Router.plan`` (:func:`plan_joint`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from langchain_core.messages import BaseMessage

from eccos_core.messages import check_stop
from eccos_core.validation import check_policy, pin_capacity, single_call_confidence_error
from langchain_eccos.messages import OpenAIMessage, to_openai

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
        options["stop"] = check_stop(stop)
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
        capacity = pin_capacity(model.get_router().planner.names, capacity, pinned)
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


NOT_CONSTRUCTOR_SETTINGS = {
    "budget": "ChatECCOS routes by min_quality; a budget is Router.plan / Router.complete's (budget=...)",
    "confidence": "confidence is a guarantee on a batch: give it per batch, .batch(..., confidence=0.9) or "
    ".bind(confidence=0.9)",
}
"""Constructor kwargs eccos owns elsewhere: refused with where they belong, never sent to a provider."""


def sort_constructor_kwargs(cls: type, values: Any) -> Any:
    """Unknown constructor kwargs go to ``model_kwargs`` with a warning, as LangChain's chat models do.

    ``ChatECCOS(top_p=0.9)`` becomes ``model_kwargs={"top_p": 0.9}`` (LiteLLM options for whichever model
    answers); eccos settings that are not constructor fields (:data:`NOT_CONSTRUCTOR_SETTINGS`) are a
    ``ValueError`` naming where they belong.
    """
    from langchain_core.utils.utils import _build_model_kwargs, get_pydantic_field_names

    from eccos_core.redaction import is_secret_param

    if not isinstance(values, dict):
        return values
    for name, where in NOT_CONSTRUCTOR_SETTINGS.items():
        if name in values or name in (values.get("model_kwargs") or {}):
            raise ValueError(f"{name}= is not a ChatECCOS setting: {where}")
    fields = get_pydantic_field_names(cls)
    values = dict(values)
    for name in [k for k in values if k not in fields and is_secret_param(k)]:
        # one key for every provider of the pool would leak it to all of them, and model_kwargs is serialized
        warnings.warn(
            f"ChatECCOS ignores {name}=: each pool model carries its own credential (models=[{{..., "
            f"'litellm_params': {{'{name}': ...}}}}] or the provider's environment variable)",
            stacklevel=4,
        )
        values.pop(name)
    return _build_model_kwargs(values, fields)


__all__ = ["Request", "build_request", "plan_alone", "plan_joint"]
