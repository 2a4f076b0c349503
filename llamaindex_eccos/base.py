"""ECCOSLLM: a LlamaIndex LLM that sends every call to the cheapest pool model meeting ``min_quality``.

Each call is planned by the router (N = 1) and sent through its dispatcher, which falls back along the plan's
chain when a provider fails; streams are real LiteLLM streams and async calls are real async calls. The batch
helpers (``chat_batch``, ``complete_batch`` and their async twins) plan every prompt in one optimizer call, so
the batch as a whole reaches ``min_quality`` at the least predicted cost, then send the prompts concurrently,
each in its own LlamaIndex callback run and span.

How a batch's plan reaches the call that sends it: the batch helper plans, then calls the public ``chat`` /
``complete`` (or async twin) per prompt with that prompt's plan in a context variable, which the private
implementation reads instead of planning again.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from llama_index.core.base.llms.generic_utils import (
    achat_to_completion_decorator,
    astream_chat_to_completion_decorator,
    chat_to_completion_decorator,
    stream_chat_to_completion_decorator,
)
from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
    ToolCallBlock,
)
from llama_index.core.bridge.pydantic import Field, PrivateAttr, field_validator
from llama_index.core.constants import DEFAULT_CONTEXT_WINDOW
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.tools import ToolSelection

from llamaindex_eccos.events import ECCOSResponseEvent, ECCOSRoutingEvent
from llamaindex_eccos.messages import (
    OpenAIMessage,
    ToolCallAccumulator,
    from_openai_message,
    message_with,
    to_openai_messages,
    tool_selections,
)

if TYPE_CHECKING:
    from llama_index.core.tools.types import BaseTool

    from eccos_core.dispatch import Ledger, RoutedResponse
    from eccos_core.planner import QueryPlan
    from eccos_core.router import Router

logger = logging.getLogger("eccos.llamaindex")
dispatcher = get_dispatcher(__name__)

T = TypeVar("T")

_NOT_SENT = ("formatted", "verbose", "stream")
"""Call kwargs LlamaIndex uses itself; never passed on to LiteLLM."""
_DEFAULT_LOCK = threading.Lock()


@functools.lru_cache(maxsize=1)
def _load_default_router() -> Router:
    from eccos_core.router import Router

    return Router.default()


def default_router() -> Router:
    """The bundled default router, loaded on first use and shared by every ECCOSLLM in the process."""
    with _DEFAULT_LOCK:
        return _load_default_router()


@dataclass(frozen=True)
class _Planned:
    """One prompt's share of a batch plan: its entry and the batch's cap ledger."""

    entry: QueryPlan
    ledger: Ledger | None


_PLANNED: ContextVar[_Planned | None] = ContextVar("llamaindex_eccos_planned", default=None)
"""Set by the batch helpers around each prompt's call, so the call sends the batch's plan."""


@dataclass(frozen=True)
class _Settings:
    """A call's routing settings (fields filled in) and the LiteLLM options it is sent with."""

    min_quality: Any
    confidence: Any
    capacity: Any
    policy: str
    options: dict[str, Any]


@dataclass(frozen=True)
class _Call:
    """A call ready to send: where it goes, what is sent and with which LiteLLM options."""

    router: Router
    entry: QueryPlan
    messages: list[OpenAIMessage]
    options: dict[str, Any]
    ledger: Ledger | None = None


