"""ECCOSMiddleware: route every model call of a LangChain agent among your own chat models.

The agent keeps its tools, prompts and loop; before each model call the middleware plans the call (its
messages, its tools, its structured-output strategy and model settings) with the router and hands it to the
chosen chat model via ``request.override(model=...)``. A model that raises is replaced by the next one of the
plan's fallback chain. This is the only module that imports ``langchain`` (``pip install eccos[agents]``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from langchain.agents.middleware.types import AgentMiddleware, ModelRequest, ModelResponse
from langchain.agents.structured_output import ProviderStrategy, ToolStrategy
from langchain_core.callbacks import adispatch_custom_event, dispatch_custom_event
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import SecretStr

from eccos_core.validation import DEFAULT_POLICY
from langchain_eccos.messages import to_openai
from langchain_eccos.routing import ROUTE_EVENT, RouterSettings

if TYPE_CHECKING:
    from eccos_core.planner import QueryPlan
    from eccos_core.router import Router

logger = logging.getLogger("eccos.langchain")


class ECCOSMiddleware(AgentMiddleware):
    """Agent middleware that sends each model call to the cheapest of your chat models predicted good enough.

    Keys of ``chat_models`` are pool model names of the router (the names its predictor knows); pool models
    without a chat model here are never chosen. Tools and structured output count: a call offering tools goes
    only to models with ``supports_tools``, a ``ProviderStrategy`` response format only to models with
    ``supports_response_schema``.

    Example:
        ```python
        from langchain.agents import create_agent
        from langchain_eccos import ECCOSMiddleware

        agent = create_agent(
            cheap_model,
            tools=[get_weather],
            middleware=[ECCOSMiddleware({"gemma-2-9b-it": cheap_model, "llama3-chatqa-1.5-70b": strong_model},
                                        min_quality=0.7)],
        )
        agent.invoke({"messages": [("user", "Weather in Paris?")]})
        ```

    Each routed ``AIMessage`` carries ``response_metadata["eccos"]`` (the plan, the model that answered and
    any fallbacks), and one ``"eccos_route"`` custom event is sent per decision.
    """

    def __init__(
        self,
        chat_models: Mapping[str, BaseChatModel],
        *,
        router: Router | None = None,
        router_path: str | None = None,
        models: Any = None,
        min_quality: float = 0.6,
        capacity: Mapping[str, int | None] | None = None,
        policy: str = DEFAULT_POLICY,
    ) -> None:
        """Name the chat models to route among and the router that decides (loaded on first use).

        Args:
            chat_models: ``{pool model name: chat model}``.
            router: An ``eccos_core.Router``; default: ``router_path``, else the bundled default router.
            router_path: Directory of a saved router.
            models: The router's live pool (see :class:`~langchain_eccos.routing.RouterSettings`).
            min_quality: Success each model call must reach (predicted and calibrated by the router).
            capacity: Per-model caps (``{name: cap}``) for a call.
            policy: ``"dual"`` (default): each model call routed at its ``min_quality``'s per-call price, as
                ``Router.complete`` routes it, so the agent's calls reach ``min_quality`` on average at about
                a joint batch's cost; ``"strict"``: every call reaches it on its own (costlier).

        Raises:
            ValueError: ``chat_models`` is empty or holds something that is not a chat model.
        """
        super().__init__()
        if not chat_models:
            raise ValueError("ECCOSMiddleware needs at least one chat model: {pool model name: chat model}")
        wrong = [name for name, model in chat_models.items() if not isinstance(model, BaseChatModel)]
        if wrong:
            raise ValueError(f"chat_models[{wrong[0]!r}] is not a LangChain chat model")
        self.chat_models = dict(chat_models)
        """The chat models routed among, by pool model name."""
        self.settings = RouterSettings(
            router=router,
            router_path=router_path,
            models=models,
            min_quality=min_quality,
            capacity=dict(capacity) if capacity else None,
            policy=policy,
        )
        """Which router decides, and how strictly."""

    # ---------------------------------------------------------------------------------------- planning
    def _caps(self, router: Router) -> dict[str, int | None]:
        names = [spec.name for spec in router.models]
        unknown = sorted(set(self.chat_models) - set(names))
        if unknown:
            raise ValueError(f"chat_models names {unknown} that are not in the router's pool {names}")
        return {**(self.settings.capacity or {}), **{name: 0 for name in names if name not in self.chat_models}}

    def plan(self, request: ModelRequest) -> QueryPlan:
        """The routing decision for one agent model call (nothing is sent)."""
        router = self.settings.get_router()
        messages: list[BaseMessage] = list(request.messages)
        if request.system_message is not None:
            messages.insert(0, request.system_message)
        options = dict(request.model_settings or {})
        tools = [_tool_schema(tool) for tool in request.tools]
        strategy = request.response_format
        if isinstance(strategy, ProviderStrategy):
            options.update(strategy.to_model_kwargs())
        elif strategy is not None:  # ToolStrategy, or AutoStrategy (a tool strategy works on any tool model)
            schemas = strategy.schema_specs if isinstance(strategy, ToolStrategy) else [strategy]
            tools += [convert_to_openai_tool(spec.schema) for spec in schemas]
        if tools:
            options["tools"] = tools
        return self.settings.plan_single(
            to_openai(messages), self.settings.min_quality, self._caps(router), None, options
        )

    # ------------------------------------------------------------------------------------ model calls
    def wrap_model_call(self, request: ModelRequest, handler: Callable[[ModelRequest], ModelResponse]) -> ModelResponse:
        """Plan the call, send it to the chosen chat model, fall back along the plan's chain if it raises."""
        entry = self.plan(request)
        with suppress(RuntimeError):  # outside a traced run nobody listens
            dispatch_custom_event(ROUTE_EVENT, entry.to_dict())
        failures: list[dict[str, str]] = []
        for name in (entry.model, *entry.chain):
            try:
                response = handler(request.override(model=self.chat_models[name]))
            except Exception as exc:  # the next model of the chain takes the call
                failures.append(self._failure(name, exc))
                continue
            return self._annotate(response, entry, name, failures)
        raise _exhausted(entry, failures)

    async def awrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], Awaitable[ModelResponse]]
    ) -> ModelResponse:
        """Async :meth:`wrap_model_call`; planning runs off the event loop."""
        entry = await asyncio.to_thread(self.plan, request)
        with suppress(RuntimeError):
            await adispatch_custom_event(ROUTE_EVENT, entry.to_dict())
        failures: list[dict[str, str]] = []
        for name in (entry.model, *entry.chain):
            try:
                response = await handler(request.override(model=self.chat_models[name]))
            except Exception as exc:
                failures.append(self._failure(name, exc))
                continue
            return self._annotate(response, entry, name, failures)
        raise _exhausted(entry, failures)

    def _failure(self, model: str, exc: Exception) -> dict[str, str]:
        """A failed attempt, its message stripped of the pool's and the chat model's credentials."""
        from eccos_core.redaction import redact

        secrets = [*self.settings.get_router().dispatcher.secrets, *_secrets_of(self.chat_models[model])]
        logger.warning("agent model call on %r failed with %s; trying the next model", model, type(exc).__name__)
        return {"model": model, "error_type": type(exc).__name__, "error": redact(str(exc), secrets)[:500]}

    def _annotate(self, response: Any, entry: QueryPlan, model: str, failures: list[dict[str, str]]) -> Any:
        """Record the routing decision on the answer's AIMessage (``response_metadata["eccos"]``)."""
        messages = getattr(response, "result", None) or getattr(getattr(response, "model_response", None), "result", [])
        if isinstance(response, AIMessage):
            messages = [response]
        answer = next((m for m in reversed(messages) if isinstance(m, AIMessage)), None)
        if answer is not None:
            spec = self.settings.get_router().spec(model)
            usage = answer.usage_metadata or {}
            metadata = {
                **entry.to_dict(),
                "model": model,
                "planned_model": entry.model,
                "predicted_cost": entry.cost,
                "fallbacks": failures,
            }
            if usage:
                metadata["cost"] = (
                    usage.get("input_tokens", 0) * spec.input_cost_per_token
                    + usage.get("output_tokens", 0) * spec.output_cost_per_token
                )
            answer.response_metadata = {**answer.response_metadata, "eccos": metadata}
        return response


def _secrets_of(model: BaseChatModel) -> list[str]:
    """The secret values a chat model holds (``SecretStr`` fields such as ``api_key``)."""
    return [v.get_secret_value() for v in vars(model).values() if isinstance(v, SecretStr) and v.get_secret_value()]


def _tool_schema(tool: Any) -> dict[str, Any]:
    """A tool as an OpenAI tool schema (a provider's built-in tool dict is passed as it is)."""
    try:
        return convert_to_openai_tool(tool)
    except (TypeError, ValueError):
        return dict(tool) if isinstance(tool, Mapping) else {"type": "function", "function": {"name": str(tool)}}


def _exhausted(entry: QueryPlan, failures: list[dict[str, str]]) -> Exception:
    from eccos_core.errors import DispatchError

    tried = ", ".join(f"{f['model']} ({f['error_type']})" for f in failures)
    error = DispatchError(f"every chat model that could take this agent call failed: {tried}")
    error.fallbacks = tuple(failures)  # type: ignore[attr-defined]
    error.index = entry.index  # type: ignore[attr-defined]
    return error


__all__ = ["ECCOSMiddleware"]
