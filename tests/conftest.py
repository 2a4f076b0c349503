"""Shared fixtures: a loopback OpenAI-compatible provider, a small fitted predictor and a pool pointing at it.

The provider is a real HTTP server on 127.0.0.1 (pytest-socket allows nothing else), so every test that calls
``Router.complete`` goes through LiteLLM's real client path: request building, HTTP, response parsing, error
mapping. The reply names the model it was asked for, which is how tests see where a query was routed.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

API_KEY = "sk-test-secret-7f3a9c1e5b2d4f60"
"""Credential put in every pool model's ``litellm_params``; tests assert it never leaks."""

PREDICTOR_RECORDS = 300
"""Routing-log records the session predictor is fitted on (enough to vote, small enough to embed fast)."""


@dataclass
class RecordedRequest:
    """One request the loopback provider received."""

    path: str
    model: str
    messages: list[dict[str, Any]]
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class LoopbackProvider:
    """Handle on the running server: its URL and every request it has seen, in arrival order."""

    url: str
    requests: list[RecordedRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def api_base(self) -> str:
        """Base URL to give LiteLLM as ``api_base``."""
        return self.url + "/v1"

    def record(self, request: RecordedRequest) -> None:
        with self.lock:
            self.requests.append(request)

    def clear(self) -> None:
        with self.lock:
            self.requests.clear()

    def models_called(self) -> list[str]:
        """Model names the provider was asked for, in arrival order."""
        with self.lock:
            return [r.model for r in self.requests]

    def model_for(self, text: str) -> list[str]:
        """Models that received a request whose last message contains ``text``."""
        with self.lock:
            return [r.model for r in self.requests if text in _text_of(r.messages[-1] if r.messages else {})]


def _text_of(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content or ""


def _usage(messages: list[dict[str, Any]], reply: str) -> dict[str, int]:
    prompt = sum(len(_text_of(m).split()) for m in messages) + 3 * len(messages)
    completion = len(reply.split())
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _make_handler(provider: LoopbackProvider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
            pass

        def _send_json(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except json.JSONDecodeError:
                self._send_json(400, {"error": {"message": "body is not JSON", "type": "invalid_request_error"}})
                return
            model = str(body.get("model", ""))
            messages = list(body.get("messages") or [])
            provider.record(RecordedRequest(self.path, model, messages, dict(self.headers.items()), body))
            if not self.path.rstrip("/").endswith("/chat/completions"):
                self._send_json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
                return
            if "broken" in model:
                # A realistic failure that echoes the rejected credential, so redaction is really tested.
                auth = self.headers.get("Authorization", "")
                self._send_json(
                    500,
                    {
                        "error": {
                            "message": f"model {model} is down; credential {auth} rejected",
                            "type": "server_error",
                        }
                    },
                )
                return
            reply = f"answer from {model}"
            usage = _usage(messages, reply)
            if body.get("stream"):
                self._stream(model, reply, usage, bool((body.get("stream_options") or {}).get("include_usage")))
                return
            self._send_json(
                200,
                {
                    "id": f"chatcmpl-{len(provider.requests)}",
                    "object": "chat.completion",
                    "created": 1700000000,
                    "model": model,
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}
                    ],
                    "usage": usage,
                },
            )

        def _stream(self, model: str, reply: str, usage: dict[str, int], include_usage: bool) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            base = {"id": "chatcmpl-stream", "object": "chat.completion.chunk", "created": 1700000000, "model": model}
            words = reply.split(" ")
            chunks = [{"role": "assistant", "content": ""}] + [
                {"content": (w if i == 0 else " " + w)} for i, w in enumerate(words)
            ]
            for delta in chunks:
                self._event({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
            self._event({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
            if include_usage:
                self._event({**base, "choices": [], "usage": usage})
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
            self.close_connection = True

        def _event(self, payload: dict[str, Any]) -> None:
            self.wfile.write(b"data: " + json.dumps(payload).encode() + b"\n\n")
            self.wfile.flush()

    return Handler


@pytest.fixture(scope="session")
def loopback_server() -> Iterator[LoopbackProvider]:
    """A real OpenAI-compatible server on 127.0.0.1 for the whole session (see :func:`loopback`)."""
    provider = LoopbackProvider(url="")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(provider))
    server.daemon_threads = True
    provider.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="loopback-provider", daemon=True)
    thread.start()
    try:
        yield provider
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


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


@pytest.fixture(scope="session")
def make_pool(loopback_server: LoopbackProvider, bundled_pool_specs: dict[str, Any]) -> Callable[..., list[Any]]:
    """Factory: ``make_pool(names, broken=(), **spec_overrides)`` → ModelSpecs served by the loopback provider.

    Each spec keeps its bundled name (so the predictor knows it) and bundled prices; ``litellm_model`` is
    ``openai/<name>``, or ``openai/broken-<name>`` for names in ``broken`` (the provider answers those with
    HTTP 500).
    """
    from eccos_core.pricing import ModelSpec

    def build(names: Any = None, *, broken: Any = (), **overrides: Any) -> list[Any]:
        chosen = list(bundled_pool_specs) if names is None else list(names)
        pool = []
        for name in chosen:
            bundled = bundled_pool_specs[name]
            served = f"broken-{name}" if name in broken else name
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
