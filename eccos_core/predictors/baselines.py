"""Published learned routers, rebuilt in the predictor protocol so they can be compared on equal terms.

Both see only the frozen MiniLM embedding (no prompt length, no task signal, no length head: output tokens are
each model's logged mean), and both get the same cross-fitting, early stopping and fold ensemble as
:class:`~eccos_core.predictors.trained.TrainedPredictor`, so a difference between them measures the network
shape alone.

* ``mlp``: RouterBench's MLP router (Hu et al., arXiv 2403.12031): one independent MLP per model predicting
  that model's success from the query embedding (scikit-learn's default width, 100 hidden units).
* ``mf``: RouteLLM's matrix-factorisation router (Ong et al., arXiv 2406.18665), as EmbedLLM uses it pointwise:
  the query embedding is projected to a latent space, multiplied elementwise with a learned unit-length
  embedding of each model, and a shared linear classifier (plus a bias per model) gives the success logit.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from eccos_core.predictors.base import register
from eccos_core.predictors.trained import NeuralPredictor, TrainConfig

if TYPE_CHECKING:
    import torch


@register
class MLPPredictor(NeuralPredictor):
    """One MLP per model on the frozen query embedding (RouterBench's MLP router)."""

    kind = "mlp"
    default_config = TrainConfig(hidden=100, dropout=0.0)
    """scikit-learn's MLPClassifier defaults, as RouterBench used them: 100 hidden units, no dropout."""

    def _network(self, n_in: int, n_models: int, n_tasks: int) -> torch.nn.ModuleDict:
        import torch
        from torch import nn

        h = self.config.hidden
        # every model's MLP lives in one stacked tensor so all M train in a single batched matmul
        bound_in, bound_out = 1.0 / math.sqrt(n_in), 1.0 / math.sqrt(h)
        params = nn.ParameterDict(
            {
                "w1": nn.Parameter(torch.empty(n_models, n_in, h).uniform_(-bound_in, bound_in)),
                "b1": nn.Parameter(torch.empty(n_models, h).uniform_(-bound_in, bound_in)),
                "w2": nn.Parameter(torch.empty(n_models, h).uniform_(-bound_out, bound_out)),
                "b2": nn.Parameter(torch.zeros(n_models)),
            }
        )
        return nn.ModuleDict({"mlps": params})

    def _forward(
        self, net: torch.nn.ModuleDict, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        import torch

        p = net["mlps"]
        hidden = torch.relu(torch.einsum("nd,mdh->nmh", x, p["w1"]) + p["b1"])
        return torch.einsum("nmh,mh->nm", hidden, p["w2"]) + p["b2"], None, None


@register
class MFPredictor(NeuralPredictor):
    """Query projection × learned model embedding (RouteLLM's "mf" router, pointwise as in EmbedLLM)."""

    kind = "mf"
    default_config = TrainConfig(hidden=128, dropout=0.0, lr=3e-3)
    """RouteLLM's latent size; a bilinear model learns slowly, and 3e-3 beat 1e-3 out of fold (llmrouter-9llm)."""

    def _network(self, n_in: int, n_models: int, n_tasks: int) -> torch.nn.ModuleDict:
        from torch import nn

        dim = self.config.hidden
        return nn.ModuleDict(
            {
                "project": nn.Linear(n_in, dim, bias=False),
                "models": nn.Embedding(n_models, dim),
                "classifier": nn.Linear(dim, 1, bias=False),
                "bias": nn.Embedding(n_models, 1),
            }
        )

    def _forward(
        self, net: torch.nn.ModuleDict, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        import torch.nn.functional as F

        query = net["project"](x)
        models = F.normalize(net["models"].weight, dim=1)
        logit = net["classifier"](query[:, None, :] * models[None, :, :]).squeeze(-1)
        return logit + net["bias"].weight[:, 0], None, None
