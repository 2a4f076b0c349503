"""Routed answers as LlamaIndex chat responses, and the instrumentation events that report them.

:func:`announce` emits a call's routing decision before it is sent; :func:`chat_response` turns a routed answer
into a :class:`ChatResponse` carrying the decision (and emits :class:`ECCOSResponseEvent`); :func:`stream_responses`
and :func:`astream_responses` turn a LiteLLM stream into the growing responses LlamaIndex streams, the last one
carrying the full decision.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from llama_index.core.base.llms.types import ChatMessage, ChatResponse, MessageRole
from llama_index.core.instrumentation import get_dispatcher

from llamaindex_eccos.events import ECCOSResponseEvent, ECCOSRoutingEvent
from llamaindex_eccos.messages import ToolCallAccumulator, from_openai_message, message_with

if TYPE_CHECKING:
    from eccos_core.dispatch import AsyncRoutedStream, RoutedResponse, RoutedStream
    from eccos_core.planner import QueryPlan

logger = logging.getLogger("eccos.llamaindex")
dispatcher = get_dispatcher(__name__)


def announce(entry: QueryPlan) -> None:
    """Emit a call's routing decision as an instrumentation event (in the span of the call it belongs to)."""
    dispatcher.event(
        ECCOSRoutingEvent(
            model=entry.model,
            p_success=entry.p_success,
            predicted_cost=entry.cost,
            predicted_output_tokens=entry.output_tokens,
            input_tokens=entry.input_tokens,
            min_quality=entry.min_quality,
            status=entry.status.value,
            message=entry.message,
            chain=list(entry.chain),
            batch_index=entry.index,
            batch_size=entry.batch_size,
            plan=entry.to_dict(),
        )
    )


def chat_response(routed: RoutedResponse, delta: str | None = None) -> ChatResponse:
    """A routed answer as a ChatResponse carrying the decision; emits :class:`ECCOSResponseEvent`."""
    metadata = routed.to_metadata()
    dispatcher.event(
        ECCOSResponseEvent(
            model=routed.model,
            planned_model=routed.plan.model,
            cost=routed.cost,
            input_tokens=routed.input_tokens,
            output_tokens=routed.output_tokens,
            fallbacks=metadata["fallbacks"],
            metadata=metadata,
        )
    )
    try:
        message = from_openai_message(routed.response.choices[0].message)
    except (AttributeError, IndexError, TypeError):
        message = ChatMessage(role=MessageRole.ASSISTANT, content="")
    return ChatResponse(
        message=message,
        delta=delta,
        raw={**as_dict(routed.response), "eccos": metadata},
        additional_kwargs={
            "eccos": metadata,
            "prompt_tokens": routed.input_tokens,
            "completion_tokens": routed.output_tokens,
            "total_tokens": routed.input_tokens + routed.output_tokens,
        },
    )


class StreamReply:
    """The text and tool calls a stream has sent so far, as LlamaIndex chat responses.

    Until the stream ends, each response carries the plan (``QueryPlan.to_dict()``) with ``model`` set to the
    model actually streaming; the last one carries the full ``RoutedResponse.to_metadata()``.
    """

    def __init__(self, entry: QueryPlan) -> None:
        self._plan = {**entry.to_dict(), "planned_model": entry.model}
        self._content = ""
        self._calls = ToolCallAccumulator()

    def add(self, chunk: Any, model: str | None) -> ChatResponse | None:
        """The response for one LiteLLM chunk (``None`` for a chunk without choices, e.g. the usage chunk)."""
        choices = getattr(chunk, "choices", None)
        if not choices:
            return None
        delta = choices[0].delta
        text = getattr(delta, "content", None) or ""
        self._content += text
        self._calls.add(getattr(delta, "tool_calls", None))
        decision = {**self._plan, "model": model}
        return ChatResponse(
            message=message_with(self._content, self._calls.calls),
            delta=text,
            raw={**as_dict(chunk), "eccos": decision},
            additional_kwargs={"eccos": decision},
        )


def stream_responses(entry: QueryPlan, stream: RoutedStream) -> Iterator[ChatResponse]:
    """A routed LiteLLM stream as LlamaIndex chat responses; the last carries the decision and the actual cost."""
    reply = StreamReply(entry)
    for chunk in stream:
        response = reply.add(chunk, stream.model)
        if response is not None:
            yield response
    assert stream.result is not None  # set once the stream is exhausted
    yield chat_response(stream.result, delta="")


async def astream_responses(entry: QueryPlan, stream: AsyncRoutedStream) -> AsyncIterator[ChatResponse]:
    """Async :func:`stream_responses`."""
    reply = StreamReply(entry)
    async for chunk in stream:
        response = reply.add(chunk, stream.model)
        if response is not None:
            yield response
    assert stream.result is not None  # set once the stream is exhausted
    yield chat_response(stream.result, delta="")


def as_dict(obj: Any) -> dict[str, Any]:
    """A LiteLLM response or chunk as a plain dict (what ``raw`` holds, next to the ``eccos`` decision)."""
    if isinstance(obj, dict):
        return dict(obj)
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        try:
            return dict(dump())
        except Exception:  # some provider objects refuse to serialize; the decision still goes out
            logger.debug("could not serialize %s for ChatResponse.raw", type(obj).__name__)
    return {}


__all__ = ["StreamReply", "announce", "as_dict", "astream_responses", "chat_response", "stream_responses"]
