"""eccos inside LiteLLM: a routing plugin for ``litellm.Router(plugins=[...])`` and LiteLLM Proxy.

LiteLLM runs its routing plugins before it picks a deployment: each gets a ``RoutingContext`` (the request's
messages, the model group's ``candidate_models`` and the request's ``metadata``) and may narrow the
candidates. :class:`ECCOSRoutingPlugin` narrows them to the one model the per-call dual-price rule picks (see
:mod:`eccos_core.dual`): the cheapest model at the stream's price on quality, where the price is the one at
which the recent calls of the whole fleet keep their mean predicted quality at ``min_quality``. With Redis the
replicas share that price and the caps (:mod:`eccos_core.policies.stores`); without it each keeps its own, and says so.
The price is the router's own per-call price (:class:`~eccos_core.dual.StreamPrice`): the plugin only translates.

In a proxy's ``config.yaml``::

    router_settings:
      plugins: ["eccos_core.proxy.plugin"]      # built from ECCOS_* environment variables, see from_env
      redis_host: 127.0.0.1                      # shared price; optional
      redis_port: 6379
    litellm_settings:
      callbacks: ["eccos_core.proxy.plugin"]    # the same object: adds the x-eccos-* response headers

``min_quality`` comes from the request's ``metadata`` (``{"metadata": {"min_quality": 0.8}}``), else the
group's default. The decision goes back as response headers (``x-eccos-model``, ``x-eccos-p-success``,
``x-eccos-predicted-cost``, ``x-eccos-price``), into ``metadata["routing_plugin_signals"]["eccos"]`` and to
the ``eccos.proxy`` logger.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from eccos_core.dual import DualPrices, StreamPrice, check_caps
from eccos_core.errors import CapabilityError, ContextWindowError, EccosError, InputError
from eccos_core.messages import count_input_tokens
from eccos_core.policies.stores import FailoverStore, MemoryStore, PriceStore, RedisStore
from eccos_core.pricing import ModelSpec, cost_matrix
from eccos_core.validation import check_alpha

try:  # the response-header hook is a LiteLLM callback; without LiteLLM's logger the plugin still routes
    from litellm.integrations.custom_logger import CustomLogger
except ImportError:  # pragma: no cover - LiteLLM is a dependency of eccos
    CustomLogger = object  # type: ignore[assignment,misc]

if TYPE_CHECKING:
    from eccos_core.router import Router

logger = logging.getLogger("eccos.proxy")

SIGNAL = "eccos"
"""Key of eccos's entry in ``context.signals`` (and so in ``metadata["routing_plugin_signals"]``)."""
HEADER_PREFIX = "x-eccos-"


