"""Dispatch: send one planned query along its fallback chain through LiteLLM, sync, async or streaming.

The walk is the same in all four forms: try the planned model; on a provider failure (an error status, a
timeout, a dropped connection) record a :class:`Fallback` and try the next model of the query's chain, fixed
at plan time. A missing or rejected credential is a configuration error and raises :class:`CredentialError`
at once. A stream falls back only before its first chunk; after it a failure raises
:class:`StreamInterruptedError` (restarting would repeat text the caller has already shown).

Actual cost is LiteLLM's own response cost where it knows the model, else billed tokens × the pool's prices.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from eccos_core.errors import CredentialError, DeadlineExceededError, DispatchError, StreamInterruptedError
from eccos_core.litellm_env import quiet_litellm
from eccos_core.messages import Message, count_text_tokens, sendable
from eccos_core.planner import QueryPlan, RoutingPlan
from eccos_core.pricing import DEFAULT_DEADLINE, DEFAULT_TIMEOUT, ModelSpec
from eccos_core.redaction import redact, secrets_in, without_credentials

logger = logging.getLogger("eccos.dispatch")

_CREDENTIAL_HINTS = ("missing credentials", "api key not", "api_key client option", "no api key", "invalid api key")


@dataclass(frozen=True)
class Fallback:
    """One failed attempt at a provider; the text never contains a credential."""

    model: str
    """Pool name of the model that failed."""
    error_type: str
    """Exception class name (e.g. ``InternalServerError``, ``Timeout``)."""
    error: str
    """The error message with every credential of the pool and call replaced by ``***``."""

    def to_dict(self) -> dict[str, str]:
        """JSON form."""
        return {"model": self.model, "error_type": self.error_type, "error": self.error}


@dataclass(frozen=True)
class RoutedResponse:
    """A provider's answer to one routed query, with what it actually cost."""

    response: Any
    """LiteLLM ``ModelResponse`` from the provider that answered (assembled from the chunks for a stream)."""
    model: str
    """Pool name of the model that answered (differs from ``plan.model`` after a fallback)."""
    plan: QueryPlan
    """What the router planned for this query, including the batch's status and message."""
    input_tokens: int
    """Prompt tokens billed, from the response's usage."""
    output_tokens: int
    """Completion tokens billed, from the response's usage."""
    cost: float
    """Actual USD cost of the answer."""
    fallbacks: tuple[Fallback, ...] = ()
    """Every failed attempt before the answer, in order."""
    latency_s: float = 0.0
    """Seconds from the first attempt to the answer, fallbacks included."""

    @property
    def text(self) -> str:
        """Content of the first choice (``""`` when the provider sent none)."""
        return _content(self.response)

    @property
    def status(self) -> str:
        """The plan's status: ``optimal``, ``feasible`` or ``quality_unreachable``."""
        return self.plan.status.value

    @property
    def message(self) -> str:
        """The plan's explanation (why a quality target was out of reach), or ``""``."""
        return self.plan.message

    def to_metadata(self) -> dict[str, Any]:
        """The routing decision and its outcome as JSON-safe data (for framework metadata and traces)."""
        return {
            "model": self.model,
            "planned_model": self.plan.model,
            "p_success": self.plan.p_success,
            "predicted_output_tokens": self.plan.output_tokens,
            "predicted_cost": self.plan.cost,
            "cost": self.cost,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "min_quality": self.plan.min_quality,
            "confidence": self.plan.confidence,
            "margin": self.plan.margin,
            "status": self.status,
            "message": self.message,
            "solver": self.plan.solver,
            "batch_size": self.plan.batch_size,
            "prior": self.plan.prior if self.model == self.plan.model else None,
            "length": self.plan.length if self.model == self.plan.model else None,
            "fallbacks": [f.to_dict() for f in self.fallbacks],
            "latency_s": self.latency_s,
        }


