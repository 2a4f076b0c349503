"""Typed errors. Every message names the thing to fix."""

from __future__ import annotations


class EccosError(Exception):
    """Base class of every error eccos raises on purpose."""


class ConfigError(EccosError, ValueError):
    """The model pool is wrong: unknown, duplicate or unpriced models, an empty pool, a bad models file."""


class PricingError(ConfigError):
    """A model has no usable price (unknown to LiteLLM, negative or NaN)."""


class LogFormatError(EccosError, ValueError):
    """A routing-log file or record does not follow the documented format."""


class InputError(EccosError, ValueError):
    """A call's arguments are unusable: empty messages, a message with no text, min_quality outside [0, 1]."""


class CapacityError(EccosError, ValueError):
    """The per-model workload caps cannot hold every query of the batch."""


class ContextWindowError(EccosError, ValueError):
    """A prompt is longer than the context window of every model in the pool."""


class PredictorStateError(EccosError, ValueError):
    """A predictor is used before fit, or a saved predictor is incomplete or built for another pool."""


class DispatchError(EccosError, RuntimeError):
    """Every model that could take a call failed at the provider."""


class DeadlineExceededError(DispatchError):
    """A call's total deadline passed before any model answered; ``fallbacks`` lists what was tried."""


class CapabilityError(InputError):
    """No pool model can serve a call's needs (tools, images, a response schema, its max_tokens)."""


class CredentialError(ConfigError):
    """A provider credential is missing or was rejected: a configuration problem, never a fallback cause."""


class StreamInterruptedError(DispatchError):
    """A provider failed after its first streamed chunk; the call is not restarted (text would repeat)."""
