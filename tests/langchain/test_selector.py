"""ECCOSSelector: the routing decision as a Runnable, one optimizer call per batch."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.runnables import RunnableLambda
from langchain_core.utils.function_calling import convert_to_openai_tool

from langchain_eccos import ECCOSSelector

DECISION_KEYS = {
    "model",
    "p_success",
    "predicted_cost",
    "predicted_output_tokens",
    "input_tokens",
    "chain",
    "status",
    "message",
    "solver",
    "batch_size",
    "min_quality",
    "confidence",
    "margin",
    "prior",
    "length",
}


def test_invoke_returns_one_decision_and_sends_nothing(router: Any, plan_spy: Any, loopback: Any) -> None:
    decision = ECCOSSelector(router=router, min_quality=0.7).invoke("What is 17 * 23?")
    assert set(decision) == DECISION_KEYS
    assert decision["model"] in [m.name for m in router.models]
    assert decision["batch_size"] == 1 and 0 <= decision["p_success"] <= 1 and decision["predicted_cost"] > 0
    assert plan_spy.sizes == [] and plan_spy.single == ["dual"] and loopback.requests == []


def test_batch_is_planned_jointly_and_meets_min_quality(router: Any, plan_spy: Any) -> None:
    questions = [f"question {i}: {'hard proof' if i % 3 else 'easy sum'}" for i in range(50)]
    decisions = ECCOSSelector(router=router, min_quality=0.75).batch(questions)
    assert plan_spy.sizes == [50]
    assert {d["batch_size"] for d in decisions} == {50}
    assert sum(d["p_success"] for d in decisions) / 50 >= 0.75 - 1e-9


async def test_abatch_and_call_time_options(make_pool: Any, fake_predictor: Any) -> None:
    from eccos_core.router import Router

    pool = make_pool(["qwen2.5-7b-instruct"], supports_tools=False) + make_pool(["gemma-2-9b-it"], supports_tools=True)
    selector = ECCOSSelector(router=Router(pool, fake_predictor), min_quality=0.0)
    tool = convert_to_openai_tool({"title": "lookup", "description": "look up", "type": "object", "properties": {}})

    decisions = await selector.abatch(["a", "b", "c"], tools=[tool])
    assert [d["model"] for d in decisions] == ["gemma-2-9b-it"] * 3
    assert (await selector.ainvoke("a", model="qwen2.5-7b-instruct"))["model"] == "qwen2.5-7b-instruct"


def test_selector_drives_a_branch_of_your_own_models(router: Any) -> None:
    answers = {m.name: RunnableLambda(lambda q, name=m.name: f"{name} answers {q}") for m in router.models}
    selector = ECCOSSelector(router=router, min_quality=0.6)
    chain = {"decision": selector, "question": lambda q: q} | RunnableLambda(
        lambda x: answers[x["decision"]["model"]].invoke(x["question"])
    )
    assert chain.invoke("hello").endswith("answers hello")


def test_min_quality_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="min_quality"):
        ECCOSSelector(min_quality=1.5)
