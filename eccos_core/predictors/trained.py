"""Trained predictor (the paper's training-based variant): a small network on frozen MiniLM embeddings.

Each query is embedded once with all-MiniLM-L6-v2 (the encoder stays frozen: on two CPU cores fine-tuning even
its top layer costs a full transformer pass per query and epoch, which the measured gain did not repay; see
``benchmarks/results/predictors.txt``). The embedding and two prompt-length features go through a shared trunk
that feeds three heads:

* capability: one logit per model, ``sigmoid`` = p(success), trained with binary cross-entropy on ``score``
  (fractional scores are soft labels; a missing outcome is masked out);
* output length: per model, ``log1p(output_tokens)`` regressed with squared error; the prediction is the
  log-normal mean ``exp(mu + s²/2) - 1`` (``s²`` the out-of-fold residual variance), because cost is linear in
  tokens and the median would undercharge long answers. Models with no logged length get their logged mean;
* task (only when the logs carry tasks): an auxiliary softmax, a training signal only (queries are routed
  without a task label), which pushes the trunk to separate the kinds of work the models differ on.

``out_of_fold`` comes from K-fold cross-fitting: each fold's networks are trained (with early stopping on a
validation split cut from its own training folds) without the fold they predict. A fold trains
``TrainConfig.members`` networks (3 for this predictor), each with its own seed and validation split, and
predicts their mean p(success): averaging seeds lowers the variance that a few thousand noisy outcomes leave in
one network (on the three benchmark sets, against one network per fold: out-of-fold pooled AUROC +0.002 to
+0.005 and Brier -0.0006 to -0.002; on the held-out splits, already averaged over the folds, less). The
K × members networks are kept and averaged at :meth:`predict` time, so no final fit is needed and new queries
get the whole ensemble. Weights are rounded to float16 after training (``TrainConfig.float16``; p(success)
moves by under 1e-4) and saved as safetensors in float16, with a JSON manifest; nothing is pickled.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from eccos_core.errors import InputError, PredictorStateError
from eccos_core.logs import RoutingLogs
from eccos_core.predictors.base import Prediction, Predictor, read_manifest, register, write_manifest
from eccos_core.predictors.encoder import ENCODER_NAME, SentenceEncoder

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

_WEIGHTS = "weights.safetensors"
_RIDGE = 1.0
"""L2 penalty of the closed-form length layer (trunk features are O(1), thousands of rows per model)."""
_OOF = "out_of_fold.safetensors"


# ------------------------------------------------------------------------------------------ embeddings
class CachedEncoder(SentenceEncoder):
    """A :class:`SentenceEncoder` that reuses embeddings it has already computed.

    Embedding dominates fitting on CPUs, and the same queries are embedded again and again: by both parts of the
    fused predictor, at fit and again at evaluation, by every predictor a benchmark compares. Entries loaded
    with :meth:`load` (or added while ``remember`` is on) are kept; others only inside :meth:`remembering`, so a
    long-running router does not grow a cache of every query it has seen.
    """

    def __init__(self, base: SentenceEncoder | None = None, *, remember: bool = False) -> None:
        """Wrap ``base`` (default: all-MiniLM-L6-v2 from the installed package); ``remember`` keeps everything."""
        base = base if base is not None else SentenceEncoder()
        super().__init__(base.max_seq_length, base.batch_size, base.dtype)
        self.base = base
        self.remember = remember
        self._memo: dict[str, np.ndarray] = {}
        self._kept: set[str] = set()
        self._depth = 0

    def __len__(self) -> int:
        return len(self._memo)

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """Embed ``texts``, computing only those not seen before (see :meth:`SentenceEncoder.encode`)."""
        texts = list(texts)
        if not texts:
            return self.base.encode([])
        missing = [t for t in dict.fromkeys(texts) if t not in self._memo]
        fresh: dict[str, np.ndarray] = {}
        if missing:
            fresh = dict(zip(missing, self.base.encode(missing, show_progress=show_progress), strict=True))
            if self.remember or self._depth:
                self._memo.update(fresh)
                if self.remember:
                    self._kept.update(fresh)
        return np.stack([fresh[t] if t in fresh else self._memo[t] for t in texts]).astype(np.float32)

    @contextmanager
    def remembering(self) -> Iterator[CachedEncoder]:
        """Keep every embedding computed inside the block, and forget the new ones when it ends."""
        self._depth += 1
        try:
            yield self
        finally:
            self._depth -= 1
            if self._depth == 0:
                self._memo = {t: v for t, v in self._memo.items() if t in self._kept}

    def save(self, prefix: str | Path) -> Path:
        """Write the kept embeddings to ``<prefix>.npy`` and their texts to ``<prefix>.json``."""
        prefix = Path(prefix)
        texts = sorted(self._kept)
        vectors = np.stack([self._memo[t] for t in texts]) if texts else np.zeros((0, 384), np.float32)
        np.save(prefix.with_name(prefix.name + ".npy"), vectors.astype(np.float32))
        info = {"encoder": ENCODER_NAME, "dtype": self.resolved_dtype, "max_seq_length": self.max_seq_length}
        prefix.with_name(prefix.name + ".json").write_text(json.dumps({**info, "texts": texts}), encoding="utf-8")
        return prefix

    @classmethod
    def load(cls, prefix: str | Path, base: SentenceEncoder | None = None, *, remember: bool = True) -> CachedEncoder:
        """Read embeddings written by :meth:`save`; refuses a cache made by another encoder or precision."""
        prefix = Path(prefix)
        info = json.loads(prefix.with_name(prefix.name + ".json").read_text(encoding="utf-8"))
        vectors = np.load(prefix.with_name(prefix.name + ".npy"), allow_pickle=False)
        encoder = cls(base, remember=remember)
        if info.get("encoder") != ENCODER_NAME or info.get("dtype") != encoder.resolved_dtype:
            raise PredictorStateError(
                f"embedding cache {prefix} was made by {info.get('encoder')} in {info.get('dtype')}, not "
                f"{ENCODER_NAME} in {encoder.resolved_dtype}: delete it and embed again"
            )
        if len(info["texts"]) != len(vectors):
            raise PredictorStateError(
                f"embedding cache {prefix}: {len(vectors)} vectors for {len(info['texts'])} texts"
            )
        encoder._memo = dict(zip(info["texts"], vectors, strict=True))
        encoder._kept = set(encoder._memo)
        return encoder


def prompt_features(queries: Sequence[str]) -> np.ndarray:
    """``log1p`` of characters and words per prompt: known before routing, and long prompts are harder."""
    return np.array([[math.log1p(len(q)), math.log1p(len(q.split()))] for q in queries], dtype=np.float32)


def pooled_auroc(quality: np.ndarray, scores: np.ndarray) -> float:
    """AUROC of p(success) over every (query, model) pair with an outcome, scores binarized at 0.5."""
    from sklearn.metrics import roc_auc_score

    seen = ~np.isnan(scores)
    labels = scores[seen] >= 0.5
    if labels.all() or not labels.any():
        return float("nan")
    return float(roc_auc_score(labels, quality[seen]))


# ------------------------------------------------------------------------------------------ training
@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of a neural predictor (saved in its manifest)."""

    hidden: int = 256
    """Width of the trunk (the MLP baseline: of each model's MLP; matrix factorisation: the latent size)."""
    dropout: float = 0.5
    """Dropout on the input and after each trunk layer (0.5 beat 0.1-0.3 out of fold on llmrouter-9llm)."""
    lr: float = 1e-3
    """AdamW learning rate."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    batch_size: int = 128
    """Queries per optimizer step."""
    max_epochs: int = 100
    """Epochs per fold at most; early stopping usually ends far sooner."""
    patience: int = 8
    """Epochs without a better validation loss before a fold stops (its best epoch is kept)."""
    val_frac: float = 0.1
    """Share of each fold's training queries held out for early stopping."""
    folds: int = 5
    """Cross-fitting folds."""
    members: int = 1
    """Networks per fold, each with its own seed and early-stopping split; the fold predicts their mean."""
    float16: bool = False
    """Round each trained network's weights to float16 (and save them so: half the bytes)."""
    length_weight: float = 0.25
    """Weight of the log-length loss next to the capability loss."""
    task_weight: float = 0.1
    """Weight of the auxiliary task-classification loss (training only)."""
    seed: int = 0
    """Seeds folds, initialisation, shuffling and dropout: the same seed gives the same predictor."""


