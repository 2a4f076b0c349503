"""Capability-aware routing: tools, images, structured output and max_tokens restrict who may take a call."""

from __future__ import annotations

import pytest

from eccos_core.dispatch import RoutedResponse
from eccos_core.errors import CapabilityError
from eccos_core.pricing import ModelSpec
from eccos_core.router import Router

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "add",
            "description": "Add two integers.",
            "parameters": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}},
        },
    }
]
IMAGE = [
    {"type": "text", "text": "What is in this picture?"},
    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
]
SCHEMA = {
    "type": "json_schema",
    "json_schema": {"name": "answer", "schema": {"type": "object", "properties": {"value": {"type": "integer"}}}},
}


@pytest.fixture
def router(make_pool, fake_predictor) -> Router:
    """Cheap models that only chat; one mid model with tools; one strong model with everything."""
    pool = make_pool(["gemma-2-9b-it", "qwen2.5-7b-instruct"], max_output_tokens=512)
    pool += make_pool(["llama-3.1-8b-instruct"], supports_tools=True, max_output_tokens=4096)
    pool += make_pool(
        ["llama3-chatqa-1.5-70b"], supports_tools=True, supports_vision=True, supports_response_schema=True
    )
    return Router(pool, fake_predictor)


def test_a_mixed_batch_goes_only_to_models_that_support_each_item(router):
    queries = [
        "What is 2 + 2?",
        [{"role": "user", "content": IMAGE}],
        [
            {"role": "user", "content": "Add 2 and 3."},
            {"role": "assistant", "content": None, "tool_calls": [_call()]},
            {"role": "tool", "tool_call_id": "call_1", "content": "5"},
        ],
    ]
    plan = router.plan(queries, 0.0)

    assert set(plan.queries[0].allowed) == {m.name for m in router.models}
    assert plan.queries[1].allowed == ("llama3-chatqa-1.5-70b",)
    assert set(plan.queries[2].allowed) == {"llama-3.1-8b-instruct", "llama3-chatqa-1.5-70b"}
    for entry in plan.queries:
        assert entry.model in entry.allowed and set(entry.chain) <= set(entry.allowed)


def test_tools_and_schemas_in_the_call_options_restrict_the_whole_batch(router, loopback):
    plan = router.plan(["Add 2 and 3.", "Add 4 and 5."], 0.0, tools=TOOLS)
    assert all(set(q.allowed) == {"llama-3.1-8b-instruct", "llama3-chatqa-1.5-70b"} for q in plan.queries)

    reply = router.complete("Add 2 and 3.", 0.0, tools=TOOLS, tool_choice="auto")
    assert reply.model in {"llama-3.1-8b-instruct", "llama3-chatqa-1.5-70b"}
    assert reply.response.choices[0].message.tool_calls[0].function.name == "add"
    assert loopback.requests[-1].body["tools"] == TOOLS  # passed through unchanged

    structured = router.complete("Give me a number.", 0.0, response_format=SCHEMA)
    assert structured.model == "llama3-chatqa-1.5-70b"


def test_max_tokens_above_a_models_output_limit_rules_it_out(router):
    plan = router.plan(["Write a long essay."], 0.0, max_tokens=2000)
    assert "gemma-2-9b-it" not in plan.queries[0].allowed
    assert "llama-3.1-8b-instruct" in plan.queries[0].allowed


def test_no_model_with_the_capability_is_a_typed_error_naming_it(make_pool, fake_predictor):
    router = Router(make_pool(["gemma-2-9b-it", "qwen2.5-7b-instruct"]), fake_predictor)
    with pytest.raises(CapabilityError, match=r"query 1 needs vision.*gemma-2-9b-it lacks supports_vision"):
        router.plan(["hi", [{"role": "user", "content": IMAGE}]], 0.5)
    with pytest.raises(CapabilityError, match="tools"):
        router.complete("hi", 0.5, tools=TOOLS)


def test_capabilities_come_from_litellm_and_the_models_file_overrides_them():
    known = ModelSpec("gpt-4o-mini")
    assert known.supports_tools and known.supports_vision and known.supports_response_schema
    assert known.max_output_tokens and known.max_input_tokens
    overridden = ModelSpec("gpt-4o-mini", supports_vision=False, max_output_tokens=100)
    assert not overridden.supports_vision and overridden.max_output_tokens == 100
    unknown = ModelSpec("mine", litellm_model="openai/my-local-model", input_cost_per_token=0, output_cost_per_token=0)
    assert not (unknown.supports_tools or unknown.supports_vision or unknown.supports_response_schema)


def test_a_batch_with_tool_calls_sends_each_item_to_a_capable_model(router, loopback):
    results = router.batch(["plain question", [{"role": "user", "content": IMAGE}]], 0.0)
    assert all(isinstance(r, RoutedResponse) for r in results)
    assert results[1].model == "llama3-chatqa-1.5-70b"


def _call() -> dict:
    return {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": '{"a": 2, "b": 3}'}}
