"""A saved router on disk: a directory of JSON and ``.npy`` files, never pickle.

Layout: ``router.json`` (format and settings), ``models.json`` (the pool, credentials redacted), ``targets.json``
(the router's :class:`~eccos_core.targets.Targets`: quality guard, per-batch margin and per-call curve, how
``min_quality`` becomes what the optimizer reaches for), ``predictor/`` (the predictor's own files and manifest)
and, optional, ``streams.json`` (every per-call stream's state; a router saved without it starts its streams
afresh), ``probes.json`` (the probe fits of onboarded models) and ``lengths.json`` (output tokens of the answers
dispatched, :mod:`eccos_core.lengths`). ``router.json`` records the sha256 of each of these JSON files under
``"checksums"``, as a predictor's manifest does for its files: an edited, truncated or swapped file is refused at
load, since it would silently change what ``min_quality`` and ``confidence=`` promise.

Routers saved by earlier releases (``guard.json``, ``margin.json`` and ``dual.json``, the streams as raw recent
rows) still load: their files are validated field by field and the streams replayed.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eccos_core.calibration import QualityGuard
from eccos_core.dual import DualCurve, DualPrices
from eccos_core.errors import ConfigError, EccosError, PredictorStateError
from eccos_core.guarantee import BatchMargin
from eccos_core.lengths import OutputLengths
from eccos_core.predictors.base import Predictor, file_sha256, load_predictor
from eccos_core.pricing import ModelSpec, validate_pool, write_models
from eccos_core.priors import Evidence, ProbeFit
from eccos_core.redaction import REDACTED, redact_params
from eccos_core.targets import Targets

ROUTER_FILE = "router.json"
MODELS_FILE = "models.json"
TARGETS_FILE = "targets.json"
STREAMS_FILE = "streams.json"
PROBES_FILE = "probes.json"
PROBES_FORMAT = "eccos-probes/1"
LENGTHS_FILE = "lengths.json"
LENGTHS_FORMAT = "eccos-lengths/1"
GUARD_FILE = "guard.json"
"""Earlier releases: the guard (with ``margin.json`` and ``dual.json``, now :data:`TARGETS_FILE`)."""
DUAL_FILE = "dual.json"
MARGIN_FILE = "margin.json"
PREDICTOR_DIR = "predictor"
FORMAT = "eccos-router/1"


@dataclass(frozen=True)
class SavedRouter:
    """What a router directory holds."""

    pool: tuple[ModelSpec, ...]
    predictor: Predictor
    targets: Targets
    settings: dict[str, Any]
    streams: Mapping[str, Any] | None = None
    """The per-call streams' saved state (:meth:`DualPrices.from_dict`), or ``None``."""
    probes: Mapping[str, ProbeFit] = field(default_factory=dict)
    """Probe fits of the pool models onboarded with one (``Router.onboard``)."""
    lengths: OutputLengths | None = None
    """Output tokens of the answers dispatched before the save (:mod:`eccos_core.lengths`), or ``None``."""
    evidence: Mapping[str, Evidence] = field(default_factory=dict)
    """Graded outcomes of the models routed on a prior or a probe (``Router.refit`` fits them)."""


