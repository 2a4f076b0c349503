"""How ECCOSLLM routes one call: its settings, its plan (its own, or its batch's share), what the pool can serve.

A call's kwargs are split into routing settings (``min_quality``, ``confidence``, ``capacity``, ``policy``; the
LLM's fields fill the gaps) and the LiteLLM options it is sent with. A call made by a batch helper takes its
share of the batch's plan from :data:`PLANNED` (set by ``llamaindex_eccos.batch``); any other call is planned on
its own by ``Router.plan_call`` under its ``policy``.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llama_index.core.base.llms.types import LLMMetadata
from llama_index.core.constants import DEFAULT_CONTEXT_WINDOW

from llamaindex_eccos.messages import OpenAIMessage

if TYPE_CHECKING:
    from eccos_core.dispatch import Ledger
    from eccos_core.planner import QueryPlan
    from eccos_core.pricing import ModelSpec
    from eccos_core.router import Router
    from llamaindex_eccos.base import ECCOSLLM

_UNSET: Any = object()

NOT_SENT = ("formatted", "verbose", "stream")
"""Call kwargs LlamaIndex uses itself; never passed on to LiteLLM."""
SENT_FIELDS = ("temperature", "max_tokens", "timeout")
"""ECCOSLLM fields sent with every call (when set) as LiteLLM options of the same name."""


@dataclass(frozen=True)
class Planned:
    """One batch item's share of its batch's plan: its entry and the batch's cap ledger."""

    entry: QueryPlan
    ledger: Ledger | None


PLANNED: ContextVar[Planned | None] = ContextVar("llamaindex_eccos_planned", default=None)
"""Set by the batch helpers around each item's call, so the call sends the batch's plan."""


@dataclass(frozen=True)
class Settings:
    """A call's routing settings (fields filled in) and the LiteLLM options it is sent with."""

    min_quality: Any
    confidence: Any
    capacity: Any
    policy: str
    options: dict[str, Any]


@dataclass(frozen=True)
class Call:
    """A call ready to send: where it goes, what is sent and with which LiteLLM options."""

    router: Router
    entry: QueryPlan
    messages: list[OpenAIMessage]
    options: dict[str, Any]
    ledger: Ledger | None = None


def split(llm: ECCOSLLM, kwargs: dict[str, Any]) -> Settings:
    """A call's kwargs as routing settings and LiteLLM options, the LLM's fields filling the gaps."""
    from eccos_core.validation import check_policy, pin_capacity

    kwargs = dict(kwargs)
    min_quality = kwargs.pop("min_quality", _UNSET)  # an explicit None is refused by the core, as at every door
    confidence = kwargs.pop("confidence", None)
    capacity = kwargs.pop("capacity", None)
    policy = kwargs.pop("policy", None)
    pinned = kwargs.pop("model", None)
    if capacity is None:
        capacity = llm.capacity
    if pinned is not None:  # model= pins the call to one pool model, as in LangChain
        capacity = pin_capacity(llm.get_router().planner.names, capacity, pinned)
    options = dict(llm.additional_kwargs)
    for name in SENT_FIELDS:
        if getattr(llm, name) is not None:
            options[name] = getattr(llm, name)
    options.update({k: v for k, v in kwargs.items() if k not in NOT_SENT and v is not None})
    return Settings(
        llm.min_quality if min_quality is _UNSET else min_quality,
        confidence,
        capacity,
        llm.policy if policy is None else check_policy(policy),
        options,
    )


def route(router: Router, messages: list[OpenAIMessage], settings: Settings) -> Call:
    """Route one call as ``Router.complete`` does (under ``settings.policy``), or take its batch's plan."""
    planned = PLANNED.get()
    if planned is not None:
        return Call(router, planned.entry, messages, settings.options, planned.ledger)
    if settings.confidence is not None:  # a guarantee on a batch's mean: refused for one call, as everywhere
        from eccos_core.validation import single_call_confidence_error

        raise single_call_confidence_error()
    plan = router.plan_call(
        messages, settings.min_quality, policy=settings.policy, capacity=settings.capacity, **settings.options
    )
    return Call(router, plan.queries[0], messages, settings.options)


def pool_metadata(pool: Sequence[ModelSpec], context_window: int | None, max_tokens: int | None) -> LLMMetadata:
    """What a pool can serve, as LlamaIndex sizes prompts by it (see ``ECCOSLLM.metadata``)."""
    windows = [m.max_input_tokens for m in pool if m.max_input_tokens]
    outputs = [m.max_output_tokens for m in pool if m.max_output_tokens]
    window = context_window or (max(windows) if windows else DEFAULT_CONTEXT_WINDOW)
    num_output = max_tokens or (min(max(outputs), window // 4) if outputs else -1)
    return LLMMetadata(
        context_window=window,
        num_output=num_output,
        is_chat_model=True,
        is_function_calling_model=any(m.supports_tools for m in pool),
        model_name="eccos",
    )


__all__ = ["NOT_SENT", "PLANNED", "Call", "Planned", "Settings", "pool_metadata", "route", "split"]