class Ledger:
    """Slots left under each model's cap while a batch is sent, so fallbacks respect caps too (thread-safe).

    Build one per planned batch with :meth:`for_plan` and pass it to every ``send`` / ``asend`` of the batch.
    """

    @classmethod
    def for_plan(cls, plan: RoutingPlan) -> Ledger:
        """The ledger of a planned batch: its caps less what the plan already assigned."""
        names = list(plan.caps)
        return cls(names, [plan.caps[n] for n in names], plan.models)

    def __init__(self, names: Sequence[str], caps: Sequence[int | None], planned: Sequence[str]) -> None:
        self._room = {
            name: None if cap is None else cap - sum(1 for p in planned if p == name)
            for name, cap in zip(names, caps, strict=True)
        }
        self._lock = threading.Lock()

    def take(self, name: str) -> bool:
        """Claim one slot on ``name`` for a fallback; False when its cap is used up."""
        with self._lock:
            room = self._room.get(name)
            if room is None:
                return True
            if room <= 0:
                return False
            self._room[name] = room - 1
            return True


class _Walk:
    """The state of one query's walk along its chain; sync, async and streaming sends share it."""

    def __init__(self, dispatcher: Dispatcher, entry: QueryPlan, options: Mapping[str, Any], ledger: Ledger | None):
        self.dispatcher = dispatcher
        self.entry = entry
        self.options = dict(options)
        planned = dispatcher.spec(entry.model)
        self.deadline = float(self.options.pop("deadline", None) or planned.deadline or DEFAULT_DEADLINE)
        """Seconds the whole walk may take (the call's ``deadline=``, the planned model's, or the default)."""
        self.timed_out = False
        self.ledger = ledger
        self.fallbacks: list[Fallback] = []
        self.started = time.perf_counter()
        self.secrets = dispatcher.secrets + (secrets_in([self.options]) if self.options else ())

    def remaining(self) -> float:
        """Seconds left before the call's deadline."""
        return self.deadline - (time.perf_counter() - self.started)

    def models(self) -> Iterator[ModelSpec]:
        """The planned model, then its fallbacks (skipping those whose cap this batch has used up).

        Stops when the deadline has passed (:meth:`exhausted` then says so).
        """
        yield self.dispatcher.spec(self.entry.model)
        for name in self.entry.chain:
            if self.remaining() <= 0:
                self.timed_out = True
                return
            if self.ledger is None or self.ledger.take(name):
                yield self.dispatcher.spec(name)

    def request(self, spec: ModelSpec, messages: Sequence[Message], stream: bool = False) -> dict[str, Any]:
        params = spec.litellm_params
        if any(self.options.get(key) not in (None, params.get(key)) for key in ENDPOINT_KEYS):
            # the call points this model at another endpoint: the pool's credentials stay with the pool's
            params = without_credentials(params)
        options = _userinfo_as_header({**params, **self.options})
        options.setdefault("num_retries", 0)
        attempt = options.get("timeout") or spec.timeout or DEFAULT_TIMEOUT
        options["timeout"] = max(0.001, min(float(attempt), self.remaining()))  # no attempt outlives the deadline
        if stream:
            options["stream"] = True
            options.setdefault("stream_options", {"include_usage": True})
        return {"model": spec.litellm_model, "messages": sendable(messages), **options}

    def failed(self, spec: ModelSpec, exc: Exception) -> CredentialError | None:
        """Record a failed attempt; a :class:`CredentialError` to raise when the cause is a credential.

        The caller raises it *outside* its ``except`` block, so the provider's exception (whose text may hold the
        key) is neither its ``__cause__`` nor its ``__context__``.
        """
        text = redact(str(exc), self.secrets)
        if _is_credential_error(exc):
            return CredentialError(_credential_message(spec, type(exc).__name__, text))
        self.fallbacks.append(Fallback(spec.name, type(exc).__name__, text))
        logger.warning(
            "query %d: model %r failed with %s; trying the next model", self.entry.index, spec.name, type(exc).__name__
        )
        logger.debug("query %d: model %r error: %s", self.entry.index, spec.name, text)

    def done(self, spec: ModelSpec, response: Any) -> RoutedResponse:
        usage = getattr(response, "usage", None)
        prompt = getattr(usage, "prompt_tokens", None)
        completion = getattr(usage, "completion_tokens", None)
        input_tokens = int(prompt) if prompt is not None else self.entry.input_tokens
        if completion is None:
            text = _content(response)
            completion = count_text_tokens(text) if text else 0
        reported = (getattr(response, "_hidden_params", None) or {}).get("response_cost")
        priced = input_tokens * spec.input_cost_per_token + int(completion) * spec.output_cost_per_token
        cost = float(reported) if isinstance(reported, (int, float)) and reported > 0 else float(priced)
        if self.dispatcher.on_answer is not None:
            self.dispatcher.on_answer(spec.name, int(completion))
        return RoutedResponse(
            response=response,
            model=spec.name,
            plan=self.entry,
            input_tokens=input_tokens,
            output_tokens=int(completion),
            cost=cost,
            fallbacks=tuple(self.fallbacks),
            latency_s=time.perf_counter() - self.started,
        )

    def exhausted(self) -> DispatchError:
        i = self.entry.index
        tried = ", ".join(f"{f.model} ({f.error_type})" for f in self.fallbacks) or "none could take it"
        if self.timed_out:
            error: DispatchError = DeadlineExceededError(
                f"query {i}: its deadline of {self.deadline:g} s passed after trying {tried}; raise deadline= "
                "(per call, or a model's deadline in the models file) or check those providers' endpoints"
            )
        else:
            error = DispatchError(
                f"query {i}: every model that could take it failed: {tried}; check those providers' endpoints "
                "(this error's .fallbacks hold the messages)"
            )
        error.index = i  # type: ignore[attr-defined]
        error.fallbacks = tuple(self.fallbacks)  # type: ignore[attr-defined]
        error.results = None  # type: ignore[attr-defined]
        return error

    def interrupted(self, spec: ModelSpec, exc: Exception, chunks: int) -> StreamInterruptedError:
        text = redact(str(exc), self.secrets)
        self.fallbacks.append(Fallback(spec.name, type(exc).__name__, text))
        error = StreamInterruptedError(
            f"query {self.entry.index}: model {spec.name!r} failed after {chunks} streamed chunks "
            f"({type(exc).__name__}); not restarted on another model, since that would repeat the text already sent"
        )
        error.index = self.entry.index  # type: ignore[attr-defined]
        error.fallbacks = tuple(self.fallbacks)  # type: ignore[attr-defined]
        error.results = None  # type: ignore[attr-defined]
        return error


