"""What every converter shares: the converted-data-set record, the shared data folder and score checks."""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eccos_core.errors import LogFormatError
from eccos_core.logs import RoutingLogs
from eccos_core.pricing import ModelSpec

logger = logging.getLogger(__name__)

SHARED_DATA_ENV = "ECCOS_SHARED_DATA"
"""Environment variable that overrides where :func:`shared_data_dir` looks for the source data sets."""


@dataclass(frozen=True)
class ConvertedDataset:
    """A data set in eccos' own terms, ready to be written or used in memory."""

    name: str
    """Registry name, also the stem of the written files."""
    logs: RoutingLogs
    """One record per distinct query, with every model's outcome."""
    models: tuple[ModelSpec, ...]
    """The pool that produced the logs, each with explicit prices."""
    notes: str
    """What the conversion dropped, merged or assumed, so results built on it can say so."""


def shared_data_dir() -> Path:
    """Folder holding the source data sets, one sub-folder per registry name.

    ``$ECCOS_SHARED_DATA`` wins so tests and scripts can point elsewhere; otherwise it is the ``shared/data``
    folder next to the repository (the layout of the development checkout).
    """
    override = os.environ.get(SHARED_DATA_ENV)
    if override:
        return Path(override).expanduser()
    repo_root = Path(__file__).resolve().parent.parent.parent
    return (repo_root / ".." / "shared" / "data").resolve()


def require_dir(source_dir: str | Path) -> Path:
    """``source_dir`` as a Path, or a FileNotFoundError that names it (before any file is opened)."""
    path = Path(source_dir)
    if not path.is_dir():
        raise FileNotFoundError(
            f"source data folder {path} does not exist; point to the copied data set "
            f"(or set ${SHARED_DATA_ENV} to the folder that holds it)"
        )
    return path


def require_file(path: Path) -> Path:
    """``path``, or a FileNotFoundError naming the file the data set is expected to contain."""
    if not path.is_file():
        raise FileNotFoundError(f"expected data file {path} is missing; the source folder looks incomplete")
    return path


def unit_score(value: Any, where: str) -> float | None:
    """A logged score as a float in [0, 1]; ``None`` when it was not logged (missing, empty or NaN).

    Missing scores are dropped per model rather than guessed; a score outside [0, 1] means the source is not
    what the converter expects, so it stops with the location instead of writing a wrong log.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        score = float(value)
    except (TypeError, ValueError):
        raise LogFormatError(f"{where}: score {value!r} is not a number") from None
    if math.isnan(score):
        return None
    if not 0.0 <= score <= 1.0:
        raise LogFormatError(f"{where}: score {score} lies outside [0, 1]")
    return score


__all__ = ["SHARED_DATA_ENV", "ConvertedDataset", "require_dir", "require_file", "shared_data_dir", "unit_score"]