class ECCOSRoutingPlugin(CustomLogger):
    """Picks each request's deployment with eccos's per-call dual-price rule; LiteLLM routing plugin.

    Also a LiteLLM callback (``litellm_settings.callbacks``) that returns the decision in response headers.
    """

    def __init__(
        self,
        router: str | Path | Router | None = None,
        *,
        min_quality: float | Mapping[str, float] = 0.7,
        model_groups: Sequence[str] | None = None,
        caps: Mapping[str, float] | None = None,
        redis: str | None = "auto",
        models: Mapping[str, str] | None = None,
        prefix: str = "eccos",
        warm: bool = True,
    ) -> None:
        """Load the router and connect the shared state (no network call is made here).

        Args:
            router: A saved router's directory (``Router.save``), a ``Router``, or ``None`` for
                ``Router.default()``.
            min_quality: The default ``min_quality`` of every group, or one per group (``"*"``: the rest).
            model_groups: Model groups eccos routes (``None``: every group whose deployments it knows).
            caps: Largest share of the fleet's recent calls each router model may serve, e.g.
                ``{"gpt-4o": 0.2}``.
            redis: ``"auto"`` (the proxy's ``router_settings.redis_host``/``redis_port``/``redis_password``,
                else ``REDIS_URL`` or ``REDIS_HOST``/``REDIS_PORT``/``REDIS_PASSWORD``), a ``redis://`` URL,
                or ``None`` for this process only.
            models: Deployment model (``litellm_params.model``) → router model name, where the names differ
                beyond a provider prefix.
            prefix: Prefix of the Redis keys.
            warm: Load the encoder now (proxy start-up) rather than on the first request.
        """
        super().__init__()
        _log_to_stderr()
        self.router = _load_router(router)
        self.names = tuple(self.router.planner.names)
        self.pool: tuple[ModelSpec, ...] = tuple(self.router.planner.pool)
        self.defaults = _check_defaults(min_quality)
        self.model_groups = None if model_groups is None else frozenset(model_groups)
        self.caps = check_caps(caps, self.names)
        self.aliases = {str(k): str(v) for k, v in (models or {}).items()}
        unknown = sorted(set(self.aliases.values()) - set(self.names))
        if unknown:
            raise InputError(f"models maps deployments to names the router does not know: {unknown}")
        url = _redis_url() if redis == "auto" else redis
        self.store: PriceStore = _make_store(url, prefix)
        own = self.router.dual
        self.prices = DualPrices(
            own.curve,
            store=self.store,
            namespace=own.namespace,
            caps=self.caps,
            window=own.window,
            prior_calls=own.prior_calls,
        )
        """The fleet's per-call streams: the router's prices, in the shared store, with the fleet's caps."""
        self._pools: dict[tuple[str, ...], tuple[ModelSpec, ...]] = {}
        if warm:  # the encoder and the tokenizer load now, not on the first request
            count_input_tokens([{"role": "user", "content": "warm up"}])
            self.router.planner.predict(["warm up"])
        self.litellm_router: Any = None
        """The ``litellm.Router`` whose deployments' prices to use (set by :meth:`attach`, or the proxy's own)."""
        where = f"Redis at {_safe_url(url)}" if url else "this process only (no Redis configured)"
        logger.info("eccos routing plugin: %d models, quality price shared through %s", len(self.names), where)
        if not url:
            logger.warning(
                "eccos routing plugin: no Redis configured (router_settings.redis_host or REDIS_HOST); each "
                "replica keeps its own quality price and caps"
            )

    @classmethod
    def from_env(cls) -> ECCOSRoutingPlugin:
        """Build the plugin from ``ECCOS_*`` environment variables (what ``eccos_core.proxy.plugin`` is).

        ``ECCOS_ROUTER`` (a saved router; default the bundled one), ``ECCOS_MIN_QUALITY`` (a number, or a JSON
        object by group), ``ECCOS_MODEL_GROUPS`` (comma-separated), ``ECCOS_CAPS`` (JSON object),
        ``ECCOS_MODELS`` (JSON object) and ``ECCOS_REDIS_URL`` (``off`` for none; default auto).
        """
        quality = os.environ.get("ECCOS_MIN_QUALITY", "0.7")
        groups = os.environ.get("ECCOS_MODEL_GROUPS")
        redis = os.environ.get("ECCOS_REDIS_URL", "auto")
        return cls(
            os.environ.get("ECCOS_ROUTER") or None,
            min_quality=_env_json("ECCOS_MIN_QUALITY", quality) if quality.lstrip().startswith("{") else quality,
            model_groups=None if not groups else [g.strip() for g in groups.split(",") if g.strip()],
            caps=_env_json("ECCOS_CAPS", os.environ.get("ECCOS_CAPS", "{}")),
            redis=None if redis.lower() in ("off", "none", "") else redis,
            models=_env_json("ECCOS_MODELS", os.environ.get("ECCOS_MODELS", "{}")),
        )

    def attach(self, litellm_router: Any) -> ECCOSRoutingPlugin:
        """Read deployment prices from ``litellm_router`` (a ``litellm.Router`` used outside the proxy)."""
        self.litellm_router = litellm_router
        self._pools.clear()
        return self

    # ------------------------------------------------------------------------------------------ routing
    async def run(self, context: Any) -> Any:
        """LiteLLM's routing-plugin entry point: narrow ``context.candidate_models`` to eccos's pick."""
        started = time.perf_counter()
        metadata = context.metadata if isinstance(context.metadata, dict) else {}
        group = str(metadata.get("model_group") or "")
        if self.model_groups is not None and group not in self.model_groups:
            return context
        columns = self._columns(context.candidate_models)
        if not columns:
            context.signals[SIGNAL] = {"skipped": "no deployment of this group is a model the router knows"}
            return context
        try:
            goal = self._goal(metadata, group)
        except InputError as error:  # the client's mistake: HTTP 400 through the proxy
            raise _bad_request(error, group) from None
        try:
            signal = await self._route(context, columns, group, goal)
        except EccosError as error:  # eccos cannot route this call: LiteLLM's own strategy does
            logger.warning("eccos routing plugin: not routing a call to %r: %s", group, error)
            context.signals[SIGNAL] = {"skipped": str(error)}
            return context
        signal["ms"] = round((time.perf_counter() - started) * 1000.0, 3)
        context.signals[SIGNAL] = signal
        logger.info("eccos routed a call to %r: %s", group, json.dumps(signal, sort_keys=True))
        return context

    async def _route(
        self, context: Any, columns: dict[str, int], group: str, goal: tuple[str, float]
    ) -> dict[str, Any]:
        # embedding is CPU work: off the proxy's event loop, so other requests keep moving meanwhile
        quality, cost, tokens, fits = await asyncio.to_thread(
            self._predict, context.structured_messages or context.raw_messages, columns, group
        )
        decision = await self._stream(*goal).aroute(quality, cost, fits)
        j = decision.model
        context.candidate_models = [c for c in context.candidate_models if columns.get(c) == j]
        mode, value = goal
        return {
            "min_quality" if mode == "quality" else "budget": value,
            "model": self.names[j],
            "deployment_model": context.candidate_models[0],
            "p_success": round(float(quality[j]), 6),
            "predicted_cost": float(cost[j]),
            "output_tokens": round(float(tokens[j]), 1),
            "price": decision.price if math.isfinite(decision.price) else None,
            "target_met": decision.met,
            "capped": [self.names[k] for k in decision.capped],
            "shared": decision.shared,
        }

    def _predict(
        self, query: Any, columns: dict[str, int], group: str
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per router model: predicted quality, cost at the deployments' prices, output tokens, and a mask.

        The mask: the model is one of the candidates and can take the call (context window, tools, images,
        response schema).
        """
        offered = np.zeros(len(self.names), dtype=bool)
        offered[sorted(set(columns.values()))] = True
        try:
            call = self.router.planner.call_inputs(query, [None] * len(self.names), {}, offered)
        except (CapabilityError, ContextWindowError) as error:
            raise _NoFit(f"no deployment of {group!r} can take this call: {error}") from None
        prediction = call.prediction.select(self.names)
        pool = self._priced_pool(tuple(sorted(columns, key=columns.__getitem__)), columns)
        quality = np.clip(np.nan_to_num(prediction.quality[0], nan=0.0), 0.0, 1.0)
        cost = cost_matrix(pool, call.tokens, prediction.output_tokens)[0]
        return quality, cost, prediction.output_tokens[0], call.allowed[0]

    def _columns(self, candidates: Sequence[str]) -> dict[str, int]:
        """Candidate deployment models → the router's columns (unknown ones are left out)."""
        index = {name: k for k, name in enumerate(self.names)}
        by_litellm = {spec.litellm_model: k for k, spec in enumerate(self.pool) if spec.litellm_model}
        out: dict[str, int] = {}
        for candidate in candidates:
            bare = candidate.split("/", 1)[1] if "/" in candidate else candidate
            k = next(
                (
                    index.get(key, by_litellm.get(key))
                    for key in (self.aliases.get(candidate), candidate, bare)
                    if key is not None and (key in index or key in by_litellm)
                ),
                None,
            )
            if k is not None:
                out[candidate] = k
        return out

    def _goal(self, metadata: Mapping[str, Any], group: str) -> tuple[str, float]:
        """``("quality", α)`` or ``("budget", USD per call)`` from the request's metadata, else the group's α."""
        sources = [metadata, metadata.get("requester_metadata") or {}]
        for source in sources:
            if not isinstance(source, Mapping):
                continue
            if source.get("eccos_budget") is not None:
                return "budget", _check_budget(source["eccos_budget"])
            for key in ("eccos_min_quality", "min_quality"):
                if source.get(key) is not None:
                    return "quality", check_alpha(_number(source[key], key))
        return "quality", self.defaults.get(group, self.defaults["*"])

    def _stream(self, mode: str, goal: float) -> StreamPrice:
        if mode == "budget":
            return self.prices.budget_stream(goal)
        return self.prices.quality_stream(goal, self.router.targets.per_call(goal)[0])

    async def fleet_totals(self, min_quality: float | None = None, *, budget: float | None = None) -> dict[str, float]:
        """The fleet's totals for one stream: calls, summed predicted quality and cost of the picks."""
        if budget is not None:
            mode, goal = "budget", budget
        else:
            mode, goal = "quality", self.defaults["*"] if min_quality is None else min_quality
        return await self._stream(mode, float(goal)).atotals()

    # ------------------------------------------------------------------------------------------ prices
    def _priced_pool(self, candidates: tuple[str, ...], columns: Mapping[str, int]) -> tuple[ModelSpec, ...]:
        """The router's pool with each candidate deployment's prices (LiteLLM's deployment info) applied."""
        cached = self._pools.get(candidates)
        if cached is not None:
            return cached
        pool = list(self.pool)
        deployments = _deployment_prices(self.litellm_router)
        for candidate in candidates:
            prices = deployments.get(candidate) or _litellm_prices(candidate)
            if prices is not None:
                k = columns[candidate]
                pool[k] = dataclasses.replace(pool[k], input_cost_per_token=prices[0], output_cost_per_token=prices[1])
        self._pools[candidates] = tuple(pool)
        return self._pools[candidates]

    # ------------------------------------------------------------------------------------------ headers
    async def async_post_call_response_headers_hook(
        self,
        data: dict,
        user_api_key_dict: Any,
        response: Any,
        request_headers: dict[str, str] | None = None,
        litellm_call_info: dict[str, Any] | None = None,
    ) -> dict[str, str] | None:
        """LiteLLM Proxy callback: the routing decision as ``x-eccos-*`` response headers."""
        metadata = data.get("metadata") or data.get("litellm_metadata") or {}
        signals = metadata.get("routing_plugin_signals") if isinstance(metadata, Mapping) else None
        signal = signals.get(SIGNAL) if isinstance(signals, Mapping) else None
        return decision_headers(signal) if isinstance(signal, Mapping) else None


class _NoFit(EccosError):
    """No candidate can take the call; LiteLLM's own strategy (and its errors) take over."""


def _bad_request(error: InputError, group: str) -> Exception:
    """LiteLLM's 400 error for a request eccos cannot take as given (else the proxy answers 500)."""
    try:
        from litellm.exceptions import BadRequestError
    except ImportError:  # pragma: no cover
        return error
    return BadRequestError(message=f"eccos: {error}", model=group, llm_provider="eccos")


def decision_headers(signal: Mapping[str, Any]) -> dict[str, str]:
    """The ``x-eccos-*`` headers of a routing signal."""
    if "skipped" in signal:
        return {HEADER_PREFIX + "skipped": str(signal["skipped"])[:200]}
    keys = ("model", "p_success", "predicted_cost", "price", "min_quality", "budget", "shared", "ms")
    return {HEADER_PREFIX + k.replace("_", "-"): str(signal[k]) for k in keys if signal.get(k) is not None}


# ------------------------------------------------------------------------------------------ helpers
def _log_to_stderr() -> None:
    """Send eccos's start-up notes and decisions to stderr where the process configured no logging.

    That is LiteLLM Proxy's case: the lines land next to the proxy's own. ``ECCOS_LOG_LEVEL`` sets the level
    (default INFO).
    """
    root, eccos = logging.getLogger(), logging.getLogger("eccos")
    if root.handlers or eccos.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s - eccos:%(levelname)s - %(name)s - %(message)s", "%H:%M:%S"))
    eccos.addHandler(handler)
    eccos.setLevel(os.environ.get("ECCOS_LOG_LEVEL", "INFO").upper())
    eccos.propagate = False


def _load_router(router: Any) -> Router:
    from eccos_core.router import Router

    if isinstance(router, Router):
        return router
    if router is None:
        return Router.default()
    return Router.load(router)


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool):  # JSON true is not 1.0: one validation for every door
        raise InputError(f"{name} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {type(value).__name__}") from None
    if not math.isfinite(number):
        raise InputError(f"{name} must be finite, got {number}")
    return number