class ECCOSLLM(FunctionCallingLLM):
    """A LlamaIndex LLM that routes every call to the cheapest model whose predicted success meets a target.

    The router (an ``eccos_core.Router``: a pool of models, a fitted predictor and the quality guard) is loaded
    on first use, never at import or construction; left unset, it is the bundled default router.

    Example:
        ```python
        from eccos_core import ModelSpec, Router
        from llama_index.core import Settings
        from llamaindex_eccos import ECCOSLLM

        Settings.llm = ECCOSLLM(min_quality=0.6)  # the bundled pool, its providers' keys from the environment
        print(Settings.llm.complete("What is 17 * 23?"))

        reply = Settings.llm.complete("Prove that sqrt(2) is irrational.", min_quality=0.8)
        print(reply.additional_kwargs["eccos"]["model"], reply.additional_kwargs["eccos"]["cost"])

        answers = Settings.llm.complete_batch(["2 + 2?", "Summarise Hamlet."])  # one optimizer call
        answers = Settings.llm.complete_batch(questions, confidence=0.9)  # this batch reaches 0.6 w.p. 0.9
        ```
    """

    router: Any = Field(
        default=None,
        exclude=True,
        description=(
            "The eccos_core.Router that decides. Unset: the bundled default router (Router.default()), loaded "
            "on first use. Not serialized: its pool holds provider credentials."
        ),
    )
    min_quality: float = Field(
        default=0.6,
        ge=0.0,
        le=1.0,
        description=(
            "Mean success in [0, 1] each call (or each batch, as a whole) must reach; per call: min_quality=..."
        ),
    )
    capacity: dict[str, int | None] | None = Field(
        default=None,
        description="Most prompts of one batch each named pool model may take ({name: cap}; None = no cap).",
    )
    policy: str = Field(
        default="dual",
        description=(
            "How a call planned on its own is routed, as Router.complete routes it: 'dual' (default; at the "
            "per-call price of its min_quality, shared by everything on the same router, so the mean success "
            "over the calls reaches min_quality at about a joint batch's cost) or 'strict' (each call reaches it "
            "on its own; costlier). Per call: policy=...; the batch helpers always plan jointly."
        ),
    )
    temperature: float | None = Field(
        default=None, ge=0.0, le=2.0, description="Sampling temperature sent with every call (None: provider default)."
    )
    max_tokens: int | None = Field(
        default=None,
        gt=0,
        description="Most tokens to generate; only models whose output limit allows it are routed to.",
    )
    timeout: float | None = Field(
        default=None,
        gt=0,
        description="Seconds one model may take before the call falls back (None: each model's own timeout).",
    )
    context_window: int | None = Field(
        default=None,
        gt=0,
        description=(
            "Context window to report to LlamaIndex; None: the largest the pool knows of, else "
            f"LlamaIndex's default ({DEFAULT_CONTEXT_WINDOW})."
        ),
    )
    additional_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="Other LiteLLM options sent with every call (not credentials: give those per model).",
    )

    _router: Any = PrivateAttr(default=None)

    @field_validator("policy", mode="before")
    @classmethod
    def _check_policy(cls, value: Any) -> str:
        from eccos_core.validation import check_policy

        return check_policy(value)

    @field_validator("router")
    @classmethod
    def _check_router(cls, value: Any) -> Any:
        from eccos_core.router import check_router

        return check_router(value)

    @classmethod
    def class_name(cls) -> str:
        """Name LlamaIndex serializes and traces this LLM under."""
        return "eccos_llm"

    def get_router(self) -> Router:
        """The router that decides: :attr:`router`, else the bundled default (loaded on first use)."""
        if self.router is not None:
            return self.router
        if self._router is None:
            self._router = default_router()
        return self._router

    def record_outcome(self, query: Any, model: str, score: float, output_tokens: float | None = None) -> None:
        """Tell the router how ``model`` did on ``query`` (score in [0, 1]); similar queries see it at once.

        Delegates to :meth:`eccos_core.router.Router.record_outcome`; call ``get_router().refit()`` on your own
        schedule to refresh the calibration and the quality guard.
        """
        self.get_router().record_outcome(query, model, score, output_tokens)

    @property
    def metadata(self) -> LLMMetadata:
        """What the routed pool can serve, as LlamaIndex sizes prompts by it.

        ``context_window`` is the largest context window of the pool (a prompt that long is routed only to the
        models that can take it), or :attr:`context_window`, or LlamaIndex's default when no pool model's window
        is known. ``num_output`` is :attr:`max_tokens`, else the largest known output limit capped at a quarter
        of the window (so prompt packing keeps room for the question), else ``-1`` (unknown).
        """
        pool = self.get_router().models
        windows = [m.max_input_tokens for m in pool if m.max_input_tokens]
        outputs = [m.max_output_tokens for m in pool if m.max_output_tokens]
        window = self.context_window or (max(windows) if windows else DEFAULT_CONTEXT_WINDOW)
        num_output = self.max_tokens or (min(max(outputs), window // 4) if outputs else -1)
        return LLMMetadata(
            context_window=window,
            num_output=num_output,
            is_chat_model=True,
            is_function_calling_model=any(m.supports_tools for m in pool),
            model_name="eccos",
        )

    # ------------------------------------------------------------------------------------- public calls
    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """Route and send a chat; ``min_quality=`` / ``capacity=`` override the fields for this call."""
        return self._chat(messages, **kwargs)

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        """Route and stream a chat; the last response carries the routing decision and the actual cost."""
        return self._stream_chat(messages, **kwargs)

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        """Route and send a prompt as one user message."""
        return chat_to_completion_decorator(self._chat)(prompt, **kwargs)

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        """Route and stream a prompt as one user message."""
        return stream_chat_to_completion_decorator(self._stream_chat)(prompt, **kwargs)

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """Async :meth:`chat`."""
        return await self._achat(messages, **kwargs)

    @llm_chat_callback()
    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        """Async :meth:`stream_chat`."""
        return await self._astream_chat(messages, **kwargs)

    @llm_completion_callback()
    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        """Async :meth:`complete`."""
        return await achat_to_completion_decorator(self._achat)(prompt, **kwargs)

    @llm_completion_callback()
    async def astream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseAsyncGen:
        """Async :meth:`stream_complete`."""
        return await astream_chat_to_completion_decorator(self._astream_chat)(prompt, **kwargs)

    # -------------------------------------------------------------------------------------------- batches
    def chat_batch(
        self,
        messages_list: Sequence[Sequence[ChatMessage]],
        *,
        return_exceptions: bool = False,
        max_concurrency: int | None = None,
        **kwargs: Any,
    ) -> list[ChatResponse | Exception]:
        """Plan every chat in one optimizer call, then send them concurrently; replies in input order.

        Args:
            messages_list: One message list per chat.
            return_exceptions: Put a failed chat's exception in its place instead of raising it.
            max_concurrency: Calls in flight at once (default: the router's ``max_concurrency``).
            **kwargs: ``min_quality=`` / ``capacity=`` for the batch as a whole, ``confidence=`` for
                ``Router.plan``'s per-batch guarantee (refused by single calls), and LiteLLM options.

        Raises:
            DispatchError: Some chat failed on every model that could take it (after all chats finished; its
                ``results`` hold every reply or exception) and ``return_exceptions`` is false.
        """
        planned = self._plan_batch([to_openai_messages(m) for m in messages_list], kwargs)
        return self._run_batch(self.chat, list(messages_list), planned, kwargs, return_exceptions, max_concurrency)

    def complete_batch(
        self,
        prompts: Sequence[str],
        *,
        return_exceptions: bool = False,
        max_concurrency: int | None = None,
        **kwargs: Any,
    ) -> list[CompletionResponse | Exception]:
        """:meth:`chat_batch` for prompts, each sent as one user message."""
        planned = self._plan_batch([_user(p) for p in _prompts(prompts)], kwargs)
        return self._run_batch(self.complete, list(prompts), planned, kwargs, return_exceptions, max_concurrency)

    async def achat_batch(
        self,
        messages_list: Sequence[Sequence[ChatMessage]],
        *,
        return_exceptions: bool = False,
        max_concurrency: int | None = None,
        **kwargs: Any,
    ) -> list[ChatResponse | Exception]:
        """Async :meth:`chat_batch` (planning runs in a worker thread; the event loop stays free)."""
        converted = [to_openai_messages(m) for m in messages_list]
        planned = await asyncio.to_thread(self._plan_batch, converted, kwargs)
        return await self._arun_batch(
            self.achat, list(messages_list), planned, kwargs, return_exceptions, max_concurrency
        )

    async def acomplete_batch(
        self,
        prompts: Sequence[str],
        *,
        return_exceptions: bool = False,
        max_concurrency: int | None = None,
        **kwargs: Any,
    ) -> list[CompletionResponse | Exception]:
        """Async :meth:`complete_batch`."""
        planned = await asyncio.to_thread(self._plan_batch, [_user(p) for p in _prompts(prompts)], kwargs)
        return await self._arun_batch(
            self.acomplete, list(prompts), planned, kwargs, return_exceptions, max_concurrency
        )

    # ------------------------------------------------------------------------------------------- tools
    def _prepare_chat_with_tools(
        self,
        tools: Sequence[BaseTool],
        user_msg: str | ChatMessage | None = None,
        chat_history: list[ChatMessage] | None = None,
        verbose: bool = False,
        allow_parallel_tool_calls: bool = False,
        tool_required: bool = False,
        tool_choice: str | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Chat arguments offering ``tools``; the router then only considers models that support tools."""
        messages = list(chat_history or [])
        if isinstance(user_msg, str):
            user_msg = ChatMessage(role=MessageRole.USER, content=user_msg)
        if user_msg is not None:
            messages.append(user_msg)
        specs = [tool.metadata.to_openai_tool(skip_length_check=True) for tool in tools]
        out: dict[str, Any] = {"messages": messages, **kwargs}
        if specs:
            out["tools"] = specs
            out["tool_choice"] = _tool_choice(tool_choice, tool_required)
        return out

    def _validate_chat_with_tools_response(
        self,
        response: ChatResponse,
        tools: Sequence[BaseTool],
        allow_parallel_tool_calls: bool = False,
        **kwargs: Any,
    ) -> ChatResponse:
        """Keep only the first tool call unless parallel calls are allowed."""
        if not allow_parallel_tool_calls:
            message = response.message
            blocks = [b for b in message.blocks if isinstance(b, ToolCallBlock)]
            if len(blocks) > 1:
                message.blocks = [b for b in message.blocks if not isinstance(b, ToolCallBlock)] + blocks[:1]
            calls = message.additional_kwargs.get("tool_calls") or []
            if len(calls) > 1:
                message.additional_kwargs["tool_calls"] = calls[:1]
        return response

    def get_tool_calls_from_response(
        self, response: ChatResponse, error_on_no_tool_call: bool = True, **kwargs: Any
    ) -> list[ToolSelection]:
        """The tool calls of a reply, as LlamaIndex agents and ``predict_and_call`` run them.

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

    # ----------------------------------------------------------------------------- private implementations
    def _chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        call = self._prepare(messages, kwargs)
        self._announce(call.entry)
        routed = call.router.dispatcher.send(call.entry, call.messages, ledger=call.ledger, **call.options)
        return self._reply(routed)

    async def _achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        call = await self._aprepare(messages, kwargs)
        self._announce(call.entry)
        routed = await call.router.dispatcher.asend(call.entry, call.messages, ledger=call.ledger, **call.options)
        return self._reply(routed)

    def _stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        call = self._prepare(messages, kwargs)
        self._announce(call.entry)
        stream = call.router.dispatcher.stream(call.entry, call.messages, **call.options)

        def gen() -> Iterator[ChatResponse]:
            reply = _StreamReply(call.entry)
            for chunk in stream:
                response = reply.add(chunk, stream.model)
                if response is not None:
                    yield response
            assert stream.result is not None  # set once the stream is exhausted
            yield self._reply(stream.result, delta="")

        return gen()

    async def _astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        call = await self._aprepare(messages, kwargs)
        self._announce(call.entry)
        stream = call.router.dispatcher.astream(call.entry, call.messages, **call.options)

        async def gen() -> AsyncIterator[ChatResponse]:
            reply = _StreamReply(call.entry)
            async for chunk in stream:
                response = reply.add(chunk, stream.model)
                if response is not None:
                    yield response
            assert stream.result is not None  # set once the stream is exhausted
            yield self._reply(stream.result, delta="")

        return gen()

    # --------------------------------------------------------------------------------------------- routing
    def _split(self, kwargs: dict[str, Any]) -> _Settings:
        """A call's kwargs as routing settings and LiteLLM options, the fields filling the gaps."""
        from eccos_core.validation import check_policy

        kwargs = dict(kwargs)
        min_quality = kwargs.pop("min_quality", None)
        confidence = kwargs.pop("confidence", None)
        capacity = kwargs.pop("capacity", None)
        policy = kwargs.pop("policy", None)
        options = dict(self.additional_kwargs)
        for name in ("temperature", "max_tokens", "timeout"):
            if getattr(self, name) is not None:
                options[name] = getattr(self, name)
        options.update({k: v for k, v in kwargs.items() if k not in _NOT_SENT and v is not None})
        return _Settings(
            self.min_quality if min_quality is None else min_quality,
            confidence,
            self.capacity if capacity is None else capacity,
            self.policy if policy is None else check_policy(policy),
            options,
        )

    def _prepare(self, messages: Sequence[ChatMessage], kwargs: dict[str, Any]) -> _Call:
        """Route one call as ``Router.complete`` does (under :attr:`policy`), or take its batch's plan."""
        converted = to_openai_messages(messages)
        settings = self._split(kwargs)
        router = self.get_router()
        planned = _PLANNED.get()
        if planned is not None:
            return _Call(router, planned.entry, converted, settings.options, planned.ledger)
        if settings.confidence is not None:  # a guarantee on a batch's mean: refused for one call, as everywhere
            from eccos_core.validation import single_call_confidence_error

            raise single_call_confidence_error()
        plan = router.plan_call(
            converted, settings.min_quality, policy=settings.policy, capacity=settings.capacity, **settings.options
        )
        return _Call(router, plan.queries[0], converted, settings.options)

    async def _aprepare(self, messages: Sequence[ChatMessage], kwargs: dict[str, Any]) -> _Call:
        """:meth:`_prepare` off the event loop when it plans or loads the router (both take CPU time)."""
        if _PLANNED.get() is not None:
            return self._prepare(messages, kwargs)
        return await asyncio.to_thread(self._prepare, messages, kwargs)

    def _plan_batch(self, queries: list[list[OpenAIMessage]], kwargs: dict[str, Any]) -> list[_Planned]:
        """Plan a batch in one optimizer call; each prompt gets its entry and the shared cap ledger."""
        from eccos_core.dispatch import Ledger

        settings = self._split(kwargs)
        plan = self.get_router().plan(
            queries,
            settings.min_quality,
            confidence=settings.confidence,
            capacity=settings.capacity,
            **settings.options,
        )
        ledger = Ledger.for_plan(plan)
        return [_Planned(entry, ledger) for entry in plan.queries]

    def _run_batch(
        self,
        send: Callable[..., T],
        inputs: list[Any],
        planned: list[_Planned],
        kwargs: dict[str, Any],
        return_exceptions: bool,
        max_concurrency: int | None,
    ) -> list[T | Exception]:
        options = _without_routing(kwargs)

        def one(share: _Planned, item: Any) -> T:
            _PLANNED.set(share)  # this runs in its own copy of the caller's context
            return send(item, **options)

        workers = max_concurrency or self.get_router().max_concurrency
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="eccos-batch") as pool:
            futures = [
                pool.submit(contextvars.copy_context().run, one, share, item)
                for share, item in zip(planned, inputs, strict=True)
            ]
            results = [
                future.result() if future.exception() is None else _as_exception(future.exception())
                for future in futures
            ]
        return _finish(results, return_exceptions)

    async def _arun_batch(
        self,
        send: Callable[..., Awaitable[T]],
        inputs: list[Any],
        planned: list[_Planned],
        kwargs: dict[str, Any],
        return_exceptions: bool,
        max_concurrency: int | None,
    ) -> list[T | Exception]:
        options = _without_routing(kwargs)
        semaphore = asyncio.Semaphore(max_concurrency or self.get_router().max_concurrency)

        async def one(share: _Planned, item: Any) -> T:
            async with semaphore:
                _PLANNED.set(share)  # gather runs each coroutine in a task with its own context
                return await send(item, **options)

        gathered = await asyncio.gather(
            *(one(share, item) for share, item in zip(planned, inputs, strict=True)), return_exceptions=True
        )
        results = [_as_exception(item) if isinstance(item, BaseException) else item for item in gathered]
        return _finish(results, return_exceptions)

    # ----------------------------------------------------------------------------------------- reporting
    def _announce(self, entry: QueryPlan) -> None:
        """Emit the routing decision as an instrumentation event (in the span of the call it belongs to)."""
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

    def _reply(self, routed: RoutedResponse, delta: str | None = None) -> ChatResponse:
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
            raw={**_as_dict(routed.response), "eccos": metadata},
            additional_kwargs={
                "eccos": metadata,
                "prompt_tokens": routed.input_tokens,
                "completion_tokens": routed.output_tokens,
                "total_tokens": routed.input_tokens + routed.output_tokens,
            },
        )


class _StreamReply:
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
            raw={**_as_dict(chunk), "eccos": decision},
            additional_kwargs={"eccos": decision},
        )


