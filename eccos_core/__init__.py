"""eccos: route every LLM call to the cheapest model that will still answer it well.

The public surface: :class:`Router` plans and dispatches, :class:`ModelSpec` describes a candidate model,
:class:`RetrievalPredictor` predicts quality and output length from routing logs read by :func:`load_logs`, and
:func:`solve` is the constrained optimizer. Names load on first use, so ``import eccos_core`` stays light (no
torch, faiss, LiteLLM or solver import until a router or predictor is used).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from eccos_core.logs import load_logs
    from eccos_core.optimize import solve
    from eccos_core.predictors.retrieval import RetrievalPredictor
    from eccos_core.pricing import ModelSpec
    from eccos_core.router import Router

_EXPORTS = {
    "ModelSpec": "eccos_core.pricing",
    "RetrievalPredictor": "eccos_core.predictors.retrieval",
    "Router": "eccos_core.router",
    "load_logs": "eccos_core.logs",
    "solve": "eccos_core.optimize",
}

__all__ = ["ModelSpec", "RetrievalPredictor", "Router", "load_logs", "solve"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'eccos_core' has no attribute {name!r}")
