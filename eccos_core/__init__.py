"""eccos: route every LLM call to the cheapest model that will still answer it well.

The public surface: :class:`Router` plans and dispatches, :class:`ModelSpec` describes a candidate model,
:class:`RetrievalPredictor` predicts quality and output length from routing logs read by :func:`load_logs`, and
:func:`solve` is the constrained optimizer.
"""

from eccos_core.logs import load_logs
from eccos_core.optimize import solve
from eccos_core.predictors.retrieval import RetrievalPredictor
from eccos_core.pricing import ModelSpec
from eccos_core.router import Router

__all__ = ["ModelSpec", "RetrievalPredictor", "Router", "load_logs", "solve"]
__version__ = "0.1.0"
