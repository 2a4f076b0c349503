"""ECCOSLLM against the loopback provider: every call is routed, sent through LiteLLM, and reports where it went.

The provider's reply names the model it was asked for, so ``response.text`` shows where a call was routed.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from llama_index.core.base.llms.types import ChatMessage, ImageBlock, TextBlock, ToolCallBlock
from llama_index.core.instrumentation.events.llm import LLMChatStartEvent, LLMCompletionStartEvent
from llama_index.core.prompts import PromptTemplate
from llama_index.core.tools import FunctionTool
from llamaindex_support import CHEAP, MID, NAMES, STRONG
from pydantic import BaseModel

import eccos_core.policies.joint
import eccos_core.router
from eccos_core.errors import CapabilityError, CapacityError, ContextWindowError, DispatchError, InputError
from eccos_core.router import Router
from llamaindex_eccos import ECCOSLLM, ECCOSResponseEvent, ECCOSRoutingEvent
from llamaindex_eccos import base as llm_base

QUESTION = "Which planet is known as the Red Planet?"
HARD = "Prove that there are infinitely many primes p such that p + 2 is also prime, or explain why it is open."
PROMPTS = [
    "What is 17 * 23?",
    "Prove that the square root of 2 is irrational.",
    "Which planet is known as the Red Planet?",
    "Write a Python function that returns the n-th Fibonacci number.",
    "A train travels 120 km in 1.5 hours. What is its average speed in km/h?",
    "Who wrote the novel 'Pride and Prejudice'?",
    "Find all real x such that x^4 - 5x^2 + 4 = 0.",
    "Which gas do plants absorb from the air for photosynthesis?",
]


def planned(router: Router, prompt: str, min_quality: float, **options: Any) -> str:
    """The model the router plans for one prompt (what a call should be sent to)."""
    return router.plan([[{"role": "user", "content": prompt}]], min_quality, **options).models[0]


def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


# ------------------------------------------------------------------------------------- construction
def test_construction_and_import_never_load_a_router(monkeypatch):
    loads = []
    monkeypatch.setattr(Router, "default", classmethod(lambda cls, cache_dir=None: loads.append(1) or "loaded"))
    llm_base._load_default_router.cache_clear()
    try:
        llm = ECCOSLLM(min_quality=0.7, temperature=0.2, max_tokens=64, timeout=30)
        assert loads == []
        assert llm._router is None
        assert llm.to_dict()["min_quality"] == 0.7  # serializable without a router
        assert llm.get_router() == "loaded" and llm.get_router() == "loaded"
        assert loads == [1]  # loaded once, on first use
    finally:
        llm_base._load_default_router.cache_clear()


def test_fields_validate_and_class_name():
    assert ECCOSLLM.class_name() == "eccos_llm"
    for field in ("router", "min_quality", "capacity", "temperature", "max_tokens", "timeout"):
        assert ECCOSLLM.model_fields[field].description
    with pytest.raises(ValueError):
        ECCOSLLM(min_quality=1.5)
    with pytest.raises(TypeError, match=r"eccos_core\.Router"):
        ECCOSLLM(router="gpt-4o")


def test_metadata_describes_the_pool(make_router):
    llm = ECCOSLLM(router=make_router(tools=(STRONG,)))
    meta = llm.metadata
    assert meta.model_name == "eccos"
    assert meta.is_chat_model and meta.is_function_calling_model
    assert meta.context_window == 3900 and meta.num_output == -1  # loopback models: windows unknown

    sized = ECCOSLLM(router=make_router(max_input_tokens=32_000, max_output_tokens=4_096), max_tokens=None)
    assert sized.metadata.context_window == 32_000 and sized.metadata.num_output == 4_096
    assert not sized.metadata.is_function_calling_model  # no pool model supports tools
    assert ECCOSLLM(router=make_router(), max_tokens=256).metadata.num_output == 256


# ---------------------------------------------------------------------------------------- one call
def test_complete_goes_to_the_planned_model_and_reports_the_decision(llm, router, loopback, api_key):
    expected = planned(router, QUESTION, 0.5)

    response = llm.complete(QUESTION)

    assert response.text == f"answer from {expected}"
    assert loopback.models_called() == [expected]
    eccos = response.additional_kwargs["eccos"]
    assert eccos["model"] == eccos["planned_model"] == expected
    assert 0.0 <= eccos["p_success"] <= 1.0 and eccos["predicted_cost"] > 0 and eccos["cost"] > 0
    assert eccos["status"] in ("optimal", "feasible", "quality_unreachable") and eccos["fallbacks"] == []
    assert response.raw["eccos"] == eccos and response.raw["usage"]["completion_tokens"] == 3
    assert api_key not in json.dumps(response.raw, default=str)


def test_chat_keeps_the_conversation_and_min_quality_overrides_per_call(llm, router, loopback):
    messages = [
        ChatMessage(role="system", content="You are terse."),
        ChatMessage(role="user", content="Hi"),
        ChatMessage(role="assistant", content="Hello."),
        ChatMessage(role="user", content=HARD),
    ]
    low, high = planned(router, HARD, 0.0), planned(router, HARD, 1.0)
    assert low != high  # the stricter target buys a different (stronger) model

    cheap = llm.chat(messages, min_quality=0.0)
    strong = llm.chat(messages, min_quality=1.0)

    assert cheap.message.role == "assistant" and cheap.message.content == f"answer from {low}"
    assert strong.message.content == f"answer from {high}"
    assert strong.additional_kwargs["eccos"]["min_quality"] == 1.0
    sent = loopback.requests[0].messages
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"] and sent[-1]["content"] == HARD


def test_llm_options_reach_the_provider(router, loopback):
    llm = ECCOSLLM(router=router, temperature=0.3, max_tokens=50, additional_kwargs={"top_p": 0.9})
    llm.complete(QUESTION, seed=7)
    body = loopback.requests[0].body
    assert body["temperature"] == 0.3 and body["max_tokens"] == 50 and body["top_p"] == 0.9 and body["seed"] == 7


async def test_async_chat_and_complete(llm, router, loopback):
    expected = planned(router, QUESTION, 0.5)

    chat = await llm.achat([ChatMessage(role="user", content=QUESTION)])
    completion = await llm.acomplete(QUESTION, min_quality=0.0)

    assert chat.message.content == f"answer from {expected}"
    assert completion.text == f"answer from {planned(router, QUESTION, 0.0)}"
    assert completion.additional_kwargs["eccos"]["cost"] > 0


# ---------------------------------------------------------------------------------------- streaming
def test_stream_complete_streams_and_ends_with_the_decision(llm, router, loopback):
    expected = planned(router, QUESTION, 0.5)

    chunks = list(llm.stream_complete(QUESTION))

    assert "".join(c.delta or "" for c in chunks) == f"answer from {expected}"
    assert len(chunks) > 3  # word by word, not one blob
    assert chunks[1].additional_kwargs["eccos"]["model"] == expected  # known from the first chunk on
    final = chunks[-1]
    assert final.text == f"answer from {expected}"
    assert final.additional_kwargs["eccos"]["cost"] > 0 and final.raw["eccos"]["output_tokens"] == 3
    assert loopback.requests[0].body["stream"] is True


async def test_astream_chat_streams(llm, router, loopback):
    expected = planned(router, QUESTION, 0.5)

    gen = await llm.astream_chat([ChatMessage(role="user", content=QUESTION)])
    chunks = [chunk async for chunk in gen]

    assert "".join(c.delta or "" for c in chunks) == f"answer from {expected}"
    assert chunks[-1].message.content == f"answer from {expected}"
    assert chunks[-1].additional_kwargs["eccos"]["model"] == expected

    completions = [c async for c in await llm.astream_complete(QUESTION)]
    assert completions[-1].text == f"answer from {expected}"


# ------------------------------------------------------------------------------------------ fallback
def test_a_failing_provider_falls_back_along_the_chain(make_router, loopback, events, api_key):
    target = planned(make_router(), QUESTION, 0.5)
    llm = ECCOSLLM(router=make_router(broken=(target,)), min_quality=0.5)

    response = llm.complete(QUESTION)

    eccos = response.additional_kwargs["eccos"]
    assert eccos["planned_model"] == target and eccos["model"] != target
    assert response.text == f"answer from {eccos['model']}"
    assert [f["model"] for f in eccos["fallbacks"]] == [target]
    assert eccos["fallbacks"][0]["error_type"] == "InternalServerError"
    assert api_key not in json.dumps(eccos)  # the provider echoed the credential; it is redacted
    (answered,) = events.of(ECCOSResponseEvent)
    assert answered.planned_model == target and answered.model == eccos["model"] and answered.fallbacks


def test_stream_falls_back_before_the_first_chunk(make_router, loopback):
    target = planned(make_router(), QUESTION, 0.5)
    llm = ECCOSLLM(router=make_router(broken=(target,)), min_quality=0.5)

    chunks = list(llm.stream_chat([ChatMessage(role="user", content=QUESTION)]))

    final = chunks[-1].additional_kwargs["eccos"]
    assert final["model"] != target and [f["model"] for f in final["fallbacks"]] == [target]
    assert chunks[-1].message.content == f"answer from {final['model']}"


def test_every_model_failing_raises_dispatch_error(make_router, loopback):
    llm = ECCOSLLM(router=make_router(broken=NAMES))
    with pytest.raises(DispatchError, match="every model that could take it failed") as caught:
        llm.complete(QUESTION)
    assert len(caught.value.fallbacks) == len(NAMES)


# ---------------------------------------------------------------------------------------------- tools
def test_tool_calls_go_only_to_models_that_support_tools(router, loopback):
    llm = ECCOSLLM(router=router, min_quality=0.0)  # without tools, the cheapest model would do
    assert planned(router, "What is 3 times 3?", 0.0) != STRONG
    tool = FunctionTool.from_defaults(multiply)

    response = llm.chat_with_tools([tool], user_msg="What is 3 times 3?")

    assert loopback.models_called() == [STRONG]
    assert loopback.requests[0].body["tools"][0]["function"]["name"] == "multiply"
    assert loopback.requests[0].body["tool_choice"] == "auto"
    (call,) = llm.get_tool_calls_from_response(response)
    assert (call.tool_name, call.tool_kwargs, call.tool_id) == ("multiply", {"a": 3, "b": 3}, "call_1")
    assert response.message.additional_kwargs["tool_calls"][0]["function"]["name"] == "multiply"
    assert any(isinstance(b, ToolCallBlock) for b in response.message.blocks)


def test_predict_and_call_runs_the_tool(llm, loopback):
    output = llm.predict_and_call([FunctionTool.from_defaults(multiply)], user_msg="What is 3 times 3?")
    assert output.response == "9"
    assert output.sources[0].tool_name == "multiply"


def test_a_tool_result_goes_back_with_its_call_id(llm, loopback):
    tool = FunctionTool.from_defaults(multiply)
    first = llm.chat_with_tools([tool], user_msg="What is 3 times 3?")
    history = [
        ChatMessage(role="user", content="What is 3 times 3?"),
        first.message,
        ChatMessage(role="tool", content="9", additional_kwargs={"tool_call_id": "call_1", "name": "multiply"}),
    ]

    second = llm.chat_with_tools([tool], chat_history=history)

    assert second.message.content == f"answer from {STRONG}: the tool said 9"
    assert llm.get_tool_calls_from_response(second, error_on_no_tool_call=False) == []
    sent = loopback.requests[-1].messages
    assert sent[1]["role"] == "assistant" and not sent[1].get("content")  # LiteLLM drops a None content
    assert sent[1]["tool_calls"][0]["id"] == "call_1" and sent[1]["tool_calls"][0]["function"]["name"] == "multiply"
    assert sent[2] == {"role": "tool", "content": "9", "tool_call_id": "call_1", "name": "multiply"}
    with pytest.raises(ValueError, match="without calling a tool"):
        llm.get_tool_calls_from_response(second)


def test_a_forced_tool_by_name_and_streamed_tool_calls(llm, loopback):
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    tools = [FunctionTool.from_defaults(multiply), FunctionTool.from_defaults(add)]

    chunks = list(llm.stream_chat_with_tools(tools, user_msg="3 plus 3?", tool_choice="add"))

    assert loopback.requests[0].body["tool_choice"] == {"type": "function", "function": {"name": "add"}}
    (call,) = llm.get_tool_calls_from_response(chunks[-1])
    assert (call.tool_name, call.tool_kwargs) == ("add", {"a": 3, "b": 3})


def test_no_model_supports_tools_is_a_capability_error(make_router, loopback):
    llm = ECCOSLLM(router=make_router())
    with pytest.raises(CapabilityError, match="tools"):
        llm.chat_with_tools([FunctionTool.from_defaults(multiply)], user_msg="3 times 3?")
    assert loopback.requests == []


def test_images_go_as_image_url_parts_to_a_vision_model(llm, loopback):
    message = ChatMessage(
        role="user",
        blocks=[TextBlock(text="What is in this picture?"), ImageBlock(url="https://example.com/cat.png")],
    )

    response = llm.chat([message], min_quality=0.0)

    assert response.additional_kwargs["eccos"]["model"] == STRONG  # the only model that takes images
    content = loopback.requests[0].messages[0]["content"]
    assert content[0] == {"type": "text", "text": "What is in this picture?"}
    assert content[1]["type"] == "image_url" and content[1]["image_url"]["url"] == "https://example.com/cat.png"


# ------------------------------------------------------------------------------------------- batches
def count_solves(monkeypatch) -> list[int]:
    """Record the batch size of every optimizer call."""
    calls: list[int] = []
    solve = eccos_core.policies.joint.optimize

    def counting(cost, *args, **kwargs):
        calls.append(len(cost))
        return solve(cost, *args, **kwargs)

    monkeypatch.setattr(eccos_core.policies.joint, "optimize", counting)
    return calls


def test_complete_batch_plans_once_and_keeps_input_order(llm, router, loopback, monkeypatch):
    expected = router.plan(PROMPTS, 0.5).models
    solves = count_solves(monkeypatch)

    responses = llm.complete_batch(PROMPTS)

    assert solves == [len(PROMPTS)]  # one optimizer call for the whole batch
    assert [r.text for r in responses] == [f"answer from {m}" for m in expected]
    assert [r.additional_kwargs["eccos"]["batch_size"] for r in responses] == [len(PROMPTS)] * len(PROMPTS)
    assert sorted(loopback.models_called()) == sorted(expected)
    for prompt, model in zip(PROMPTS, expected, strict=True):
        assert loopback.model_for(prompt) == [model]


async def test_acomplete_batch_plans_once_and_keeps_input_order(llm, router, loopback, monkeypatch):
    expected = router.plan(PROMPTS, 0.7).models
    solves = count_solves(monkeypatch)

    responses = await llm.acomplete_batch(PROMPTS, min_quality=0.7, max_concurrency=3)

    assert solves == [len(PROMPTS)]
    assert [r.text for r in responses] == [f"answer from {m}" for m in expected]
    assert {r.additional_kwargs["eccos"]["min_quality"] for r in responses} == {0.7}


async def test_chat_batches_sync_and_async(llm, router, loopback, monkeypatch):
    conversations = [
        [ChatMessage(role="system", content="Be brief."), ChatMessage(role="user", content=p)] for p in PROMPTS
    ]
    expected = router.plan(
        [[{"role": "system", "content": "Be brief."}, {"role": "user", "content": p}] for p in PROMPTS], 0.5
    ).models
    solves = count_solves(monkeypatch)

    sync = llm.chat_batch(conversations)
    concurrent = await llm.achat_batch(conversations)

    assert solves == [len(PROMPTS), len(PROMPTS)]
    assert [r.message.content for r in sync] == [f"answer from {m}" for m in expected]
    assert [r.message.content for r in concurrent] == [f"answer from {m}" for m in expected]


async def test_a_batch_keeps_failures_in_place_and_respects_caps(make_router, loopback):
    # two prompts, each model capped at one: the broken one's prompt cannot fall back (the other cap is used)
    llm = ECCOSLLM(router=make_router(broken=(CHEAP,)), capacity={CHEAP: 1, MID: 1, STRONG: 0}, min_quality=0.0)

    results = await llm.acomplete_batch(PROMPTS[:2], return_exceptions=True)

    assert len(results) == 2
    failed = [r for r in results if isinstance(r, Exception)]
    answered = [r for r in results if not isinstance(r, Exception)]
    assert len(failed) == 1 and isinstance(failed[0], DispatchError)
    assert answered[0].text == f"answer from {MID}"
    assert STRONG not in loopback.models_called()
    with pytest.raises(DispatchError) as caught:
        await llm.acomplete_batch(PROMPTS[:2])
    assert len(caught.value.results) == 2  # every result is still there, in order


HUGE = "lorem ipsum dolor sit amet " * 2_000
"""About 10k tokens: longer than every model's context window in :func:`small_window_llm`'s pool."""
BAD_PROMPTS = [pytest.param(HUGE, ContextWindowError, id="oversize"), pytest.param("", InputError, id="empty")]


@pytest.fixture
def small_window_llm(make_router) -> ECCOSLLM:
    """The loopback pool with a 4096-token context window on every model (so :data:`HUGE` fits none)."""
    return ECCOSLLM(router=make_router(max_input_tokens=4096), min_quality=0.5)


def assert_bad_item_alone(results: list[Any], error: type, loopback: Any) -> None:
    """The middle item holds its typed error; the two good prompts were sent and answered, in input order."""
    assert len(results) == 3 and isinstance(results[1], error)
    assert [r.text.startswith("answer from ") for r in (results[0], results[2])] == [True, True]
    assert loopback.model_for(PROMPTS[0]) and loopback.model_for(PROMPTS[2])
    assert len(loopback.requests) == 2  # the bad prompt was never sent


@pytest.mark.parametrize(("bad", "error"), BAD_PROMPTS)
def test_complete_batch_slots_a_bad_prompt_and_sends_the_rest(small_window_llm, loopback, bad, error):
    results = small_window_llm.complete_batch([PROMPTS[0], bad, PROMPTS[2]], return_exceptions=True)

    assert_bad_item_alone(results, error, loopback)
    with pytest.raises(error):
        small_window_llm.complete_batch([PROMPTS[0], bad, PROMPTS[2]])


@pytest.mark.parametrize(("bad", "error"), BAD_PROMPTS)
async def test_acomplete_batch_slots_a_bad_prompt_and_sends_the_rest(small_window_llm, loopback, bad, error):
    results = await small_window_llm.acomplete_batch([PROMPTS[0], bad, PROMPTS[2]], return_exceptions=True)

    assert_bad_item_alone(results, error, loopback)
    with pytest.raises(error):
        await small_window_llm.acomplete_batch([PROMPTS[0], bad, PROMPTS[2]])


def user_chats(*prompts: str) -> list[list[ChatMessage]]:
    return [[ChatMessage(role="user", content=p)] for p in prompts]


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        pytest.param(user_chats(HUGE)[0], ContextWindowError, id="oversize"),
        pytest.param(user_chats("")[0], InputError, id="empty"),
        pytest.param([], InputError, id="no-messages"),
    ],
)
async def test_chat_batches_slot_a_bad_chat_and_send_the_rest(small_window_llm, loopback, bad, error):
    good = user_chats(PROMPTS[0], PROMPTS[2])
    chats = [good[0], bad, good[1]]

    sync = small_window_llm.chat_batch(chats, return_exceptions=True)
    assert isinstance(sync[1], error)
    assert [r.message.content.startswith("answer from ") for r in (sync[0], sync[2])] == [True, True]
    concurrent = await small_window_llm.achat_batch(chats, return_exceptions=True)
    assert isinstance(concurrent[1], error)
    assert [concurrent[i].message.content for i in (0, 2)] == [sync[i].message.content for i in (0, 2)]
    assert len(loopback.requests) == 4  # two good chats, twice; the bad one never sent
    with pytest.raises(error):
        small_window_llm.chat_batch(chats)
    with pytest.raises(error):
        await small_window_llm.achat_batch(chats)


async def test_a_batch_of_bad_prompts_only_sends_nothing(small_window_llm, loopback):
    results = small_window_llm.complete_batch([HUGE, ""], return_exceptions=True)
    answers = await small_window_llm.acomplete_batch([""], return_exceptions=True)

    assert [type(r) for r in results] == [ContextWindowError, InputError]
    assert [type(r) for r in answers] == [InputError]
    assert loopback.requests == []


def test_good_prompts_around_a_bad_one_keep_their_joint_plan(small_window_llm, loopback, monkeypatch):
    expected = small_window_llm.get_router().plan([PROMPTS[0], PROMPTS[2]], 0.5).models
    solves = count_solves(monkeypatch)

    results = small_window_llm.complete_batch([PROMPTS[0], HUGE, PROMPTS[2]], return_exceptions=True)

    assert [results[0].text, results[2].text] == [f"answer from {m}" for m in expected]
    assert [results[i].additional_kwargs["eccos"]["batch_size"] for i in (0, 2)] == [2, 2]
    assert solves[-1] == 2  # the good prompts are planned together once the bad one is found


def test_caps_that_cannot_hold_the_batch_fail_every_item_and_send_nothing(make_router, loopback):
    # no prompt fails on its own: the error is the batch's, so each slot holds it (caps are never overrun)
    llm = ECCOSLLM(router=make_router(), capacity={CHEAP: 1, MID: 0, STRONG: 0}, min_quality=0.0)

    results = llm.complete_batch(PROMPTS[:2], return_exceptions=True)

    assert [type(r) for r in results] == [CapacityError, CapacityError]
    assert loopback.requests == []
    with pytest.raises(CapacityError):
        llm.complete_batch(PROMPTS[:2])


def test_a_batch_of_one_leaves_no_plan_behind(llm, router, loopback):
    llm.complete_batch([PROMPTS[1]], min_quality=0.9)
    loopback.clear()

    response = llm.complete(QUESTION)

    assert response.additional_kwargs["eccos"]["batch_size"] == 1  # planned on its own, not with the batch's plan
    assert response.additional_kwargs["eccos"]["min_quality"] == 0.5
    assert loopback.model_for(QUESTION) == [planned(router, QUESTION, 0.5)]


def test_batch_rejects_a_single_string(llm):
    with pytest.raises(TypeError, match="list of prompts"):
        llm.complete_batch("What is 2 + 2?")


# ------------------------------------------------------------------------------------ instrumentation
def test_each_call_emits_its_routing_decision_inside_the_call_span(llm, router, loopback, events):
    expected = planned(router, QUESTION, 0.5)

    llm.chat([ChatMessage(role="user", content=QUESTION)])

    (decision,) = events.of(ECCOSRoutingEvent)
    (answered,) = events.of(ECCOSResponseEvent)
    (start,) = events.of(LLMChatStartEvent)
    assert decision.class_name() == "ECCOSRoutingEvent"
    assert decision.model == expected and decision.batch_size == 1 and decision.plan["model"] == expected
    assert 0.0 <= decision.p_success <= 1.0 and decision.predicted_cost > 0 and decision.min_quality == 0.5
    assert answered.model == expected and answered.cost > 0 and answered.output_tokens == 3
    assert decision.span_id == start.span_id == answered.span_id  # tied to the LLM call's span
    assert start.model_dict["model_name"] == "eccos"


async def test_a_batch_emits_one_decision_per_prompt_each_in_its_own_call(llm, router, loopback, events):
    expected = router.plan(PROMPTS, 0.5).models

    await llm.acomplete_batch(PROMPTS)

    decisions = sorted(events.of(ECCOSRoutingEvent), key=lambda e: e.batch_index)
    assert [d.model for d in decisions] == expected
    assert {d.batch_size for d in decisions} == {len(PROMPTS)}
    starts = events.of(LLMCompletionStartEvent)
    assert len(starts) == len(PROMPTS)
    assert {d.span_id for d in decisions} == {s.span_id for s in starts}  # one span per prompt
    assert len(events.of(ECCOSResponseEvent)) == len(PROMPTS)


def test_streams_emit_the_decision_before_the_first_chunk(llm, loopback, events):
    stream = llm.stream_complete(QUESTION)
    assert len(events.of(ECCOSRoutingEvent)) == 1 and events.of(ECCOSResponseEvent) == []
    list(stream)
    assert len(events.of(ECCOSResponseEvent)) == 1


def test_payload_and_events_never_carry_the_credential(llm, loopback, events, api_key):
    llm.complete(QUESTION)
    assert api_key not in json.dumps(llm.to_payload(), default=str)
    for event in events.events:
        assert api_key not in json.dumps(event.model_dump(), default=str)


def test_default_router_is_shared(monkeypatch):
    monkeypatch.setattr(eccos_core.router.Router, "default", classmethod(lambda cls, cache_dir=None: object()))
    llm_base._load_default_router.cache_clear()
    try:
        assert ECCOSLLM().get_router() is ECCOSLLM().get_router()  # loaded once per process
    finally:
        llm_base._load_default_router.cache_clear()


def test_structured_predict_goes_through_a_tool_call(llm, loopback):
    class Planet(BaseModel):
        """A planet and how many moons it has."""

        name: str
        moons: int

    planet = llm.structured_predict(Planet, PromptTemplate("Describe the planet {planet}."), planet="Mars")

    assert planet == Planet(name="test", moons=3)  # the loopback model fills strings with "test", integers with 3
    assert loopback.models_called() == [STRONG]
    assert loopback.requests[0].body["tools"][0]["function"]["name"] == "Planet"
