"""LangChain messages to and from the OpenAI format LiteLLM speaks, with langchain-core's own converters.

Requests go out through :func:`langchain_core.messages.convert_to_openai_messages` (tool calls, tool results,
multimodal content blocks); replies come back through langchain-core's OpenAI tool-call parsers, so an
``AIMessage`` from the router looks like one from ``ChatOpenAI``: ``tool_calls`` (or ``invalid_tool_calls``),
``usage_metadata`` with the billed tokens, and ``response_metadata`` naming the model that answered plus the
routing decision under ``"eccos"``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from langchain_core.exceptions import OutputParserException
from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    convert_to_messages,
    convert_to_openai_messages,
)
from langchain_core.messages.ai import UsageMetadata
from langchain_core.messages.tool import invalid_tool_call, tool_call_chunk
from langchain_core.output_parsers.openai_tools import make_invalid_tool_call, parse_tool_call
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.prompt_values import PromptValue

if TYPE_CHECKING:
    from eccos_core.dispatch import AsyncRoutedStream, RoutedResponse, RoutedStream

OpenAIMessage = dict[str, Any]
"""One chat message in OpenAI's format, as LiteLLM takes it."""


def input_messages(value: LanguageModelInput) -> list[BaseMessage]:
    """A chat model input (string, message list or prompt value) as LangChain messages."""
    if isinstance(value, PromptValue):
        return value.to_messages()
    if isinstance(value, str):
        return convert_to_messages([("human", value)])
    if isinstance(value, Sequence):
        return convert_to_messages(value)
    raise TypeError(f"ChatECCOS takes a string, a list of messages or a PromptValue, got {type(value).__name__}")


def to_openai(messages: Sequence[BaseMessage]) -> list[OpenAIMessage]:
    """LangChain messages as OpenAI chat messages (tool calls, tool results and images included).

    Raises:
        InputError: A message LangChain cannot convert (e.g. a ``{"type": "text"}`` block without ``text``).
    """
    from eccos_core.errors import InputError

    try:
        return list(convert_to_openai_messages(list(messages)))
    except (KeyError, ValueError, TypeError, NotImplementedError) as exc:
        detail = f"{type(exc).__name__}: {exc}"[:300]
        raise InputError(f"a message cannot be converted to OpenAI's chat format ({detail})") from None


def _as_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return dict(value)
    if hasattr(value, "model_dump"):
        return value.model_dump()
    return dict(vars(value))


def _choice(response: Any) -> Any:
    choices = getattr(response, "choices", None) or []
    return choices[0] if choices else None


def usage_metadata(routed: RoutedResponse) -> UsageMetadata:
    """Billed tokens of a routed answer, with cache-read and reasoning details when the provider gave them."""
    usage = UsageMetadata(
        input_tokens=routed.input_tokens,
        output_tokens=routed.output_tokens,
        total_tokens=routed.input_tokens + routed.output_tokens,
    )
    raw = getattr(routed.response, "usage", None)
    prompt_details = getattr(raw, "prompt_tokens_details", None)
    cached = getattr(prompt_details, "cached_tokens", None)
    if isinstance(cached, int):
        usage["input_token_details"] = {"cache_read": cached}
    completion_details = getattr(raw, "completion_tokens_details", None)
    reasoning = getattr(completion_details, "reasoning_tokens", None)
    if isinstance(reasoning, int):
        usage["output_token_details"] = {"reasoning": reasoning}
    return usage


def response_metadata(routed: RoutedResponse, finish_reason: str | None) -> dict[str, Any]:
    """What a routed answer's ``response_metadata`` holds: the answering model and the routing decision."""
    metadata: dict[str, Any] = {"model_name": routed.model, "eccos": routed.to_metadata()}
    if finish_reason:
        metadata["finish_reason"] = finish_reason
    response_id = getattr(routed.response, "id", None)
    if response_id:
        metadata["id"] = response_id
    return metadata