@dataclass
class _Tensors:
    """Training data on the training device."""

    x: torch.Tensor
    scores: torch.Tensor
    score_mask: torch.Tensor
    log_len: torch.Tensor
    len_mask: torch.Tensor
    task: torch.Tensor


def _device(requested: str | None) -> str:
    import torch

    return requested or ("cuda" if torch.cuda.is_available() else "cpu")


@contextmanager
def _cpu_threads(threads: int | None) -> Iterator[None]:
    """Run torch on ``threads`` CPU threads inside the block, restoring the process setting after.

    These networks are too small to gain from intra-op parallelism, and on a busy machine OpenMP's spinning
    threads fight over the cores: on two shared cores one thread trained 40x faster than two (measured).
    """
    import torch

    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class NeuralPredictor(Predictor):
    """Shared machinery of the torch predictors: features, cross-fitting, early stopping, persistence.

    Subclasses say which inputs and heads they use and build their network as a ``torch.nn.ModuleDict`` with a
    :meth:`_forward`; everything else (out-of-fold predictions, the fold ensemble, safetensors) is here once.
    """

    uses_prompt_length: ClassVar[bool] = False
    """Append :func:`prompt_features` to the embedding."""
    uses_task: ClassVar[bool] = False
    """Train an auxiliary task head when the logs carry tasks."""
    default_config: ClassVar[TrainConfig] = TrainConfig()

    def __init__(
        self,
        config: TrainConfig | None = None,
        *,
        encoder: SentenceEncoder | None = None,
        show_progress: bool = False,
        device: str | None = None,
        threads: int | None = 1,
        **overrides: Any,
    ) -> None:
        """Configure the predictor; torch is not imported and nothing is embedded until :meth:`fit`.

        Args:
            config: Hyper-parameters; default the class's :attr:`default_config`.
            encoder: Sentence encoder; default all-MiniLM-L6-v2 from the installed package.
            show_progress: Progress bars (stderr) for embedding and for each fold's epochs, with the loss and
                validation AUROC; the CLI turns them on.
            device: Torch device; default ``"cuda"`` when available, else ``"cpu"``.
            threads: Torch CPU threads while training and predicting (``None``: leave torch's setting).
            **overrides: Fields of :class:`TrainConfig` to change (``max_epochs=20``, ``seed=1``, ...).
        """
        self.config = replace(config or self.default_config, **overrides)
        if self.config.folds < 2:
            raise ValueError(f"folds must be at least 2 (out-of-fold predictions need them), got {self.config.folds}")
        self.encoder = encoder if encoder is not None else SentenceEncoder()  # an empty CachedEncoder is falsy
        self.show_progress = show_progress
        self.device = device
        self.threads = threads
        self.models: tuple[str, ...] = ()
        self.out_of_fold: Prediction | None = None
        self.history: list[dict[str, float]] = []
        """Per fold: best epoch, its validation loss and AUROC, seconds spent."""
        self._nets: list[torch.nn.ModuleDict] = []
        self._tasks: tuple[str, ...] = ()
        self._mean = np.zeros(0, np.float32)
        self._std = np.ones(0, np.float32)
        self._log_len_var = np.zeros(0)
        self._log_len_cap = np.zeros(0)
        self._token_mean = np.zeros(0)
        self._has_length = np.zeros(0, bool)

    # ---------------------------------------------------------------------------------- subclass hooks
    def _network(self, n_in: int, n_models: int, n_tasks: int) -> torch.nn.ModuleDict:
        """The untrained network for ``n_in`` features, ``n_models`` models and ``n_tasks`` tasks."""
        raise NotImplementedError

    def _forward(
        self, net: torch.nn.ModuleDict, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Capability logits (N×M), predicted ``log1p`` lengths (N×M or None), task logits (or None)."""
        raise NotImplementedError

    # ------------------------------------------------------------------------------------------ fitting
    def fit(self, logs: RoutingLogs) -> NeuralPredictor:
        """Embed the logs, cross-fit the fold networks and fill :attr:`out_of_fold`."""
        import torch

        cfg = self.config
        if len(logs) < 4 * cfg.folds:
            raise InputError(f"need at least {4 * cfg.folds} logged queries to train {self.kind!r}, got {len(logs)}")
        models = tuple(logs.models)
        embeddings = self.encoder.encode(logs.queries, show_progress=self.show_progress)
        raw = self._raw_features(logs.queries, embeddings)
        self._mean, self._std = raw.mean(0), raw.std(0) + 1e-6
        scores = logs.scores(models)
        tokens = logs.matrix("output_tokens", models)
        self._fit_lengths(tokens)
        self._tasks = tuple(sorted({t for t in logs.tasks if t is not None})) if self.uses_task else ()
        task_index = {t: i for i, t in enumerate(self._tasks)}
        task = np.array([task_index.get(t, -1) if t is not None else -1 for t in logs.tasks])
        device = _device(self.device)
        log_len = np.log1p(tokens)
        data = _Tensors(
            x=torch.from_numpy((raw - self._mean) / self._std).float().to(device),
            scores=torch.from_numpy(np.nan_to_num(scores)).float().to(device),
            score_mask=torch.from_numpy(~np.isnan(scores)).float().to(device),
            log_len=torch.from_numpy(np.nan_to_num(log_len)).float().to(device),
            len_mask=torch.from_numpy(~np.isnan(log_len)).float().to(device),
            task=torch.from_numpy(task).long().to(device),
        )
        self.models = models
        with _cpu_threads(self.threads):
            oof_quality, oof_mu = self._cross_fit(data, len(models))
        self._log_len_var = np.zeros(len(models))
        if oof_mu is not None:
            with np.errstate(invalid="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # models without lengths: all-NaN columns
                var = np.nanmean((oof_mu - log_len) ** 2, axis=0)
            self._log_len_var = np.where(self._has_length, np.nan_to_num(var), 0.0)
        self.out_of_fold = Prediction(models, oof_quality, self._tokens_from(oof_mu, len(logs)))
        return self

    def _raw_features(self, queries: Sequence[str], embeddings: np.ndarray) -> np.ndarray:
        if not self.uses_prompt_length:
            return embeddings.astype(np.float32)
        return np.hstack([embeddings, prompt_features(queries)]).astype(np.float32)

    def _fit_lengths(self, tokens: np.ndarray) -> None:
        self._has_length = (~np.isnan(tokens)).any(axis=0)
        filled = np.where(np.isnan(tokens), 0.0, tokens)
        counts = (~np.isnan(tokens)).sum(0)
        self._token_mean = np.where(counts > 0, filled.sum(0) / np.maximum(counts, 1), 0.0)
        # the length head extrapolates in log space; cap it at twice the longest logged answer
        self._log_len_cap = np.log1p(2.0 * filled.max(0))

    def _tokens_from(self, mu: np.ndarray | None, n: int) -> np.ndarray:
        """Expected tokens of ``n`` queries from predicted ``log1p`` lengths; else each model's logged mean."""
        if mu is None or not self._has_length.any():
            return np.broadcast_to(self._token_mean, (n, len(self.models))).copy()
        mean = np.expm1(np.clip(mu, 0.0, self._log_len_cap) + self._log_len_var / 2.0)
        return np.where(self._has_length, mean, self._token_mean)

    def _cross_fit(self, data: _Tensors, n_models: int) -> tuple[np.ndarray, np.ndarray | None]:
        import torch

        cfg = self.config
        n = len(data.x)
        fold_of = np.random.default_rng(cfg.seed).permutation(n) % cfg.folds
        oof_quality = np.zeros((n, n_models))
        oof_mu: np.ndarray | None = None
        self._nets, self.history = [], []
        for k in range(cfg.folds):
            held = np.flatnonzero(fold_of == k)
            held_t = torch.from_numpy(held).to(data.x.device)
            for member in range(cfg.members):
                index = k + member * cfg.folds  # member 0 keeps the seeds of a single-member predictor
                rest = np.random.default_rng(cfg.seed + 1 + index).permutation(np.flatnonzero(fold_of != k))
                n_val = max(1, round(cfg.val_frac * len(rest)))
                net, record = self._train_fold(data, rest[n_val:], rest[:n_val], index)
                with torch.no_grad():
                    logit, mu, _ = self._forward(net, data.x[held_t])
                oof_quality[held] += torch.sigmoid(logit.double()).cpu().numpy() / cfg.members
                if mu is not None:
                    oof_mu = np.zeros((n, n_models)) if oof_mu is None else oof_mu
                    oof_mu[held] += mu.double().cpu().numpy() / cfg.members
                self._nets.append(net)
                self.history.append({"fold": k, "member": member, **record})
        seconds = sum(h["seconds"] for h in self.history)
        logger.info("%s: trained %d networks in %.1f s", self.kind, len(self._nets), seconds)
        return oof_quality, oof_mu

    def _train_fold(
        self, data: _Tensors, train_rows: np.ndarray, val_rows: np.ndarray, fold: int
    ) -> tuple[torch.nn.ModuleDict, dict[str, float]]:
        """Train one fold's network with early stopping on ``val_rows``; returns it at its best epoch."""
        import torch
        from tqdm.auto import tqdm

        cfg = self.config
        started = time.perf_counter()
        torch.manual_seed(cfg.seed * 7919 + fold)
        net = self._network(data.x.shape[1], data.scores.shape[1], len(self._tasks)).to(data.x.device)
        optimizer = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        shuffle = torch.Generator().manual_seed(cfg.seed * 7919 + fold)
        train_t = torch.from_numpy(train_rows).to(data.x.device)
        val_t = torch.from_numpy(val_rows).to(data.x.device)
        val_scores = data.scores[val_t].cpu().numpy()
        val_scores[data.score_mask[val_t].cpu().numpy() == 0] = np.nan
        best: dict[str, float] = {"epoch": -1, "val_loss": math.inf, "val_auroc": math.nan}
        best_state: dict[str, torch.Tensor] = {}
        desc = f"{self.kind} network {fold + 1}/{cfg.folds * cfg.members}"
        with tqdm(total=cfg.max_epochs, desc=desc, disable=not self.show_progress, leave=False) as bar:
            for epoch in range(cfg.max_epochs):
                net.train()
                order = train_t[torch.randperm(len(train_t), generator=shuffle).to(data.x.device)]
                for start in range(0, len(order), cfg.batch_size):
                    loss = self._loss(net, data, order[start : start + cfg.batch_size], train=True)
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                net.eval()
                with torch.no_grad():
                    val_loss = float(self._loss(net, data, val_t, train=False))
                    logit = self._forward(net, data.x[val_t])[0].cpu().numpy()
                auroc = pooled_auroc(logit, val_scores)
                bar.update(1)
                bar.set_postfix(loss=f"{float(loss.detach()):.4f}", val_auroc=f"{auroc:.4f}")
                if val_loss < best["val_loss"] - 1e-5:
                    best = {"epoch": epoch, "val_loss": val_loss, "val_auroc": auroc}
                    best_state = copy.deepcopy(net.state_dict())
                elif epoch - best["epoch"] >= cfg.patience:
                    break
        net.load_state_dict(best_state)
        net.eval()
        self._finish_fold(net, data, torch.from_numpy(train_rows).to(data.x.device))
        if cfg.float16:  # before the out-of-fold predictions, so they come from the weights that are saved
            with torch.no_grad():
                for value in net.state_dict().values():
                    value.copy_(value.half())
        return net, {**best, "epochs_run": epoch + 1, "seconds": time.perf_counter() - started}

    def _finish_fold(self, net: torch.nn.ModuleDict, data: _Tensors, rows: torch.Tensor) -> None:
        """Adjust a fold's network after early stopping, on its training ``rows`` (default: nothing)."""

    def _loss(self, net: torch.nn.ModuleDict, data: _Tensors, rows: torch.Tensor, *, train: bool) -> torch.Tensor:
        """Masked BCE on scores; in training plus the weighted log-length error and the task loss.

        Validation (early stopping) looks at the capability loss alone: it is what routing depends on, and the
        length error of a dropout network jumps between epochs by more than the capability loss moves.
        """
        import torch.nn.functional as F

        logit, mu, task_logit = self._forward(net, data.x[rows])
        mask = data.score_mask[rows]
        bce = F.binary_cross_entropy_with_logits(logit, data.scores[rows], weight=mask, reduction="sum")
        loss = bce / mask.sum().clamp(min=1.0)
        if train and mu is not None:
            len_mask = data.len_mask[rows]
            if float(len_mask.sum()) > 0:
                err = ((mu - data.log_len[rows]) ** 2 * len_mask).sum() / len_mask.sum()
                loss = loss + self.config.length_weight * err
        if train and task_logit is not None:
            task = data.task[rows]
            known = task >= 0
            if bool(known.any()):
                loss = loss + self.config.task_weight * F.cross_entropy(task_logit[known], task[known])
        return loss

    # --------------------------------------------------------------------------------------- predicting
    def predict(self, queries: Sequence[str]) -> Prediction:
        """Average the networks' p(success) and log-lengths for each query."""
        if not self._nets:
            raise PredictorStateError(f"{type(self).__name__} is not fitted: call fit(logs) or load(dir) first")
        if isinstance(queries, str):
            raise InputError("predict takes a sequence of query strings, not a single string")
        m = len(self.models)
        if not queries:
            return Prediction(self.models, np.zeros((0, m)), np.zeros((0, m)))
        return self.predict_embedded(queries, self.encoder.encode(queries))

    def predict_embedded(self, queries: Sequence[str], embeddings: np.ndarray) -> Prediction:
        """:meth:`predict` from embeddings already computed (by the same encoder) for ``queries``."""
        import torch

        raw = self._raw_features(queries, embeddings)
        device = next(self._nets[0].parameters()).device
        x = torch.from_numpy((raw - self._mean) / self._std).float().to(device)
        quality = np.zeros((len(queries), len(self.models)))
        mu_sum: np.ndarray | None = None
        with torch.no_grad(), _cpu_threads(self.threads):
            for net in self._nets:
                logit, mu, _ = self._forward(net, x)
                quality += torch.sigmoid(logit).double().cpu().numpy()
                if mu is not None:
                    mu_sum = mu.double().cpu().numpy() + (0.0 if mu_sum is None else mu_sum)
        k = len(self._nets)
        mu_mean = None if mu_sum is None else mu_sum / k
        return Prediction(self.models, np.clip(quality / k, 0.0, 1.0), self._tokens_from(mu_mean, len(queries)))

    # ------------------------------------------------------------------------------------- persistence
    def save(self, path: str | Path) -> Path:
        """Write the fold networks as safetensors and the rest as JSON (no pickle); the manifest goes last."""
        import torch
        from safetensors.numpy import save_file

        if not self._nets:
            raise PredictorStateError(f"cannot save an unfitted {type(self).__name__}: call fit(logs) first")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        dtype = torch.float16 if self.config.float16 else torch.float32  # float16 weights: already rounded
        tensors = {
            f"fold{k}.{name}": value.detach().to(dtype).cpu().numpy()
            for k, net in enumerate(self._nets)
            for name, value in net.state_dict().items()
        }
        tensors["feature_mean"], tensors["feature_std"] = self._mean, self._std
        save_file(tensors, str(path / _WEIGHTS))
        files = [_WEIGHTS]
        if self.out_of_fold is not None:
            oof = {"quality": self.out_of_fold.quality, "output_tokens": self.out_of_fold.output_tokens}
            save_file({k: np.ascontiguousarray(v, dtype=np.float64) for k, v in oof.items()}, str(path / _OOF))
            files.append(_OOF)
        write_manifest(
            path,
            self.kind,
            checksums=files,
            models=list(self.models),
            config=asdict(self.config),
            n_features=len(self._mean),
            folds=len(self._nets),
            tasks=list(self._tasks),
            has_length=self._has_length.tolist(),
            token_mean=self._token_mean.tolist(),
            log_len_var=self._log_len_var.tolist(),
            log_len_cap=self._log_len_cap.tolist(),
            history=self.history,
            encoder={"name": ENCODER_NAME, "max_seq_length": self.encoder.max_seq_length, "dtype": self.encoder.dtype},
        )
        return path

    @classmethod
    def load(cls, path: str | Path, models: Sequence[str] | None = None) -> NeuralPredictor:
        """Read a predictor written by :meth:`save`.

        Args:
            path: The saved directory.
            models: The pool it must have been trained for (same names, same order); ``None`` accepts any.

        Raises:
            PredictorStateError: Files missing, another kind or encoder, another pool, or weights whose shapes
                do not fit the manifest.
        """
        path = Path(path)
        manifest = read_manifest(path, (_WEIGHTS,))
        if manifest.get("kind") != cls.kind:
            raise PredictorStateError(f"{path} holds a {manifest.get('kind')!r} predictor, not {cls.kind!r}")
        encoder_info = manifest.get("encoder", {})
        if encoder_info.get("name") != ENCODER_NAME:
            raise PredictorStateError(
                f"{path} was trained on {encoder_info.get('name')!r} embeddings; retrain it with {ENCODER_NAME}"
            )
        saved = tuple(manifest["models"])
        if models is not None and tuple(models) != saved:
            raise PredictorStateError(
                f"{path} was trained for the pool {list(saved)}, not {list(models)}: retrain it on logs of this pool "
                "(eccos train)"
            )
        known = {f.name for f in fields(TrainConfig)}
        predictor = cls(
            TrainConfig(**{k: v for k, v in manifest["config"].items() if k in known}),
            encoder=SentenceEncoder(
                max_seq_length=int(encoder_info.get("max_seq_length", 256)),
                dtype=str(encoder_info.get("dtype", "auto")),
            ),
        )
        predictor._restore(path, manifest, saved)
        return predictor

    def _restore(self, path: Path, manifest: dict[str, Any], models: tuple[str, ...]) -> None:
        import torch
        from safetensors.numpy import load_file

        m = len(models)
        self.models = models
        self._tasks = tuple(manifest.get("tasks", ()))
        self._has_length = np.array(manifest["has_length"], dtype=bool)
        self._token_mean = np.array(manifest["token_mean"], dtype=float)
        self._log_len_var = np.array(manifest["log_len_var"], dtype=float)
        self._log_len_cap = np.array(manifest["log_len_cap"], dtype=float)
        self.history = list(manifest.get("history", []))
        if any(len(v) != m for v in (self._has_length, self._token_mean, self._log_len_var, self._log_len_cap)):
            raise PredictorStateError(f"{path}: per-model arrays do not match the {m} models of the manifest")
        tensors = load_file(str(path / _WEIGHTS))
        self._mean, self._std = tensors.pop("feature_mean"), tensors.pop("feature_std")
        n_in = int(manifest["n_features"])
        if self._mean.shape != (n_in,) or self._std.shape != (n_in,):
            raise PredictorStateError(f"{path}: feature statistics do not match {n_in} features; save it again")
        self._nets = []
        device = _device(self.device)
        for k in range(int(manifest["folds"])):
            prefix = f"fold{k}."
            state = {  # float16 weights are widened back: the networks compute in float32
                name[len(prefix) :]: torch.from_numpy(v).float()
                for name, v in tensors.items()
                if name.startswith(prefix)
            }
            net = self._network(n_in, m, len(self._tasks))
            try:
                net.load_state_dict(state, strict=True)
            except RuntimeError as exc:
                raise PredictorStateError(
                    f"{path}: fold {k} weights do not fit a {self.kind!r} network for {m} models and {n_in} features "
                    f"(was the manifest edited, or the pool changed?): {str(exc).splitlines()[0]}"
                ) from None
            self._nets.append(net.to(device).eval())
        if (path / _OOF).is_file():
            oof = load_file(str(path / _OOF))
            if oof["quality"].shape[1:] != (m,) or oof["output_tokens"].shape != oof["quality"].shape:
                raise PredictorStateError(f"{path}: out-of-fold predictions do not match the {m} models")
            self.out_of_fold = Prediction(models, oof["quality"], oof["output_tokens"])


@register
class TrainedPredictor(NeuralPredictor):
    """Shared trunk on the query embedding and prompt length, with capability, length and task heads.

    Example:
        >>> from eccos_core.bundled import bundled_logs
        >>> predictor = TrainedPredictor(seed=0).fit(bundled_logs())  # doctest: +SKIP
        >>> predictor.predict(["What is 17 * 23?"]).quality.shape  # doctest: +SKIP
        (1, 9)
    """

    kind = "trained"
    uses_prompt_length = True
    uses_task = True
    default_config = TrainConfig(members=3, float16=True)
    """Three networks per fold (out of fold, better than one on all three benchmark sets), float16 weights."""

    def _network(self, n_in: int, n_models: int, n_tasks: int) -> torch.nn.ModuleDict:
        from torch import nn

        h, p = self.config.hidden, self.config.dropout
        layers = nn.ModuleDict(
            {
                "trunk": nn.Sequential(
                    nn.Dropout(p),
                    nn.Linear(n_in, h),
                    nn.GELU(),
                    nn.Dropout(p),
                    nn.Linear(h, h),
                    nn.GELU(),
                    nn.Dropout(p),
                ),
                "capability": nn.Linear(h, n_models),
                "length": nn.Linear(h, n_models),
            }
        )
        if n_tasks > 1:
            layers["task"] = nn.Linear(h, n_tasks)
        return layers

    def _forward(
        self, net: torch.nn.ModuleDict, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        h = net["trunk"](x)
        task = net["task"](h) if "task" in net else None
        mu = net["length"](h) if self._has_length.any() else None
        return net["capability"](h), mu, task

    def _finish_fold(self, net: torch.nn.ModuleDict, data: _Tensors, rows: torch.Tensor) -> None:
        """Refit the length layer in closed form (ridge, per model) on the trunk's inference-mode features.

        The length loss shapes the trunk during training, but a regression head trained under dropout is
        biased once dropout is off (its targets, log-lengths around 5, are far from 0); a least-squares refit on
        the features the head will see at prediction time removes that bias.
        """
        import torch

        if not self._has_length.any():
            return
        with torch.no_grad():
            h = net["trunk"](data.x[rows]).double()
            h = torch.cat([h, torch.ones(len(h), 1, dtype=h.dtype, device=h.device)], dim=1)
            ridge = _RIDGE * torch.eye(h.shape[1], dtype=h.dtype, device=h.device)
            ridge[-1, -1] = 0.0  # the intercept is not shrunk
            for j in np.flatnonzero(self._has_length).tolist():
                seen = data.len_mask[rows, j] > 0
                if int(seen.sum()) < 2:
                    continue
                a, y = h[seen], data.log_len[rows, j][seen].double()
                w = torch.linalg.solve(a.T @ a + ridge, a.T @ y)
                net["length"].weight[j] = w[:-1].float()
                net["length"].bias[j] = w[-1].float()
