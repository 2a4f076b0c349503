"""Batch plumbing of ECCOSLLM: read every item, plan them jointly, send each through the public call.

Each item is first read on its own (converted to OpenAI messages and checked with ``eccos_core.messages.normalize``):
an unreadable one holds its error and is never sent. The readable ones are planned in one optimizer call, so
the batch as a whole reaches ``min_quality`` at the least predicted cost. When that joint plan fails and the
caller asked for ``return_exceptions``, each item is planned on its own to find the ones that cause the failure
(they hold their error), and the others are planned jointly again. The items are then sent through the core's
batch runner (``eccos_core.batching``): each runs the public ``chat`` / ``complete`` (or async twin) with its
share of the plan in :data:`llamaindex_eccos.routing.PLANNED`, which the call reads instead of planning again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from eccos_core.batching import arun_all, check_concurrency, finish, run_all
from eccos_core.errors import EccosError
from eccos_core.messages import normalize
from llamaindex_eccos.messages import OpenAIMessage
from llamaindex_eccos.routing import PLANNED, Planned, Settings, split

if TYPE_CHECKING:
    from eccos_core.planner import RoutingPlan
    from eccos_core.router import Router
    from llamaindex_eccos.base import ECCOSLLM

logger = logging.getLogger("eccos.llamaindex")

T = TypeVar("T")
Query = list[OpenAIMessage]
Planner = Callable[[list[Query]], "RoutingPlan"]
"""Plans a list of queries jointly, with the batch's routing settings (``Router.plan``)."""

ROUTING_KWARGS = ("min_quality", "capacity", "policy")
"""A batch's routing settings: used by its plan, never passed on to the call of each item."""


Slot = Planned | Exception
"""What a batch item is sent with: its share of the plan, or the error that keeps it from being sent."""


def read(inputs: Sequence[Any], convert: Callable[[Any], Query]) -> list[Query | Exception]:
    """Each item as the messages it is planned by, or the error that makes it unreadable (in its place)."""
    out: list[Query | Exception] = []
    for i, value in enumerate(inputs):
        try:
            query = convert(value)
            normalize(query, i)
            out.append(query)
        except (EccosError, ValueError, TypeError) as exc:
            out.append(exc)
    return out


def run_batch(
    llm: ECCOSLLM,
    call: Callable[..., T],
    items: Sequence[Any],
    convert: Callable[[Any], Query],
    kwargs: dict[str, Any],
    return_exceptions: bool,
    max_concurrency: int | None,
) -> list[T | Exception]:
    """A batch of ``llm``: read every item, plan the readable ones jointly, then send each through ``call``.

    ``call`` is the LLM's public ``chat`` / ``complete``, so each item runs in its own LlamaIndex callback run
    and span; ``kwargs`` hold the batch's routing settings and the LiteLLM options every item is sent with.
    """
    slots, limit = _plan(llm, items, convert, kwargs, return_exceptions, max_concurrency)
    return send_all(call, items, slots, item_options(kwargs), return_exceptions, limit)


async def arun_batch(
    llm: ECCOSLLM,
    call: Callable[..., Awaitable[T]],
    items: Sequence[Any],
    convert: Callable[[Any], Query],
    kwargs: dict[str, Any],
    return_exceptions: bool,
    max_concurrency: int | None,
) -> list[T | Exception]:
    """Async :func:`run_batch` (reading and planning run in a worker thread; the event loop stays free)."""
    slots, limit = await asyncio.to_thread(_plan, llm, items, convert, kwargs, return_exceptions, max_concurrency)
    return await asend_all(call, items, slots, item_options(kwargs), return_exceptions, limit)


def _plan(
    llm: ECCOSLLM,
    items: Sequence[Any],
    convert: Callable[[Any], Query],
    kwargs: dict[str, Any],
    return_exceptions: bool,
    max_concurrency: int | None,
) -> tuple[list[Slot], int]:
    """Every item's slot, and the calls in flight at once (``max_concurrency``, else the router's)."""
    router = llm.get_router()
    limit = check_concurrency(max_concurrency or router.max_concurrency)
    return plan_batch(router, read(items, convert), split(llm, kwargs), return_exceptions), limit