def parse_tool_calls(raw_calls: Sequence[Any] | None) -> tuple[list[Any], list[Any]]:
    """OpenAI tool calls as LangChain ``tool_calls`` and ``invalid_tool_calls`` (arguments that are not JSON)."""
    calls, invalid = [], []
    for raw in raw_calls or ():
        data = _as_dict(raw)
        try:
            calls.append(parse_tool_call(data, return_id=True))
        except OutputParserException as exc:
            invalid.append(make_invalid_tool_call(data, str(exc)))
        except (KeyError, TypeError) as exc:  # a provider sent a call without function/name
            invalid.append(invalid_tool_call(name=None, args=None, id=data.get("id"), error=repr(exc)))
    return calls, invalid


def chat_result(routed: RoutedResponse) -> ChatResult:
    """A routed LiteLLM response as a LangChain ``ChatResult``."""
    choice = _choice(routed.response)
    message = getattr(choice, "message", None)
    content = getattr(message, "content", None) or ""
    calls, invalid = parse_tool_calls(getattr(message, "tool_calls", None))
    finish_reason = getattr(choice, "finish_reason", None)
    ai = AIMessage(
        content=content,
        tool_calls=calls,
        invalid_tool_calls=invalid,
        usage_metadata=usage_metadata(routed),
        response_metadata=response_metadata(routed, finish_reason),
    )
    info = {"finish_reason": finish_reason} if finish_reason else None
    return ChatResult(generations=[ChatGeneration(message=ai, generation_info=info)])


def chunk_from_litellm(chunk: Any) -> tuple[ChatGenerationChunk | None, str | None]:
    """One streamed LiteLLM chunk as a LangChain chunk (``None`` for the usage-only chunk), and its finish reason.

    Usage and response metadata are left to the final chunk (see :func:`final_chunk`), so a merged stream
    counts tokens once.
    """
    choice = _choice(chunk)
    if choice is None:
        return None, None
    delta = getattr(choice, "delta", None)
    content = getattr(delta, "content", None) or ""
    tool_chunks = []
    for position, raw in enumerate(getattr(delta, "tool_calls", None) or ()):
        data = _as_dict(raw)
        function = data.get("function") or {}
        tool_chunks.append(
            tool_call_chunk(
                name=function.get("name"),
                args=function.get("arguments"),
                id=data.get("id"),
                index=data.get("index", position),
            )
        )
    finish_reason = getattr(choice, "finish_reason", None)
    if not content and not tool_chunks:
        return None, finish_reason
    return ChatGenerationChunk(message=AIMessageChunk(content=content, tool_call_chunks=tool_chunks)), finish_reason


def final_chunk(routed: RoutedResponse, finish_reason: str | None) -> ChatGenerationChunk:
    """The closing chunk of a routed stream: usage, the answering model and the routing decision."""
    info = {"finish_reason": finish_reason} if finish_reason else None
    message = AIMessageChunk(
        content="",
        usage_metadata=usage_metadata(routed),
        response_metadata=response_metadata(routed, finish_reason),
        chunk_position="last",
    )
    return ChatGenerationChunk(message=message, generation_info=info)


def generation_chunks(stream: RoutedStream) -> Iterator[ChatGenerationChunk]:
    """A routed stream as LangChain chunks, closed by :func:`final_chunk` once the stream has its result."""
    finish_reason = None
    for raw in stream:
        chunk, reason = chunk_from_litellm(raw)
        finish_reason = reason or finish_reason
        if chunk is not None:
            yield chunk
    if stream.result is not None:
        yield final_chunk(stream.result, finish_reason)


async def ageneration_chunks(stream: AsyncRoutedStream) -> AsyncIterator[ChatGenerationChunk]:
    """Async :func:`generation_chunks`."""
    finish_reason = None
    async for raw in stream:
        chunk, reason = chunk_from_litellm(raw)
        finish_reason = reason or finish_reason
        if chunk is not None:
            yield chunk
    if stream.result is not None:
        yield final_chunk(stream.result, finish_reason)


__all__ = [
    "OpenAIMessage",
    "ageneration_chunks",
    "chat_result",
    "chunk_from_litellm",
    "final_chunk",
    "generation_chunks",
    "input_messages",
    "parse_tool_calls",
    "response_metadata",
    "to_openai",
    "usage_metadata",
]
