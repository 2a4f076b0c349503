"""A saved router on disk: a directory of JSON and ``.npy`` files, never pickle.

Layout: ``router.json`` (format and settings), ``models.json`` (the pool, credentials redacted), ``guard.json``
(the quality guard), ``predictor/`` (the predictor's own files and manifest) and, optional, ``dual.json`` (the
per-call prices and every stream's recent calls; a router saved without it learns prices from calls alone) and
``margin.json`` (the per-batch margin behind ``confidence=``; a router saved without it refuses a confidence).
``guard.json``, ``margin.json`` and ``dual.json`` together are the router's targets
(:class:`~eccos_core.targets.Targets`: how ``min_quality`` becomes what the optimizer reaches for) and the
per-call streams. ``router.json`` records the sha256 of each under ``"checksums"``, as a predictor's manifest
does for its files: an edited, truncated or swapped file is refused at load, since it would silently change what
``min_quality`` and ``confidence=`` promise. Routers saved before guard and prices were checksummed (their
``router.json`` records ``margin.json`` only) still load, their files validated field by field.
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
    meta: dict[str, Any] = {"format": FORMAT, **redact_params(dict(settings)), "checksums": {}}
    parts = {
        GUARD_FILE: guard.to_dict(),
        DUAL_FILE: None if dual is None else dual.to_dict(),
        MARGIN_FILE: None if margin is None else margin.to_dict(),
    }
    for name, data in parts.items():
        if data is None:
            (path / name).unlink(missing_ok=True)
            continue
        indent = None if name == DUAL_FILE else 2  # the streams hold up to a window of rows each
        (path / name).write_text(json.dumps(data, indent=indent, allow_nan=False) + "\n", encoding="utf-8")
        meta["checksums"][name] = file_sha256(path / name)
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
    guard = _read_part(path, GUARD_FILE, settings, QualityGuard.from_dict, "a valid quality guard")
    dual = _read_part(path, DUAL_FILE, settings, DualPrices.from_dict, "valid per-call prices")
    margin = _read_part(path, MARGIN_FILE, settings, BatchMargin.from_dict, "a valid batch margin")
    import eccos_core.predictors.retrieval  # noqa: F401  (registers the built-in predictor kind)

    try:
        predictor = load_predictor(path / PREDICTOR_DIR)
    except EccosError:
        raise
    except (OSError, KeyError, TypeError, ValueError, EOFError) as exc:
        raise PredictorStateError(f"{path / PREDICTOR_DIR} cannot be read ({type(exc).__name__}: {exc})") from None
    return SavedRouter(pool, predictor, guard, settings, dual, margin)


def _read_part(path: Path, name: str, settings: Mapping[str, Any], parse: Any, what: str) -> Any:
    """One of the router's target files, checked against the sha256 ``router.json`` records, then parsed.

    ``None`` for an optional file the router was saved without. A file ``router.json`` does not record is refused,
    except ``guard.json`` and ``dual.json`` of a router saved before they were checksummed (no guard recorded).
    """
    file, meta = path / name, path / ROUTER_FILE
    checksums = settings.get("checksums", {})
    if not isinstance(checksums, dict) or not all(isinstance(v, str) for v in checksums.values()):
        raise PredictorStateError(f"{meta}: 'checksums' must map file names to sha256 hex strings; save it again")
    expected = checksums.get(name)
    legacy = GUARD_FILE not in checksums and name in (GUARD_FILE, DUAL_FILE)
    if expected is None and not legacy:
        if file.exists():
            raise PredictorStateError(
                f"{file} is not recorded in {meta}: it was not saved with this router; delete it or save the "
                "router again"
            )
        return None
    if not file.is_file():
        if legacy and name == DUAL_FILE:
            return None
        raise PredictorStateError(f"{meta} records {name}, which is missing; save the router again")
    if expected is not None and file_sha256(file) != expected:
        raise PredictorStateError(
            f"{file} does not match the sha256 recorded in {meta}: it was edited, truncated or replaced after it "
            "was saved; save the router again (or refit it)"
        )
    try:
        return parse(read_json(file))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise PredictorStateError(f"{file} is not {what} ({exc}); refit and save the router again") from None


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
