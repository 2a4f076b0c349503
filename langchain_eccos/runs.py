"""How a query planned before its LangChain run starts reaches the run that sends it, and how each decision is told.

``ChatECCOS``'s public entry points (``invoke``, ``stream``, ``batch`` and their async twins) plan first, then run
LangChain's own machinery with the plan, a :class:`Route`, in a context variable (:func:`routed`) that
``_generate`` / ``_stream`` take (:func:`take`). Planning before the run starts is what lets the run's tracing
name the routed model (:func:`waiting`); a call that arrives without a plan (``generate()``, a cache miss inside
another path) is planned where it is sent. Each routing decision is then told as one ``"eccos_route"`` custom
callback event on the call's own run (:func:`announce`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForLLMRun,
    CallbackManager,
    CallbackManagerForLLMRun,
    adispatch_custom_event,
    dispatch_custom_event,
)
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import ensure_config
from langchain_core.utils.uuid import uuid7

from langchain_eccos.calls import Request, build_request, plan_alone
from langchain_eccos.messages import input_messages
from langchain_eccos.routing import ROUTE_EVENT

if TYPE_CHECKING:
    from eccos_core.dispatch import Ledger
    from eccos_core.planner import QueryPlan
    from langchain_eccos.chat_models import ChatECCOS

logger = logging.getLogger("eccos.langchain")


@dataclass(frozen=True)
class Route:
    """A query planned before its callback run starts, waiting for ``_generate`` / ``_stream`` to send it."""

    owner: int
    """``id()`` of the ChatECCOS that planned it (another instance never takes it)."""
    entry: QueryPlan
    ledger: Ledger | None
    """The batch's ledger (caps left for fallbacks); ``None`` for a call planned on its own."""
    config: RunnableConfig
    """The call's config; its ``run_id`` is the id the call's run will get."""


_ROUTE: ContextVar[Route | None] = ContextVar("langchain_eccos_route", default=None)


@contextmanager
def routed(route: Route | None) -> Iterator[None]:
    """``route`` waits in the context for the run started inside this block."""
    token = _ROUTE.set(route)
    try:
        yield
    finally:
        _ROUTE.reset(token)


def waiting(model: ChatECCOS) -> Route | None:
    """The route waiting in the context for ``model``, if any (left there)."""
    route = _ROUTE.get()
    return route if route is not None and route.owner == id(model) else None


def with_run_id(config: RunnableConfig) -> RunnableConfig:
    """``config`` with a ``run_id``, so the routing event can name the run before LangChain starts it."""
    if config.get("run_id") is None:
        config["run_id"] = uuid7()
    return config


def plan_one(
    model: ChatECCOS,
    value: LanguageModelInput,
    config: RunnableConfig,
    kwargs: dict[str, Any],
) -> Route | None:
    """Plan one call before its run starts; ``None`` if that fails (the run then plans and raises inside)."""
    current = waiting(model)
    if current is not None:
        return current  # already planned by stream() or batch() on the way here
    try:
        entry = plan_alone(model, build_request(model, input_messages(value), kwargs.get("stop"), kwargs))
    except Exception:  # reported from inside the callback run, where LangChain's error handling sees it
        logger.debug("planning before the run failed; the run will plan again and raise", exc_info=True)
        return None
    return Route(id(model), entry, None, with_run_id(config))


def _pop(model: ChatECCOS) -> Route | None:
    route = waiting(model)
    if route is not None:
        _ROUTE.set(None)  # taken: a nested call of this model plans for itself
    return route


def take(model: ChatECCOS, request: Request) -> tuple[QueryPlan, Ledger | None, Route | None]:
    """The planned query for this call: the one waiting in the context, else a fresh single-call plan."""
    route = _pop(model)
    if route is not None:
        return route.entry, route.ledger, route
    return plan_alone(model, request), None, None


async def atake(model: ChatECCOS, request: Request) -> tuple[QueryPlan, Ledger | None, Route | None]:
    """Async :func:`take`: a fresh plan is made off the event loop (embedding and solving are CPU work)."""
    route = _pop(model)
    if route is not None:
        return route.entry, route.ledger, route
    return await asyncio.to_thread(plan_alone, model, request), None, None


# ------------------------------------------------------------------------------ entry points: plan, then run
def invoke(
    model: ChatECCOS,
    value: LanguageModelInput,
    config: RunnableConfig | None,
    stop: list[str] | None,
    kwargs: dict[str, Any],
) -> AIMessage:
    """``ChatECCOS.invoke``: plan, then LangChain's ``invoke`` with the plan waiting for the run."""
    config = ensure_config(config)
    with routed(plan_one(model, value, config, {**kwargs, "stop": stop})):
        return BaseChatModel.invoke(model, value, config, stop=stop, **kwargs)


