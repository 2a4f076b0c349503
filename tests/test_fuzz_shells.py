"""Property-based fuzz of the shells' public methods: arbitrary messages, options and ``min_quality`` values.

Every call either answers (through LiteLLM to the loopback server) or raises a typed
:class:`~eccos_core.errors.EccosError` that names the problem: never a ``TypeError``, ``KeyError`` or
``AttributeError`` from inside, and a batch never loses an item. CI runs a fixed slice (``FUZZ_EXAMPLES``, 60 per
property); ``ECCOS_FUZZ_EXPLORE=1 ECCOS_FUZZ_EXAMPLES=2000`` explores afresh.
"""

from __future__ import annotations

import math
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from eccos_core.errors import EccosError
from eccos_core.router import Router

FUZZ = settings(
    max_examples=int(os.environ.get("ECCOS_FUZZ_EXAMPLES", "60")),
    deadline=None,
    derandomize=not os.environ.get("ECCOS_FUZZ_EXPLORE"),
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)

texts = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", "   ", "\u200b", "\x00", "a \ud800", "\udfff b", "🙂 漢字", "\u202e rtl", "x" * 5000]),
)
blocks = st.lists(
    st.one_of(
        st.builds(lambda t: {"type": "text", "text": t}, texts),
        st.just({"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}),
        st.builds(lambda t: {"type": t}, st.sampled_from(["text", "audio", "weird"])),
    ),
    max_size=3,
)
messages = st.one_of(
    texts,
    st.lists(
        st.one_of(
            st.builds(HumanMessage, content=st.one_of(texts, blocks)),
            st.builds(SystemMessage, content=texts),
            st.builds(AIMessage, content=texts),
        ),
        min_size=0,
        max_size=3,
    ),
)
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-5, 5),
    st.booleans(),
    st.sampled_from(["0.7", None]),
)
options = st.dictionaries(
    st.sampled_from(["temperature", "top_p", "timeout", "max_tokens", "num_retries", "deadline", "stop", "seed"]),
    st.one_of(numbers, st.lists(texts, max_size=2)),
    max_size=3,
)
qualities = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.just("high"), st.just(0.5))


@pytest.fixture
def router(make_pool: Any, fake_predictor: Any) -> Router:
    return Router(make_pool(supports_vision=True), fake_predictor)


def _typed(call: Any) -> Any:
    """Run ``call``: its result, or the typed error it raised; anything else fails the property."""
    try:
        return call()
    except EccosError as exc:
        assert str(exc), "a typed error must say what is wrong"
        return exc


def _kwargs(quality: Any, opts: dict[str, Any]) -> dict[str, Any]:
    opts = {k: v for k, v in opts.items() if not (k == "timeout" and isinstance(v, (int, float)) and 0 < v < 1)}
    if isinstance(opts.get("deadline"), (int, float)) and not isinstance(opts["deadline"], bool):
        opts["deadline"] = max(float(opts["deadline"]), 5.0) if math.isfinite(opts["deadline"]) else opts["deadline"]
    return {"min_quality": quality, **opts}


@FUZZ
@given(value=messages, quality=qualities, opts=options)
def test_chat_invoke_answers_or_raises_typed(router: Router, loopback: Any, value: Any, quality: Any, opts: Any):
    from langchain_eccos import ChatECCOS

    _typed(lambda: ChatECCOS(router=router).invoke(value, **_kwargs(quality, opts)))


@FUZZ
@given(values=st.lists(messages, min_size=1, max_size=4), quality=qualities, opts=options)
def test_chat_batch_keeps_every_item(router: Router, loopback: Any, values: Any, quality: Any, opts: Any):
    from langchain_eccos import ChatECCOS

    results = _typed(lambda: ChatECCOS(router=router).batch(values, return_exceptions=True, **_kwargs(quality, opts)))
    if isinstance(results, list):
        assert len(results) == len(values)
        assert all(isinstance(r, (AIMessage, EccosError)) for r in results), [type(r) for r in results]


@FUZZ
@given(prompt=texts, quality=qualities, opts=options)
def test_llamaindex_complete_answers_or_raises_typed(router: Router, loopback: Any, prompt: Any, quality: Any, opts):
    from llamaindex_eccos import ECCOSLLM

    _typed(lambda: ECCOSLLM(router=router).complete(prompt, **_kwargs(quality, opts)))
    results = _typed(
        lambda: ECCOSLLM(router=router).complete_batch([prompt, "ok"], return_exceptions=True, **_kwargs(quality, opts))
    )
    if isinstance(results, list):
        assert len(results) == 2 and all(not isinstance(r, Exception) or isinstance(r, EccosError) for r in results)
