"""A ``ChatECCOS`` batch: one joint plan for all its inputs, then each item sent in its own callback run.

:func:`batch` / :func:`abatch` / :func:`batch_as_completed` / :func:`abatch_as_completed` (``ChatECCOS``'s
methods of those names) plan with :func:`plan_batch` and send :meth:`PlannedBatch.send` / :meth:`PlannedBatch.asend`
through the core's one batch runner (:mod:`eccos_core.batching`): results in input order, none dropped, at most
``max_concurrency`` in flight (the config's, else the router's).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import get_config_list

from eccos_core.batching import aiter_completed, arun_all, check_concurrency, finish, iter_completed, run_all
from eccos_core.errors import EccosError
from eccos_core.messages import normalize
from langchain_eccos.calls import Request, build_request, plan_joint
from langchain_eccos.messages import input_messages
from langchain_eccos.runs import Route, routed, with_run_id

if TYPE_CHECKING:
    from langchain_eccos.chat_models import ChatECCOS

logger = logging.getLogger("eccos.langchain")


@dataclass(frozen=True)
class PlannedBatch:
    """A batch planned jointly: item ``i`` is sent by ``send(i)`` / ``asend(i)`` with its share of the plan."""

    model: ChatECCOS
    inputs: Sequence[LanguageModelInput]
    configs: list[RunnableConfig]
    routes: Sequence[Route | Exception | None]
    """Each item's route, or the error that keeps it from being sent; ``None``: the item plans alone."""
    kwargs: dict[str, Any]
    max_concurrency: int
    """The config's ``max_concurrency``, else the router's (provider calls in flight at once)."""

    def send(self, i: int) -> AIMessage | Exception:
        """Send item ``i`` in its own callback run; an item that could not be planned returns its error."""
        route, value, config = self.routes[i], self.inputs[i], self.configs[i]
        if isinstance(route, Exception):
            return route
        if route is None:  # the joint plan failed: this item plans alone
            return self.model.invoke(value, config, **self.kwargs)
        with routed(route):
            return BaseChatModel.invoke(self.model, value, config, **self.kwargs)

    async def asend(self, i: int) -> AIMessage | Exception:
        """Async :meth:`send`."""
        route, value, config = self.routes[i], self.inputs[i], self.configs[i]
        if isinstance(route, Exception):
            return route
        if route is None:
            return await self.model.ainvoke(value, config, **self.kwargs)
        with routed(route):
            return await BaseChatModel.ainvoke(self.model, value, config, **self.kwargs)


Configs = RunnableConfig | Sequence[RunnableConfig] | None
"""A batch call's ``config``: one for every item, one per item, or none."""


def batch(
    model: ChatECCOS,
    inputs: Sequence[LanguageModelInput],
    config: Configs,
    return_exceptions: bool,
    kwargs: dict[str, Any],
) -> list[AIMessage | Exception]:
    """``ChatECCOS.batch``: the results in input order; without ``return_exceptions`` the first error is raised."""
    if not inputs:
        return []
    planned = plan_batch(model, inputs, config, kwargs, return_exceptions)
    return finish(run_all(planned.send, len(inputs), planned.max_concurrency), return_exceptions)


async def abatch(
    model: ChatECCOS,
    inputs: Sequence[LanguageModelInput],
    config: Configs,
    return_exceptions: bool,
    kwargs: dict[str, Any],
) -> list[AIMessage | Exception]:
    """Async :func:`batch`: the joint plan is made off the event loop."""
    if not inputs:
        return []
    planned = await asyncio.to_thread(plan_batch, model, inputs, config, kwargs, return_exceptions)
    return finish(await arun_all(planned.asend, len(inputs), planned.max_concurrency), return_exceptions)


def batch_as_completed(
    model: ChatECCOS,
    inputs: Sequence[LanguageModelInput],
    config: Configs,
    return_exceptions: bool,
    kwargs: dict[str, Any],
) -> Iterator[tuple[int, AIMessage | Exception]]:
    """:func:`batch`, yielding ``(index, result)`` as each item finishes."""
    if not inputs:
        return
    planned = plan_batch(model, inputs, config, kwargs, return_exceptions)
    yield from iter_completed(planned.send, len(inputs), planned.max_concurrency, return_exceptions)


async def abatch_as_completed(
    model: ChatECCOS,
    inputs: Sequence[LanguageModelInput],
    config: Configs,
    return_exceptions: bool,
    kwargs: dict[str, Any],
) -> AsyncIterator[tuple[int, AIMessage | Exception]]:
    """Async :func:`batch_as_completed`."""
    if not inputs:
        return
    planned = await asyncio.to_thread(plan_batch, model, inputs, config, kwargs, return_exceptions)
    sends = aiter_completed(planned.asend, len(inputs), planned.max_concurrency, return_exceptions)
    async with aclosing(sends) as done:
        async for item in done:
            yield item


def plan_batch(
    model: ChatECCOS,
    inputs: Sequence[LanguageModelInput],
    config: Configs,
    kwargs: dict[str, Any],
    return_exceptions: bool,
) -> PlannedBatch:
    """Plan every input of a non-empty batch in ONE optimizer call (:func:`joint_routes`), ready to send."""
    configs = get_config_list(config, len(inputs))  # type: ignore[arg-type]
    routes = joint_routes(model, inputs, configs, kwargs, return_exceptions) or [None] * len(inputs)
    limit = configs[0].get("max_concurrency") or model.get_router().max_concurrency
    return PlannedBatch(model, inputs, configs, routes, kwargs, check_concurrency(limit))


def joint_routes(
    model: ChatECCOS,
    inputs: Sequence[LanguageModelInput],
    configs: list[RunnableConfig],
    kwargs: dict[str, Any],
    return_exceptions: bool,
) -> list[Route | Exception] | None:
    """Plan every input in ONE optimizer call; an input that cannot be read gets an exception in its slot.

    Returns ``None`` when the joint plan itself fails (with ``return_exceptions``): each item is then sent on its
    own, so the error lands in the slots of the items that cause it.
    """
    from eccos_core.dispatch import Ledger

    slots: list[Request | Exception] = []
    for i, value in enumerate(inputs):
        try:
            request = build_request(model, input_messages(value), kwargs.get("stop"), kwargs)
            normalize(request.messages, i)
            slots.append(request)
        except (EccosError, ValueError, TypeError) as exc:
            slots.append(exc)
    requests = [slot for slot in slots if not isinstance(slot, Exception)]
    if not requests:
        return [slot for slot in slots if isinstance(slot, Exception)]
    try:
        plan = plan_joint(model, requests)
    except EccosError:
        if not return_exceptions:
            raise
        logger.warning("joint planning of %d inputs failed; planning each on its own", len(requests), exc_info=True)
        return None
    ledger, entries = Ledger.for_plan(plan), iter(plan.queries)
    return [
        slot if isinstance(slot, Exception) else Route(id(model), next(entries), ledger, with_run_id(config))
        for slot, config in zip(slots, configs, strict=True)
    ]


__all__ = [
    "Configs",
    "PlannedBatch",
    "abatch",
    "abatch_as_completed",
    "batch",
    "batch_as_completed",
    "joint_routes",
    "plan_batch",
]
