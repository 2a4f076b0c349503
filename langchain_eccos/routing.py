"""Where a LangChain runnable gets its router, and how it turns call options into one ``Router.plan`` call.

Shared by :class:`~langchain_eccos.chat_models.ChatECCOS` and :class:`~langchain_eccos.selector.ECCOSSelector`.
The router is resolved on first use, never at import or construction: an explicit ``router``; else a saved one
(``router_path``, with ``models`` supplying the live pool and its credentials); else the bundled default
router (``Router.default()``, loaded once per process), re-pointed at ``models`` when those are given.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from eccos_core.validation import DEFAULT_POLICY

if TYPE_CHECKING:
    from eccos_core.planner import QueryPlan
    from eccos_core.pricing import ModelSpec
    from eccos_core.router import Router

ROUTE_EVENT = "eccos_route"
"""Name of the custom callback event sent once per routing decision (its data: ``QueryPlan.to_dict()``)."""


@functools.lru_cache(maxsize=1)
def default_router() -> Router:
    """The bundled default router, loaded once per process and shared by every runnable that uses it."""
    from eccos_core.router import Router

    return Router.default()


def _pool(models: Any) -> tuple[ModelSpec, ...] | None:
    """``models`` as a pool: ``None``, a models file path, or ModelSpecs / models-file entries."""
    from eccos_core.pricing import ModelSpec, load_models, validate_pool

    if models is None:
        return None
    if isinstance(models, str):
        return load_models(models)
    return validate_pool(m if isinstance(m, ModelSpec) else ModelSpec.from_dict(m) for m in models)


class RouterSettings(BaseModel):
    """The fields that say which router decides and how strict it is; the router itself loads lazily."""

    router: Any = Field(default=None, exclude=True, repr=False)
    """An ``eccos_core.Router``. Left unset, :attr:`router_path` or the bundled default router is loaded on
    first use (never at import or construction). Not serialized: it holds the pool's credentials."""

    router_path: str | None = None
    """Directory of a router saved with ``Router.save``; loaded on first use."""

    models: Any = Field(default=None, exclude=True, repr=False)
    """The live pool: a models file path, or ``ModelSpec`` objects / models-file entries. With
    :attr:`router_path` it supplies the credentials a saved router never holds; alone, it re-points the bundled
    default router's predictor at these endpoints (names must be bundled models). Not serialized."""

    min_quality: float = Field(default=0.6, ge=0.0, le=1.0)
    """Mean success in [0, 1] that each call (or each ``.batch()``, as a whole) must reach. Overridable per
    chain (``.bind(min_quality=...)``) or per call (``invoke(..., min_quality=...)``)."""

    capacity: dict[str, int | None] | None = None
    """Most queries of one batch each named model may take (``{name: cap}``; ``None`` = no cap)."""

    policy: str = DEFAULT_POLICY
    """How a call planned on its own (``invoke``, ``stream``, an agent's model call) is routed, exactly as
    ``Router.complete`` routes it: ``"dual"`` (default) at the per-call price of its ``min_quality``, shared by
    every runnable on the same router, so the mean success over those calls reaches ``min_quality`` at about
    what one joint batch of them would cost; ``"strict"``: each call reaches it on its own (a batch of one,
    costlier). Overridable per chain (``.bind(policy=...)``) or per call. Batches are always planned jointly."""

    _loaded: Any = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

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

    @model_validator(mode="after")
    def _one_source(self) -> RouterSettings:
        if self.router is not None and (self.router_path is not None or self.models is not None):
            raise ValueError("give either router, or router_path (+ models), not both")
        return self

    def get_router(self) -> Router:
        """The router that decides, loading it on first use (thread-safe)."""
        if self.router is not None:
            return self.router
        if self._loaded is None:
            with self._lock:
                if self._loaded is None:
                    self._loaded = self._load_router()
        return self._loaded

    def record_outcome(self, query: Any, model: str, score: float, output_tokens: float | None = None) -> None:
        """Tell the router how ``model`` did on ``query`` (score in [0, 1]); similar queries see it at once.

        Delegates to :meth:`eccos_core.router.Router.record_outcome`; call ``get_router().refit()`` on your own
        schedule to refresh the calibration and the quality guard.
        """
        self.get_router().record_outcome(query, model, score, output_tokens)

    def plan_single(
        self,
        messages: list[dict[str, Any]],
        min_quality: Any,
        capacity: Mapping[str, int | None] | None,
        policy: Any,
        options: Mapping[str, Any],
    ) -> QueryPlan:
        """Route one call as ``Router.complete`` does (``Router.plan_call``): every shell's single-call decision.

        ``policy=None`` takes the field. Under ``"dual"`` the call is counted in its ``min_quality``'s stream,
        so plan each call once.
        """
        router = self.get_router()
        chosen = self.policy if policy is None else policy
        plan = router.plan_call(messages, min_quality, policy=chosen, capacity=capacity, **options)
        return plan.queries[0]

    def _load_router(self) -> Router:
        from eccos_core.router import Router

        pool = _pool(self.models)
        if self.router_path is not None:
            return Router.load(self.router_path, models=pool)
        base = default_router()
        if pool is None:
            return base
        return base.with_models(pool)

    # ------------------------------------------------------------- what is shown: never a credential
    def __repr_args__(self) -> Any:
        from eccos_core.redaction import redact_params

        for name, value in super().__repr_args__():
            yield name, redact_params(value)

    def to_json(self) -> Any:
        """LangChain's serialized form with every credential in the kwargs (``model_kwargs`` headers) redacted."""
        from eccos_core.redaction import redact_params

        data = super().to_json()  # type: ignore[misc]
        if isinstance(data, dict) and isinstance(data.get("kwargs"), dict):
            data["kwargs"] = redact_params(data["kwargs"])
        return data

    def _get_invocation_params(self, stop: list[str] | None = None, **kwargs: Any) -> dict[str, Any]:
        """What callbacks (LangSmith) record of a call, credentials redacted (per-call ``extra_headers`` too)."""
        from eccos_core.redaction import redact_params

        return redact_params(super()._get_invocation_params(stop=stop, **kwargs))  # type: ignore[misc]

    def _settings_params(self) -> dict[str, Any]:
        """The routing settings as tracing / identifying parameters (no router object, no credentials)."""
        return {
            "router_path": self.router_path,
            "min_quality": self.min_quality,
            "capacity": self.capacity,
            "policy": self.policy,
        }


__all__ = ["ROUTE_EVENT", "RouterSettings", "default_router"]
