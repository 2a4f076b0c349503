"""ChatECCOS: a LangChain chat model that sends every call, or a whole ``.batch()``, to the cheapest good model.

Each call is planned by the router (N = 1) and sent through its dispatcher, which falls back along the plan's
chain when a provider fails. ``batch`` / ``abatch`` plan all their inputs in one optimizer call, so the batch as
a whole reaches ``min_quality`` at the least predicted cost, then send the items concurrently, each in its
own callback run.

How a planned query reaches the run that sends it: the public entry points (``invoke``, ``stream``, ``batch``
and their async twins) plan first, then run LangChain's own machinery with the plan in a context variable
that ``_generate`` / ``_stream`` read. Planning before the run starts is what lets ``_get_ls_params`` report
the routed model; a call that arrives without a plan (``generate()``, a cache miss inside another path) is
planned where it is sent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import as_completed
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Literal

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForLLMRun,
    CallbackManager,
    CallbackManagerForLLMRun,
    adispatch_custom_event,
    dispatch_custom_event,
)
from langchain_core.language_models import BaseChatModel, LangSmithParams, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.output_parsers import JsonOutputKeyToolsParser, JsonOutputParser, PydanticToolsParser
from langchain_core.output_parsers.pydantic import PydanticOutputParser
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig, RunnableMap, RunnablePassthrough
from langchain_core.runnables.config import ensure_config, get_config_list, get_executor_for_config
from langchain_core.runnables.utils import gather_with_concurrency
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langchain_core.utils.pydantic import is_basemodel_subclass
from langchain_core.utils.uuid import uuid7
from pydantic import BaseModel, Field
from typing_extensions import override

from eccos_core.validation import check_policy, single_call_confidence_error
from langchain_eccos.messages import (
    OpenAIMessage,
    chat_result,
    chunk_from_litellm,
    final_chunk,
    input_messages,
    to_openai,
)
from langchain_eccos.routing import ROUTE_EVENT, RouterSettings, pin_capacity

if TYPE_CHECKING:
    from eccos_core.dispatch import Ledger
    from eccos_core.planner import QueryPlan

logger = logging.getLogger("eccos.langchain")

_NOT_SENT = ("ls_structured_output_format", "structured_output_format", "stream", "stop")
"""Call kwargs that LangChain uses itself, or that arrive separately (``stop``); never sent as they are."""


@dataclass(frozen=True)
class _Request:
    """One call as the router sees it: OpenAI messages, the routing settings and the LiteLLM options."""

    messages: list[OpenAIMessage]
    min_quality: float
    capacity: dict[str, int | None] | None
    options: dict[str, Any]
    confidence: float | None = None
    policy: str | None = None
    """The call's ``policy=`` (``None``: the field's); batches ignore it (they are planned jointly)."""


@dataclass(frozen=True)
class _Route:
    """A query planned before its callback run starts, waiting for ``_generate`` / ``_stream`` to send it."""

    owner: int
    """``id()`` of the ChatECCOS that planned it (another instance never takes it)."""
    entry: QueryPlan
    ledger: Ledger | None
    config: RunnableConfig
    """The call's config; its ``run_id`` is the id the call's run will get."""


_ROUTE: ContextVar[_Route | None] = ContextVar("langchain_eccos_route", default=None)


@contextmanager
def _routed(route: _Route | None) -> Iterator[None]:
    token = _ROUTE.set(route)
    try:
        yield
    finally:
        _ROUTE.reset(token)


def _on_run(run_manager: Any, manager_cls: type[Any]) -> Any:
    """A callback manager whose custom events land on ``run_manager``'s run (LLM runs have no ``get_child``)."""
    return manager_cls(
        handlers=list(run_manager.handlers),
        parent_run_id=run_manager.run_id,
        tags=list(run_manager.tags),
        metadata=dict(run_manager.metadata),
    )


