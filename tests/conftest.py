"""Shared fixtures: a loopback OpenAI-compatible provider, a small fitted predictor and a pool pointing at it.

The provider (``loopback.py``) is a real HTTP server on 127.0.0.1 (pytest-socket allows nothing else), so every
test that calls ``Router.complete`` goes through LiteLLM's real client path: request building, HTTP, response
parsing, error mapping. The reply names the model it was asked for, which is how tests see where a query was
routed; markers in the served model name pick failures (see ``loopback.py``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from loopback import LoopbackProvider, serve_loopback

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

API_KEY = "sk-test-secret-7f3a9c1e5b2d4f60"
"""Credential put in every pool model's ``litellm_params``; tests assert it never leaks."""

PREDICTOR_RECORDS = 300
"""Routing-log records the session predictor is fitted on (enough to vote, small enough to embed fast)."""


@pytest.fixture(scope="session")
def loopback_server() -> Iterator[LoopbackProvider]:
    """A real OpenAI-compatible server on 127.0.0.1 for the whole session (see :func:`loopback`)."""
    with serve_loopback() as provider:
        yield provider


@pytest.fixture
def loopback(loopback_server: LoopbackProvider) -> LoopbackProvider:
    """The loopback provider with its request record emptied for this test."""
    loopback_server.clear()
    return loopback_server


@pytest.fixture(scope="session")
def bundled_pool_specs() -> dict[str, Any]:
    """The bundled models by name (prices only; they point at real providers, never called in tests)."""
    from eccos_core.bundled import bundled_models

    return {spec.name: spec for spec in bundled_models()}


@pytest.fixture(scope="session")
def small_logs() -> Any:
    """About 300 records of the bundled routing logs, spread over every task."""
    from eccos_core.bundled import bundled_logs

    logs = bundled_logs()
    step = max(1, len(logs) // PREDICTOR_RECORDS)
    return logs.subset(range(0, len(logs), step))


@pytest.fixture(scope="session")
def predictor(small_logs: Any) -> Any:
    """A real RetrievalPredictor fitted on :func:`small_logs` (shared: treat it as read-only)."""
    from eccos_core.predictors.retrieval import RetrievalPredictor

    return RetrievalPredictor().fit(small_logs)


class FakePredictor:
    """A deterministic stand-in predictor (no torch, no embedding) for tests of routing and dispatch.

    p(success) of model j on a query rises with j's position in the pool's price order and with the query's
    length bucket, so stronger (pricier) models look better and the optimizer has real trade-offs to make.
    """

    kind = "fake"

    def __init__(self, models: Any) -> None:
        self.models = tuple(models)
        self.out_of_fold = None

    def predict(self, queries: Any) -> Any:
        import numpy as np

        from eccos_core.predictors.base import Prediction

        n, m = len(queries), len(self.models)
        base = np.linspace(0.35, 0.9, m)[None, :]
        wobble = np.array([(sum(map(ord, q)) % 7) / 40.0 for q in queries])[:, None]
        quality = np.clip(base - wobble + 0.05, 0.0, 1.0)
        tokens = np.tile(np.linspace(80.0, 240.0, m), (n, 1))
        return Prediction(self.models, quality, tokens)


@pytest.fixture(scope="session")
def fake_predictor(bundled_pool_specs: dict[str, Any]) -> FakePredictor:
    """:class:`FakePredictor` over the bundled model names, ordered cheapest to priciest."""
    names = sorted(bundled_pool_specs, key=lambda n: bundled_pool_specs[n].output_cost_per_token)
    return FakePredictor(names)


@pytest.fixture(scope="session")
def make_pool(loopback_server: LoopbackProvider, bundled_pool_specs: dict[str, Any]) -> Callable[..., list[Any]]:
    """Factory: ``make_pool(names, broken=(), **spec_overrides)`` → ModelSpecs served by the loopback provider.

    Each spec keeps its bundled name (so the predictor knows it) and bundled prices; ``litellm_model`` is
    ``openai/<name>``, or ``openai/broken-<name>`` for names in ``broken`` (the provider answers those with
    HTTP 500), or ``openai/<mode>-<name>`` for ``modes={name: mode}`` (see the failure markers above).
    """
    from eccos_core.pricing import ModelSpec

    def build(names: Any = None, *, broken: Any = (), modes: Any = None, **overrides: Any) -> list[Any]:
        chosen = list(bundled_pool_specs) if names is None else list(names)
        modes = {**{name: "broken" for name in broken}, **(modes or {})}
        pool = []
        for name in chosen:
            bundled = bundled_pool_specs[name]
            served = f"{modes[name]}-{name}" if name in modes else name
            fields = {
                "name": name,
                "litellm_model": f"openai/{served}",
                "input_cost_per_token": bundled.input_cost_per_token,
                "output_cost_per_token": bundled.output_cost_per_token,
                "litellm_params": {"api_base": loopback_server.api_base, "api_key": API_KEY},
            }
            fields.update(overrides)
            pool.append(ModelSpec(**fields))
        return pool

    return build


@pytest.fixture
def pool(make_pool: Callable[..., list[Any]]) -> list[Any]:
    """Every bundled model, served by the loopback provider."""
    return make_pool()


@pytest.fixture(scope="session")
def api_key() -> str:
    """The credential every loopback pool model carries (assert it never shows up anywhere)."""
    return API_KEY