def _check_budget(value: Any) -> float:
    budget = _number(value, "eccos_budget")
    if budget <= 0:
        raise InputError(f"eccos_budget must be a positive USD amount per call, got {budget}")
    return budget


def _check_defaults(min_quality: float | Mapping[str, float] | str) -> dict[str, float]:
    if isinstance(min_quality, Mapping):
        defaults = {str(k): check_alpha(_number(v, f"min_quality[{k!r}]")) for k, v in min_quality.items()}
        defaults.setdefault("*", 0.7)
        return defaults
    return {"*": check_alpha(_number(min_quality, "min_quality"))}


def _env_json(name: str, raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError as error:
        raise InputError(f"{name} is not valid JSON: {error.msg} at character {error.pos}") from None


def _redis_url() -> str | None:
    """The proxy's Redis: its config's ``router_settings``, else LiteLLM's environment variables."""
    settings = _proxy_router_settings()
    host = settings.get("redis_host") or os.environ.get("REDIS_HOST")
    if settings.get("redis_url") or (not host and os.environ.get("REDIS_URL")):
        return str(settings.get("redis_url") or os.environ["REDIS_URL"])
    if not host:
        return None
    port = settings.get("redis_port") or os.environ.get("REDIS_PORT") or 6379
    password = settings.get("redis_password") or os.environ.get("REDIS_PASSWORD")
    from urllib.parse import quote

    auth = f":{quote(str(password), safe='')}@" if password else ""
    return f"redis://{auth}{host}:{int(port)}"


def _proxy_router_settings() -> dict[str, Any]:
    """``router_settings`` of the config file the running LiteLLM Proxy loaded (``os.environ/X`` resolved)."""
    import sys

    server = sys.modules.get("litellm.proxy.proxy_server")
    path = getattr(server, "user_config_file_path", None) or os.environ.get("CONFIG_FILE_PATH")
    if not path or not Path(path).is_file():
        return {}
    import yaml

    try:
        config = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return {}
    settings = config.get("router_settings") if isinstance(config, dict) else None
    if not isinstance(settings, dict):
        return {}
    return {
        k: os.environ.get(v.removeprefix("os.environ/")) if isinstance(v, str) and v.startswith("os.environ/") else v
        for k, v in settings.items()
    }


def _make_store(url: str | None, prefix: str) -> PriceStore:
    if not url:
        return MemoryStore()
    try:
        import redis.asyncio as aioredis
    except ImportError:
        raise InputError('a Redis URL was given but the redis package is missing: pip install "eccos[proxy]"') from None
    client = aioredis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
    return FailoverStore(RedisStore(client, prefix))


def _safe_url(url: str) -> str:
    """A Redis URL without its password."""
    from eccos_core.redaction import redact_url

    return redact_url(url)


def _deployment_prices(litellm_router: Any) -> dict[str, tuple[float, float]]:
    """Per deployment model, the prices set on the deployment (``litellm_params`` or ``model_info``)."""
    if litellm_router is None:
        import sys

        litellm_router = getattr(sys.modules.get("litellm.proxy.proxy_server"), "llm_router", None)
    if litellm_router is None:
        return {}
    try:
        deployments = litellm_router.get_model_list() or []
    except Exception:  # a router without the listing: LiteLLM's price map instead
        return {}
    out: dict[str, tuple[float, float]] = {}
    for deployment in deployments:
        params = deployment.get("litellm_params") or {}
        info = deployment.get("model_info") or {}
        model = params.get("model")
        prices = [params.get(k, info.get(k)) for k in ("input_cost_per_token", "output_cost_per_token")]
        if isinstance(model, str) and all(isinstance(p, int | float) for p in prices):
            out.setdefault(model, (float(prices[0]), float(prices[1])))
    return out


def _litellm_prices(model: str) -> tuple[float, float] | None:
    """LiteLLM's price-map entry for a deployment model, if it has one."""
    import litellm

    entry = litellm.model_cost.get(model) or litellm.model_cost.get(model.split("/", 1)[-1])
    if not isinstance(entry, Mapping):
        return None
    prices = entry.get("input_cost_per_token"), entry.get("output_cost_per_token")
    return (float(prices[0]), float(prices[1])) if all(isinstance(p, int | float) for p in prices) else None


def __getattr__(name: str) -> Any:
    """``eccos_core.proxy.plugin``: one plugin per process, built from the environment on first use."""
    if name == "plugin":
        global _PLUGIN
        if _PLUGIN is None:
            _PLUGIN = ECCOSRoutingPlugin.from_env()
        return _PLUGIN
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_PLUGIN: ECCOSRoutingPlugin | None = None

__all__ = ["ECCOSRoutingPlugin", "decision_headers"]
