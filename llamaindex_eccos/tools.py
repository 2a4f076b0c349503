"""Function calling for ECCOSLLM: the tools a chat offers, and the tool calls a reply makes.

Offering tools is an ordinary LiteLLM option (``tools`` / ``tool_choice``), so the router only considers the
pool models that support tools for such a call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from llama_index.core.base.llms.types import ChatMessage, ChatResponse, MessageRole, ToolCallBlock

from llamaindex_eccos.messages import tool_selections

if TYPE_CHECKING:
    from llama_index.core.tools import ToolSelection
    from llama_index.core.tools.types import BaseTool


def chat_with_tools(
    tools: Sequence[BaseTool],
    user_msg: str | ChatMessage | None,
    chat_history: list[ChatMessage] | None,
    tool_required: bool,
    tool_choice: str | dict[str, Any] | None,
    kwargs: dict[str, Any],
) -> dict[str, Any]:
    """The chat arguments (``messages`` and options) that offer ``tools`` after the history and the user message."""
    messages = list(chat_history or [])
    if isinstance(user_msg, str):
        user_msg = ChatMessage(role=MessageRole.USER, content=user_msg)
    if user_msg is not None:
        messages.append(user_msg)
    specs = [tool.metadata.to_openai_tool(skip_length_check=True) for tool in tools]
    out: dict[str, Any] = {"messages": messages, **kwargs}
    if specs:
        out["tools"] = specs
        out["tool_choice"] = openai_tool_choice(tool_choice, tool_required)
    return out


def openai_tool_choice(choice: str | dict[str, Any] | None, required: bool) -> str | dict[str, Any]:
    """LlamaIndex's tool choice (None, a mode, or a tool's name) in OpenAI's form."""
    if choice is None:
        return "required" if required else "auto"
    if isinstance(choice, str) and choice not in ("auto", "none", "required"):
        return {"type": "function", "function": {"name": choice}}
    return choice


def keep_first_tool_call(response: ChatResponse) -> ChatResponse:
    """The reply with only its first tool call (as a block and in ``additional_kwargs``), in place."""
    message = response.message
    blocks = [b for b in message.blocks if isinstance(b, ToolCallBlock)]
    if len(blocks) > 1:
        message.blocks = [b for b in message.blocks if not isinstance(b, ToolCallBlock)] + blocks[:1]
    calls = message.additional_kwargs.get("tool_calls") or []
    if len(calls) > 1:
        message.additional_kwargs["tool_calls"] = calls[:1]
    return response


def tool_calls(response: ChatResponse, error_on_no_tool_call: bool) -> list[ToolSelection]:
    """The tool calls of a reply, as LlamaIndex runs them.

    Raises:
        ValueError: The reply calls no tool and ``error_on_no_tool_call`` is true.
    """
    selections = tool_selections(response.message)
    if not selections and error_on_no_tool_call:
        raise ValueError(
            "the routed model answered without calling a tool; pass tool_required=True to force one, or "
            "error_on_no_tool_call=False to accept a plain answer"
        )
    return selections


__all__ = ["chat_with_tools", "keep_first_tool_call", "openai_tool_choice", "tool_calls"]
