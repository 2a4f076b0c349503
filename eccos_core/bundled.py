"""Default routing data shipped inside the package, so eccos works before a user has logs of their own.

The bundle is LLMRouter's default routing data (MIT, Copyright (c) 2024 U Lab @UIUC; see
``eccos_core/data/LICENSE-llmrouter-9llm.md``): 5,989 queries on 14 tasks scored for 9 NVIDIA-hosted models,
with the models' list prices. It logs scores only, no token counts or costs. Regenerate it with
``python benchmarks/convert_data.py --bundle``. The queries' embeddings ship beside it
(:data:`~eccos_core.predictors.encoder.SHIPPED_EMBEDDINGS`, rewritten by :func:`write_bundled_embeddings`), so
fitting on the bundled logs embeds nothing.
"""

from __future__ import annotations

from pathlib import Path

from eccos_core.logs import RoutingLogs, load_logs
from eccos_core.pricing import ModelSpec, load_models

BUNDLED_NAME = "llmrouter-9llm"
"""Registry name (:data:`eccos_core.datasets.CONVERTERS`) of the bundled data set."""
DATA_DIR = Path(__file__).resolve().parent / "data"
BUNDLED_LOGS: Path = DATA_DIR / f"{BUNDLED_NAME}.jsonl.gz"
"""Routing logs of the bundled data set."""
BUNDLED_MODELS: Path = DATA_DIR / f"{BUNDLED_NAME}.models.json"
"""Models file (names, LiteLLM ids, prices) of the bundled data set."""


def bundled_logs() -> RoutingLogs:
    """The bundled routing logs, read fresh on each call (a caller may keep or drop them as it likes)."""
    return load_logs(BUNDLED_LOGS)


def bundled_models() -> tuple[ModelSpec, ...]:
    """The bundled model pool, with the prices LLMRouter lists for each model."""
    return load_models(BUNDLED_MODELS)


def write_bundled_embeddings() -> Path:
    """Embed every bundled query afresh and write the table the encoder looks texts up in."""
    from eccos_core.predictors.encoder import SHIPPED_EMBEDDINGS, shipped_embeddings, write_embeddings

    path = write_embeddings(bundled_logs().queries, SHIPPED_EMBEDDINGS)
    shipped_embeddings.cache_clear()
    return path
