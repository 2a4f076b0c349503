"""Fixtures for the LangChain integration: routers over the loopback pool (root ``tests/conftest.py``).

Async tests here share one session event loop: LiteLLM caches its async HTTP clients per loop, and LangChain's
standard async tests expect a loop that outlives a single test.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run every async test of this directory on the session event loop."""
    for item in items:
        if HERE in Path(str(item.fspath)).parents and inspect.iscoroutinefunction(getattr(item, "obj", None)):
            item.add_marker(pytest.mark.asyncio(loop_scope="session"))


@pytest.fixture(scope="session")
def lc_pool(make_pool: Callable[..., list[Any]]) -> list[Any]:
    """Every bundled model on the loopback server, able to take tools, response schemas and images."""
    return make_pool(supports_tools=True, supports_response_schema=True, supports_vision=True)


@pytest.fixture(scope="session")
def lc_router(lc_pool: list[Any], fake_predictor: Any) -> Any:
    """A router over :func:`lc_pool` with the fast deterministic predictor (shared: do not patch it)."""
    from eccos_core.router import Router

    return Router(lc_pool, fake_predictor)


class PlanSpy:
    """Counts ``router.plan`` calls and the batch size of each."""

    def __init__(self, router: Any) -> None:
        self.sizes: list[int] = []
        self._plan = router.plan
        router.plan = self

    def __call__(self, queries: Any, *args: Any, **kwargs: Any) -> Any:
        self.sizes.append(len(queries))
        return self._plan(queries, *args, **kwargs)


@pytest.fixture
def router(lc_pool: list[Any], fake_predictor: Any) -> Any:
    """A fresh router over :func:`lc_pool` for one test (safe to patch or spy on)."""
    from eccos_core.router import Router

    return Router(lc_pool, fake_predictor)


@pytest.fixture
def plan_spy(router: Any) -> PlanSpy:
    """Records every ``plan`` call of :func:`router`."""
    return PlanSpy(router)


@pytest.fixture
def spy_on() -> type[PlanSpy]:
    """``spy_on(router)`` starts counting that router's ``plan`` calls."""
    return PlanSpy
