"""A loopback OpenAI-compatible provider: a real HTTP server on 127.0.0.1 (tests and benchmarks).

The reply names the model it was asked for, which is how callers see where a query was routed. It answers
tool calls (the forced or first tool, arguments filled from its schema), structured output (``response_format``
with a JSON schema), and streams with usage. A marker in the served model name picks a failure: ``broken``
(HTTP 500 echoing the credential), ``unauthorized`` (401), ``hang`` (never answers), ``flaky`` (503 for a
seeded share of requests), ``midstream`` (a stream that dies after two chunks), ``empty`` (a stream of only
``[DONE]``) and ``gated`` (a stream whose
last chunk waits for ``provider.gate``).
"""

from __future__ import annotations

import contextlib
import json
import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


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
    gate: threading.Event = field(default_factory=threading.Event)
    """Streams to a model named ``*gated*`` hold their last chunk until this is set."""
    stop: threading.Event = field(default_factory=threading.Event)
    """Set at shutdown: releases requests to ``*hang*`` models."""
    fail_rate: float = 0.5
    """Share of requests to ``*flaky*`` models answered with HTTP 503 (seeded, reproducible)."""
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    tokens: Callable[[str], int] | None = None
    """Counts a text's tokens for the bill (default: its words), e.g. a real tokenizer where a benchmark needs one."""
    script: dict[str, str] = field(default_factory=dict)
    """Replies by the text of the last message: a test scripts what its stand-in model answers (a probe's)."""

    def fails_now(self) -> bool:
        with self.lock:
            return self.rng.random() < self.fail_rate

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
            self.rng.seed(0)
            self.script.clear()
        self.gate.clear()
        self.fail_rate = 0.5

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


def _usage(messages: list[dict[str, Any]], reply: str, tokens: Callable[[str], int] | None) -> dict[str, int]:
    count = tokens or (lambda text: len(text.split()))
    prompt = sum(count(_text_of(m)) for m in messages) + 3 * len(messages)
    completion = count(reply)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _fill(schema: dict[str, Any]) -> Any:
    """A value that satisfies a (simple) JSON schema: what a well-behaved model would return for it."""
    if "enum" in schema:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"] or schema[key]
            return _fill(options[0])
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "object":
        props = schema.get("properties", {})
        return {name: _fill(sub) for name, sub in props.items()}
    return {"integer": 3, "number": 3.0, "boolean": True, "array": [], "null": None}.get(kind, "test")


def _tool_call(body: dict[str, Any]) -> dict[str, Any] | None:
    """The tool call to answer with: the forced tool, else the first one, unless the last message is a tool result."""
    tools = body.get("tools") or []
    messages = body.get("messages") or []
    choice = body.get("tool_choice")
    if not tools or choice == "none" or (messages and messages[-1].get("role") == "tool"):
        return None
    wanted = choice.get("function", {}).get("name") if isinstance(choice, dict) else None
    tool = next((t for t in tools if t.get("function", {}).get("name") == wanted), tools[0])["function"]
    arguments = _fill(tool.get("parameters") or {"type": "object"})
    return {"id": "call_1", "type": "function", "function": {"name": tool["name"], "arguments": json.dumps(arguments)}}


def _reply_text(model: str, body: dict[str, Any]) -> str:
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        return json.dumps(_fill(fmt.get("json_schema", {}).get("schema") or {}))
    if fmt.get("type") == "json_object":
        return json.dumps({"answer": f"answer from {model}"})
    messages = body.get("messages") or []
    if messages and messages[-1].get("role") == "tool":
        return f"answer from {model}: the tool said {_text_of(messages[-1])}"
    return f"answer from {model}"


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
            if self._fail(model):
                return
            call = _tool_call(body)
            scripted = provider.script.get(_text_of(messages[-1])) if messages else None
            reply = "" if call else scripted if scripted is not None else _reply_text(model, body)
            usage = _usage(messages, reply or json.dumps(call), provider.tokens)
            if body.get("stream"):
                include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
                self._stream(model, reply, call, usage, include_usage)
                return
            message: dict[str, Any] = {"role": "assistant", "content": reply or None}
            if call:
                message["tool_calls"] = [call]
            self._send_json(
                200,
                {
                    "id": f"chatcmpl-{len(provider.requests)}",
                    "object": "chat.completion",
                    "created": 1700000000,
                    "model": model,
                    "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if call else "stop"}],
                    "usage": usage,
                },
            )

        def _fail(self, model: str) -> bool:
            """Failure modes chosen by a marker in the model name; True when the request was answered with one."""
            if "broken" in model:
                # A realistic failure that echoes the rejected credential, so redaction is really tested.
                auth = self.headers.get("Authorization", "")
                message = f"model {model} is down; credential {auth} rejected"
                self._send_json(500, {"error": {"message": message, "type": "server_error"}})
                return True
            if "unauthorized" in model:
                auth = self.headers.get("Authorization", "")
                message = f"Incorrect API key provided: {auth.removeprefix('Bearer ')}"
                self._send_json(401, {"error": {"message": message, "type": "invalid_request_error"}})
                return True
            if "hang" in model:  # accepts the connection and never answers (until the server stops)
                provider.stop.wait(60)
                self.close_connection = True
                return True
            if "flaky" in model and provider.fails_now():
                self._send_json(503, {"error": {"message": f"model {model} is overloaded", "type": "server_error"}})
                return True
            return False

        def _stream(
            self, model: str, reply: str, call: dict[str, Any] | None, usage: dict[str, int], include_usage: bool
        ) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            base = {"id": "chatcmpl-stream", "object": "chat.completion.chunk", "created": 1700000000, "model": model}
            if "empty" in model:  # a stream of only [DONE]: no content, no finish reason
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
                self.close_connection = True
                return
            deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
            if call:
                deltas.append({"tool_calls": [{"index": 0, **call}]})
            else:
                words = reply.split(" ")
                deltas += [{"content": (w if i == 0 else " " + w)} for i, w in enumerate(words)]
            for k, delta in enumerate(deltas):
                if k == len(deltas) - 1 and "gated" in model:  # the last chunk waits until the test lets it go
                    provider.gate.wait(10)
                if k == 2 and "midstream" in model:  # dies after two chunks: connection dropped, no [DONE]
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self._event({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
            finish = "tool_calls" if call else "stop"
            self._event({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
            if include_usage:
                self._event({**base, "choices": [], "usage": usage})
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
            self.close_connection = True

        def _event(self, payload: dict[str, Any]) -> None:
            self.wfile.write(b"data: " + json.dumps(payload).encode() + b"\n\n")
            self.wfile.flush()

    return Handler


@contextlib.contextmanager
def serve_loopback() -> Iterator[LoopbackProvider]:
    """Run the provider on a free port of 127.0.0.1 until the block ends."""
    provider = LoopbackProvider(url="")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(provider))
    server.daemon_threads = True
    provider.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="loopback-provider", daemon=True)
    thread.start()
    try:
        yield provider
    finally:
        provider.stop.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
