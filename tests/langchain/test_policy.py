"""One decision path: every door routes a single call as ``Router.complete`` does (``policy="dual"``), bindable.

Each door is driven through its framework's own objects against the loopback provider; ``PlanSpy`` records
whether the router was asked for a joint plan (``router.plan``) or a single call (``router.plan_call``) and under
which policy.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from pydantic import ValidationError

from eccos_core.errors import InputError
from langchain_eccos import ChatECCOS, ECCOSSelector

QUESTION = "What is 17 * 23?"


def _sent_bodies(loopback: Any) -> list[dict[str, Any]]:
    return [request.body for request in loopback.requests]


def test_chat_invoke_and_stream_route_per_call_by_default(router: Any, plan_spy: Any, loopback: Any) -> None:
    chat = ChatECCOS(router=router, min_quality=0.6)
    reply = chat.invoke(QUESTION)
    chunks = list(chat.stream(QUESTION))
    assert plan_spy.sizes == [] and plan_spy.single == ["dual", "dual"]
    assert reply.response_metadata["eccos"]["solver"] == "dual"
    assert chunks and router.dual.stats()["min_quality=0.6"]["calls"] == 2  # one shared stream, both calls in it


def test_policy_binds_per_chain_and_per_call_and_never_reaches_the_provider(
    router: Any, plan_spy: Any, loopback: Any
) -> None:
    chat = ChatECCOS(router=router, min_quality=0.6)
    strict = chat.bind(policy="strict")
    assert strict.invoke(QUESTION).response_metadata["eccos"]["solver"] != "dual"
    chat.invoke(QUESTION, policy="strict")
    ChatECCOS(router=router, policy="strict").invoke(QUESTION)
    assert plan_spy.single == ["strict", "strict", "strict"]
    assert all("policy" not in body for body in _sent_bodies(loopback)) and len(loopback.requests) == 3


def test_batches_stay_joint_whatever_the_policy(router: Any, plan_spy: Any, loopback: Any) -> None:
    ChatECCOS(router=router, min_quality=0.6).bind(policy="dual").batch([QUESTION, "Prove Fermat's theorem."])
    assert plan_spy.sizes == [2] and plan_spy.single == []
    assert all("policy" not in body for body in _sent_bodies(loopback))


@pytest.mark.parametrize("bad", ["joint", "DUAL", 1, None, True])
def test_a_bad_policy_is_a_typed_error_at_every_door(router: Any, loopback: Any, bad: Any) -> None:
    from llamaindex_eccos import ECCOSLLM

    with pytest.raises(ValidationError, match="unknown policy"):
        ChatECCOS(router=router, policy=bad)
    with pytest.raises(ValidationError, match="unknown policy"):
        ECCOSLLM(router=router, policy=bad)
    if bad is None:  # per call, None means "the field's"
        return
    chat = ChatECCOS(router=router)
    with pytest.raises(InputError, match="unknown policy"):
        chat.invoke(QUESTION, policy=bad)
    with pytest.raises(InputError, match="unknown policy"):
        ECCOSSelector(router=router).invoke(QUESTION, policy=bad)
    with pytest.raises(InputError, match="unknown policy"):
        ECCOSLLM(router=router).complete(QUESTION, policy=bad)
    results = chat.batch([QUESTION, QUESTION], policy=bad, return_exceptions=True)
    assert all(isinstance(r, InputError) for r in results)
    assert loopback.requests == []


def test_llamaindex_complete_and_chat_route_per_call_by_default(router: Any, plan_spy: Any, loopback: Any) -> None:
    from llama_index.core.llms import ChatMessage

    from llamaindex_eccos import ECCOSLLM

    llm = ECCOSLLM(router=router, min_quality=0.6)
    llm.complete(QUESTION)
    llm.chat([ChatMessage(role="user", content=QUESTION)])
    llm.complete(QUESTION, policy="strict")
    ECCOSLLM(router=router, policy="strict").complete(QUESTION)
    assert plan_spy.sizes == [] and plan_spy.single == ["dual", "dual", "strict", "strict"]
    assert all("policy" not in body for body in _sent_bodies(loopback))


def test_the_selector_decides_a_single_input_as_chat_invoke_routes_it(router: Any, plan_spy: Any) -> None:
    decision = ECCOSSelector(router=router, min_quality=0.6).invoke(QUESTION)
    router.reset_dual(0.6)
    routed = ChatECCOS(router=router, min_quality=0.6).invoke(QUESTION).response_metadata["eccos"]
    assert plan_spy.single == ["dual", "dual"] and decision["model"] == routed["model"]


def test_agent_middleware_and_decision_model_route_per_call(
    agent_pool: list[Any], user_models: dict[str, Any], fake_predictor: Any, spy_on: Any, loopback: Any
) -> None:
    pytest.importorskip("langchain.agents", reason="langchain (the eccos[agents] extra) is not installed")
    from langchain.agents import create_agent
    from langchain.agents.middleware import ModelChoice, ModelRouterMiddleware

    from eccos_core.router import Router
    from langchain_eccos import ECCOSDecisionModel, ECCOSMiddleware

    for policy in ("dual", "strict"):
        router = Router(agent_pool, fake_predictor)
        spy = spy_on(router)
        middleware = ECCOSMiddleware(user_models, router=router, min_quality=0.5, policy=policy)
        create_agent(user_models["qwen2.5-7b-instruct"], middleware=[middleware]).invoke(
            {"messages": [HumanMessage(QUESTION)]}
        )
        classifier = ECCOSDecisionModel(router=router, min_quality=0.8, policy=policy)
        chooser = ModelRouterMiddleware(
            choices={name: ModelChoice(model=model, criteria=name) for name, model in user_models.items()},
            instructions="Choose the least costly model suited to the task.",
            classifier=classifier,
        )
        create_agent(user_models["qwen2.5-7b-instruct"], middleware=[chooser]).invoke(
            {"messages": [HumanMessage(QUESTION)]}
        )
        assert spy.sizes == [] and spy.single == [policy, policy]
    with pytest.raises(ValidationError, match="unknown policy"):
        ECCOSMiddleware(user_models, router=router, policy="joint")
