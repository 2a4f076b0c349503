"""One batch runner for every door: send a planned batch's items concurrently, keep their order, lose none.

``Router.batch`` / ``abatch`` and the LangChain and LlamaIndex shells' batch calls all send through these. Each
item runs ``send(i)`` (in a copy of the caller's context, so a shell can set per-item context variables such as
the item's share of the plan); a failure becomes that item's result, never the batch's. :func:`finish` then
returns the list, or, without ``return_exceptions``, raises the first failure once every item has finished
(a :class:`~eccos_core.errors.DispatchError` carrying ``results``: the whole list, in input order).
"""

from __future__ import annotations

import asyncio
import contextvars
import numbers
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any, TypeVar

from eccos_core.errors import DispatchError, InputError

T = TypeVar("T")


def check_concurrency(value: Any) -> int:
    """``max_concurrency`` as a positive integer, or an :class:`InputError` naming the value."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 1:
        raise InputError(f"max_concurrency must be a positive integer, got {value!r}")
    return int(value)


def as_exception(error: BaseException) -> Exception:
    """A failed item's exception; ``KeyboardInterrupt``, ``CancelledError`` and the like are re-raised."""
    if not isinstance(error, Exception):
        raise error
    return error


def _guarded(send: Callable[[int], T], i: int) -> T | Exception:
    try:
        return send(i)
    except Exception as exc:
        return exc


def run_all(send: Callable[[int], T], count: int, max_concurrency: int) -> list[T | Exception]:
    """``send(i)`` for every item on at most ``max_concurrency`` threads; results (or exceptions) in order."""
    if count == 0:
        return []
    if count == 1:
        return [_guarded(send, 0)]
    workers = min(check_concurrency(max_concurrency), count)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="eccos-batch") as pool:
        futures = [pool.submit(contextvars.copy_context().run, _guarded, send, i) for i in range(count)]
        return [future.result() for future in futures]


async def arun_all(send: Callable[[int], Awaitable[T]], count: int, max_concurrency: int) -> list[T | Exception]:
    """Async :func:`run_all`: at most ``max_concurrency`` items in flight, each its own task (its own context)."""
    semaphore = asyncio.Semaphore(check_concurrency(max_concurrency))

    async def one(i: int) -> T:
        async with semaphore:
            return await send(i)

    gathered = await asyncio.gather(*(one(i) for i in range(count)), return_exceptions=True)
    return [item if not isinstance(item, BaseException) else as_exception(item) for item in gathered]


def iter_completed(
    send: Callable[[int], T], count: int, max_concurrency: int, return_exceptions: bool
) -> Iterator[tuple[int, T | Exception]]:
    """:func:`run_all`, yielding ``(index, result)`` as each item finishes.

    Without ``return_exceptions`` the first failure is raised when it arrives (the items not started are
    cancelled).
    """
    if count == 0:
        return
    workers = min(check_concurrency(max_concurrency), count)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="eccos-batch") as pool:
        futures = {pool.submit(contextvars.copy_context().run, _guarded, send, i): i for i in range(count)}
        try:
            for future in as_completed(futures):
                result = future.result()
                if isinstance(result, Exception) and not return_exceptions:
                    raise result
                yield futures[future], result
        finally:
            for future in futures:
                future.cancel()


async def aiter_completed(
    send: Callable[[int], Awaitable[T]], count: int, max_concurrency: int, return_exceptions: bool
) -> AsyncIterator[tuple[int, T | Exception]]:
    """Async :func:`iter_completed`."""
    semaphore = asyncio.Semaphore(check_concurrency(max_concurrency))

    async def one(i: int) -> tuple[int, T | Exception]:
        async with semaphore:
            try:
                return i, await send(i)
            except Exception as exc:
                return i, exc

    tasks = [asyncio.ensure_future(one(i)) for i in range(count)]
    try:
        for next_done in asyncio.as_completed(tasks):
            i, result = await next_done
            if isinstance(result, Exception) and not return_exceptions:
                raise result
            yield i, result
    finally:
        for task in tasks:
            task.cancel()


def finish(results: list[Any], return_exceptions: bool) -> list[Any]:
    """The batch's results in input order; without ``return_exceptions`` the first failure is raised.

    A raised :class:`~eccos_core.errors.DispatchError` carries ``results`` (every item's result or exception).
    """
    if return_exceptions:
        return results
    for item in results:
        if isinstance(item, Exception):
            if isinstance(item, DispatchError):
                item.results = results  # type: ignore[attr-defined]
            raise item
    return results


__all__ = ["aiter_completed", "arun_all", "as_exception", "check_concurrency", "finish", "iter_completed", "run_all"]
