"""Checks of the numbers a caller gives the router: ``min_quality``, ``confidence`` and per-model caps."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

from eccos_core.errors import ConfigError, InputError


def check_alpha(min_quality: Any, name: str = "min_quality") -> float:
    """``min_quality`` as a float in [0, 1] (numpy scalars accepted)."""
    if isinstance(min_quality, bool) or not isinstance(min_quality, numbers.Real):
        raise InputError(f"{name} must be a number in [0, 1], got {min_quality!r}")
    alpha = float(min_quality)
    if math.isnan(alpha) or not 0.0 <= alpha <= 1.0:
        raise InputError(f"{name} must lie in [0, 1] (mean success rate), got {min_quality!r}")
    return alpha


POLICIES: tuple[str, ...] = ("dual", "strict")
"""How a call planned on its own is routed: ``"dual"`` (the default at every door: at its stream's per-call price,
so the mean over the calls made with one ``min_quality`` reaches it, at about a batch plan's cost) or ``"strict"``
(the call reaches ``min_quality`` on its own: a batch of one, costlier). Batches are always planned jointly."""

DEFAULT_POLICY = "dual"
"""The policy of a single call wherever it comes from: ``Router.complete``, the shells, the middleware, the proxy."""


def check_policy(policy: Any) -> str:
    """``policy`` as one of :data:`POLICIES`; an :class:`InputError` naming the choices otherwise."""
    if not isinstance(policy, str) or policy not in POLICIES:
        raise InputError(
            f"unknown policy {policy!r}: 'dual' (the mean over calls reaches min_quality; cheaper) or 'strict' "
            "(every call reaches it on its own)"
        )
    return policy


def single_call_confidence_error() -> InputError:
    """The error for ``confidence`` on a single call (``complete`` / ``stream`` / ``plan_call``, any policy).

    A per-batch guarantee is about a batch's *mean*; one call's realized success is 0 or 1, so "reaches
    ``min_quality`` with probability c" would mean "succeeds with probability c", which is what
    ``policy="strict"`` with ``min_quality=c`` already promises on average.
    """
    return InputError(
        "confidence= is a guarantee on a batch's realized mean success, and a single call has no batch: route "
        "the calls together with Router.plan / batch / abatch (confidence=...), or for one call use "
        "policy='strict' with min_quality set to the success rate you need"
    )


def check_confidence(confidence: Any, budget: Any = None) -> float | None:
    """``confidence`` as a float strictly between 0 and 1, or ``None``.

    It is the probability that a batch's realized mean success reaches ``min_quality``, so it is refused together
    with a ``budget`` (which promises predicted cost, not quality).
    """
    if confidence is None:
        return None
    if budget is not None:
        raise InputError(
            "confidence is a guarantee on min_quality, and a budget plan has no quality target (it promises "
            "predicted cost only): give min_quality with confidence, or budget without it"
        )
    if isinstance(confidence, bool) or not isinstance(confidence, numbers.Real):
        raise InputError(
            f"confidence must be a number strictly between 0 and 1 (the probability that the batch's realized "
            f"mean success reaches min_quality), got {confidence!r}"
        )
    value = float(confidence)
    if math.isnan(value) or not 0.0 < value < 1.0:
        raise InputError(
            f"confidence must lie strictly between 0 and 1, got {confidence!r}: no batch is certain to reach "
            "min_quality (0.9 or 0.95 are usual; None routes for the mean over batches)"
        )
    return value


def check_cap(cap: Any, name: str) -> int | None:
    """One model's cap: ``None`` or a non-negative integer (numpy integers accepted)."""
    if cap is None:
        return None
    if isinstance(cap, bool) or not isinstance(cap, numbers.Integral) or int(cap) < 0:
        raise InputError(f"capacity of model {name!r} must be a non-negative integer or None, got {cap!r}")
    return int(cap)


def resolve_capacity(
    capacity: Mapping[str, Any] | Sequence[Any] | None, names: Sequence[str], defaults: Sequence[int | None]
) -> tuple[int | None, ...]:
    """Per-model caps for one batch: the pool's ``defaults`` overridden by ``capacity``.

    ``capacity`` is ``{name: cap}`` (overriding those models) or one entry per pool model (``None`` = no cap).
    """
    caps = list(defaults)
    if capacity is None:
        return tuple(caps)
    if isinstance(capacity, Mapping):
        unknown = [name for name in capacity if name not in names]
        if unknown:
            raise ConfigError(f"capacity names models {unknown} that are not in the pool; pool models: {list(names)}")
        for name, cap in capacity.items():
            caps[list(names).index(name)] = check_cap(cap, name)
        return tuple(caps)
    if isinstance(capacity, (str, bytes)) or not hasattr(capacity, "__len__"):
        raise InputError(f"capacity must be a dict {{model name: int}} or one entry per pool model, got {capacity!r}")
    if len(capacity) != len(names):
        raise InputError(
            f"capacity has {len(capacity)} entries but the pool has {len(names)} models {list(names)}; "
            "give one per model (None = no cap) or a dict {name: int}"
        )
    return tuple(check_cap(cap, name) for cap, name in zip(capacity, names, strict=True))


def pin_capacity(names: Sequence[str], capacity: Mapping[str, Any] | None, model: Any) -> dict[str, Any]:
    """Caps that leave ``model`` as the only choice: a call's ``model=`` pins it to one pool model (every door).

    Raises:
        InputError: ``model`` is not a pool model's name.
    """
    if not isinstance(model, str) or model not in names:
        raise InputError(f"model={model!r} is not in the router's pool {list(names)}; pass one of those names")
    return {**(capacity or {}), **{name: 0 for name in names if name != model}}
