"""ChatECCOS: a LangChain chat model that sends every call, or a whole ``.batch()``, to the cheapest good model.

Each call is planned by the router (N = 1) and sent through its dispatcher, which falls back along the plan's
chain when a provider fails. ``batch`` / ``abatch`` plan all their inputs in one optimizer call, so the batch as
a whole reaches ``min_quality`` at the least predicted cost, then send the items concurrently, each in its
own callback run (:mod:`langchain_eccos.batches`). How a call planned before its run starts reaches the run that
sends it, and how each routing decision is told on that run: :mod:`langchain_eccos.runs`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LangSmithParams, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel, Field, model_validator
from typing_extensions import override

from eccos_core.messages import count_input_tokens, count_text_tokens
from eccos_core.redaction import redact_params
from langchain_eccos import batches, runs
from langchain_eccos.calls import build_request, sort_constructor_kwargs
from langchain_eccos.messages import ageneration_chunks, chat_result, generation_chunks, to_openai
from langchain_eccos.routing import RouterSettings
from langchain_eccos.structured import Method, openai_tool_choice, structured_output


class ChatECCOS(RouterSettings, BaseChatModel):
    """Chat model that routes every call to the cheapest model predicted to reach ``min_quality``.

    Calls go out through LiteLLM to whichever pool model the ECCOS optimizer picks; a ``.batch()`` is routed
    jointly (one optimization over all its inputs), so easy inputs go to cheap models and hard ones to strong
    models while the batch's mean predicted success stays at ``min_quality``.

    Setup:
        ``pip install eccos``; the bundled default router needs no configuration (its models need the
        providers' keys in the environment), or point it at your own endpoints with ``models``.

    Key init args:
        router: An ``eccos_core.Router``; default: the bundled router, loaded on first use.
        min_quality: Mean success the call (or batch) must reach.
        temperature, max_tokens, timeout, stop, max_retries: Passed to whichever model answers.

    Instantiate:
        ```python
        from langchain_eccos import ChatECCOS

        model = ChatECCOS(min_quality=0.7, max_tokens=512)
        ```

    Invoke:
        ```python
        reply = model.invoke("What is 17 * 23?")
        reply.response_metadata["eccos"]  # model, p_success, predicted and actual cost, fallbacks, ...
        ```

    Batch (one joint plan):
        ```python
        replies = (prompt | model).batch([{"q": q} for q in questions], {"max_concurrency": 16})
        # this batch's realized success reaches min_quality with probability 0.9 (not just on average)
        replies = (prompt | model.bind(confidence=0.9)).batch([{"q": q} for q in questions])
        ```

    ``confidence=`` (a kwarg of ``.batch()`` / ``.abatch()`` / ``.batch_as_completed()`` or of ``.bind()``) is
    ``Router.plan``'s per-batch guarantee; a call planned on its own (``invoke``, ``stream``) refuses it with
    ``InputError``, as ``Router.complete`` does: the guarantee is about a batch's mean.

    Per chain or per call quality:
        ```python
        strict = model.bind(min_quality=0.9)
        model.invoke("Prove that sqrt(2) is irrational.", min_quality=0.8)
        ```

    Tool calling and structured output (routed only to models that support them):
        ```python
        model.bind_tools([get_weather]).invoke("Weather in Paris?")
        model.with_structured_output(Answer).invoke("...")
        ```

    Each reply carries ``response_metadata["eccos"]`` (``RoutedResponse.to_metadata()``), real
    ``usage_metadata``, and one ``"eccos_route"`` custom callback event per routing decision.

    Where the joint plan holds: ``.batch()`` / ``.abatch()`` / ``.batch_as_completed()`` on the model, and
    through the wrappers that forward a batch to it: ``prompt | model`` (a sequence batches step by step),
    ``.bind()``, ``.with_config()``, ``.with_retry()`` (a retry re-plans the failed items as one batch) and
    ``.with_fallbacks()`` (the items that failed are planned as one batch on the fallback). LangChain itself
    calls ``invoke`` per item, so each item is planned alone, inside ``RunnableParallel`` /
    ``RunnablePassthrough.assign(...)`` maps and for ``configurable_fields`` given a value in the config: keep
    the model a top-level step of the sequence (``{...} | prompt | model``) and set quality with ``.bind()``.
    """

    temperature: float | None = None
    """Sampling temperature sent to the model that answers (``None``: the provider's default)."""

    max_tokens: int | None = None
    """Most completion tokens; models whose output limit is lower are not routed to."""

    timeout: float | None = None
    """Seconds to wait for one provider before falling back (``None``: each model's own timeout)."""

    stop: list[str] | None = None
    """Default stop sequences."""

    max_retries: int | None = None
    """LiteLLM retries on the same model before falling back to the next (``None``: 0, the fallback chain
    replaces retries)."""

    streaming: bool = False
    """Stream from the provider even on ``invoke`` (callbacks then see every token)."""

    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Other LiteLLM options sent with every call (``top_p``, ``seed``, ``extra_headers``, ...)."""

    @model_validator(mode="before")
    @classmethod
    def _sort_kwargs(cls, values: Any) -> Any:
        return sort_constructor_kwargs(cls, values)

    # ------------------------------------------------------------------------------------ LangChain hooks
    @property
    def _llm_type(self) -> str:
        return "eccos-chat"

    @classmethod
    def is_lc_serializable(cls) -> bool:
        """Serializable: routing settings and call options only (never the router or its credentials)."""
        return True

    @classmethod
    def get_lc_namespace(cls) -> list[str]:
        """``["langchain_eccos", "chat_models"]``."""
        return ["langchain_eccos", "chat_models"]

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            **self._settings_params(),
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "timeout": self.timeout,
            "stop": self.stop,
            "max_retries": self.max_retries,
            "streaming": self.streaming,
            "model_kwargs": redact_params(self.model_kwargs),
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        """Tracing parameters; ``ls_model_name`` is the routed model once the call has been planned."""
        params = LangSmithParams(ls_provider="eccos", ls_model_name=self._traced_model(kwargs), ls_model_type="chat")
        temperature = kwargs.get("temperature", self.temperature)
        if isinstance(temperature, (int, float)):
            params["ls_temperature"] = temperature
        max_tokens = kwargs.get("max_tokens", self.max_tokens)
        if isinstance(max_tokens, int):
            params["ls_max_tokens"] = max_tokens
        if stop or self.stop:
            params["ls_stop"] = stop or self.stop
        return params

    def _traced_model(self, kwargs: dict[str, Any]) -> str:
        if isinstance(kwargs.get("model"), str):
            return kwargs["model"]
        route = runs.waiting(self)
        return route.entry.model if route is not None else "eccos"

    # ------------------------------------------------------------- sending (inside the run LangChain started)
    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        request = build_request(self, messages, stop, kwargs)
        entry, ledger, route = runs.take(self, request)
        runs.announce(self, entry, run_manager, route)
        return chat_result(self.get_router().dispatcher.send(entry, request.messages, ledger=ledger, **request.options))

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        request = build_request(self, messages, stop, kwargs)
        entry, ledger, route = await runs.atake(self, request)
        await runs.aannounce(self, entry, run_manager, route)
        routed = await self.get_router().dispatcher.asend(entry, request.messages, ledger=ledger, **request.options)
        return chat_result(routed)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        request = build_request(self, messages, stop, kwargs)
        entry, _, route = runs.take(self, request)
        runs.announce(self, entry, run_manager, route)
        yield from generation_chunks(self.get_router().dispatcher.stream(entry, request.messages, **request.options))

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        request = build_request(self, messages, stop, kwargs)
        entry, _, route = await runs.atake(self, request)
        await runs.aannounce(self, entry, run_manager, route)
        stream = self.get_router().dispatcher.astream(entry, request.messages, **request.options)
        async for chunk in ageneration_chunks(stream):
            yield chunk

    # ---------------------------------------------------------------- entry points: plan, then run
    @override
    def invoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AIMessage:
        return runs.invoke(self, input, config, stop, kwargs)

    @override
    async def ainvoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AIMessage:
        return await runs.ainvoke(self, input, config, stop, kwargs)

    @override
    def stream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> Iterator[AIMessageChunk]:
        return runs.stream(self, input, config, stop, kwargs)

    @override
    def astream(  # type: ignore[override]
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[AIMessageChunk]:
        return runs.astream(self, input, config, stop, kwargs)

    # ---------------------------------------------------------------------- batch: one joint plan
    @override
    def batch(
        self,
        inputs: list[LanguageModelInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[AIMessage]:
        """Route every input in one optimizer call, then send them concurrently (each its own callback run).

        Results keep the input order and none is dropped. An item whose every model failed holds its
        ``DispatchError`` (``return_exceptions=True``); otherwise the first such error is raised once every
        other item has finished. At most ``max_concurrency`` calls are in flight (the config's, else the
        router's).
        """
        return batches.batch(self, inputs, config, return_exceptions, kwargs)  # type: ignore[return-value]

    @override
    async def abatch(
        self,
        inputs: list[LanguageModelInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[AIMessage]:
        """Async :meth:`batch`: one joint plan (off the event loop), then ``ainvoke``-style sends."""
        return await batches.abatch(self, inputs, config, return_exceptions, kwargs)  # type: ignore[return-value]

    @override
    def batch_as_completed(  # type: ignore[override]
        self,
        inputs: Sequence[LanguageModelInput],
        config: RunnableConfig | Sequence[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> Iterator[tuple[int, AIMessage | Exception]]:
        """:meth:`batch` (one joint plan), yielding ``(index, result)`` as each item finishes."""
        return batches.batch_as_completed(self, inputs, config, return_exceptions, kwargs)

    @override
    def abatch_as_completed(  # type: ignore[override]
        self,
        inputs: Sequence[LanguageModelInput],
        config: RunnableConfig | Sequence[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> AsyncIterator[tuple[int, AIMessage | Exception]]:
        """Async :meth:`batch_as_completed`."""
        return batches.abatch_as_completed(self, inputs, config, return_exceptions, kwargs)

    # ------------------------------------------------------------------ tools and structured output
    @override
    def get_num_tokens(self, text: str) -> int:
        """Tokens of ``text`` as the router counts them (``trim_messages(token_counter=llm)`` works offline)."""
        return count_text_tokens(text)

    def get_num_tokens_from_messages(self, messages: list[BaseMessage], tools: Any = None) -> int:
        """Prompt tokens of ``messages`` with the chat framing the router plans with (``tools`` not counted)."""
        return count_input_tokens(to_openai(messages))

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: dict[str, Any] | str | bool | None = None,
        strict: bool | None = None,
        parallel_tool_calls: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Offer tools; such calls go only to pool models that support tool calling.

        Args:
            tools: LangChain tools, functions, pydantic classes or OpenAI tool schemas.
            tool_choice: ``"auto"``, ``"none"``, ``"any"`` / ``"required"`` / ``True`` (must call one), or a tool
                name (must call that one).
            strict: Ask providers for strict schema adherence.
            parallel_tool_calls: Whether the model may call several tools at once.
            **kwargs: Further options bound to the calls.
        """
        formatted = [convert_to_openai_tool(tool, strict=strict) for tool in tools]
        if tool_choice is not None and tool_choice is not False:
            kwargs["tool_choice"] = openai_tool_choice(tool_choice)
        if parallel_tool_calls is not None:
            kwargs["parallel_tool_calls"] = parallel_tool_calls
        return self.bind(tools=formatted, **kwargs)

    @override
    def with_structured_output(
        self,
        schema: dict[str, Any] | type | None = None,
        *,
        method: Method = "function_calling",
        include_raw: bool = False,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, dict[str, Any] | BaseModel]:
        """Return outputs matching ``schema``; routed only to models that support the method.

        Args:
            schema: A pydantic class, TypedDict, JSON schema or OpenAI tool schema (optional for ``json_mode``).
            method: ``"function_calling"`` (a forced tool call; models with ``supports_tools``),
                ``"json_schema"`` (``response_format``; models with ``supports_response_schema``) or
                ``"json_mode"`` (JSON object mode; any model).
            include_raw: Return ``{"raw", "parsed", "parsing_error"}`` instead of raising on parse errors.
            strict: Ask providers for strict schema adherence.
            **kwargs: Further options bound to the calls.
        """
        return structured_output(self, schema, method, include_raw, strict, kwargs)


__all__ = ["ChatECCOS"]
