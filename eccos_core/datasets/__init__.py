"""Converters from published routing data sets to eccos routing logs and models files.

Each converter reads one data set in its original layout (as copied under ``shared/data/<name>/``) and returns
a :class:`ConvertedDataset`: the routing logs, the model pool with prices, and notes on every choice the
conversion made (drops, dedupes, where prices come from). :func:`convert` writes both files so that the rest
of eccos never has to know the original formats::

    from eccos_core.datasets import convert, shared_data_dir

    logs_path, models_path = convert("llmrouter-9llm", shared_data_dir() / "llmrouter-9llm", "out/")

Only ``llmrouter-9llm`` (MIT) may be redistributed; the other two carry no license, so their converted
files belong in an ignored folder (``benchmarks/data/``), never in the package.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eccos_core.errors import ConfigError, LogFormatError
from eccos_core.logs import RoutingLogs, write_logs
from eccos_core.pricing import ModelSpec, validate_pool, write_models

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


def convert(name: str, source_dir: str | Path, out_dir: str | Path) -> tuple[Path, Path]:
    """Convert one registered data set and write ``<out_dir>/<name>.jsonl.gz`` and ``<name>.models.json``.

    Args:
        name: A key of :data:`CONVERTERS`.
        source_dir: The data set's folder in its original layout.
        out_dir: Where to write; created if needed.

    Returns:
        The paths of the routing-log file and the models file.

    Raises:
        ConfigError: ``name`` is not a registered data set.
        FileNotFoundError: ``source_dir`` or one of its expected files is missing.
    """
    dataset = load_dataset(name, source_dir)
    out = Path(out_dir)
    logs_path = write_logs(dataset.logs, out / f"{name}.jsonl.gz")
    models_path = write_models(dataset.models, out / f"{name}.models.json")
    logger.info("wrote %d records and %d models of %s to %s", len(dataset.logs), len(dataset.models), name, out)
    return logs_path, models_path


def load_dataset(name: str, source_dir: str | Path) -> ConvertedDataset:
    """Run the converter registered as ``name`` on ``source_dir`` and return the result in memory."""
    converter = CONVERTERS.get(name)
    if converter is None:
        raise ConfigError(f"unknown data set {name!r}; known data sets: {sorted(CONVERTERS)}")
    dataset = converter(require_dir(source_dir))
    validate_pool(dataset.models)
    return dataset


# The converters import ConvertedDataset and the helpers above from this package, so they are imported
# only once those names exist.
from eccos_core.datasets.llmrouter import convert_llmrouter  # noqa: E402
from eccos_core.datasets.routerbench import convert_routerbench  # noqa: E402
from eccos_core.datasets.routerdc import convert_routerdc  # noqa: E402

CONVERTERS: dict[str, Callable[[Path], ConvertedDataset]] = {
    "llmrouter-9llm": convert_llmrouter,
    "routerbench-routerdc-subset": convert_routerbench,
    "routerdc-7llm": convert_routerdc,
}
"""Registry of data-set name → converter taking the data set's source folder."""

__all__ = [
    "CONVERTERS",
    "SHARED_DATA_ENV",
    "ConvertedDataset",
    "convert",
    "load_dataset",
    "shared_data_dir",
]
