"""ChatECCOS against the loopback provider: joint batches, quality, streaming, tools, failures, tracing."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from typing import Any
from uuid import UUID

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.load import dumpd, dumps, load
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.tools import tool
from pydantic import BaseModel

from langchain_eccos import ChatECCOS

CHEAP_TO_PRICEY = [
    "qwen2.5-7b-instruct",
    "llama-3.1-8b-instruct",
    "gemma-2-9b-it",
    "llama3-chatqa-1.5-70b",
]


class Recorder(BaseCallbackHandler):
    """Records chat model runs, their tracing metadata and eccos routing events (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.starts: dict[UUID, dict[str, Any]] = {}
        self.events: list[tuple[UUID, dict[str, Any]]] = []
        self.ends: list[UUID] = []

    def on_chat_model_start(self, serialized: Any, messages: Any, *, run_id: UUID, **kwargs: Any) -> None:
        with self.lock:
            self.starts[run_id] = kwargs.get("metadata") or {}

    def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        with self.lock:
            self.ends.append(run_id)

    def on_custom_event(self, name: str, data: Any, *, run_id: UUID, **kwargs: Any) -> None:
        if name == "eccos_route":
            with self.lock:
                self.events.append((run_id, data))


@tool
def magic_function(input: int) -> int:
    """Apply the magic function to an integer."""
    return input + 2


class Joke(BaseModel):
    setup: str
    punchline: str


def prompts(n: int) -> list[str]:
    topics = ["arithmetic", "a proof", "a poem", "chemistry", "history", "a python bug", "geography"]
    return [f"q{i}: tell me about {topics[i % len(topics)]} (item {i})" for i in range(n)]


def eccos(message: AIMessage) -> dict[str, Any]:
    return message.response_metadata["eccos"]


# ------------------------------------------------------------------------------------------ joint batch
def test_batch_of_200_is_planned_in_one_optimizer_call(router: Any, plan_spy: Any, loopback: Any) -> None:
    model = ChatECCOS(router=router, min_quality=0.7)
    questions = prompts(200)
    replies = model.batch(questions)

    assert plan_spy.sizes == [200]
    assert len(replies) == 200
    assert {eccos(r)["batch_size"] for r in replies} == {200}
    for question, reply in zip(questions, replies, strict=True):  # input order kept, nothing dropped
        assert loopback.model_for(question) == [eccos(reply)["model"]]
        assert reply.content == f"answer from {eccos(reply)['model']}"
    assert len({eccos(r)["model"] for r in replies}) > 1  # the optimizer mixes models


def _chains(model: ChatECCOS) -> dict[str, Any]:
    prompt = ChatPromptTemplate.from_messages([("human", "{question}")])
    return {
        "prompt | model": prompt | model,
        "bind": model.bind(min_quality=0.8),
        "with_config": model.with_config(tags=["joint"], max_concurrency=4),
        "with_retry": model.with_retry(stop_after_attempt=2),
        "with_fallbacks": model.with_fallbacks([ChatECCOS(router=model.router, min_quality=0.5)]),
    }


@pytest.mark.parametrize("shape", ["prompt | model", "bind", "with_config", "with_retry", "with_fallbacks"])
def test_joint_plan_survives_composition(shape: str, router: Any, plan_spy: Any, loopback: Any) -> None:
    model = ChatECCOS(router=router, min_quality=0.7)
    runnable = _chains(model)[shape]
    questions = prompts(30)
    inputs = [{"question": q} for q in questions] if shape == "prompt | model" else questions
    recorder = Recorder()

    replies = runnable.batch(inputs, {"callbacks": [recorder]})

    assert plan_spy.sizes == [30]
    assert [eccos(r)["batch_size"] for r in replies] == [30] * 30
    assert [loopback.model_for(q) for q in questions] == [[eccos(r)["model"]] for r in replies]
    assert len(recorder.starts) == 30 and len(recorder.ends) == 30  # one callback run per item
    expected_quality = 0.8 if shape == "bind" else 0.7
    assert {eccos(r)["min_quality"] for r in replies} == {expected_quality}


@pytest.mark.parametrize("shape", ["prompt | model", "bind", "with_config", "with_retry", "with_fallbacks"])
async def test_joint_plan_survives_composition_async(shape: str, router: Any, plan_spy: Any, loopback: Any) -> None:
    model = ChatECCOS(router=router, min_quality=0.7)
    runnable = _chains(model)[shape]
    questions = prompts(20)
    inputs = [{"question": q} for q in questions] if shape == "prompt | model" else questions

    replies = await runnable.abatch(inputs)

    assert plan_spy.sizes == [20]
    assert [loopback.model_for(q) for q in questions] == [[eccos(r)["model"]] for r in replies]


def test_fallbacks_plan_the_failed_items_jointly_on_the_fallback_model(
    make_pool: Any, fake_predictor: Any, router: Any, plan_spy: Any, spy_on: Any, loopback: Any
) -> None:
    from eccos_core.router import Router

    down = Router(make_pool(CHEAP_TO_PRICEY, broken=CHEAP_TO_PRICEY), fake_predictor)
    down_spy = spy_on(down)
    chain = ChatECCOS(router=down, min_quality=0.6).with_fallbacks([ChatECCOS(router=router, min_quality=0.6)])

    replies = chain.batch(prompts(12))

    assert down_spy.sizes == [12] and plan_spy.sizes == [12]
    assert all(isinstance(r, AIMessage) and eccos(r)["batch_size"] == 12 for r in replies)


def test_min_quality_changes_the_model_mix(router: Any, loopback: Any) -> None:
    model = ChatECCOS(router=router, min_quality=0.5)
    questions = prompts(60)

    low = model.batch(questions)
    high = model.batch(questions, min_quality=0.8)  # call-time override
    bound = model.bind(min_quality=0.8).batch(questions)  # per chain

    def mean_p(replies: list[AIMessage]) -> float:
        return sum(eccos(r)["p_success"] for r in replies) / len(replies)

    def cost(replies: list[AIMessage]) -> float:
        return sum(eccos(r)["predicted_cost"] for r in replies)

    assert mean_p(low) >= 0.5 - 1e-9 and mean_p(high) >= 0.8 - 1e-9
    assert mean_p(high) > mean_p(low) and cost(high) > cost(low)
    assert [eccos(r)["model"] for r in low] != [eccos(r)["model"] for r in high]
    assert [eccos(r)["model"] for r in bound] == [eccos(r)["model"] for r in high]


# ------------------------------------------------------------------------------------ failures
def test_a_model_failing_mid_batch_falls_back_and_every_item_returns(
    make_pool: Any, fake_predictor: Any, loopback: Any, api_key: str
) -> None:
    from eccos_core.router import Router

    broken = ["qwen2.5-7b-instruct", "llama-3.1-8b-instruct"]
    router = Router(make_pool(CHEAP_TO_PRICEY, broken=broken), fake_predictor)
    questions = prompts(40)

    replies = ChatECCOS(router=router, min_quality=0.6).batch(questions)

    assert len(replies) == 40 and all(isinstance(r, AIMessage) for r in replies)
    fell_back = [r for r in replies if eccos(r)["planned_model"] in broken]
    assert fell_back, "the plan should use a cheap model that is down"
    for reply in fell_back:
        assert eccos(reply)["model"] not in broken
        assert eccos(reply)["fallbacks"][0]["model"] == eccos(reply)["planned_model"]
        assert api_key not in json.dumps(reply.response_metadata)
    assert all(not eccos(r)["fallbacks"] for r in replies if eccos(r)["planned_model"] not in broken)


def _capped_router(make_pool: Any, fake_predictor: Any) -> Any:
    """Two models capped at 10 queries per batch, one of them down: 10 of 20 items cannot be served."""
    from eccos_core.router import Router

    pool = make_pool(["qwen2.5-7b-instruct", "gemma-2-9b-it"], broken=["qwen2.5-7b-instruct"], capacity=10)
    return Router(pool, fake_predictor)


def test_items_whose_every_model_failed_are_exceptions_in_their_slots(
    make_pool: Any, fake_predictor: Any, loopback: Any, api_key: str
) -> None:
    from eccos_core.errors import DispatchError

    model = ChatECCOS(router=_capped_router(make_pool, fake_predictor), min_quality=0.3)
    questions = prompts(20)

    results = model.batch(questions, return_exceptions=True)

    errors = [r for r in results if isinstance(r, Exception)]
    answers = [r for r in results if isinstance(r, AIMessage)]
    assert len(results) == 20 and len(errors) == 10 and len(answers) == 10
    assert all(isinstance(e, DispatchError) and api_key not in str(e) for e in errors)
    assert all(eccos(a)["model"] == "gemma-2-9b-it" for a in answers)

    loopback.clear()
    with pytest.raises(DispatchError):
        model.batch(questions)
    assert all(loopback.model_for(q) for q in questions)  # the rest still ran before the error was raised


async def test_abatch_return_exceptions_keeps_order(make_pool: Any, fake_predictor: Any, loopback: Any) -> None:
    model = ChatECCOS(router=_capped_router(make_pool, fake_predictor), min_quality=0.3)
    results = await model.abatch(prompts(20), return_exceptions=True)
    assert len(results) == 20 and sum(isinstance(r, Exception) for r in results) == 10


def test_an_unreadable_input_fails_alone(router: Any, plan_spy: Any, loopback: Any) -> None:
    results = ChatECCOS(router=router).batch(["hello", [], "world"], return_exceptions=True)
    assert isinstance(results[1], Exception)
    assert isinstance(results[0], AIMessage) and isinstance(results[2], AIMessage)
    assert plan_spy.sizes == [2]


async def test_abatch_of_1000_honours_the_concurrency_limit(router: Any, plan_spy: Any, loopback: Any) -> None:
    send = router.dispatcher.asend
    in_flight, peak = 0, 0

    async def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            return await send(*args, **kwargs)
        finally:
            in_flight -= 1

    router.dispatcher.asend = counting
    questions = prompts(1000)

    replies = await ChatECCOS(router=router, min_quality=0.7).abatch(questions, {"max_concurrency": 16})

    assert plan_spy.sizes == [1000]
    assert 1 < peak <= 16
    assert [r.content for r in replies] == [f"answer from {eccos(r)['model']}" for r in replies]
    assert all(
        loopback.model_for(q) == [eccos(r)["model"]] for q, r in zip(questions[::97], replies[::97], strict=True)
    )


# ------------------------------------------------------------------------------- single calls
def test_invoke_reports_routing_usage_and_tracing(router: Any, loopback: Any) -> None:
    recorder = Recorder()
    reply = ChatECCOS(router=router, min_quality=0.7).invoke("What is 17 * 23?", {"callbacks": [recorder]})

    meta = eccos(reply)
    assert reply.response_metadata["model_name"] == meta["model"] == loopback.models_called()[0]
    assert meta["batch_size"] == 1 and meta["status"] in ("optimal", "feasible")
    assert meta["cost"] > 0 and meta["predicted_cost"] > 0
    request_usage = loopback.requests[0]
    assert reply.usage_metadata is not None and reply.usage_metadata["input_tokens"] > 0
    assert (
        reply.usage_metadata["total_tokens"]
        == reply.usage_metadata["input_tokens"] + reply.usage_metadata["output_tokens"]
    )
    assert request_usage.body["messages"] == [{"role": "user", "content": "What is 17 * 23?"}]
    ((run_id, tracing),) = recorder.starts.items()
    assert tracing["ls_model_name"] == meta["model"] and tracing["ls_provider"] == "eccos"
    assert [(r, d["model"]) for r, d in recorder.events] == [(run_id, meta["model"])]


def test_one_routing_event_per_decision_on_its_own_run(router: Any, loopback: Any) -> None:
    recorder = Recorder()
    replies = ChatECCOS(router=router).batch(prompts(8), {"callbacks": [recorder]})
    assert len(recorder.events) == 8
    assert {run_id for run_id, _ in recorder.events} == set(recorder.starts)
    assert sorted(d["model"] for _, d in recorder.events) == sorted(eccos(r)["model"] for r in replies)
    assert {recorder.starts[r]["ls_model_name"] for r, _ in recorder.events} == {eccos(r)["model"] for r in replies}


def test_streaming_through_the_router(router: Any, loopback: Any) -> None:
    recorder = Recorder()
    chunks = list(ChatECCOS(router=router, min_quality=0.7).stream("Tell me a joke", {"callbacks": [recorder]}))

    full = chunks[0]
    for chunk in chunks[1:]:
        full = full + chunk
    model = loopback.models_called()[0]
    assert len(chunks) > 3 and chunks[-1].chunk_position == "last"
    assert full.content == f"answer from {model}"
    assert full.response_metadata["model_name"] == model and full.response_metadata["eccos"]["model"] == model
    assert full.usage_metadata is not None and full.usage_metadata["output_tokens"] > 0
    assert loopback.requests[0].body["stream"] is True
    ((run_id, _),) = recorder.starts.items()
    assert [r for r, _ in recorder.events] == [run_id]


async def test_async_streaming_and_invoke(router: Any, loopback: Any) -> None:
    model = ChatECCOS(router=router, min_quality=0.7)
    recorder = Recorder()
    full = None
    async for chunk in model.astream("Tell me a joke", {"callbacks": [recorder]}):
        full = chunk if full is None else full + chunk
    assert full is not None and full.content.startswith("answer from ")
    assert len(recorder.events) == 1 and recorder.events[0][0] in recorder.starts
    reply = await model.ainvoke("hello")
    assert eccos(reply)["model"] in reply.content


def test_streaming_invoke_when_streaming_is_set(router: Any, loopback: Any) -> None:
    recorder = Recorder()
    reply = ChatECCOS(router=router, streaming=True).invoke("hi", {"callbacks": [recorder]})
    assert loopback.requests[0].body["stream"] is True
    assert reply.content == f"answer from {eccos(reply)['model']}"
    assert [r for r, _ in recorder.events] == list(recorder.starts)


def test_stream_that_dies_midway_raises_without_restarting(make_pool: Any, fake_predictor: Any, loopback: Any) -> None:
    from eccos_core.errors import StreamInterruptedError
    from eccos_core.router import Router

    router = Router(make_pool(["gemma-2-9b-it"], modes={"gemma-2-9b-it": "midstream"}), fake_predictor)
    with pytest.raises(StreamInterruptedError):
        list(ChatECCOS(router=router, min_quality=0.0).stream("Tell me a long story"))
    assert len(loopback.requests) == 1


# ----------------------------------------------------------------------- tools and structured output
def _mixed_pool(make_pool: Any, fake_predictor: Any, **capability: bool) -> Any:
    """The two cheapest models lack ``capability``; the two priciest have it."""
    from eccos_core.router import Router

    without = make_pool(CHEAP_TO_PRICEY[:2], **dict.fromkeys(capability, False))
    with_ = make_pool(CHEAP_TO_PRICEY[2:], **capability)
    return Router(without + with_, fake_predictor)


def test_tool_calls_go_only_to_tool_models_and_round_trip(make_pool: Any, fake_predictor: Any, loopback: Any) -> None:
    router = _mixed_pool(make_pool, fake_predictor, supports_tools=True)
    model = ChatECCOS(router=router, min_quality=0.3).bind_tools([magic_function], tool_choice="magic_function")

    first = model.invoke("What is magic_function(3)?")
    assert first.tool_calls == [{"name": "magic_function", "args": {"input": 3}, "id": "call_1", "type": "tool_call"}]
    assert eccos(first)["model"] in CHEAP_TO_PRICEY[2:]

    result = magic_function.invoke(first.tool_calls[0])
    assert isinstance(result, ToolMessage)
    second = model.invoke([HumanMessage("What is magic_function(3)?"), first, result])
    assert "the tool said 5" in second.content and eccos(second)["model"] in CHEAP_TO_PRICEY[2:]
    assert loopback.requests[1].body["messages"][1]["tool_calls"][0]["function"]["name"] == "magic_function"

    streamed = None
    for chunk in model.stream("What is magic_function(3)?"):
        streamed = chunk if streamed is None else streamed + chunk
    assert streamed is not None and streamed.tool_calls[0]["args"] == {"input": 3}


def test_a_batch_with_tools_is_planned_among_tool_models(make_pool: Any, fake_predictor: Any, loopback: Any) -> None:
    router = _mixed_pool(make_pool, fake_predictor, supports_tools=True)
    replies = ChatECCOS(router=router, min_quality=0.3).bind_tools([magic_function]).batch(prompts(10))
    assert {eccos(r)["model"] for r in replies} <= set(CHEAP_TO_PRICEY[2:])
    assert all(r.tool_calls for r in replies)


@pytest.mark.parametrize("method", ["function_calling", "json_schema", "json_mode"])
def test_structured_output(method: str, make_pool: Any, fake_predictor: Any, loopback: Any) -> None:
    capability = "supports_tools" if method == "function_calling" else "supports_response_schema"
    router = _mixed_pool(make_pool, fake_predictor, **{capability: True})
    model = ChatECCOS(router=router, min_quality=0.3)
    if method == "json_mode":
        result = model.with_structured_output(None, method="json_mode").invoke("a joke as JSON")  # type: ignore[arg-type]
        assert result == {"answer": f"answer from {loopback.models_called()[0]}"}
        return
    raw = model.with_structured_output(Joke, method=method, include_raw=True).invoke("Tell me a joke")
    assert raw["parsed"] == Joke(setup="test", punchline="test") and raw["parsing_error"] is None
    assert eccos(raw["raw"])["model"] in CHEAP_TO_PRICEY[2:]


def test_structured_output_with_no_capable_model_says_what_is_missing(
    make_pool: Any, fake_predictor: Any, loopback: Any
) -> None:
    from eccos_core.errors import CapabilityError
    from eccos_core.router import Router

    router = Router(make_pool(CHEAP_TO_PRICEY[:2], supports_response_schema=False), fake_predictor)
    with pytest.raises(CapabilityError, match="response_schema"):
        ChatECCOS(router=router).with_structured_output(Joke, method="json_schema").invoke("joke")
    assert loopback.requests == []


def test_image_input_routes_to_vision_models(make_pool: Any, fake_predictor: Any, loopback: Any) -> None:
    router = _mixed_pool(make_pool, fake_predictor, supports_vision=True)
    message = HumanMessage(
        content=[
            {"type": "text", "text": "Describe this image."},
            {"type": "image", "base64": "iVBORw0KGgo=", "mime_type": "image/png"},
        ]
    )
    reply = ChatECCOS(router=router, min_quality=0.3).invoke([message])
    assert eccos(reply)["model"] in CHEAP_TO_PRICEY[2:]
    sent = loopback.requests[0].body["messages"][0]["content"]
    assert sent[1] == {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}


def test_model_override_pins_the_call(router: Any, loopback: Any) -> None:
    model = ChatECCOS(router=router, min_quality=0.9)
    reply = model.invoke("hi", model="qwen2.5-7b-instruct")
    assert reply.response_metadata["model_name"] == "qwen2.5-7b-instruct"
    assert loopback.models_called() == ["qwen2.5-7b-instruct"]
    with pytest.raises(ValueError, match="not in the router's pool"):
        model.invoke("hi", model="gpt-17")


def test_stop_and_options_reach_the_provider(router: Any, loopback: Any) -> None:
    model = ChatECCOS(router=router, temperature=0.2, max_tokens=64, stop=["END"], model_kwargs={"seed": 7})
    model.invoke("hi")
    body = loopback.requests[0].body
    assert (body["temperature"], body["max_tokens"], body["stop"], body["seed"]) == (0.2, 64, ["END"], 7)
    assert "min_quality" not in body and "capacity" not in body


# --------------------------------------------------------------------------- construction and wiring
def test_construction_and_import_are_offline_and_lazy() -> None:
    code = (
        "import sys\n"
        "from langchain_eccos import ChatECCOS, ECCOSSelector\n"
        "m = ChatECCOS(min_quality=0.8); s = ECCOSSelector()\n"
        "m._get_ls_params(); m.bind_tools([]); m.with_structured_output({'title': 'x', 'type': 'object'})\n"
        "assert 'eccos_core.router' not in sys.modules, 'router imported at construction'\n"
        "assert 'langchain' not in sys.modules, 'langchain imported'\n"
        "assert m._loaded is None\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_package_works_without_langchain_installed() -> None:
    code = (
        "import importlib.abc, sys\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'langchain' or name.startswith('langchain.'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import langchain_eccos\n"
        "from langchain_eccos import ChatECCOS, ECCOSSelector, ECCOSDecisionModel\n"
        "ChatECCOS(); ECCOSSelector()\n"
        "try:\n"
        "    langchain_eccos.ECCOSMiddleware\n"
        "except ModuleNotFoundError:\n"
        "    pass\n"
        "else:\n"
        "    raise SystemExit('ECCOSMiddleware imported without langchain')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_default_router_loads_once_on_first_use(monkeypatch: pytest.MonkeyPatch, lc_router: Any) -> None:
    from langchain_eccos import routing

    calls: list[int] = []
    routing.default_router.cache_clear()
    monkeypatch.setattr("eccos_core.router.Router.default", classmethod(lambda cls: calls.append(1) or lc_router))
    try:
        a, b = ChatECCOS(), ChatECCOS(min_quality=0.9)
        assert calls == []
        assert a.get_router() is lc_router and b.get_router() is lc_router
        assert calls == [1]
    finally:
        routing.default_router.cache_clear()


def test_router_path_loads_a_saved_router_with_the_live_pool(
    monkeypatch: pytest.MonkeyPatch, lc_router: Any, lc_pool: Any, tmp_path: Any
) -> None:
    seen: list[tuple[Any, Any]] = []
    monkeypatch.setattr(
        "eccos_core.router.Router.load",
        classmethod(lambda cls, path, models=None: seen.append((path, models)) or lc_router),
    )
    model = ChatECCOS(router_path=str(tmp_path), models=lc_pool)
    assert seen == []
    assert model.get_router() is lc_router
    assert seen == [(str(tmp_path), tuple(lc_pool))]
    with pytest.raises(ValueError, match="either router"):
        ChatECCOS(router=lc_router, router_path=str(tmp_path))


def test_models_alone_repoint_the_default_router(
    monkeypatch: pytest.MonkeyPatch, lc_router: Any, make_pool: Any
) -> None:
    from langchain_eccos import routing

    routing.default_router.cache_clear()
    monkeypatch.setattr("eccos_core.router.Router.default", classmethod(lambda cls: lc_router))
    try:
        pool = make_pool(CHEAP_TO_PRICEY[:2])
        router = ChatECCOS(models=pool).get_router()
        assert [m.name for m in router.models] == CHEAP_TO_PRICEY[:2]
        assert router.predictor is lc_router.predictor
    finally:
        routing.default_router.cache_clear()


def test_serialization_round_trip(lc_router: Any, api_key: str) -> None:
    model = ChatECCOS(router=lc_router, min_quality=0.8, max_tokens=50, capacity={"gemma-2-9b-it": 5})
    text = dumps(model)
    assert api_key not in text and "router" not in dumpd(model)["kwargs"]
    revived = load(dumpd(model), valid_namespaces=["langchain_eccos"], allowed_objects=[ChatECCOS])
    assert isinstance(revived, ChatECCOS)
    assert (revived.min_quality, revived.max_tokens, revived.capacity) == (0.8, 50, {"gemma-2-9b-it": 5})
    assert revived.router is None  # a revived model resolves its router again on first use


async def test_async_planning_runs_off_the_event_loop(router: Any, loopback: Any) -> None:
    threads: list[int] = []
    plan, plan_call = router.plan, router.plan_call

    def spying(method: Any) -> Any:
        def spy(*args: Any, **kwargs: Any) -> Any:
            threads.append(threading.get_ident())
            return method(*args, **kwargs)

        return spy

    router.plan, router.plan_call = spying(plan), spying(plan_call)
    await ChatECCOS(router=router).ainvoke("hi")
    await ChatECCOS(router=router).abatch(["a", "b"])
    assert len(threads) == 2 and threading.get_ident() not in threads


def test_batch_as_completed_is_planned_jointly(router: Any, plan_spy: Any, loopback: Any) -> None:
    questions = prompts(25)
    done = dict(ChatECCOS(router=router).batch_as_completed(questions, {"max_concurrency": 5}))
    assert plan_spy.sizes == [25] and sorted(done) == list(range(25))
    assert all(loopback.model_for(questions[i]) == [eccos(r)["model"]] for i, r in done.items())


async def test_abatch_as_completed_is_planned_jointly(router: Any, plan_spy: Any, loopback: Any) -> None:
    questions = prompts(25)
    done = {i: r async for i, r in ChatECCOS(router=router).abatch_as_completed(questions)}
    assert plan_spy.sizes == [25] and sorted(done) == list(range(25))
    assert {eccos(r)["batch_size"] for r in done.values()} == {25}
