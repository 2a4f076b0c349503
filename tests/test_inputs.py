"""Bad input at the router's door: typed errors that name the problem, before anything is sent or stored."""

from __future__ import annotations

from typing import Any

import pytest

from eccos_core.errors import InputError
from eccos_core.router import Router

SURROGATE = "what is 2 + 2? \ud800"


@pytest.fixture
def router(make_pool: Any, fake_predictor: Any) -> Router:
    return Router(make_pool(), fake_predictor)


@pytest.mark.parametrize(
    "query",
    [
        SURROGATE,
        [{"role": "user", "content": SURROGATE}],
        [{"role": "user", "content": [{"type": "text", "text": SURROGATE}]}],
    ],
)
def test_a_lone_surrogate_is_an_input_error_everywhere(router: Router, query: Any, loopback: Any) -> None:
    for call in (
        lambda: router.plan([query], 0.5),
        lambda: router.plan_call(query, 0.5),
        lambda: router.complete(query, 0.5),
    ):
        with pytest.raises(InputError, match="lone surrogate"):
            call()
    assert loopback.requests == []


def test_a_batch_with_a_surrogate_keeps_its_other_items(router: Router, loopback: Any) -> None:
    from langchain_eccos import ChatECCOS

    results = ChatECCOS(router=router, min_quality=0.5).batch(["ok", SURROGATE, "fine"], return_exceptions=True)
    assert isinstance(results[1], InputError) and "lone surrogate" in str(results[1])
    assert [type(r).__name__ for r in results] == ["AIMessage", "InputError", "AIMessage"]
    assert len(loopback.requests) == 2


def test_a_llamaindex_batch_with_a_surrogate_keeps_its_other_items(router: Router, loopback: Any) -> None:
    from llamaindex_eccos import ECCOSLLM

    results = ECCOSLLM(router=router, min_quality=0.5).complete_batch(["ok", SURROGATE, "fine"], return_exceptions=True)
    assert isinstance(results[1], InputError) and "lone surrogate" in str(results[1])
    assert not isinstance(results[0], Exception) and not isinstance(results[2], Exception)
    assert len(loopback.requests) == 2


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("temperature", float("nan")),
        ("temperature", -1),
        ("timeout", 0),
        ("timeout", -1),
        ("top_p", 2.0),
        ("num_retries", -1),
        ("timeout", "soon"),
        ("temperature", True),
    ],
)
def test_bad_client_options_are_the_callers_mistake_not_a_provider_failure(
    router: Router, loopback: Any, option: str, value: Any
) -> None:
    with pytest.raises(InputError, match=option):
        router.complete("What is 2 + 2?", 0.5, **{option: value})
    with pytest.raises(InputError, match=option):
        router.batch(["What is 2 + 2?"], 0.5, **{option: value})
    assert loopback.requests == []


def test_feedback_refuses_token_counts_the_log_loader_would_refuse(make_pool: Any, small_logs: Any) -> None:
    from eccos_core.predictors.retrieval import RetrievalPredictor

    router = Router.fit(make_pool(), small_logs[:40], RetrievalPredictor(k=4), calibrate=False)
    name = router.models[0].name
    for tokens in (1e300, 2e9, float("inf"), -1):
        with pytest.raises(InputError, match="output_tokens"):
            router.record_outcome("What is 2 + 2?", name, 1.0, tokens)
    router.record_outcome("What is 2 + 2?", name, 1.0, 1e9)


@pytest.mark.parametrize("value", [True, False, float("nan"), 1.5, "0.7"])
def test_every_shell_refuses_what_the_core_refuses_for_min_quality(router: Router, value: Any) -> None:
    from pydantic import ValidationError

    from langchain_eccos import ChatECCOS, ECCOSSelector
    from llamaindex_eccos import ECCOSLLM

    for shell in (ChatECCOS, ECCOSSelector, ECCOSLLM):
        with pytest.raises(ValidationError, match="min_quality must"):
            shell(router=router, min_quality=value)
    with pytest.raises(InputError, match="min_quality must"):
        ChatECCOS(router=router).invoke("What is 2 + 2?", min_quality=value)
    with pytest.raises(InputError, match="min_quality must"):
        router.complete("What is 2 + 2?", value)


def test_unknown_chat_constructor_kwargs_move_to_model_kwargs_with_a_warning(router: Router, loopback: Any) -> None:
    from langchain_eccos import ChatECCOS

    with pytest.warns(UserWarning, match="top_p was transferred to model_kwargs"):
        chat = ChatECCOS(router=router, min_quality=0.5, top_p=0.5)
    assert chat.model_kwargs == {"top_p": 0.5}
    chat.invoke("What is 2 + 2?")
    assert loopback.requests[-1].body["top_p"] == 0.5
    with pytest.warns(UserWarning, match="ignores api_key=: each pool model carries its own credential"):
        keyless = ChatECCOS(router=router, api_key="sk-not-for-every-provider")
    assert keyless.model_kwargs == {} and "sk-not-for-every-provider" not in repr(keyless)
    for owned in ("budget", "confidence"):
        with pytest.raises(ValueError, match=f"{owned}= is not a ChatECCOS setting"):
            ChatECCOS(router=router, **{owned: 0.5})


def test_eccos_options_per_call_never_reach_the_provider(router: Router, loopback: Any) -> None:
    from langchain_eccos import ChatECCOS

    ChatECCOS(router=router).invoke("What is 2 + 2?", min_quality=0.5, policy="strict", capacity=None)
    body = loopback.requests[-1].body
    assert not {"min_quality", "policy", "capacity", "confidence"} & set(body)


def test_token_counts_work_offline_for_trim_messages(router: Router) -> None:
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, trim_messages

    from langchain_eccos import ChatECCOS

    chat = ChatECCOS(router=router)
    assert chat.get_num_tokens("What is 17 * 23?") > 0
    history = [SystemMessage("Be brief."), *[HumanMessage(f"question {i} " * 20) for i in range(10)], AIMessage("ok")]
    assert chat.get_num_tokens_from_messages(history) > chat.get_num_tokens_from_messages(history[:2]) > 0
    kept = trim_messages(history, max_tokens=200, token_counter=chat, strategy="last", include_system=True)
    assert 1 < len(kept) < len(history) and chat.get_num_tokens_from_messages(kept) <= 200


def test_both_shells_read_per_call_settings_alike(router: Router, loopback: Any) -> None:
    """model= pins a call to one pool model and an explicit min_quality=None is refused, at both doors."""
    from langchain_eccos import ChatECCOS
    from llamaindex_eccos import ECCOSLLM

    pinned = router.models[-1].name
    chat, llm = ChatECCOS(router=router, min_quality=0.0), ECCOSLLM(router=router, min_quality=0.0)
    assert chat.invoke("What is 2 + 2?", model=pinned).response_metadata["eccos"]["model"] == pinned
    assert llm.complete("What is 2 + 2?", model=pinned).additional_kwargs["eccos"]["model"] == pinned
    for call in (lambda: chat.invoke("hi", model="gpt-17"), lambda: llm.complete("hi", model="gpt-17")):
        with pytest.raises(InputError, match=r"model='gpt-17' is not in the router's pool"):
            call()
    for call in (lambda: chat.invoke("hi", min_quality=None), lambda: llm.complete("hi", min_quality=None)):
        with pytest.raises(InputError, match="give either min_quality"):
            call()