class Dispatcher:
    """Sends planned queries to the pool's models through LiteLLM."""

    def __init__(self, pool: Sequence[ModelSpec], on_answer: Callable[[str, int], None] | None = None) -> None:
        """``on_answer(model, output_tokens)`` is told of every answer a model gave (the router's length record)."""
        self._specs = {m.name: m for m in pool}
        self.secrets = secrets_in([m.litellm_params for m in pool])
        self.on_answer = on_answer

    def spec(self, name: str) -> ModelSpec:
        """The pool entry called ``name``."""
        return self._specs[name]

    def send(
        self, entry: QueryPlan, messages: Sequence[Message], *, ledger: Ledger | None = None, **options: Any
    ) -> RoutedResponse:
        """Send one planned query (``litellm.completion``), falling back along its chain."""
        import litellm

        walk = _Walk(self, entry, options, ledger)
        with quiet_litellm():
            for spec in walk.models():
                try:
                    response = litellm.completion(**walk.request(spec, messages))
                except Exception as exc:  # any provider failure moves the call to the next model
                    stop = walk.failed(spec, exc)
                else:
                    return walk.done(spec, response)
                if stop is not None:
                    raise stop
        raise walk.exhausted()

    async def asend(
        self, entry: QueryPlan, messages: Sequence[Message], *, ledger: Ledger | None = None, **options: Any
    ) -> RoutedResponse:
        """Async :meth:`send` (``litellm.acompletion``)."""
        import litellm

        walk = _Walk(self, entry, options, ledger)
        with quiet_litellm():
            for spec in walk.models():
                try:
                    response = await litellm.acompletion(**walk.request(spec, messages))
                except Exception as exc:  # any provider failure moves the call to the next model
                    stop = walk.failed(spec, exc)
                else:
                    return walk.done(spec, response)
                if stop is not None:
                    raise stop
        raise walk.exhausted()

    def stream(self, entry: QueryPlan, messages: Sequence[Message], **options: Any) -> RoutedStream:
        """Stream one planned query: an iterator of LiteLLM chunks; ``.result`` once it is exhausted."""
        return RoutedStream(_Walk(self, entry, options, None), messages)

    def astream(self, entry: QueryPlan, messages: Sequence[Message], **options: Any) -> AsyncRoutedStream:
        """Async :meth:`stream`: an async iterator of LiteLLM chunks."""
        return AsyncRoutedStream(_Walk(self, entry, options, None), messages)


