"""LlamaIndex chat messages to and from the OpenAI format LiteLLM speaks.

Requests: text blocks become the message text; image blocks become ``image_url`` parts (a URL, or the image
inlined as a ``data:`` URL); tool calls come from :class:`ToolCallBlock` blocks, else from
``additional_kwargs["tool_calls"]`` (the older convention many integrations still write); a tool result is a
``role: tool`` message carrying ``additional_kwargs["tool_call_id"]``.

Replies: an assistant :class:`ChatMessage` with the text as a :class:`TextBlock` and every tool call both as a
:class:`ToolCallBlock` and, as OpenAI-shaped dicts, in ``additional_kwargs["tool_calls"]``, so code written for
either convention finds them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from llama_index.core.base.llms.types import (
    CachePoint,
    ChatMessage,
    ImageBlock,
    MessageRole,
    TextBlock,
    ThinkingBlock,
    ToolCallBlock,
)
from llama_index.core.tools import ToolSelection

OpenAIMessage = dict[str, Any]
"""One chat message in OpenAI's format, as LiteLLM takes it."""

_PASSED_KWARGS = ("tool_call_id", "name", "function_call")
"""``additional_kwargs`` keys that are part of an OpenAI message and are sent as they are."""
_SKIPPED_BLOCKS = (ThinkingBlock, CachePoint)
"""Blocks that carry nothing a chat-completions request can take (a model's own reasoning, cache hints)."""


def to_openai_messages(messages: Sequence[ChatMessage]) -> list[OpenAIMessage]:
    """LlamaIndex messages as OpenAI chat messages (tool calls, tool results and images included)."""
    return [to_openai_message(message, i) for i, message in enumerate(messages)]


def to_openai_message(message: ChatMessage, index: int = 0) -> OpenAIMessage:
    """One LlamaIndex message as an OpenAI chat message.

    Raises:
        ValueError: The message holds a block LiteLLM's chat format cannot carry (audio, video, documents).
    """
    role = message.role.value
    texts: list[str] = []
    parts: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    for block in message.blocks:
        if isinstance(block, TextBlock):
            texts.append(block.text)
            parts.append({"type": "text", "text": block.text})
        elif isinstance(block, ImageBlock):
            parts.append({"type": "image_url", "image_url": _image_url(block)})
        elif isinstance(block, ToolCallBlock):
            calls.append(_tool_call_from_block(block))
        elif not isinstance(block, _SKIPPED_BLOCKS):
            raise ValueError(
                f"message {index} (role {role!r}) holds a {type(block).__name__}, which the router cannot send; "
                "give its content as text or an ImageBlock"
            )
    if not calls:
        calls = [_tool_call_dict(call) for call in message.additional_kwargs.get("tool_calls") or ()]
    has_image = any(part["type"] == "image_url" for part in parts)
    text = "\n".join(texts)
    content: Any = parts if has_image and role == MessageRole.USER.value else text
    out: OpenAIMessage = {"role": role, "content": content}
    if calls:
        out["tool_calls"] = calls
        if not text:
            out["content"] = None  # OpenAI's shape for an assistant turn that only calls tools
    for key in _PASSED_KWARGS:
        if message.additional_kwargs.get(key) is not None:
            out[key] = message.additional_kwargs[key]
    return out


def from_openai_message(message: Any) -> ChatMessage:
    """The assistant message of a LiteLLM response (object or dict) as a LlamaIndex message."""
    content = _get(message, "content") or ""
    calls = [_tool_call_dict(call) for call in _get(message, "tool_calls") or ()]
    blocks: list[Any] = [TextBlock(text=content)] if content or not calls else []
    blocks += [
        ToolCallBlock(tool_call_id=call["id"], tool_name=call["function"]["name"], tool_kwargs=_arguments(call))
        for call in calls
    ]
    additional_kwargs = {"tool_calls": calls} if calls else {}
    return ChatMessage(role=MessageRole.ASSISTANT, blocks=blocks, additional_kwargs=additional_kwargs)


