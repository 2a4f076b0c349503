"""Model pool: which models may take a call, what each costs, and how to reach it through LiteLLM.

A models file (JSON or YAML) names the pool::

    {"models": [{"name": "gpt-4o-mini", "litellm_model": "openai/gpt-4o-mini",
                 "input_cost_per_token": 1.5e-7, "output_cost_per_token": 6e-7, "capacity": null,
                 "litellm_params": {"api_base": "http://localhost:8000/v1"}}]}

Prices left out are taken from LiteLLM's price map for ``litellm_model``; a model with no known price is an
error that names it, never a silent 0.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from eccos_core.errors import ConfigError, PricingError

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
# LiteLLM tries to download Hugging Face tokenizers for some model ids; offline that stalls for ~20 s
os.environ.setdefault("HF_HUB_OFFLINE", "1")

_SECRET_MARKERS = ("key", "secret", "token", "password", "authorization", "credential")


def is_secret_param(name: str) -> bool:
    """Whether a LiteLLM parameter name holds a credential that must never be logged or reported."""
    lowered = name.lower()
    return any(marker in lowered for marker in _SECRET_MARKERS)


def _litellm_info(litellm_model: str) -> dict[str, Any] | None:
    import litellm

    try:
        return dict(litellm.get_model_info(litellm_model))
    except Exception:  # LiteLLM raises several exception types for an unmapped model
        return None


def _check_price(name: str, which: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PricingError(f"model {name!r}: {which} must be a number, got {value!r}")
    price = float(value)
    if math.isnan(price) or math.isinf(price) or price < 0:
        raise PricingError(f"model {name!r}: {which} is {price}; prices must be finite and >= 0 (USD per token)")
    return price


@dataclass(frozen=True)
class ModelSpec:
    """One candidate model of the pool.

    Prices are resolved when the spec is built: given explicitly, or looked up in LiteLLM's bundled price map
    for ``litellm_model`` (no network). ``litellm_params`` (``api_base``, ``api_key``, ``timeout``, ...) are
    passed to LiteLLM for this model only and never shown in ``repr`` or reports.
    """

    name: str
    """Name used in routing logs and reports."""
    litellm_model: str | None = None
    """LiteLLM model id (``provider/model``); defaults to ``name``."""
    input_cost_per_token: float | None = None
    """USD per prompt token; ``None`` takes LiteLLM's price."""
    output_cost_per_token: float | None = None
    """USD per completion token; ``None`` takes LiteLLM's price."""
    capacity: int | None = None
    """Most queries of one batch this model may take (``None`` = no cap)."""
    max_input_tokens: int | None = None
    """Context window in prompt tokens; ``None`` takes LiteLLM's value, or no limit if it has none."""
    litellm_params: Mapping[str, Any] = field(default_factory=dict, repr=False)
    """Extra keyword arguments for ``litellm.completion`` for this model only."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError(f"every model needs a non-empty 'name', got {self.name!r}")
        litellm_model = self.litellm_model or self.name
        object.__setattr__(self, "litellm_model", litellm_model)
        object.__setattr__(self, "litellm_params", dict(self.litellm_params or {}))
        if self.capacity is not None and (
            isinstance(self.capacity, bool) or not isinstance(self.capacity, int) or self.capacity < 0
        ):
            raise ConfigError(f"model {self.name!r}: capacity must be a non-negative integer or null")
        info = None
        if self.input_cost_per_token is None or self.output_cost_per_token is None:
            info = _litellm_info(litellm_model)
            if info is None or info.get("input_cost_per_token") is None:
                raise PricingError(
                    f"model {self.name!r} has no price: set input_cost_per_token/output_cost_per_token "
                    f"in the models file or use a LiteLLM model id it knows (got {litellm_model!r})"
                )
        for attr in ("input_cost_per_token", "output_cost_per_token"):
            value = getattr(self, attr)
            if value is None:
                value = (info or {}).get(attr)
                if value is None:
                    raise PricingError(f"model {self.name!r}: LiteLLM knows no {attr} for {litellm_model!r}")
            object.__setattr__(self, attr, _check_price(self.name, attr, value))
        if self.max_input_tokens is None:
            info = info if info is not None else _litellm_info(litellm_model)
            if info is not None and info.get("max_input_tokens"):
                object.__setattr__(self, "max_input_tokens", int(info["max_input_tokens"]))

    def redacted_params(self) -> dict[str, Any]:
        """``litellm_params`` with every credential replaced by ``'***'``, safe to log or report."""
        return {k: ("***" if is_secret_param(k) else v) for k, v in self.litellm_params.items()}

    def to_dict(self, *, include_secrets: bool = False) -> dict[str, Any]:
        """JSON form, as in a models file; credentials are redacted unless ``include_secrets``."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["litellm_params"] = dict(self.litellm_params) if include_secrets else self.redacted_params()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "models file") -> ModelSpec:
        """Build a spec from a models-file entry, rejecting unknown keys by name."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: each model must be an object, got {data!r}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{where}: model entry has unknown keys {unknown}; allowed: {sorted(known)}")
        if "name" not in data:
            raise ConfigError(f"{where}: a model entry lacks 'name'")
        return cls(**dict(data))


def validate_pool(models: Iterable[ModelSpec]) -> tuple[ModelSpec, ...]:
    """Check a pool is usable: non-empty, unique names, every entry a :class:`ModelSpec`."""
    pool = tuple(models)
    if not pool:
        raise ConfigError("the model pool is empty: give at least one ModelSpec")
    for spec in pool:
        if not isinstance(spec, ModelSpec):
            raise ConfigError(f"pool entries must be ModelSpec, got {type(spec).__name__}")
    names = [m.name for m in pool]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"duplicate model names in the pool: {duplicates}; each name must be unique")
    return pool


def load_models(path: str | Path) -> tuple[ModelSpec, ...]:
    """Read a models file (``.json``, ``.yaml`` or ``.yml``) into a validated pool."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"models file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"models file {path} is not valid {path.suffix.lstrip('.').upper()}: {exc}") from None
    if not isinstance(data, Mapping) or not isinstance(data.get("models"), list):
        raise ConfigError(f"models file {path} must hold an object with a 'models' list")
    return validate_pool(ModelSpec.from_dict(entry, f"{path} models[{i}]") for i, entry in enumerate(data["models"]))


def write_models(models: Sequence[ModelSpec], path: str | Path) -> Path:
    """Write a pool as a JSON models file (credentials redacted)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"models": [m.to_dict() for m in models]}, indent=2) + "\n", encoding="utf-8")
    return path


def price_vectors(models: Sequence[ModelSpec]) -> tuple[np.ndarray, np.ndarray]:
    """Per-token input and output prices of a pool, as two length-M arrays."""
    return (
        np.array([m.input_cost_per_token for m in models], dtype=float),
        np.array([m.output_cost_per_token for m in models], dtype=float),
    )


def cost_matrix(models: Sequence[ModelSpec], input_tokens: np.ndarray, output_tokens: np.ndarray) -> np.ndarray:
    """N×M expected cost: ``c_ij = input_tokens_i · in_price_j + output_tokens_ij · out_price_j``."""
    in_price, out_price = price_vectors(models)
    return np.asarray(input_tokens, float)[:, None] * in_price[None, :] + np.asarray(output_tokens) * out_price


def count_tokens(text: str, litellm_model: str = "gpt-4o-mini") -> int:
    """Prompt tokens of ``text`` by ``litellm.token_counter`` (bundled tokenizers, works offline)."""
    import litellm

    return int(litellm.token_counter(model=litellm_model, text=text))
