"""What a call carries: its chat messages, the text the predictor sees, its prompt tokens and its needs.

Queries arrive as a prompt string or an OpenAI-style message list; everything downstream works on the
normalized message list. :class:`Needs` is what a call asks of a model (tools, images, a response schema, an
output length), derived from its messages and the LiteLLM options it will be sent with.
"""

from __future__ import annotations

import importlib.util
import json
import math
import numbers
import os
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from eccos_core.errors import InputError
from eccos_core.questions import question_of

Message = Mapping[str, Any]
"""One OpenAI-style chat message: ``{"role": "user", "content": "..."}``."""
Query = str | Sequence[Message]
"""A prompt string (sent as one user message) or a list of chat messages."""

TOKENIZER_MODEL = "gpt-4o-mini"
"""Prompt tokens are counted once with this model's tokenizer (tiktoken's file bundled with LiteLLM, so offline)
and reused for the whole pool; per-model differences are a few percent, and other tokenizers can need the
network or seconds to load, which single-call planning cannot afford."""

TOKENIZER_ENCODING = "o200k_base"
"""The tiktoken encoding of :data:`TOKENIZER_MODEL`."""

IMAGE_TOKENS = 85
"""Prompt tokens counted per image (OpenAI's low-detail image price); real costs vary by provider and size."""

RESERVED_OPTIONS = ("model", "messages")
"""LiteLLM options the router sets itself."""


@dataclass(frozen=True)
class Needs:
    """What a call requires of the model that answers it."""

    tools: bool = False
    """It offers tools (``tools`` / ``functions``) or its messages hold tool calls or results."""
    vision: bool = False
    """Some message has image content."""
    response_schema: bool = False
    """It asks for structured output (``response_format`` with a JSON schema or a pydantic class)."""
    output_tokens: int | None = None
    """Its ``max_tokens`` / ``max_completion_tokens``."""

    def describe(self) -> list[str]:
        """The needs as words, for error messages."""
        out = [name for name, on in (("tools", self.tools), ("vision", self.vision)) if on]
        if self.response_schema:
            out.append("response_schema")
        if self.output_tokens is not None:
            out.append(f"max_output_tokens >= {self.output_tokens}")
        return out


def _visible(text: str) -> bool:
    """Whether ``text`` has something besides whitespace, NUL and zero-width / format characters."""
    return any(not (ch.isspace() or unicodedata.category(ch) in ("Cf", "Cc")) for ch in text)


def check_encodable(text: str, where: str) -> None:
    """A text no provider can receive (a lone UTF-16 surrogate, e.g. from a bad JSON decode) is an input error."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(
            f"{where} holds a lone surrogate ({text[exc.start]!r} at position {exc.start}), which is not valid "
            "Unicode text and cannot be sent: repair the text, e.g. "
            "text.encode('utf-8', 'replace').decode('utf-8')"
        ) from None


def normalize(query: Any, index: int) -> list[Message]:
    """The query as a message list, checking that every message has text, tool calls or an image."""
    if isinstance(query, str):
        if not _visible(query):
            raise InputError(f"query {index} has no text: give the prompt text")
        check_encodable(query, f"query {index}")
        return [{"role": "user", "content": query}]
    if isinstance(query, Mapping):
        raise InputError(f"query {index} is a single message; wrap it in a list: [{{'role': 'user', 'content': ...}}]")
    if isinstance(query, bytes) or not isinstance(query, Sequence):
        raise InputError(f"query {index} must be a string or a list of messages, got {type(query).__name__}")
    messages = list(query)
    if not messages:
        raise InputError(
            f"query {index} has an empty message list: give at least one {{'role': 'user', 'content': '...'}}"
        )
    for k, message in enumerate(messages):
        if not isinstance(message, Mapping) or "role" not in message:
            raise InputError(
                f"query {index}, message {k}: expected a dict with 'role' and 'content', got {type(message).__name__}"
            )
        text = message_text(message, index, k)
        check_encodable(text, f"query {index}, message {k}")
        carries = message.get("tool_calls") or message.get("function_call") or has_image(message)
        if not _visible(text) and not carries and message.get("role") != "tool":
            raise InputError(
                f"query {index}, message {k} (role {message['role']!r}) has no text: give it a non-empty "
                "'content' string or a list with {'type': 'text', 'text': ...} parts"
            )
    return messages


def message_text(message: Message, index: int = 0, k: int = 0) -> str:
    """The text of one message (text parts joined; images and other parts skipped)."""
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, Mapping) and part.get("type", "text") == "text":
                parts.append(str(part.get("text") or ""))
        return "\n".join(p for p in parts if p)
    raise InputError(
        f"query {index}, message {k}: 'content' must be a string or a list of parts, got {type(content).__name__}"
    )


def has_image(message: Message) -> bool:
    """Whether a message carries image content (``image_url`` / ``image`` / ``input_image`` parts)."""
    return _images(message) > 0


def query_text(messages: Sequence[Message]) -> str:
    """What the predictor sees: the question of the last user message, else all text.

    The question of a message that wraps it in retrieved context is found inside it
    (:func:`~eccos_core.questions.question_of`); any other message is read whole.
    """
    for message in reversed(messages):
        if message.get("role") == "user":
            text = message_text(message)
            if _visible(text):
                return question_of(text)
    return question_of("\n".join(t for t in (message_text(m) for m in messages) if t))


_SURROGATE = re.compile("[\ud800-\udfff]")


def _safe_text(text: str) -> str:
    """``text`` with lone surrogates replaced by U+FFFD, so tokenizers and HTTP (UTF-8 only) accept it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)
    return text