def plan_batch(
    router: Router, queries: list[Query | Exception], settings: Settings, return_exceptions: bool
) -> list[Slot]:
    """Plan a batch's readable items with its settings (see :func:`plan_slots`); bad settings raise."""
    from eccos_core.validation import check_alpha, check_confidence

    check_alpha(settings.min_quality)  # a bad setting is the whole batch's error, never one item's
    check_confidence(settings.confidence)

    def plan(batch: list[Query]) -> RoutingPlan:
        return router.plan(
            batch, settings.min_quality, confidence=settings.confidence, capacity=settings.capacity, **settings.options
        )

    return plan_slots(queries, plan, return_exceptions)


def plan_slots(queries: list[Query | Exception], plan: Planner, return_exceptions: bool) -> list[Slot]:
    """Plan the readable items jointly; every item gets its share, or an error in its place.

    Raises:
        EccosError: The joint plan failed and ``return_exceptions`` is false (nothing is sent); or the batch is
            empty (refused as ``Router.plan`` refuses it).
    """
    slots: list[Any] = list(queries)
    items = [i for i, q in enumerate(queries) if not isinstance(q, Exception)]
    if not items:
        if not queries:
            plan([])  # raises: an empty batch is refused, as Router.plan refuses it
        return slots
    try:
        return _fill(slots, items, plan([queries[i] for i in items]))
    except EccosError as exc:
        if not return_exceptions:
            raise
        logger.warning("joint planning of %d items failed; planning each on its own", len(items), exc_info=True)
        error: Exception = exc
    for i in items:
        try:
            plan([queries[i]])
        except EccosError as exc:
            slots[i] = exc
    survivors = [i for i in items if not isinstance(slots[i], Exception)]
    if survivors and len(survivors) < len(items):  # the culprits found: plan the others together again
        try:
            return _fill(slots, survivors, plan([queries[i] for i in survivors]))
        except EccosError as exc:
            error = exc
    for i in survivors:  # no item fails alone: the batch as a whole cannot be planned
        slots[i] = error
    return slots


def _fill(slots: list[Any], items: list[int], plan: RoutingPlan) -> list[Slot]:
    from eccos_core.dispatch import Ledger

    ledger = Ledger.for_plan(plan)
    for i, entry in zip(items, plan.queries, strict=True):
        slots[i] = Planned(entry, ledger)
    return slots


def send_all(
    call: Callable[..., T],
    inputs: Sequence[Any],
    slots: list[Slot],
    options: dict[str, Any],
    return_exceptions: bool,
    max_concurrency: int,
) -> list[T | Exception]:
    """``call(item, **options)`` for every planned item, concurrently; results in input order.

    Raises:
        Exception: Without ``return_exceptions``, the first item's error, once every item has finished.
    """

    def send(i: int) -> T | Exception:
        slot = slots[i]
        if isinstance(slot, Exception):
            return slot
        token = PLANNED.set(slot)
        try:
            return call(inputs[i], **options)
        finally:
            PLANNED.reset(token)

    return finish(run_all(send, len(inputs), max_concurrency), return_exceptions)


async def asend_all(
    call: Callable[..., Awaitable[T]],
    inputs: Sequence[Any],
    slots: list[Slot],
    options: dict[str, Any],
    return_exceptions: bool,
    max_concurrency: int,
) -> list[T | Exception]:
    """Async :func:`send_all`: at most ``max_concurrency`` calls in flight."""

    async def send(i: int) -> T | Exception:
        slot = slots[i]
        if isinstance(slot, Exception):
            return slot
        token = PLANNED.set(slot)
        try:
            return await call(inputs[i], **options)
        finally:
            PLANNED.reset(token)

    return finish(await arun_all(send, len(inputs), max_concurrency), return_exceptions)


def item_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    """A batch's kwargs minus the routing settings it was planned with (each item's call gets the rest)."""
    return {k: v for k, v in kwargs.items() if k not in ROUTING_KWARGS}


def user_query(prompt: str) -> Query:
    """A prompt as one user message."""
    return [{"role": "user", "content": prompt}]


def prompt_list(prompts: Sequence[str]) -> list[str]:
    """The prompts of ``complete_batch``; a lone string is refused (it would be read as one prompt per letter)."""
    if isinstance(prompts, str):
        raise TypeError("complete_batch takes a list of prompts; wrap a single prompt in a list")
    return list(prompts)


__all__ = [
    "Slot",
    "arun_batch",
    "asend_all",
    "item_options",
    "plan_batch",
    "plan_slots",
    "prompt_list",
    "read",
    "run_batch",
    "send_all",
    "user_query",
]
