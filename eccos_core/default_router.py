"""The default router: shipped fitted in the package, else fitted once and cached on disk, never a crash.

``Router.default()`` loads, in order:

1. the router shipped in ``eccos_core/data/default-router/`` (fitted on the bundled logs' training split;
   rebuilt with ``eccos build-default``), when it matches the bundled logs;
2. a cached fit under ``<cache_dir>/default-<hash>`` (``$ECCOS_CACHE_DIR``, else ``~/.cache/eccos``), the hash
   covering the bundled data, the eccos version and the code that shapes the fitted state;
3. a fresh fit, published to the cache atomically (write a temporary sibling, rename it into place). A cache
   directory that cannot be written (or read: another user's, mode 0700) is reported once, and the fit is
   cached in a per-user temp directory instead (:func:`fallback_root`); when that fails too, the router is kept
   in memory for the rest of the process.

A cached artefact that is unreadable or invalid is moved aside and refitted, with one warning.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from eccos_core.bundled import BUNDLED_LOGS, DATA_DIR
from eccos_core.errors import EccosError

logger = logging.getLogger("eccos.default")

SHIPPED_DIR = DATA_DIR / "default-router"
"""The default router fitted on the bundled training split, shipped in the package."""
BUNDLE_FILE = "bundle.json"
"""Records what the shipped router was fitted on (the bundled logs' sha256) and how to rebuild it."""
REBUILD_COMMAND = "eccos build-default"

R = TypeVar("R")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@functools.lru_cache(maxsize=1)
def cache_key() -> str:
    """Hash of what the default router is fitted from: bundled data, eccos version, predictor/optimizer/guard code."""
    package = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    try:
        version = importlib.metadata.version("eccos")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    digest.update(version.encode())
    digest.update(BUNDLED_LOGS.read_bytes())
    sources = ("predictors", "optimize", "calibration.py", "dual.py", "guarantee.py")
    for source in (package / name for name in sources):
        files = sorted(source.rglob("*.py")) if source.is_dir() else [source]
        for file in files:
            digest.update(str(file.relative_to(package)).encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """Where cached fits live: ``cache_dir``, else ``$ECCOS_CACHE_DIR``, else ``~/.cache/eccos``."""
    return Path(cache_dir or os.environ.get("ECCOS_CACHE_DIR") or Path.home() / ".cache" / "eccos").expanduser()


def shipped_matches() -> bool:
    """Whether the shipped router exists and was fitted on the bundled logs as they are now."""
    try:
        bundle = json.loads((SHIPPED_DIR / BUNDLE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(bundle, dict) and bundle.get("logs_sha256") == _sha256(BUNDLED_LOGS)


def resolve(load: Callable[[Path], R], fit: Callable[[], R], save: Callable[[R, Path], Any], cache_dir: Any) -> R:
    """The default router from the shipped files, else the cache, else a fresh fit (see the module doc)."""
    if shipped_matches():
        try:
            return load(SHIPPED_DIR)
        except (EccosError, OSError, ValueError) as exc:
            logger.warning("the shipped default router is unusable (%s); %s rebuilds it", exc, REBUILD_COMMAND)
    path = cache_root(cache_dir) / f"default-{cache_key()}"
    fallback = fallback_root() / path.name
    if str(path) in _IN_MEMORY:  # fitted earlier in this process, where no cache could be written
        return _IN_MEMORY[str(path)]
    for where in (path, fallback) if fallback != path else (path,):
        cached = _load_cached(where, load)
        if cached is not None:
            return cached
    logger.info("fitting the default router on the bundled routing logs (once; cached in %s)", path)
    router = fit()
    failed = _publish(router, path, save)
    if failed is not None:
        if fallback != path and _publish(router, fallback, save) is None:
            logger.warning(
                "could not write the default router cache in %s (%s); cached it in %s instead: set "
                "ECCOS_CACHE_DIR to a writable directory of yours",
                path.parent,
                failed,
                fallback.parent,
            )
        else:
            _IN_MEMORY[str(path)] = router
            logger.warning(
                "could not cache the default router in %s (%s); using it from memory (this process returns the "
                "same router on later calls), so the next process fits again: set ECCOS_CACHE_DIR to a writable "
                "directory",
                path.parent,
                failed,
            )
    return router


def fallback_root() -> Path:
    """Where the default router is cached when the cache directory cannot be written: a per-user temp dir."""
    return Path(tempfile.gettempdir()) / f"eccos-cache-{getattr(os, 'getuid', lambda: 'user')()}"


def _load_cached(path: Path, load: Callable[[Path], R]) -> R | None:
    """The router cached in ``path``; ``None`` when there is none, or it is unusable (then moved aside, warned)."""
    try:
        if not path.exists():
            return None
        return load(path)
    except (EccosError, OSError, ValueError, KeyError, EOFError) as exc:
        # also a cache another user published (mode 0700): even looking into it raises PermissionError
        if str(path) not in _WARNED:  # once per process: a cache we may not replace stays unusable
            _WARNED.add(str(path))
            logger.warning("cached default router in %s is unusable (%s); refitting it", path, exc)
        _discard(path)
        return None


_WARNED: set[str] = set()
"""Caches already reported unusable in this process (reported again once a fresh one was published there)."""
_IN_MEMORY: dict[str, Any] = {}
"""Default routers fitted in this process when neither the cache nor the temp fallback could be written."""


def _discard(path: Path) -> None:
    """Move an unusable cache aside (rename is atomic, rmtree is not) and delete it."""
    with contextlib.suppress(OSError):
        stale = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".stale", dir=path.parent))
        os.replace(path, stale / "old")
        shutil.rmtree(stale, ignore_errors=True)


def _publish(router: Any, path: Path, save: Callable[[Any, Path], Any]) -> str | None:
    """Save ``router`` to ``path`` atomically; ``None`` when done, else why the cache could not be written."""
    staging: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
        save(router, staging)
        if path.exists():
            _discard(path)
        os.rename(staging, path)
        _WARNED.discard(str(path))
        logger.info("cached the default router in %s", path)
        return None
    except OSError as exc:
        if _is_dir(path) and os.access(path, os.R_OK | os.X_OK) and str(path) not in _WARNED:
            return None  # another process published the same cache meanwhile: fine
        return f"{type(exc).__name__}: {exc.strerror or exc}"
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:
        return False


def build_shipped(fit: Callable[[], R], save: Callable[[R, Path], Any], out: Path = SHIPPED_DIR) -> Path:
    """Fit the default router with ``fit`` and write it, with its bundle record, where the package ships it."""
    router = fit()
    if out.exists():
        shutil.rmtree(out)
    save(router, out)
    bundle = {"logs_sha256": _sha256(BUNDLED_LOGS), "split": {"test_frac": 0.2, "seed": 0}, "rebuild": REBUILD_COMMAND}
    (out / BUNDLE_FILE).write_text(json.dumps(bundle, indent=2) + "\n", encoding="utf-8")
    return out