def sendable(messages: Sequence[Message]) -> list[Message]:
    """``messages`` with lone surrogates in their text replaced by U+FFFD.

    A lone surrogate (U+D800 to U+DFFF unpaired, what a careless decode leaves) cannot be encoded as UTF-8, so no
    HTTP request can carry it: sent as is, every model of the chain would fail with a misleading provider error.
    """
    out = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            message = {**message, "content": _safe_text(content)}
        elif isinstance(content, list):
            parts = [
                {**part, "text": _safe_text(part["text"])}
                if isinstance(part, Mapping) and isinstance(part.get("text"), str)
                else part
                for part in content
            ]
            message = {**message, "content": parts}
        out.append(message)
    return out


@lru_cache(maxsize=1)
def _encoding() -> Any:
    """:data:`TOKENIZER_MODEL`'s tiktoken encoding, read from the copy LiteLLM ships (offline, no LiteLLM import)."""
    if "TIKTOKEN_CACHE_DIR" not in os.environ:
        spec = importlib.util.find_spec("litellm")
        if spec and spec.submodule_search_locations:
            bundled = os.path.join(spec.submodule_search_locations[0], "litellm_core_utils", "tokenizers")
            os.environ["TIKTOKEN_CACHE_DIR"] = bundled
    import tiktoken

    return tiktoken.get_encoding(TOKENIZER_ENCODING)


def count_text_tokens(text: str) -> int:
    """Tokens of ``text`` with :data:`TOKENIZER_MODEL`'s tokenizer."""
    return len(_encoding().encode(_safe_text(text), disallowed_special=()))


def count_input_tokens(messages: Sequence[Message]) -> int:
    """Prompt tokens of a message list with the chat framing OpenAI bills (and LiteLLM's counter counts).

    Each message costs 3 framing tokens plus its role and content, a reply is primed with 3 more, tool calls
    count as their JSON, and each image as :data:`IMAGE_TOKENS`.
    """
    total = 3
    for message in messages:
        text = message_text(message)
        calls = message.get("tool_calls") or message.get("function_call")
        if calls:
            text += json.dumps(calls, default=str)
        total += 3 + count_text_tokens(str(message.get("role", ""))) + count_text_tokens(text)
        total += IMAGE_TOKENS * _images(message)
    return total


def _images(message: Message) -> int:
    content = message.get("content")
    if not isinstance(content, Sequence) or isinstance(content, str):
        return 0
    return sum(isinstance(p, Mapping) and p.get("type") in ("image_url", "image", "input_image") for p in content)


def check_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The LiteLLM options of a call, refusing those the router sets itself."""
    reserved = [key for key in RESERVED_OPTIONS if key in options]
    if reserved:
        raise InputError(f"the router chooses {reserved} itself; pass the prompt as the first argument")
    if options.get("stream"):
        raise InputError("stream is set by the router: call Router.stream / astream to stream a routed call")
    if options.get("stop") is not None:
        check_stop(options["stop"])
    seed = options.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
        raise InputError(f"seed must be an integer, got {seed!r}")
    for key, low, high, strict in _BOUNDED_OPTIONS:
        value = options.get(key)
        if value is None:
            continue
        ok = not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(value)
        if not ok or value < low or value > high or (strict and value == low):
            bounds = f"{'above' if strict else 'at least'} {low:g}" + (
                f" and at most {high:g}" if high < math.inf else ""
            )
            raise InputError(f"{key} must be a finite number {bounds}, got {value!r}")
    return dict(options)


def check_stop(stop: Any) -> list[str]:
    """Stop sequences as a list of strings (one string is one sequence); an :class:`InputError` otherwise."""
    stops = [stop] if isinstance(stop, str) else stop
    listed = isinstance(stops, Sequence) and not isinstance(stops, (bytes, Mapping))
    if not listed or not all(isinstance(item, str) for item in stops):
        raise InputError(f"stop must be a string or a list of strings, got {stop!r}")
    for item in stops:
        check_encodable(item, "stop")
    return list(stops)


_BOUNDED_OPTIONS: tuple[tuple[str, float, float, bool], ...] = (
    ("temperature", 0.0, 2.0, False),
    ("top_p", 0.0, 1.0, False),
    ("timeout", 0.0, math.inf, True),
    ("deadline", 0.0, math.inf, True),
    ("num_retries", 0.0, 100.0, False),
    ("presence_penalty", -2.0, 2.0, False),
    ("frequency_penalty", -2.0, 2.0, False),
)
"""Client options checked before any request: ``(name, low, high, low excluded)``. A bad value is the caller's
mistake, reported as such, not a provider failure after every model was tried."""


def needs_of(messages: Sequence[Message], options: Mapping[str, Any]) -> Needs:
    """What a call with these messages and LiteLLM options asks of the model that answers it."""
    tools = bool(options.get("tools") or options.get("functions")) or any(
        m.get("tool_calls") or m.get("function_call") or m.get("role") in ("tool", "function") for m in messages
    )
    fmt = options.get("response_format")
    schema = fmt is not None and not (isinstance(fmt, Mapping) and fmt.get("type") in ("text", "json_object"))
    limit = options.get("max_tokens", options.get("max_completion_tokens"))
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, numbers.Integral) or limit < 1):
        raise InputError(f"max_tokens must be a positive integer, got {limit!r}")
    return Needs(tools, any(has_image(m) for m in messages), schema, None if limit is None else int(limit))


__all__ = [
    "TOKENIZER_MODEL",
    "Message",
    "Needs",
    "Query",
    "check_encodable",
    "check_options",
    "check_stop",
    "count_input_tokens",
    "count_text_tokens",
    "message_text",
    "needs_of",
    "normalize",
    "query_text",
]