async def ainvoke(
    model: ChatECCOS,
    value: LanguageModelInput,
    config: RunnableConfig | None,
    stop: list[str] | None,
    kwargs: dict[str, Any],
) -> AIMessage:
    """Async :func:`invoke`; planning runs off the event loop."""
    config = ensure_config(config)
    with routed(await asyncio.to_thread(plan_one, model, value, config, {**kwargs, "stop": stop})):
        return await BaseChatModel.ainvoke(model, value, config, stop=stop, **kwargs)


def stream(
    model: ChatECCOS,
    value: LanguageModelInput,
    config: RunnableConfig | None,
    stop: list[str] | None,
    kwargs: dict[str, Any],
) -> Iterator[AIMessageChunk]:
    """``ChatECCOS.stream``: plan, then LangChain's ``stream`` with the plan waiting only while its run starts."""
    config = ensure_config(config)
    route = plan_one(model, value, config, {**kwargs, "stop": stop})
    chunks = BaseChatModel.stream(model, value, config, stop=stop, **kwargs)
    try:
        with routed(route):  # LangChain starts the run and _stream takes the plan on the first step
            first = next(chunks, None)
        if first is None:
            return
        yield first
        yield from chunks
    finally:
        chunks.close()


async def astream(
    model: ChatECCOS,
    value: LanguageModelInput,
    config: RunnableConfig | None,
    stop: list[str] | None,
    kwargs: dict[str, Any],
) -> AsyncIterator[AIMessageChunk]:
    """Async :func:`stream`; planning runs off the event loop."""
    config = ensure_config(config)
    route = await asyncio.to_thread(plan_one, model, value, config, {**kwargs, "stop": stop})
    chunks = BaseChatModel.astream(model, value, config, stop=stop, **kwargs)
    try:
        with routed(route):
            first = await anext(chunks, None)
        if first is None:
            return
        yield first
        async for chunk in chunks:
            yield chunk
    finally:
        await chunks.aclose()


# ---------------------------------------------------------------------------------------------- routing events
def _on_run(run_manager: Any, manager_cls: type[Any]) -> Any:
    """A callback manager whose custom events land on ``run_manager``'s run (LLM runs have no ``get_child``)."""
    return manager_cls(
        handlers=list(run_manager.handlers),
        parent_run_id=run_manager.run_id,
        tags=list(run_manager.tags),
        metadata=dict(run_manager.metadata),
    )


def _event_manager(model: ChatECCOS, route: Route, manager_cls: type[Any]) -> Any:
    """A callback manager whose events land on the call's run (for paths LangChain gives no run manager)."""
    config = route.config
    manager = manager_cls.configure(
        config.get("callbacks"),
        model.callbacks,
        model.verbose,
        config.get("tags"),
        model.tags,
        config.get("metadata"),
        model.metadata,
    )
    manager.parent_run_id = config.get("run_id")
    return manager


def announce(
    model: ChatECCOS, entry: QueryPlan, run_manager: CallbackManagerForLLMRun | None, route: Route | None
) -> None:
    """Send the ``"eccos_route"`` event for ``entry`` on the call's run."""
    data = entry.to_dict()
    if run_manager is not None:
        dispatch_custom_event(ROUTE_EVENT, data, config={"callbacks": _on_run(run_manager, CallbackManager)})
    elif route is not None:
        dispatch_custom_event(ROUTE_EVENT, data, config={"callbacks": _event_manager(model, route, CallbackManager)})
    else:
        with suppress(RuntimeError):  # no run to attach it to, so nobody can be listening
            dispatch_custom_event(ROUTE_EVENT, data)


async def aannounce(
    model: ChatECCOS, entry: QueryPlan, run_manager: AsyncCallbackManagerForLLMRun | None, route: Route | None
) -> None:
    """Async :func:`announce`."""
    data = entry.to_dict()
    if run_manager is not None:
        manager = _on_run(run_manager, AsyncCallbackManager)
        await adispatch_custom_event(ROUTE_EVENT, data, config={"callbacks": manager})
    elif route is not None:
        manager = _event_manager(model, route, AsyncCallbackManager)
        await adispatch_custom_event(ROUTE_EVENT, data, config={"callbacks": manager})
    else:
        with suppress(RuntimeError):
            await adispatch_custom_event(ROUTE_EVENT, data)


__all__ = [
    "Route",
    "aannounce",
    "ainvoke",
    "announce",
    "astream",
    "atake",
    "invoke",
    "plan_one",
    "routed",
    "stream",
    "take",
    "waiting",
    "with_run_id",
]
