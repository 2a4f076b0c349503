"""One redaction for saved routers, logs, errors and results: nested credentials, URLs, echoes."""

from __future__ import annotations

import base64
import json
import logging

from eccos_core.pricing import ModelSpec, load_models, write_models
from eccos_core.redaction import is_secret_param, redact, redact_params, secrets_in
from eccos_core.router import Router

CANARY = "canary-Secret-4242-xyz"


def test_secret_names_are_an_explicit_list_and_max_tokens_is_not_one():
    assert is_secret_param("api_key") and is_secret_param("Authorization") and is_secret_param("AWS_SECRET_ACCESS_KEY")
    assert not is_secret_param("max_tokens") and not is_secret_param("max_completion_tokens")


def test_nested_headers_and_url_credentials_are_redacted_and_found():
    params = {
        "api_base": f"http://user:{CANARY}@host.example/v1?key={CANARY}",
        "extra_headers": {"Authorization": f"Bearer {CANARY}", "X-Trace": "ok"},
        "max_tokens": 64,
    }
    shown = json.dumps(redact_params(params))
    assert CANARY not in shown and "host.example/v1" in shown and '"max_tokens": 64' in shown and "ok" in shown

    secrets = secrets_in([params])
    basic = base64.b64encode(f"user:{CANARY}".encode()).decode()
    echoed = f"rejected Basic {basic} and Bearer {CANARY} for key={CANARY}"
    assert CANARY not in redact(echoed, secrets) and basic not in redact(echoed, secrets)


def test_saved_router_and_models_file_hold_no_credential_and_keep_max_tokens(
    tmp_path, make_pool, fake_predictor, predictor, caplog
):
    params = {
        "api_key": CANARY,
        "api_base": f"http://u:{CANARY}@127.0.0.1:9/v1",
        "extra_headers": {"Authorization": f"Bearer {CANARY}"},
        "max_tokens": 77,
    }
    pool = make_pool(["gemma-2-9b-it", "llama-3.1-8b-instruct"], litellm_params=params)
    write_models(pool, tmp_path / "models.json")
    router = Router(pool, predictor)
    with caplog.at_level(logging.DEBUG):
        router.save(tmp_path / "router")
        loaded = Router.load(tmp_path / "router")

    for file in [tmp_path / "models.json", *(tmp_path / "router").rglob("*.json")]:
        assert CANARY not in file.read_text(encoding="utf-8"), file
    assert CANARY not in repr(router) and CANARY not in repr(pool[0]) and CANARY not in caplog.text
    assert loaded.spec("gemma-2-9b-it").litellm_params["max_tokens"] == 77
    assert load_models(tmp_path / "models.json")[0].litellm_params["max_tokens"] == 77
    assert isinstance(ModelSpec.from_dict(pool[0].to_dict()), ModelSpec)


def test_the_shells_show_no_credential_anywhere(make_pool, fake_predictor, loopback, api_key):
    """The canary through every place a LangChain or LlamaIndex user (or LangSmith) can see a shell's settings."""
    from typing import Any

    from langchain_core.callbacks import BaseCallbackHandler
    from langchain_core.load import dumpd, dumps

    from langchain_eccos import ChatECCOS
    from llamaindex_eccos import ECCOSLLM

    class Recorder(BaseCallbackHandler):
        def __init__(self) -> None:
            self.seen: list[Any] = []

        def on_chat_model_start(self, serialized: Any, messages: Any, **kwargs: Any) -> None:
            self.seen.append((serialized, kwargs.get("invocation_params"), kwargs.get("metadata")))

    headers = {"extra_headers": {"Authorization": f"Bearer {CANARY}"}}
    entry = {"name": "gemma-2-9b-it", "litellm_model": "openai/x", "input_cost_per_token": 1e-7}
    entry.update(output_cost_per_token=1e-7, litellm_params={"api_key": CANARY})
    pooled = ChatECCOS(models=[entry], model_kwargs=headers)
    router = Router(make_pool(), fake_predictor)
    chat = ChatECCOS(router=router, min_quality=0.0, model_kwargs=headers)
    recorder = Recorder()
    chat.invoke("hi", config={"callbacks": [recorder]}, extra_headers={"X-Api-Key": CANARY})
    llm = ECCOSLLM(router=router, additional_kwargs=headers)
    places = {
        "ChatECCOS repr (pool credentials)": repr(pooled),
        "ChatECCOS str": str(pooled),
        "ChatECCOS repr (model_kwargs)": repr(chat),
        "dumpd": json.dumps(dumpd(chat)),
        "dumps": dumps(chat),
        "dumpd (pool)": json.dumps(dumpd(pooled)),
        "_identifying_params": json.dumps(chat._identifying_params, default=str),
        "callback serialized / invocation params / metadata": json.dumps(recorder.seen, default=str),
        "_get_ls_params": json.dumps(chat._get_ls_params(), default=str),
        "ECCOSLLM repr": repr(llm),
        "ECCOSLLM to_dict": json.dumps(llm.to_dict(), default=str),
        "ECCOSLLM to_json": llm.to_json(),
        "ECCOSLLM metadata": json.dumps(llm.metadata.model_dump(), default=str),
    }
    assert recorder.seen and len(places) == 13
    leaks = [place for place, shown in places.items() if CANARY in shown]
    assert leaks == []
    # the calls themselves still carry the headers the user gave
    sent = {k.lower(): v for k, v in loopback.requests[-1].headers.items()}
    assert sent["x-api-key"] == CANARY