def _tool_choice(choice: str | dict[str, Any] | None, required: bool) -> str | dict[str, Any]:
    """LlamaIndex's tool choice (None, a mode, or a tool's name) in OpenAI's form."""
    if choice is None:
        return "required" if required else "auto"
    if isinstance(choice, str) and choice not in ("auto", "none", "required"):
        return {"type": "function", "function": {"name": choice}}
    return choice


def _user(prompt: str) -> list[OpenAIMessage]:
    return [{"role": "user", "content": prompt}]


def _prompts(prompts: Sequence[str]) -> Sequence[str]:
    if isinstance(prompts, str):
        raise TypeError("complete_batch takes a list of prompts; wrap a single prompt in a list")
    return prompts


def _without_routing(kwargs: dict[str, Any]) -> dict[str, Any]:
    """A batch's kwargs minus the routing settings it was planned with (each prompt's call gets the rest)."""
    return {k: v for k, v in kwargs.items() if k not in ("min_quality", "capacity", "policy")}


def _as_exception(error: BaseException | None) -> Exception:
    if not isinstance(error, Exception):  # KeyboardInterrupt, CancelledError: never swallowed
        raise error  # type: ignore[misc]
    return error


def _finish(results: list[T | Exception], return_exceptions: bool) -> list[T | Exception]:
    if return_exceptions:
        return results
    for item in results:
        if isinstance(item, Exception):
            if getattr(item, "results", False) is None:
                item.results = results  # type: ignore[attr-defined]
            raise item
    return results


def _as_dict(obj: Any) -> dict[str, Any]:
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


__all__ = ["ECCOSLLM", "default_router"]