def tool_selections(message: ChatMessage) -> list[ToolSelection]:
    """The tool calls a message asks for: its :class:`ToolCallBlock` blocks, else ``additional_kwargs``."""
    blocks = [block for block in message.blocks if isinstance(block, ToolCallBlock)]
    if blocks:
        return [
            ToolSelection(
                tool_id=block.tool_call_id or str(uuid.uuid4()),
                tool_name=block.tool_name,
                tool_kwargs=_parse(block.tool_kwargs),
            )
            for block in blocks
        ]
    selections = []
    for raw in message.additional_kwargs.get("tool_calls") or ():
        call = _tool_call_dict(raw)
        if call["function"]["name"]:
            selections.append(
                ToolSelection(tool_id=call["id"], tool_name=call["function"]["name"], tool_kwargs=_arguments(call))
            )
    return selections


class ToolCallAccumulator:
    """Joins streamed tool-call deltas (by their ``index``) into complete OpenAI tool calls."""

    def __init__(self) -> None:
        self._calls: dict[int, dict[str, Any]] = {}

    def add(self, deltas: Sequence[Any] | None) -> None:
        """Fold one chunk's tool-call deltas in."""
        for k, delta in enumerate(deltas or ()):
            index = _get(delta, "index")
            index = k if index is None else int(index)
            if index not in self._calls:  # an id of our own until the provider sends one
                self._calls[index] = {
                    "id": _new_call_id(),
                    "type": "function",
                    "function": {"name": "", "arguments": ""},
                }
            call = self._calls[index]
            call["id"] = _get(delta, "id") or call["id"]
            function = _get(delta, "function")
            if function is not None:
                call["function"]["name"] = _get(function, "name") or call["function"]["name"]
                call["function"]["arguments"] += _get(function, "arguments") or ""

    @property
    def calls(self) -> list[dict[str, Any]]:
        """The calls so far, in index order."""
        return [{**call, "function": dict(call["function"])} for _, call in sorted(self._calls.items())]


def message_with(content: str, calls: list[dict[str, Any]]) -> ChatMessage:
    """An assistant message holding streamed ``content`` and tool ``calls`` so far."""
    return from_openai_message({"content": content, "tool_calls": calls})


def _image_url(block: ImageBlock) -> dict[str, Any]:
    if block.url:
        url = str(block.url)
    else:
        data = block.resolve_image(as_base64=True).read().decode("utf-8")
        url = f"data:{block.image_mimetype or 'image/png'};base64,{data}"
    return {"url": url, "detail": block.detail or "auto"}


def _tool_call_from_block(block: ToolCallBlock) -> dict[str, Any]:
    arguments = block.tool_kwargs if isinstance(block.tool_kwargs, str) else json.dumps(block.tool_kwargs)
    return {
        "id": block.tool_call_id or _new_call_id(),
        "type": "function",
        "function": {"name": block.tool_name, "arguments": arguments},
    }


def _tool_call_dict(call: Any) -> dict[str, Any]:
    """An OpenAI tool call (dict, LiteLLM or OpenAI object) as a plain dict."""
    function = _get(call, "function") or {}
    arguments = _get(function, "arguments")
    if arguments is not None and not isinstance(arguments, str):
        arguments = json.dumps(arguments)
    return {
        "id": _get(call, "id") or _new_call_id(),
        "type": _get(call, "type") or "function",
        "function": {"name": _get(function, "name") or "", "arguments": arguments or ""},
    }


def _new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:12]}"


def _arguments(call: Mapping[str, Any]) -> dict[str, Any]:
    return _parse(call["function"]["arguments"])


def _parse(arguments: Any) -> dict[str, Any]:
    """Tool arguments as a dict; arguments that are not a JSON object (a truncated stream) become ``{}``."""
    if isinstance(arguments, Mapping):
        return dict(arguments)
    try:
        parsed = json.loads(arguments) if arguments else {}
    except (TypeError, ValueError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _get(obj: Any, key: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


__all__ = [
    "OpenAIMessage",
    "ToolCallAccumulator",
    "from_openai_message",
    "message_with",
    "to_openai_message",
    "to_openai_messages",
    "tool_selections",
]
