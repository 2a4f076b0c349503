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
import logging
import math
import numbers
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from eccos_core.errors import ConfigError, PricingError
from eccos_core.litellm_env import quiet_litellm
from eccos_core.messages import Needs
from eccos_core.redaction import is_secret_param, redact_params

logger = logging.getLogger("eccos.pricing")

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
# LiteLLM tries to download Hugging Face tokenizers for some model ids; offline that stalls for ~20 s
os.environ.setdefault("HF_HUB_OFFLINE", "1")

DEFAULT_TIMEOUT = 120.0
"""Seconds a provider may take to answer one call before it counts as failed and the call falls back."""

DEFAULT_DEADLINE = 300.0
"""Seconds one call may take in all, its fallbacks included (a per-call ``deadline=``, else the planned model's
``deadline``, else this); past it the call fails with :class:`~eccos_core.errors.DeadlineExceededError`
naming what was tried, instead of walking the whole chain at ``timeout`` each."""

_CAPABILITIES = {
    "supports_tools": "supports_function_calling",
    "supports_vision": "supports_vision",
    "supports_response_schema": "supports_response_schema",
}
"""ModelSpec capability flag → LiteLLM model-info key it defaults to."""


def _litellm_info(litellm_model: str) -> dict[str, Any] | None:
    import litellm

    try:
        with quiet_litellm():  # an unmapped model makes LiteLLM print a "Provider List" banner
            return dict(litellm.get_model_info(litellm_model))
    except Exception:  # LiteLLM raises several exception types for an unmapped model
        return None


