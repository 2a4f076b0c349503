"""A saved router on disk: a directory of JSON and ``.npy`` files, never pickle.

Layout: ``router.json`` (format and settings), ``models.json`` (the pool, credentials redacted), ``guard.json``
(the quality guard), ``predictor/`` (the predictor's own files and manifest) and, optional, ``dual.json`` (the
per-call prices and every stream's recent calls; a router saved without it learns prices from calls alone) and
``margin.json`` (the per-batch margin behind ``confidence=``; a router saved without it refuses a confidence).
``router.json`` records the sha256 of ``margin.json`` under ``"checksums"``, as a predictor's manifest does for
its files: an edited, truncated or swapped margin is refused at load, since it would silently change what
``confidence=`` promises.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eccos_core.calibration import QualityGuard
from eccos_core.dual import DualPrices
from eccos_core.errors import ConfigError, EccosError, PredictorStateError
from eccos_core.guarantee import BatchMargin
from eccos_core.predictors.base import Predictor, file_sha256, load_predictor
from eccos_core.pricing import ModelSpec, validate_pool, write_models
from eccos_core.redaction import REDACTED, redact_params

ROUTER_FILE = "router.json"
MODELS_FILE = "models.json"
GUARD_FILE = "guard.json"
DUAL_FILE = "dual.json"
MARGIN_FILE = "margin.json"
PREDICTOR_DIR = "predictor"
FORMAT = "eccos-router/1"


@dataclass(frozen=True)
class SavedRouter:
    """What a router directory holds."""

    pool: tuple[ModelSpec, ...]
    predictor: Predictor
    guard: QualityGuard
    settings: dict[str, Any]
    dual: DualPrices | None = None
    margin: BatchMargin | None = None


def save_router(
    path: str | Path,
    pool: Sequence[ModelSpec],
    predictor: Predictor,
    guard: QualityGuard,
    settings: Mapping[str, Any],
    dual: DualPrices | None = None,
    margin: BatchMargin | None = None,
) -> Path:
    """Write a router into directory ``path`` (credentials redacted, nested ones and URL userinfo included)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    predictor.save(path / PREDICTOR_DIR)
    write_models(pool, path / MODELS_FILE)
    (path / GUARD_FILE).write_text(json.dumps(guard.to_dict(), indent=2) + "\n", encoding="utf-8")
    if dual is not None:
        (path / DUAL_FILE).write_text(json.dumps(dual.to_dict(), allow_nan=False) + "\n", encoding="utf-8")
    elif (path / DUAL_FILE).exists():
        (path / DUAL_FILE).unlink()
    meta: dict[str, Any] = {"format": FORMAT, **redact_params(dict(settings))}
    if margin is not None:
        (path / MARGIN_FILE).write_text(json.dumps(margin.to_dict(), allow_nan=False) + "\n", encoding="utf-8")
        meta["checksums"] = {MARGIN_FILE: file_sha256(path / MARGIN_FILE)}
    elif (path / MARGIN_FILE).exists():
        (path / MARGIN_FILE).unlink()
    (path / ROUTER_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return path


def load_router(path: str | Path, models: Sequence[ModelSpec] | None = None) -> SavedRouter:
    """Read a router directory written by :func:`save_router`.

    Raises:
        PredictorStateError: A file is missing, unreadable or inconsistent (the message names it).
        ConfigError: ``models`` names other models than the saved pool.
    """
    path = Path(path)
    missing = [name for name in (ROUTER_FILE, MODELS_FILE, GUARD_FILE) if not (path / name).is_file()]
    if not (path / PREDICTOR_DIR).is_dir():
        missing.append(PREDICTOR_DIR + "/")
    if missing:
        raise PredictorStateError(f"{path} is not a complete saved router: {missing} missing; save it again")
    settings = _check_settings(read_json(path / ROUTER_FILE), path / ROUTER_FILE)
    saved = _read_saved_pool(path / MODELS_FILE)
    pool = saved if models is None else _matching_pool(models, saved, path)
    guard_data = read_json(path / GUARD_FILE)
    try:
        guard = QualityGuard.from_dict(guard_data)
    except (KeyError, TypeError, ValueError) as exc:
        raise PredictorStateError(f"{path / GUARD_FILE} is not a valid quality guard ({exc}); save it again") from None
    dual = None
    if (path / DUAL_FILE).is_file():
        try:
            dual = DualPrices.from_dict(read_json(path / DUAL_FILE))
        except (KeyError, TypeError, ValueError) as exc:
            raise PredictorStateError(
                f"{path / DUAL_FILE} is not valid per-call prices ({exc}); save the router again or delete the file"
            ) from None
    margin = _read_margin(path, settings)
    import eccos_core.predictors.retrieval  # noqa: F401  (registers the built-in predictor kind)

    try:
        predictor = load_predictor(path / PREDICTOR_DIR)
    except EccosError:
        raise
    except (OSError, KeyError, TypeError, ValueError, EOFError) as exc:
        raise PredictorStateError(f"{path / PREDICTOR_DIR} cannot be read ({type(exc).__name__}: {exc})") from None
    return SavedRouter(pool, predictor, guard, settings, dual, margin)


def _read_margin(path: Path, settings: Mapping[str, Any]) -> BatchMargin | None:
    """``margin.json`` checked against the sha256 ``router.json`` records; ``None`` when the router has none."""
    file, meta = path / MARGIN_FILE, path / ROUTER_FILE
    checksums = settings.get("checksums", {})
    if not isinstance(checksums, dict) or not all(isinstance(v, str) for v in checksums.values()):
        raise PredictorStateError(f"{meta}: 'checksums' must map file names to sha256 hex strings; save it again")
    expected = checksums.get(MARGIN_FILE)
    if expected is None:
        if file.exists():
            raise PredictorStateError(
                f"{file} is not recorded in {meta}: it was not saved with this router; delete it or save the "
                "router again"
            )
        return None
    if not file.is_file():
        raise PredictorStateError(f"{meta} records {MARGIN_FILE}, which is missing; save the router again")
    if file_sha256(file) != expected:
        raise PredictorStateError(
            f"{file} does not match the sha256 recorded in {meta}: it was edited, truncated or replaced after it "
            "was saved; save the router again"
        )
    try:
        return BatchMargin.from_dict(read_json(file))
    except (KeyError, TypeError, ValueError) as exc:
        raise PredictorStateError(f"{file} is not a valid batch margin ({exc}); save the router again") from None


def _check_settings(settings: dict[str, Any], path: Path) -> dict[str, Any]:
    """``router.json``'s settings, each of the type the router takes, or a :class:`PredictorStateError`."""
    if settings.get("format") != FORMAT:
        raise PredictorStateError(f"{path} has format {settings.get('format')!r}, expected {FORMAT!r}; save it again")
    method = settings.get("method", "auto")
    if not isinstance(method, str):
        raise PredictorStateError(f"{path}: 'method' must be an optimizer method name, got {method!r}")
    limit = settings.get("time_limit", 10.0)
    if isinstance(limit, bool) or not isinstance(limit, numbers.Real) or not math.isfinite(limit) or limit <= 0:
        raise PredictorStateError(f"{path}: 'time_limit' must be a positive number of seconds, got {limit!r}")
    concurrency = settings.get("max_concurrency", 8)
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise PredictorStateError(f"{path}: 'max_concurrency' must be a positive integer, got {concurrency!r}")
    return settings


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``, or a :class:`PredictorStateError` naming the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PredictorStateError(f"{path} is not valid JSON ({exc}); save the router again") from None
    except (OSError, ValueError, RecursionError) as exc:
        raise PredictorStateError(f"{path} cannot be read ({type(exc).__name__}); save the router again") from None
    if not isinstance(data, dict):
        raise PredictorStateError(f"{path} must hold a JSON object; save the router again")
    return data


def _read_saved_pool(path: Path) -> tuple[ModelSpec, ...]:
    """The saved pool, minus the redacted credentials (LiteLLM then reads them from the environment)."""
    data = read_json(path)
    entries = data.get("models")
    if not isinstance(entries, list):
        raise PredictorStateError(f"{path} must hold a 'models' list; save the router again")
    pool = []
    for k, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise PredictorStateError(f"{path}: models[{k}] is not an object; save the router again")
        entry = dict(entry)
        entry["litellm_params"] = _without_redacted(entry.get("litellm_params") or {})
        pool.append(ModelSpec.from_dict(entry, f"{path} models[{k}]"))
    try:
        return validate_pool(pool)
    except ConfigError as exc:  # an empty list, duplicate names
        raise PredictorStateError(f"{path}: {exc}; save the router again") from None


def _without_redacted(params: Any) -> Any:
    if isinstance(params, Mapping):
        return {k: _without_redacted(v) for k, v in params.items() if v != REDACTED}
    return params


def _matching_pool(models: Sequence[ModelSpec], saved: Sequence[ModelSpec], path: Path) -> tuple[ModelSpec, ...]:
    pool = validate_pool(models)
    given, stored = {m.name for m in pool}, {m.name for m in saved}
    if given != stored:
        raise ConfigError(
            f"the pool given to Router.load does not match the one saved in {path}: "
            f"missing {sorted(stored - given)}, not saved {sorted(given - stored)}"
        )
    return pool