def _with_run_id(config: RunnableConfig) -> RunnableConfig:
    """``config`` with a ``run_id``, so the routing event can name the run before LangChain starts it."""
    if config.get("run_id") is None:
        config["run_id"] = uuid7()
    return config


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
            "model_kwargs": self.model_kwargs,
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
        route = _ROUTE.get()
        if route is not None and route.owner == id(self):
            return route.entry.model
        return "eccos"

    # -------------------------------------------------------------------------------- call preparation
    def _options(self, stop: list[str] | None, kwargs: dict[str, Any]) -> dict[str, Any]:
        options = dict(self.model_kwargs)
        for key, value in (
            ("temperature", self.temperature),
            ("max_tokens", self.max_tokens),
            ("timeout", self.timeout),
            ("num_retries", self.max_retries),
        ):
            if value is not None:
                options[key] = value
        stop = stop if stop is not None else self.stop
        if stop:
            options["stop"] = list(stop)
        options.update({k: v for k, v in kwargs.items() if k not in _NOT_SENT})
        return options

    def _request(self, messages: Sequence[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]) -> _Request:
        """Split call kwargs into routing settings and LiteLLM options.

        Routing settings: ``min_quality``, ``confidence`` (batches only), ``capacity``, ``policy`` (single calls)
        and ``model``; none of them reaches a provider.
        """
        options = self._options(stop, kwargs)
        min_quality = options.pop("min_quality", self.min_quality)
        confidence = options.pop("confidence", None)
        capacity = options.pop("capacity", self.capacity)
        policy = options.pop("policy", None)
        if policy is not None:
            check_policy(policy)
        pinned = options.pop("model", None)
        if pinned is not None:
            capacity = pin_capacity(self.get_router(), capacity, pinned)
        return _Request(to_openai(messages), min_quality, capacity, options, confidence, policy)

    def _plan(self, requests: Sequence[_Request]) -> Any:
        """One joint plan for a batch's requests (they share settings and options)."""
        first = requests[0]
        return self.get_router().plan(
            [r.messages for r in requests],
            first.min_quality,
            confidence=first.confidence,
            capacity=first.capacity,
            **first.options,
        )

    def _plan_one(self, value: LanguageModelInput, config: RunnableConfig, kwargs: dict[str, Any]) -> _Route | None:
        """Plan one call before its run starts; ``None`` if that fails (the run then plans and raises inside)."""
        current = _ROUTE.get()
        if current is not None and current.owner == id(self):
            return current  # already planned by stream() or batch() on the way here
        try:
            entry = self._plan_single(self._request(input_messages(value), kwargs.get("stop"), kwargs))
        except Exception:  # reported from inside the callback run, where LangChain's error handling sees it
            logger.debug("planning before the run failed; the run will plan again and raise", exc_info=True)
            return None
        return _Route(id(self), entry, None, _with_run_id(config))

    def _plan_single(self, request: _Request) -> QueryPlan:
        """Route one call as ``Router.complete`` does (under :attr:`policy`); ``confidence`` is refused."""
        if request.confidence is not None:
            raise single_call_confidence_error()
        return self.plan_single(
            request.messages, request.min_quality, request.capacity, request.policy, request.options
        )

    def _take(self, request: _Request) -> tuple[QueryPlan, Ledger | None, _Route | None]:
        """The planned query for this call: the one waiting in the context, else a fresh N = 1 plan."""
        route = _ROUTE.get()
        if route is not None and route.owner == id(self):
            _ROUTE.set(None)  # taken: a nested call of this model plans for itself
            return route.entry, route.ledger, route
        return self._plan_single(request), None, None

    # -------------------------------------------------------------------------------- routing events
    def _event_manager(self, route: _Route, manager_cls: type[Any]) -> Any:
        """A callback manager whose events land on the call's run (for paths LangChain gives no run manager)."""
        config = route.config
        manager = manager_cls.configure(
            config.get("callbacks"),
            self.callbacks,
            self.verbose,
            config.get("tags"),
            self.tags,
            config.get("metadata"),
            self.metadata,
        )
        manager.parent_run_id = config.get("run_id")
        return manager

    def _announce(self, entry: QueryPlan, run_manager: CallbackManagerForLLMRun | None, route: _Route | None) -> None:
        data = entry.to_dict()
        if run_manager is not None:
            dispatch_custom_event(ROUTE_EVENT, data, config={"callbacks": _on_run(run_manager, CallbackManager)})
        elif route is not None:
            dispatch_custom_event(ROUTE_EVENT, data, config={"callbacks": self._event_manager(route, CallbackManager)})
        else:
            with suppress(RuntimeError):  # no run to attach it to, so nobody can be listening
                dispatch_custom_event(ROUTE_EVENT, data)

    async def _aannounce(
        self, entry: QueryPlan, run_manager: AsyncCallbackManagerForLLMRun | None, route: _Route | None
    ) -> None:
        data = entry.to_dict()
        if run_manager is not None:
            manager = _on_run(run_manager, AsyncCallbackManager)
            await adispatch_custom_event(ROUTE_EVENT, data, config={"callbacks": manager})
        elif route is not None:
            manager = self._event_manager(route, AsyncCallbackManager)
            await adispatch_custom_event(ROUTE_EVENT, data, config={"callbacks": manager})
        else:
            with suppress(RuntimeError):
                await adispatch_custom_event(ROUTE_EVENT, data)

    # ------------------------------------------------------------------------------------- sending
    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        request = self._request(messages, stop, kwargs)
        entry, ledger, route = self._take(request)
        self._announce(entry, run_manager, route)
        routed = self.get_router().dispatcher.send(entry, request.messages, ledger=ledger, **request.options)
        return chat_result(routed)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        request = self._request(messages, stop, kwargs)
        entry, ledger, route = await self._atake(request)
        await self._aannounce(entry, run_manager, route)
        routed = await self.get_router().dispatcher.asend(entry, request.messages, ledger=ledger, **request.options)
        return chat_result(routed)

    async def _atake(self, request: _Request) -> tuple[QueryPlan, Ledger | None, _Route | None]:
        route = _ROUTE.get()
        if route is not None and route.owner == id(self):
            _ROUTE.set(None)
            return route.entry, route.ledger, route
        plan = await asyncio.to_thread(self._plan, [request])  # embedding and solving are CPU work
        return plan.queries[0], None, None

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        request = self._request(messages, stop, kwargs)
        entry, _, route = self._take(request)
        self._announce(entry, run_manager, route)
        stream = self.get_router().dispatcher.stream(entry, request.messages, **request.options)
        finish_reason = None
        for raw in stream:
            chunk, reason = chunk_from_litellm(raw)
            finish_reason = reason or finish_reason
            if chunk is not None:
                yield chunk
        if stream.result is not None:
            yield final_chunk(stream.result, finish_reason)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        request = self._request(messages, stop, kwargs)
        entry, _, route = await self._atake(request)
        await self._aannounce(entry, run_manager, route)
        stream = self.get_router().dispatcher.astream(entry, request.messages, **request.options)
        finish_reason = None
        async for raw in stream:
            chunk, reason = chunk_from_litellm(raw)
            finish_reason = reason or finish_reason
            if chunk is not None:
                yield chunk
        if stream.result is not None:
            yield final_chunk(stream.result, finish_reason)

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
        config = ensure_config(config)
        with _routed(self._plan_one(input, config, {**kwargs, "stop": stop})):
            return super().invoke(input, config, stop=stop, **kwargs)

    @override
    async def ainvoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AIMessage:
        config = ensure_config(config)
        route = await asyncio.to_thread(self._plan_one, input, config, {**kwargs, "stop": stop})
        with _routed(route):
            return await super().ainvoke(input, config, stop=stop, **kwargs)

    @override
    def stream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> Iterator[AIMessageChunk]:
        config = ensure_config(config)
        route = self._plan_one(input, config, {**kwargs, "stop": stop})
        chunks = super().stream(input, config, stop=stop, **kwargs)
        try:
            with _routed(route):  # only while LangChain starts the run and _stream takes the plan
                first = next(chunks, None)
            if first is None:
                return
            yield first
            yield from chunks
        finally:
            chunks.close()

    @override
    async def astream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[AIMessageChunk]:
        config = ensure_config(config)
        route = await asyncio.to_thread(self._plan_one, input, config, {**kwargs, "stop": stop})
        chunks = super().astream(input, config, stop=stop, **kwargs)
        try:
            with _routed(route):
                first = await anext(chunks, None)
            if first is None:
                return
            yield first
            async for chunk in chunks:
                yield chunk
        finally:
            await chunks.aclose()

    # ---------------------------------------------------------------------- batch: one joint plan
    def _prepare_batch(
        self,
        inputs: Sequence[LanguageModelInput],
        configs: list[RunnableConfig],
        kwargs: dict[str, Any],
        return_exceptions: bool,
    ) -> list[_Route | Exception] | None:
        """Plan every input in ONE optimizer call; an input that cannot be read gets an exception in its slot.

        Returns ``None`` when the joint plan itself fails: the caller then sends each item on its own, so the
        error lands in the slots of the items that cause it.
        """
        from eccos_core.errors import EccosError
        from eccos_core.messages import normalize

        slots: list[_Route | Exception | _Request] = []
        for i, value in enumerate(inputs):
            try:
                request = self._request(input_messages(value), kwargs.get("stop"), kwargs)
                normalize(request.messages, i)
                slots.append(request)
            except (EccosError, ValueError, TypeError) as exc:
                slots.append(exc)
        requests = [s for s in slots if isinstance(s, _Request)]
        if not requests:
            return [s for s in slots if isinstance(s, Exception)]
        from eccos_core.dispatch import Ledger

        try:
            plan = self._plan(requests)
        except EccosError:
            if not return_exceptions:
                raise
            logger.warning("joint planning of %d inputs failed; planning each on its own", len(requests), exc_info=True)
            return None
        ledger = Ledger.for_plan(plan)
        entries = iter(plan.queries)
        out: list[_Route | Exception] = []
        for slot, config in zip(slots, configs, strict=True):
            if isinstance(slot, _Request):
                out.append(_Route(id(self), next(entries), ledger, _with_run_id(config)))
            else:
                out.append(slot)
        return out

    def _concurrency(self, configs: list[RunnableConfig]) -> int:
        """The config's ``max_concurrency``, else the router's (provider calls in flight at once)."""
        limit = configs[0].get("max_concurrency")
        return int(limit) if limit else self.get_router().max_concurrency

    def _send_item(
        self, value: LanguageModelInput, config: RunnableConfig, route: _Route | Exception | None, kwargs: Any
    ) -> AIMessage | Exception:
        """Send one planned batch item in its own callback run; a failure is returned, not raised."""
        if isinstance(route, Exception):
            return route
        try:
            if route is None:  # the joint plan failed: this item plans alone
                return self.invoke(value, config, **kwargs)
            with _routed(route):
                return BaseChatModel.invoke(self, value, route.config, **kwargs)
        except Exception as exc:
            return exc

    async def _asend_item(
        self, value: LanguageModelInput, config: RunnableConfig, route: _Route | Exception | None, kwargs: Any
    ) -> AIMessage | Exception:
        if isinstance(route, Exception):
            return route
        try:
            if route is None:
                return await self.ainvoke(value, config, **kwargs)
            with _routed(route):
                return await BaseChatModel.ainvoke(self, value, route.config, **kwargs)
        except Exception as exc:
            return exc

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
        if not inputs:
            return []
        configs = get_config_list(config, len(inputs))
        routes = self._prepare_batch(inputs, configs, kwargs, return_exceptions) or [None] * len(inputs)
        if len(inputs) == 1:
            return _finish([self._send_item(inputs[0], configs[0], routes[0], kwargs)], return_exceptions)
        with get_executor_for_config({**configs[0], "max_concurrency": self._concurrency(configs)}) as executor:
            results = list(executor.map(self._send_item, inputs, configs, routes, [kwargs] * len(inputs)))
        return _finish(results, return_exceptions)

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
        if not inputs:
            return []
        configs = get_config_list(config, len(inputs))
        routes = await asyncio.to_thread(self._prepare_batch, inputs, configs, kwargs, return_exceptions)
        routes = routes or [None] * len(inputs)
        sends = (self._asend_item(v, c, r, kwargs) for v, c, r in zip(inputs, configs, routes, strict=True))
        results = await gather_with_concurrency(self._concurrency(configs), *sends)
        return _finish(results, return_exceptions)

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
        if not inputs:
            return
        configs = get_config_list(config, len(inputs))  # type: ignore[arg-type]
        routes = self._prepare_batch(inputs, configs, kwargs, return_exceptions) or [None] * len(inputs)
        with get_executor_for_config({**configs[0], "max_concurrency": self._concurrency(configs)}) as executor:
            futures = {
                executor.submit(self._send_item, value, conf, route, kwargs): i
                for i, (value, conf, route) in enumerate(zip(inputs, configs, routes, strict=True))
            }
            try:
                for future in as_completed(futures):
                    result = future.result()
                    if isinstance(result, Exception) and not return_exceptions:
                        raise result
                    yield futures[future], result
            finally:
                for future in futures:
                    future.cancel()

    @override
    async def abatch_as_completed(  # type: ignore[override]
        self,
        inputs: Sequence[LanguageModelInput],
        config: RunnableConfig | Sequence[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> AsyncIterator[tuple[int, AIMessage | Exception]]:
        """Async :meth:`batch_as_completed`."""
        if not inputs:
            return
        configs = get_config_list(config, len(inputs))  # type: ignore[arg-type]
        routes = await asyncio.to_thread(self._prepare_batch, inputs, configs, kwargs, return_exceptions)
        routes = routes or [None] * len(inputs)
        semaphore = asyncio.Semaphore(self._concurrency(configs))

        async def one(i: int) -> tuple[int, AIMessage | Exception]:
            async with semaphore:
                return i, await self._asend_item(inputs[i], configs[i], routes[i], kwargs)

        tasks = [asyncio.ensure_future(one(i)) for i in range(len(inputs))]
        try:
            for next_done in asyncio.as_completed(tasks):
                i, result = await next_done
                if isinstance(result, Exception) and not return_exceptions:
                    raise result
                yield i, result
        finally:
            for task in tasks:
                task.cancel()

    # ------------------------------------------------------------------ tools and structured output
    @override
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
            kwargs["tool_choice"] = _tool_choice(tool_choice)
        if parallel_tool_calls is not None:
            kwargs["parallel_tool_calls"] = parallel_tool_calls
        return self.bind(tools=formatted, **kwargs)

    @override
    def with_structured_output(
        self,
        schema: dict[str, Any] | type | None = None,
        *,
        method: Literal["function_calling", "json_schema", "json_mode"] = "function_calling",
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
        if schema is None and method != "json_mode":
            raise ValueError(
                f"with_structured_output(method={method!r}) needs a schema; only 'json_mode' works without"
            )
        is_pydantic = isinstance(schema, type) and is_basemodel_subclass(schema)
        trace = {"kwargs": {"method": method, "strict": strict}, "schema": schema} if schema is not None else None
        if method == "function_calling":
            name = convert_to_openai_tool(schema)["function"]["name"]
            llm = self.bind_tools(
                [schema], tool_choice=name, strict=strict, ls_structured_output_format=trace, **kwargs
            )
            parser: Runnable = (
                PydanticToolsParser(tools=[schema], first_tool_only=True)  # type: ignore[list-item]
                if is_pydantic
                else JsonOutputKeyToolsParser(key_name=name, first_tool_only=True)
            )
        elif method in ("json_schema", "json_mode"):
            if method == "json_schema":
                function = convert_to_openai_tool(schema, strict=strict)["function"]
                spec = {"name": function["name"], "schema": function["parameters"]}
                if function.get("description"):
                    spec["description"] = function["description"]
                if strict is not None:
                    spec["strict"] = strict
                response_format: dict[str, Any] = {"type": "json_schema", "json_schema": spec}
            else:
                response_format = {"type": "json_object"}
            if trace is not None:
                kwargs["ls_structured_output_format"] = trace
            llm = self.bind(response_format=response_format, **kwargs)
            parser = PydanticOutputParser(pydantic_object=schema) if is_pydantic else JsonOutputParser()  # type: ignore[arg-type]
        else:
            raise ValueError(
                f"unknown structured output method {method!r}: use 'function_calling', 'json_schema' or 'json_mode'"
            )
        if not include_raw:
            return llm | parser
        parsed = RunnablePassthrough.assign(parsed=itemgetter("raw") | parser, parsing_error=lambda _: None)
        fallback = RunnablePassthrough.assign(parsed=lambda _: None)
        return RunnableMap(raw=llm) | parsed.with_fallbacks([fallback], exception_key="parsing_error")


def _tool_choice(choice: dict[str, Any] | str | bool) -> dict[str, Any] | str:
    """LangChain's tool_choice spellings in OpenAI's form."""
    if isinstance(choice, dict):
        return choice
    if choice is True or choice in ("any", "required"):
        return "required"
    if choice in ("auto", "none"):
        return str(choice)
    return {"type": "function", "function": {"name": str(choice)}}


def _finish(results: list[Any], return_exceptions: bool) -> list[Any]:
    """Batch results in input order; without ``return_exceptions`` the first error is raised after all ran."""
    if not return_exceptions:
        for item in results:
            if isinstance(item, Exception):
                raise item
    return results


__all__ = ["ChatECCOS"]
