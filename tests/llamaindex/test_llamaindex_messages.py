"""LlamaIndex messages to OpenAI dicts and back: text, images, tool calls and tool results."""

from __future__ import annotations

import base64

import pytest
from llama_index.core.base.llms.types import (
    AudioBlock,
    ChatMessage,
    ImageBlock,
    TextBlock,
    ThinkingBlock,
    ToolCallBlock,
)

from llamaindex_eccos.messages import (
    ToolCallAccumulator,
    from_openai_message,
    to_openai_messages,
    tool_selections,
)

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def test_text_messages_become_plain_strings():
    messages = [
        ChatMessage(role="system", content="You are terse."),
        ChatMessage(role="user", blocks=[TextBlock(text="line one"), TextBlock(text="line two")]),
        ChatMessage(role="assistant", content="ok", blocks=[ThinkingBlock(content="hmm"), TextBlock(text="ok")]),
    ]
    assert to_openai_messages(messages) == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "line one\nline two"},
        {"role": "assistant", "content": "ok"},  # the model's own reasoning is not sent back
    ]


def test_images_become_image_url_parts():
    message = ChatMessage(
        role="user",
        blocks=[
            TextBlock(text="Compare these."),
            ImageBlock(url="https://example.com/a.jpg", detail="low"),
            ImageBlock(image=PNG),
        ],
    )
    (converted,) = to_openai_messages([message])
    text, by_url, inline = converted["content"]
    assert text == {"type": "text", "text": "Compare these."}
    assert by_url == {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg", "detail": "low"}}
    assert inline["image_url"]["url"].startswith("data:image/png;base64,iVBORw0KGgo")


def test_tool_call_blocks_and_tool_results():
    call = ChatMessage(
        role="assistant",
        blocks=[ToolCallBlock(tool_call_id="call_7", tool_name="multiply", tool_kwargs={"a": 2, "b": 5})],
    )
    result = ChatMessage(role="tool", content="10", additional_kwargs={"tool_call_id": "call_7"})

    assistant, tool = to_openai_messages([call, result])

    assert assistant == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_7", "type": "function", "function": {"name": "multiply", "arguments": '{"a": 2, "b": 5}'}}
        ],
    }
    assert tool == {"role": "tool", "content": "10", "tool_call_id": "call_7"}


def test_legacy_additional_kwargs_tool_calls_are_sent_too():
    from litellm.types.utils import ChatCompletionMessageToolCall, Function

    message = ChatMessage(
        role="assistant",
        content="Let me compute that.",
        additional_kwargs={
            "tool_calls": [
                ChatCompletionMessageToolCall(id="c1", function=Function(name="add", arguments='{"a": 1}')),
                {"id": "c2", "type": "function", "function": {"name": "sub", "arguments": '{"b": 2}'}},
            ]
        },
    )
    (converted,) = to_openai_messages([message])
    assert converted["content"] == "Let me compute that."
    assert [(c["id"], c["function"]["name"], c["function"]["arguments"]) for c in converted["tool_calls"]] == [
        ("c1", "add", '{"a": 1}'),
        ("c2", "sub", '{"b": 2}'),
    ]
    assert [(s.tool_id, s.tool_name, s.tool_kwargs) for s in tool_selections(message)] == [
        ("c1", "add", {"a": 1}),
        ("c2", "sub", {"b": 2}),
    ]


def test_unsupported_blocks_name_the_problem():
    message = ChatMessage(role="user", blocks=[AudioBlock(audio=b"RIFF....", format="wav")])
    with pytest.raises(ValueError, match="AudioBlock"):
        to_openai_messages([message])


def test_replies_carry_tool_calls_as_blocks_and_additional_kwargs():
    reply = from_openai_message(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"x": 3}'}}],
        }
    )
    (block,) = reply.blocks
    assert isinstance(block, ToolCallBlock) and (block.tool_name, block.tool_kwargs) == ("f", {"x": 3})
    assert reply.additional_kwargs["tool_calls"][0]["function"]["name"] == "f"
    assert reply.content is None
    # and it goes back out unchanged
    assert to_openai_messages([reply])[0]["tool_calls"][0] == {
        "id": "call_1",
        "type": "function",
        "function": {"name": "f", "arguments": '{"x": 3}'},
    }

    plain = from_openai_message({"role": "assistant", "content": "hello"})
    assert plain.content == "hello" and plain.additional_kwargs == {}


def test_streamed_tool_call_deltas_are_joined():
    calls = ToolCallAccumulator()
    calls.add([{"index": 0, "id": "call_1", "function": {"name": "multiply", "arguments": '{"a": '}}])
    calls.add([{"index": 0, "function": {"arguments": "3, "}}, {"index": 1, "function": {"name": "add"}}])
    calls.add([{"index": 0, "function": {"arguments": '"b": 4}'}}])

    first, second = calls.calls
    assert first == {
        "id": "call_1",
        "type": "function",
        "function": {"name": "multiply", "arguments": '{"a": 3, "b": 4}'},
    }
    assert second["function"] == {"name": "add", "arguments": ""} and second["id"] not in ("", "call_1")
    assert tool_selections(from_openai_message({"content": "", "tool_calls": calls.calls}))[0].tool_kwargs == {
        "a": 3,
        "b": 4,
    }
