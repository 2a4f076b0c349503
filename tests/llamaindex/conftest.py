"""Fixtures for the LlamaIndex shell: a router over the loopback provider, the LLM, and an event recorder.

The provider, the pool factory and the fitted predictor come from the root ``tests/conftest.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from llama_index.core.instrumentation import get_dispatcher
from llamaindex_support import NAMES, STRONG, Recorder

from eccos_core.router import Router
from llamaindex_eccos import ECCOSLLM


@pytest.fixture
def events() -> Iterator[Recorder]:
    """A handler on LlamaIndex's root dispatcher for the duration of one test."""
    recorder = Recorder()
    root = get_dispatcher()
    root.add_event_handler(recorder)
    try:
        yield recorder
    finally:
        root.event_handlers.remove(recorder)


@pytest.fixture
def make_router(make_pool: Callable[..., list[Any]], predictor: Any) -> Callable[..., Router]:
    """``make_router(broken=(), tools=(), vision=(), **spec_overrides)``: a router over the three loopback models.

    Models named in ``tools`` / ``vision`` support tools / images; the others do not.
    """

    def build(*, broken: Any = (), tools: Any = (), vision: Any = (), **overrides: Any) -> Router:
        pool = [
            spec
            for name in NAMES
            for spec in make_pool(
                [name], broken=broken, supports_tools=name in tools, supports_vision=name in vision, **overrides
            )
        ]
        return Router(pool, predictor)

    return build


@pytest.fixture
def router(make_router: Callable[..., Router]) -> Router:
    """Three healthy loopback models; only the strongest supports tools and images."""
    return make_router(tools=(STRONG,), vision=(STRONG,))


@pytest.fixture
def llm(router: Router) -> ECCOSLLM:
    return ECCOSLLM(router=router, min_quality=0.5)