class _StreamState:
    """What a stream has seen: the answering model, its chunks, and the final response."""

    def __init__(self, walk: _Walk, messages: Sequence[Message]) -> None:
        self._walk = walk
        self._messages = list(messages)
        self.chunks: list[Any] = []
        self.spec: ModelSpec | None = None
        self.result: RoutedResponse | None = None
        """The assembled answer with usage and actual cost; set once the stream is exhausted."""

    @property
    def model(self) -> str | None:
        """Pool name of the model streaming the answer (known from the first chunk on)."""
        return None if self.spec is None else self.spec.name

    @property
    def plan(self) -> QueryPlan:
        """What the router planned for this call."""
        return self._walk.entry

    @property
    def fallbacks(self) -> tuple[Fallback, ...]:
        """Failed attempts so far."""
        return tuple(self._walk.fallbacks)

    def _finish(self) -> None:
        import litellm

        assert self.spec is not None
        # without messages: usage comes in the stream, and counting the prompt again would load tokenizers
        response = litellm.stream_chunk_builder(self.chunks)
        self.result = self._walk.done(self.spec, response)


class RoutedStream(_StreamState):
    """Iterator over a routed call's LiteLLM chunks, falling back only before the model's first chunk.

    A stream that ends before the model sent anything (an SSE of only ``[DONE]``) is a failure of that model,
    not an empty answer: the call falls back to the next one.
    """

    def __iter__(self) -> Iterator[Any]:
        import litellm

        walk = self._walk
        with quiet_litellm():
            for spec in walk.models():
                try:
                    source = iter(litellm.completion(**walk.request(spec, self._messages, stream=True)))
                    opening = _opening(source)
                except Exception as exc:  # before the first chunk nothing was shown: fall back
                    stop = walk.failed(spec, exc) or _FALL_BACK
                else:
                    stop = None
                if stop is _FALL_BACK:
                    continue
                if stop is not None:
                    raise stop
                self.spec = spec
                yield from self._relay(opening, source)
                return
        raise walk.exhausted()

    def _relay(self, opening: list[Any], source: Iterator[Any]) -> Iterator[Any]:
        assert self.spec is not None
        for chunk in opening:
            self.chunks.append(chunk)
            yield chunk
        while True:
            try:
                chunk = next(source)
            except StopIteration:
                break
            except Exception as exc:
                error = self._walk.interrupted(self.spec, exc, len(self.chunks))
            else:
                self.chunks.append(chunk)
                yield chunk
                continue
            raise error  # outside the except block: the provider's exception is not its context
        self._finish()


class AsyncRoutedStream(_StreamState):
    """Async iterator over a routed call's LiteLLM chunks, falling back only before the first chunk."""

    async def __aiter__(self) -> AsyncIterator[Any]:
        import litellm

        walk = self._walk
        with quiet_litellm():
            for spec in walk.models():
                try:
                    source = aiter(await litellm.acompletion(**walk.request(spec, self._messages, stream=True)))
                    opening = await _aopening(source)
                except Exception as exc:  # before the first chunk nothing was shown: fall back
                    stop = walk.failed(spec, exc) or _FALL_BACK
                else:
                    stop = None
                if stop is _FALL_BACK:
                    continue
                if stop is not None:
                    raise stop
                self.spec = spec
                for chunk in opening:
                    self.chunks.append(chunk)
                    yield chunk
                while True:
                    try:
                        chunk = await anext(source)
                    except StopAsyncIteration:
                        break
                    except Exception as exc:
                        error = walk.interrupted(spec, exc, len(self.chunks))
                    else:
                        self.chunks.append(chunk)
                        yield chunk
                        continue
                    raise error  # outside the except block: the provider's exception is not its context
                self._finish()
                return
        raise walk.exhausted()


