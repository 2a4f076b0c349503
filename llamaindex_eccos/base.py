"""ECCOSLLM: a LlamaIndex LLM that sends every call to the cheapest pool model meeting ``min_quality``.

Each call is planned by the router (N = 1) and sent through its dispatcher, which falls back along the plan's
chain when a provider fails; streams are real LiteLLM streams and async calls are real async calls. The batch
helpers (``chat_batch``, ``complete_batch`` and their async twins) plan every prompt in one optimizer call, so
the batch as a whole reaches ``min_quality`` at the least predicted cost, then send the prompts concurrently,
each in its own LlamaIndex callback run and span. A prompt that cannot be planned (no text, longer than every
model's context window) holds its error in its place and is never sent; the others still are.

How a batch's plan reaches the call that sends it: the batch helper plans (``llamaindex_eccos.batch``), then
calls the public ``chat`` / ``complete`` (or async twin) per prompt with that prompt's plan in a context
variable (``llamaindex_eccos.routing.PLANNED``), which the private implementation reads instead of planning again.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

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
)
from llama_index.core.bridge.pydantic import Field, PrivateAttr, ValidationInfo, field_validator
from llama_index.core.constants import DEFAULT_CONTEXT_WINDOW
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.function_calling import FunctionCallingLLM

from eccos_core.validation import DEFAULT_POLICY
from llamaindex_eccos.batch import arun_batch, prompt_list, run_batch, user_query
from llamaindex_eccos.messages import to_openai_messages
from llamaindex_eccos.responses import announce, astream_responses, chat_response, stream_responses
from llamaindex_eccos.routing import PLANNED, Call, pool_metadata, route, split
from llamaindex_eccos.shown import Redacted
from llamaindex_eccos.tools import chat_with_tools, keep_first_tool_call, tool_calls

if TYPE_CHECKING:
    from llama_index.core.tools import ToolSelection
    from llama_index.core.tools.types import BaseTool

    from eccos_core.router import Router

_DEFAULT_LOCK = threading.Lock()


@functools.lru_cache(maxsize=1)
def _load_default_router() -> Router:
    from eccos_core.router import Router

    return Router.default()


def default_router() -> Router:
    """The bundled default router, loaded on first use and shared by every ECCOSLLM in the process."""
    with _DEFAULT_LOCK:
        return _load_default_router()


class ECCOSLLM(Redacted, FunctionCallingLLM):
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
        default=DEFAULT_POLICY,
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

    @field_validator("min_quality", "policy", mode="before")
    @classmethod
    def _check_in_core(cls, value: Any, info: ValidationInfo) -> Any:
        """The core's checks, one for every door (a boolean is not a ``min_quality``)."""
        from eccos_core.validation import check_alpha, check_policy

        return check_policy(value) if info.field_name == "policy" else check_alpha(value)

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
        return pool_metadata(self.get_router().models, self.context_window, self.max_tokens)

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

        A chat that cannot be planned (no text, longer than every model's context window, ...) holds its error
        and is never sent; the others are planned together and sent.

        Args:
            messages_list: One message list per chat.
            return_exceptions: Put a failed chat's exception in its place instead of raising it.
            max_concurrency: Calls in flight at once (default: the router's ``max_concurrency``).
            **kwargs: ``min_quality=`` / ``capacity=`` for the batch as a whole, ``confidence=`` for
                ``Router.plan``'s per-batch guarantee (refused by single calls), and LiteLLM options.

        Raises:
            EccosError: Without ``return_exceptions``: the joint plan failed (nothing is sent), or a chat could
                not be planned (raised once the others finished).
            DispatchError: Some chat failed on every model that could take it (after all chats finished; its
                ``results`` hold every reply or exception) and ``return_exceptions`` is false.
        """
        chats = list(messages_list)
        return run_batch(self, self.chat, chats, to_openai_messages, kwargs, return_exceptions, max_concurrency)

    def complete_batch(
        self,
        prompts: Sequence[str],
        *,
        return_exceptions: bool = False,
        max_concurrency: int | None = None,
        **kwargs: Any,
    ) -> list[CompletionResponse | Exception]:
        """:meth:`chat_batch` for prompts, each sent as one user message."""
        items = prompt_list(prompts)
        return run_batch(self, self.complete, items, user_query, kwargs, return_exceptions, max_concurrency)

    async def achat_batch(
        self,
        messages_list: Sequence[Sequence[ChatMessage]],
        *,
        return_exceptions: bool = False,
        max_concurrency: int | None = None,
        **kwargs: Any,
    ) -> list[ChatResponse | Exception]:
        """Async :meth:`chat_batch` (planning runs in a worker thread; the event loop stays free)."""
        chats = list(messages_list)
        return await arun_batch(self, self.achat, chats, to_openai_messages, kwargs, return_exceptions, max_concurrency)

    async def acomplete_batch(
        self,
        prompts: Sequence[str],
        *,
        return_exceptions: bool = False,
        max_concurrency: int | None = None,
        **kwargs: Any,
    ) -> list[CompletionResponse | Exception]:
        """Async :meth:`complete_batch`."""
        items = prompt_list(prompts)
        return await arun_batch(self, self.acomplete, items, user_query, kwargs, return_exceptions, max_concurrency)

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
        return chat_with_tools(tools, user_msg, chat_history, tool_required, tool_choice, kwargs)

    def _validate_chat_with_tools_response(
        self,
        response: ChatResponse,
        tools: Sequence[BaseTool],
        allow_parallel_tool_calls: bool = False,
        **kwargs: Any,
    ) -> ChatResponse:
        """Keep only the first tool call unless parallel calls are allowed."""
        return response if allow_parallel_tool_calls else keep_first_tool_call(response)

    def get_tool_calls_from_response(
        self, response: ChatResponse, error_on_no_tool_call: bool = True, **kwargs: Any
    ) -> list[ToolSelection]:
        """The tool calls of a reply, as LlamaIndex agents and ``predict_and_call`` run them.

        Raises:
            ValueError: The reply calls no tool and ``error_on_no_tool_call`` is true.
        """
        return tool_calls(response, error_on_no_tool_call)

    # ----------------------------------------------------------------------------- private implementations
    def _chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        call = self._prepare(messages, kwargs)
        announce(call.entry)
        return chat_response(call.router.dispatcher.send(call.entry, call.messages, ledger=call.ledger, **call.options))

    async def _achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        call = await self._aprepare(messages, kwargs)
        announce(call.entry)
        routed = await call.router.dispatcher.asend(call.entry, call.messages, ledger=call.ledger, **call.options)
        return chat_response(routed)

    def _stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        call = self._prepare(messages, kwargs)
        announce(call.entry)
        return stream_responses(call.entry, call.router.dispatcher.stream(call.entry, call.messages, **call.options))

    async def _astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        call = await self._aprepare(messages, kwargs)
        announce(call.entry)
        return astream_responses(call.entry, call.router.dispatcher.astream(call.entry, call.messages, **call.options))

    def _prepare(self, messages: Sequence[ChatMessage], kwargs: dict[str, Any]) -> Call:
        """Route one call as ``Router.complete`` does (under :attr:`policy`), or take its batch's plan."""
        return route(self.get_router(), to_openai_messages(messages), split(self, kwargs))

    async def _aprepare(self, messages: Sequence[ChatMessage], kwargs: dict[str, Any]) -> Call:
        """:meth:`_prepare` off the event loop when it plans or loads the router (both take CPU time)."""
        if PLANNED.get() is not None:
            return self._prepare(messages, kwargs)
        return await asyncio.to_thread(self._prepare, messages, kwargs)


__all__ = ["ECCOSLLM", "default_router"]
