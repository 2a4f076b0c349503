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
from collections.abc import Callable
from pathlib import Path

from eccos_core.datasets.base import (
    SHARED_DATA_ENV,
    ConvertedDataset,
    require_dir,
    require_file,
    shared_data_dir,
    unit_score,
)
from eccos_core.datasets.llmrouter import convert_llmrouter
from eccos_core.datasets.routerbench import convert_routerbench
from eccos_core.datasets.routerdc import convert_routerdc
from eccos_core.errors import ConfigError
from eccos_core.logs import write_logs
from eccos_core.pricing import validate_pool, write_models

logger = logging.getLogger(__name__)


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
    "require_dir",
    "require_file",
    "shared_data_dir",
    "unit_score",
]