def _check_price(name: str, which: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
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
    max_output_tokens: int | None = None
    """Most completion tokens the model can write; a call asking for more (``max_tokens``) is not sent to it.
    ``None`` takes LiteLLM's value, or no limit if it has none."""
    supports_tools: bool | None = None
    """Takes ``tools`` / tool calls; ``None`` takes LiteLLM's model info (unknown = no)."""
    supports_vision: bool | None = None
    """Takes image content; ``None`` takes LiteLLM's model info (unknown = no)."""
    supports_response_schema: bool | None = None
    """Takes ``response_format`` with a JSON schema; ``None`` takes LiteLLM's model info (unknown = no)."""
    prompt_overhead_tokens: int = 0
    """Prompt tokens the model's chat template adds to every call beyond OpenAI's framing (e.g. a default system
    prompt); counted in the planned cost. Prompts are counted with one tokenizer for the whole pool."""
    timeout: float | None = None
    """Seconds to wait for this model's answer before falling back (default :data:`DEFAULT_TIMEOUT`)."""
    deadline: float | None = None
    """Seconds a call planned to this model may take in all, fallbacks included (default
    :data:`DEFAULT_DEADLINE`)."""
    like: str | None = None
    """For a model without routing logs of its own: the fitted model it is predicted as (a prior), e.g. the
    public model it is a fine-tune or a quantization of. Ignored once the predictor knows this model itself."""
    like_offset: float = 0.0
    """Added to the predicted p(success) of the ``like`` model (clipped to [0, 1]): ``-0.05`` for a model you
    expect to answer a little worse. Must lie in [-1, 1]."""
    litellm_params: Mapping[str, Any] = field(default_factory=dict, repr=False)
    """Extra keyword arguments for ``litellm.completion`` for this model only."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            shown = repr(self.name) if isinstance(self.name, str) else f"a {type(self.name).__name__}"
            raise ConfigError(f"every model needs a non-empty string 'name', got {shown}")
        if self.litellm_model is not None and (not isinstance(self.litellm_model, str) or not self.litellm_model):
            raise ConfigError(f"model {self.name!r}: litellm_model must be a LiteLLM model id string or null")
        if self.litellm_params is not None and not isinstance(self.litellm_params, Mapping):
            raise ConfigError(
                f"model {self.name!r}: litellm_params must be an object of LiteLLM options, "
                f"got a {type(self.litellm_params).__name__}"
            )
        litellm_model = self.litellm_model or self.name
        object.__setattr__(self, "litellm_model", litellm_model)
        object.__setattr__(self, "litellm_params", dict(self.litellm_params or {}))
        if self.capacity is not None:
            if isinstance(self.capacity, bool) or not isinstance(self.capacity, numbers.Integral) or self.capacity < 0:
                raise ConfigError(f"model {self.name!r}: capacity must be a non-negative integer or null")
            object.__setattr__(self, "capacity", int(self.capacity))
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
        self._resolve_from_litellm(info)

    def _resolve_from_litellm(self, info: dict[str, Any] | None) -> None:
        """Fill context/output limits and capability flags left as ``None`` from LiteLLM's model info."""
        missing = [a for a in ("max_input_tokens", "max_output_tokens", *_CAPABILITIES) if getattr(self, a) is None]
        if missing and info is None:
            info = _litellm_info(str(self.litellm_model)) or {}
        for attr in ("max_input_tokens", "max_output_tokens"):
            value = getattr(self, attr)
            if value is None and (info or {}).get(attr):
                value = int(info[attr])  # type: ignore[index]
            if value is not None:
                if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                    raise ConfigError(f"model {self.name!r}: {attr} must be a positive integer or null, got {value!r}")
                object.__setattr__(self, attr, int(value))
        for attr, key in _CAPABILITIES.items():
            value = getattr(self, attr)
            if value is None:
                value = bool((info or {}).get(key))
            elif not isinstance(value, bool):
                raise ConfigError(f"model {self.name!r}: {attr} must be true, false or null, got {value!r}")
            object.__setattr__(self, attr, value)
        overhead = self.prompt_overhead_tokens
        if isinstance(overhead, bool) or not isinstance(overhead, numbers.Integral) or overhead < 0:
            raise ConfigError(f"model {self.name!r}: prompt_overhead_tokens must be a non-negative integer")
        object.__setattr__(self, "prompt_overhead_tokens", int(overhead))
        self._check_like()
        for key in ("timeout", "deadline"):
            value = getattr(self, key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < math.inf:
                raise ConfigError(f"model {self.name!r}: {key} must be a positive number of seconds or null")
            object.__setattr__(self, key, float(value))

    def _check_like(self) -> None:
        like, offset = self.like, self.like_offset
        if like is not None and (not isinstance(like, str) or not like.strip() or like == self.name):
            raise ConfigError(f"model {self.name!r}: like must name another, fitted model (a string) or be null")
        if isinstance(offset, bool) or not isinstance(offset, numbers.Real) or not -1.0 <= offset <= 1.0:
            raise ConfigError(f"model {self.name!r}: like_offset must be a number in [-1, 1], got {offset!r}")
        object.__setattr__(self, "like_offset", float(offset))

    def missing(self, needs: Needs) -> list[str]:
        """The capabilities of ``needs`` this model lacks (empty when it can serve the call)."""
        out = [flag for flag, need in (("supports_tools", needs.tools), ("supports_vision", needs.vision)) if need]
        out = [flag for flag in out if not getattr(self, flag)]
        if needs.response_schema and not self.supports_response_schema:
            out.append("supports_response_schema")
        limit = self.max_output_tokens
        if needs.output_tokens is not None and limit is not None and needs.output_tokens > limit:
            out.append(f"max_output_tokens ({limit} < {needs.output_tokens})")
        return out

    def redacted_params(self) -> dict[str, Any]:
        """``litellm_params`` with every credential replaced by ``'***'`` (nested too), safe to log or report."""
        return redact_params(self.litellm_params)

    def to_dict(self, *, include_secrets: bool = False) -> dict[str, Any]:
        """JSON form, as in a models file; credentials are redacted unless ``include_secrets``."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["litellm_params"] = dict(self.litellm_params) if include_secrets else self.redacted_params()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "models file") -> ModelSpec:
        """Build a spec from a models-file entry, rejecting unknown keys by name.

        Errors name ``where`` and the key, never a value that could be a credential (an entry that is not an
        object is described by its type, not echoed).
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: each model must be an object with 'name', got a {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(str(key) for key in data if key not in known)
        if unknown:
            raise ConfigError(f"{where}: model entry has unknown keys {unknown}; allowed: {sorted(known)}")
        if "name" not in data:
            raise ConfigError(f"{where}: a model entry lacks 'name'")
        try:
            return cls(**dict(data))
        except ConfigError as exc:
            raise type(exc)(f"{where}: {exc}") from None


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
    """Read a models file (``.json``, ``.yaml`` or ``.yml``) into a validated pool.

    A model whose context window is unknown (no ``max_input_tokens`` and none in LiteLLM's model info) is
    reported with one warning: no prompt is too long for it, so set the window in the file.

    Raises:
        ConfigError: The file is missing, unreadable, not UTF-8, not valid JSON/YAML, or an entry is invalid. The
            message names the file, the line and the key, and never quotes a value (it could be a credential).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"models file {path} does not exist")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"models file {path} cannot be read ({type(exc).__name__}: {exc.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"models file {path}:{line} is not UTF-8 text; re-save the file as UTF-8") from None
    yaml_file = path.suffix in (".yaml", ".yml")
    try:
        data = yaml.load(text, Loader=_ModelsLoader) if yaml_file else json.loads(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(_syntax_error(path, text, exc)) from None
    except (ValueError, RecursionError) as exc:  # a number with thousands of digits, nesting too deep
        raise ConfigError(
            f"models file {path} cannot be read as {'YAML' if yaml_file else 'JSON'} ({type(exc).__name__})"
        ) from None
    if not isinstance(data, Mapping) or not isinstance(data.get("models"), list):
        raise ConfigError(f"models file {path} must hold an object with a 'models' list")
    lines = _entry_lines(text, len(data["models"]))
    specs = [ModelSpec.from_dict(entry, f"{path}{lines[i]} models[{i}]") for i, entry in enumerate(data["models"])]
    try:
        pool = validate_pool(specs)
    except ConfigError as exc:  # an empty list, duplicate names
        raise type(exc)(f"models file {path}: {exc}") from None
    unknown = [m.name for m in pool if m.max_input_tokens is None]
    if unknown:
        logger.warning(
            "%s: models %s have no known context window, so no prompt is ruled too long for them: set "
            "max_input_tokens for each in the models file",
            path,
            unknown,
        )
    return pool


_REPORTED_KEYS = frozenset(
    {"models", "api_base", "base_url", "api_version", "extra_headers", "headers", "organization", "max_tokens"}
)
"""Keys besides ModelSpec's fields and credential names that a syntax error may name (anything else on a broken
line could be a value, so it is not repeated)."""


def _key_at(text: str, line: int, column: int) -> str | None:
    """The key of the mapping entry at (0-based) ``line`` of a models file, or of the nearest entry above it."""
    lines = text.splitlines()
    known = {f.name for f in fields(ModelSpec)} | _REPORTED_KEYS
    for k in range(min(line, len(lines) - 1), -1, -1):
        head = lines[k][: column + 1] if k == line else lines[k]
        keys = re.findall(r'"([A-Za-z_][\w.-]{0,63})"\s*:|(?:^|[\s{,])-?\s*([A-Za-z_][\w.-]{0,63})\s*:(?:\s|$)', head)
        for quoted, bare in reversed(keys):
            key = quoted or bare
            if key in known or is_secret_param(key):
                return key
    return None


def _syntax_error(path: Path, text: str, exc: Exception) -> str:
    """A syntax error message naming file, line, column and key, without the offending text (it may hold a secret)."""
    if isinstance(exc, json.JSONDecodeError):
        kind, line, column, problem = "JSON", exc.lineno, exc.colno, exc.msg
        key = _key_at(text, line - 1, column - 1)
    else:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        kind = "YAML"
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (0, 0)
        problem = str(getattr(exc, "problem", None) or type(exc).__name__)
        # YAML quotes what it found ("found undefined alias 'sk-...'"): keep only short quotes like '\t'
        problem = re.sub(r"'[^'\s]{3,}'|\"[^\"\s]{3,}\"", "'...'", problem)
        # the key whose value was being read when the parser gave up (an unclosed quote runs to the end)
        start = getattr(exc, "context_mark", None) or mark
        key = _key_at(text, start.line, start.column) if start is not None else None
    where = f"{path}:{line}:{column}" if line else str(path)
    about = ""
    if key is not None:
        about = f" (at key {key!r}{', a credential: its value is not shown' if is_secret_param(key) else ''})"
    return f"models file {where} is not valid {kind}: {problem}{about}; fix the syntax there"


class _ModelsLoader(yaml.SafeLoader):
    """YAML's safe loader, reading ``1e-7`` as the number it is meant to be.

    YAML 1.1 wants ``1.0e-7``: a price written ``1e-7`` would otherwise be the string "1e-7".
    """


_ModelsLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _entry_lines(text: str, count: int) -> list[str]:
    """``":<line>"`` where each ``models`` entry starts (for error messages), or ``""`` where unknown."""
    try:
        root = yaml.compose(text)
        entries = next(value for key, value in root.value if getattr(key, "value", None) == "models").value
        found = [f":{node.start_mark.line + 1}" for node in entries]
    except Exception:  # only a nicety for error messages: any file the loader accepted is fine without it
        found = []
    return found + [""] * (count - len(found)) if len(found) <= count else found[:count]


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
    """N×M expected cost: ``c_ij = (input_tokens_i + overhead_j) · in_price_j + output_tokens_ij · out_price_j``."""
    in_price, out_price = price_vectors(models)
    overhead = np.array([m.prompt_overhead_tokens for m in models], dtype=float)
    prompt = np.asarray(input_tokens, float)[:, None] + overhead[None, :]
    return prompt * in_price[None, :] + np.asarray(output_tokens) * out_price
