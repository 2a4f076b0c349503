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
    """Counts ``router.plan`` calls and the batch size of each, and ``router.plan_call`` calls by policy."""

    def __init__(self, router: Any) -> None:
        self.sizes: list[int] = []
        self.single: list[str] = []
        """The policy of each single call planned (``router.plan_call``)."""
        self._plan, self._plan_call = router.plan, router.plan_call
        router.plan, router.plan_call = self, self.plan_call

    def __call__(self, queries: Any, *args: Any, **kwargs: Any) -> Any:
        self.sizes.append(len(queries))
        return self._plan(queries, *args, **kwargs)

    def plan_call(self, messages: Any, *args: Any, **kwargs: Any) -> Any:
        self.single.append(kwargs.get("policy", "dual"))
        return self._plan_call(messages, *args, **kwargs)


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


@pytest.fixture
def agent_pool(make_pool: Any) -> list[Any]:
    """Three models; the cheapest cannot call tools."""
    return make_pool(["qwen2.5-7b-instruct"], supports_tools=False) + make_pool(
        ["gemma-2-9b-it", "llama3-chatqa-1.5-70b"], supports_tools=True
    )


@pytest.fixture
def user_models(agent_pool: list[Any], fake_predictor: Any) -> dict[str, Any]:
    """The user's own chat models: one real LiteLLM-backed chat model per pool model (each talks to one model)."""
    from eccos_core.router import Router
    from langchain_eccos import ChatECCOS

    return {spec.name: ChatECCOS(router=Router([spec], fake_predictor), min_quality=0.0) for spec in agent_pool}