def save_router(
    path: str | Path,
    pool: Sequence[ModelSpec],
    predictor: Predictor,
    targets: Targets,
    settings: Mapping[str, Any],
    prices: DualPrices | None = None,
    probes: Mapping[str, ProbeFit] | None = None,
    lengths: OutputLengths | None = None,
    evidence: Mapping[str, Evidence] | None = None,
) -> Path:
    """Write a router into directory ``path`` (credentials redacted, nested ones and URL userinfo included)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    predictor.save(path / PREDICTOR_DIR)
    write_models(pool, path / MODELS_FILE)
    meta: dict[str, Any] = {"format": FORMAT, **redact_params(dict(settings)), "checksums": {}}
    for old in (GUARD_FILE, DUAL_FILE, MARGIN_FILE):  # an earlier release's files in the same directory
        (path / old).unlink(missing_ok=True)
    parts = {
        TARGETS_FILE: targets.to_dict(),
        STREAMS_FILE: None if prices is None else prices.to_dict(),
        PROBES_FILE: _probes_json(probes or {}, evidence or {}) if probes or evidence else None,
        LENGTHS_FILE: {"format": LENGTHS_FORMAT, "calls": calls} if (calls := lengths and lengths.to_dict()) else None,
    }
    for name, data in parts.items():
        if data is None:
            (path / name).unlink(missing_ok=True)
            continue
        indent = None if name == STREAMS_FILE else 2  # the streams hold a price grid each
        (path / name).write_text(json.dumps(data, indent=indent, allow_nan=False) + "\n", encoding="utf-8")
        meta["checksums"][name] = file_sha256(path / name)
    (path / ROUTER_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return path


def load_router(path: str | Path, models: Sequence[ModelSpec] | None = None) -> SavedRouter:
    """Read a router directory written by :func:`save_router` (or by an earlier release).

    Raises:
        PredictorStateError: A file is missing, unreadable or inconsistent (the message names it).
        ConfigError: ``models`` names other models than the saved pool.
    """
    path = Path(path)
    missing = [name for name in (ROUTER_FILE, MODELS_FILE) if not (path / name).is_file()]
    if not (path / PREDICTOR_DIR).is_dir():
        missing.append(PREDICTOR_DIR + "/")
    if missing:
        raise PredictorStateError(f"{path} is not a complete saved router: {missing} missing; save it again")
    settings = _check_settings(read_json(path / ROUTER_FILE), path / ROUTER_FILE)
    saved = _read_saved_pool(path / MODELS_FILE)
    pool = saved if models is None else _matching_pool(models, saved, path)
    if TARGETS_FILE in (settings.get("checksums") or {}) or (path / TARGETS_FILE).exists():
        targets = _read_part(path, TARGETS_FILE, settings, Targets.from_dict, "the router's targets")
        streams = _read_part(path, STREAMS_FILE, settings, dict, "per-call streams")
        probes, evidence = _read_part(path, PROBES_FILE, settings, _probes, "valid probe fits") or ({}, {})
        lengths = _read_part(path, LENGTHS_FILE, settings, _lengths, "valid output-length records")
    else:
        targets, streams = _read_legacy_targets(path, settings)
        probes, evidence = {}, {}
        lengths = None
    import eccos_core.predictors.retrieval  # noqa: F401  (registers the built-in predictor kind)

    try:
        predictor = load_predictor(path / PREDICTOR_DIR)
    except EccosError:
        raise
    except (OSError, KeyError, TypeError, ValueError, EOFError) as exc:
        raise PredictorStateError(f"{path / PREDICTOR_DIR} cannot be read ({type(exc).__name__}: {exc})") from None
    return SavedRouter(pool, predictor, targets, settings, streams, probes, lengths, evidence)


def _read_legacy_targets(path: Path, settings: Mapping[str, Any]) -> tuple[Targets, dict[str, Any] | None]:
    """Targets and streams of a router saved by an earlier release (``guard.json``, ``margin.json``, ``dual.json``)."""
    if not (path / GUARD_FILE).is_file():
        raise PredictorStateError(f"{path} is not a complete saved router: {[TARGETS_FILE]} missing; save it again")
    guard = _read_part(path, GUARD_FILE, settings, QualityGuard.from_dict, "a valid quality guard")
    margin = _read_part(path, MARGIN_FILE, settings, BatchMargin.from_dict, "a valid batch margin")
    dual = _read_part(path, DUAL_FILE, settings, _legacy_dual, "valid per-call prices")
    curve = None if dual is None else dual[0]
    return Targets(guard, margin, curve, output_lengths=False), None if dual is None else dual[1]


def _probes_json(probes: Mapping[str, ProbeFit], evidence: Mapping[str, Evidence]) -> dict[str, Any]:
    return {
        "format": PROBES_FORMAT,
        "probes": {name: fit.to_dict() for name, fit in probes.items()},
        "evidence": {name: rows.to_dict() for name, rows in evidence.items()},
    }


def _probes(data: dict[str, Any]) -> tuple[dict[str, ProbeFit], dict[str, Evidence]]:
    if data.get("format") != PROBES_FORMAT:
        raise ValueError(f"format {data.get('format')!r}, expected {PROBES_FORMAT!r}")
    probes = {str(name): ProbeFit.from_dict(fit) for name, fit in dict(data["probes"]).items()}
    return probes, {str(name): Evidence.from_dict(rows) for name, rows in dict(data.get("evidence", {})).items()}


def _lengths(data: dict[str, Any]) -> OutputLengths:
    if data.get("format") != LENGTHS_FORMAT:
        raise ValueError(f"format {data.get('format')!r}, expected {LENGTHS_FORMAT!r}")
    return OutputLengths.from_dict(dict(data["calls"]))


def _legacy_dual(data: dict[str, Any]) -> tuple[DualCurve | None, dict[str, Any]]:
    if data.get("format") != "eccos-dual/1":
        raise ValueError(f"format {data.get('format')!r}, expected 'eccos-dual/1'")
    return (None if data.get("curve") is None else DualCurve.from_dict(data["curve"])), data


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
    legacy = TARGETS_FILE not in checksums and GUARD_FILE not in checksums and name in (GUARD_FILE, DUAL_FILE)
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
    except EccosError:
        raise
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
