"""ECCOSMiddleware and ECCOSDecisionModel inside LangChain agents, against the loopback server."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool

pytest.importorskip("langchain.agents", reason="langchain (the eccos[agents] extra) is not installed")

from langchain.agents import create_agent
from langchain.agents.middleware import ModelChoice, ModelRouterMiddleware
from langchain.agents.structured_output import ToolStrategy
from pydantic import BaseModel

from langchain_eccos import ChatECCOS, ECCOSDecisionModel, ECCOSMiddleware

TOOL_MODELS = ["gemma-2-9b-it", "llama3-chatqa-1.5-70b"]
NO_TOOLS = "qwen2.5-7b-instruct"


@tool
def get_weather(location: str) -> str:
    """Get the weather at a location."""
    return "It's sunny."


class Weather(BaseModel):
    summary: str


def _agent(user_models: dict[str, Any], router: Any, tools: list[Any], **kwargs: Any) -> Any:
    middleware = ECCOSMiddleware(user_models, router=router, min_quality=0.5)
    return create_agent(user_models[NO_TOOLS], tools=tools, middleware=[middleware], **kwargs)


def test_agent_with_a_tool_routes_each_model_call(
    agent_pool: list[Any], user_models: dict[str, Any], fake_predictor: Any, loopback: Any
) -> None:
    from eccos_core.router import Router

    agent = _agent(user_models, Router(agent_pool, fake_predictor), [get_weather])
    state = agent.invoke({"messages": [HumanMessage("What is the weather in Paris?")]})

    messages = state["messages"]
    calls = [m for m in messages if isinstance(m, AIMessage)]
    assert len(calls) == 2  # tool call, then the answer
    assert calls[0].tool_calls[0]["name"] == "get_weather"
    assert any(isinstance(m, ToolMessage) and m.content == "It's sunny." for m in messages)
    assert "the tool said It's sunny." in calls[-1].content
    for call in calls:
        routed = call.response_metadata["eccos"]
        assert routed["model"] in TOOL_MODELS  # tools offered: never the model without tool support
        assert routed["fallbacks"] == []
    assert set(loopback.models_called()) <= set(TOOL_MODELS)


async def test_async_agent_with_structured_output(
    agent_pool: list[Any], user_models: dict[str, Any], fake_predictor: Any, loopback: Any
) -> None:
    from eccos_core.router import Router

    # no other tools: the loopback server calls the first tool it is offered, here the structured-output tool
    agent = _agent(user_models, Router(agent_pool, fake_predictor), [], response_format=ToolStrategy(Weather))
    state = await agent.ainvoke({"messages": [HumanMessage("Summarize the weather in Paris.")]})
    assert state["structured_response"] == Weather(summary="test")
    assert state["messages"][1].response_metadata["eccos"]["model"] in TOOL_MODELS
    assert set(loopback.models_called()) <= set(TOOL_MODELS)


def test_a_failing_chat_model_falls_back_along_the_plan(
    make_pool: Any, fake_predictor: Any, loopback: Any, api_key: str
) -> None:
    from eccos_core.router import Router

    healthy = make_pool(TOOL_MODELS[1:], supports_tools=True)
    down = make_pool(TOOL_MODELS[:1], broken=TOOL_MODELS[:1], supports_tools=True)
    models = {s.name: ChatECCOS(router=Router([s], fake_predictor), min_quality=0.0) for s in down + healthy}
    middleware = ECCOSMiddleware(models, router=Router(down + healthy, fake_predictor), min_quality=0.0)
    agent = create_agent(models[TOOL_MODELS[1]], tools=[get_weather], middleware=[middleware])

    state = agent.invoke({"messages": [HumanMessage("What is the weather in Paris?")]})

    first = next(m for m in state["messages"] if isinstance(m, AIMessage))
    routed = first.response_metadata["eccos"]
    assert routed["planned_model"] == TOOL_MODELS[0] and routed["model"] == TOOL_MODELS[1]
    assert routed["fallbacks"][0]["model"] == TOOL_MODELS[0] and api_key not in str(routed)


def test_middleware_refuses_models_outside_the_pool(fake_predictor: Any, agent_pool: list[Any]) -> None:
    from eccos_core.router import Router

    stray = ChatECCOS(router=Router(agent_pool[:1], fake_predictor))
    middleware = ECCOSMiddleware({"gpt-17": stray}, router=Router(agent_pool, fake_predictor))
    agent = create_agent(stray, tools=[get_weather], middleware=[middleware])
    with pytest.raises(ValueError, match="not in the router's pool"):
        agent.invoke({"messages": [HumanMessage("hi")]})


def test_eccos_as_the_decision_model_of_model_router_middleware(
    agent_pool: list[Any], user_models: dict[str, Any], fake_predictor: Any, loopback: Any
) -> None:
    from eccos_core.router import Router

    classifier = ECCOSDecisionModel(router=Router(agent_pool, fake_predictor), min_quality=0.8)
    middleware = ModelRouterMiddleware(
        choices={name: ModelChoice(model=model, criteria=name) for name, model in user_models.items()},
        instructions="Choose the least costly model suited to the task.",
        classifier=classifier,
    )
    agent = create_agent(user_models[NO_TOOLS], middleware=[middleware])

    state = agent.invoke({"messages": [HumanMessage("Prove that sqrt(2) is irrational.")]})

    route = state["model_route"]
    assert route.choice in user_models and route.probabilities[route.choice] == 1.0
    assert loopback.models_called() == [route.choice]