def _userinfo_as_header(options: dict[str, Any]) -> dict[str, Any]:
    """Credentials in an endpoint URL (``https://user:pw@host``) sent as a Basic ``Authorization`` header instead.

    The sync client (httpx) sends URL credentials as Basic auth, over any ``Authorization`` header; the async one
    (aiohttp) refuses a URL with credentials next to an ``Authorization`` header, so every async call failed. Both
    now send the same request: the URL without its userinfo, the header carrying it.
    """
    for key in ENDPOINT_KEYS:
        url = options.get(key)
        if not isinstance(url, str) or "@" not in url:
            continue
        parts = urlsplit(url)
        if parts.username is None:
            continue
        user, password = unquote(parts.username), unquote(parts.password or "")
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        host = parts.netloc.rsplit("@", 1)[1]
        headers = {k: v for k, v in dict(options.get("extra_headers") or {}).items() if k.lower() != "authorization"}
        options = {**options, key: urlunsplit(parts._replace(netloc=host)), "extra_headers": headers}
        headers["Authorization"] = f"Basic {token}"
    return options


class EmptyStreamError(Exception):
    """A provider's stream ended before the model said anything (LiteLLM then makes up a bare ``stop`` chunk)."""


def _carries(chunk: Any) -> bool:
    """Whether a chunk comes from the model: a role, content (even ``""``), a tool or function call, or usage."""
    for choice in getattr(chunk, "choices", None) or ():
        delta = getattr(choice, "delta", None)
        if delta is not None and any(
            getattr(delta, name, None) is not None for name in ("role", "content", "tool_calls", "function_call")
        ):
            return True
    return getattr(chunk, "usage", None) is not None


def _opening(source: Iterator[Any]) -> list[Any]:
    """The chunks up to the first that comes from the model; :class:`EmptyStreamError` if none does."""
    held = []
    for chunk in source:
        held.append(chunk)
        if _carries(chunk):
            return held
    raise EmptyStreamError("the stream ended before the model sent a role, content or a tool call")


async def _aopening(source: AsyncIterator[Any]) -> list[Any]:
    """Async :func:`_opening`."""
    held = []
    async for chunk in source:
        held.append(chunk)
        if _carries(chunk):
            return held
    raise EmptyStreamError("the stream ended before the model sent a role, content or a tool call")


_FALL_BACK: Any = object()
"""What a stream's first-chunk handler sets when the failure moves the call on (never raised)."""

ENDPOINT_KEYS = ("api_base", "base_url")
"""Call options that send a model's request elsewhere than its pool entry says; the pool's credentials are then
not sent (a per-call endpoint brings its own ``api_key``, or none)."""


def _content(response: Any) -> str:
    try:
        return response.choices[0].message.content or ""
    except (AttributeError, IndexError, TypeError):
        return ""


def _is_credential_error(exc: Exception) -> bool:
    import litellm

    if isinstance(exc, litellm.AuthenticationError):
        return True
    text = str(exc).lower()
    return any(hint in text for hint in _CREDENTIAL_HINTS)


def _credential_message(spec: ModelSpec, error_type: str, text: str) -> str:
    import litellm

    hint = "set litellm_params.api_key for it in the models file"
    if "api_key" not in spec.litellm_params:
        try:
            missing = litellm.validate_environment(str(spec.litellm_model)).get("missing_keys") or []
        except Exception:  # LiteLLM cannot tell for some providers
            missing = []
        if missing:
            hint = f"set the environment variable {' / '.join(missing)} or {hint}"
    return (
        f"model {spec.name!r} ({spec.litellm_model}): the provider rejected the call's credential or got none "
        f"({error_type}: {text[:300]}); {hint}. A credential problem is not retried on other models."
    )


__all__ = ["AsyncRoutedStream", "Dispatcher", "Fallback", "Ledger", "RoutedResponse", "RoutedStream"]
