"""Offline evaluation of routing policies on held-out routing logs.

Every policy picks one model per held-out query; its *realized success* is the mean logged score of the picked
models and its *realized cost* the logged ``cost`` of those calls (or, where the logs have none, input tokens ×
input price + logged output tokens × output price). Policies:

* ``eccos``: the router: predictions, quality guard and the exact optimizer, batch by batch.
* ``per-query``: the rule of the ECCOS authors' AIOS code: per query, the cheapest model predicted ≥ α.
* ``model:<name>``: every query to one model.
* ``random``: a uniformly random model per query.
* ``best-single``: the cheapest single model whose success on the training logs reached α.
* ``knn``: RouterBench-style argmax of predicted quality − λ·cost, swept over λ.
* ``oracle``: the same optimizer given the true outcomes (the lower bound on cost at each α).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from eccos_core.logs import RoutingLogs
from eccos_core.optimize import SolveStatus, per_query, solve
from eccos_core.pricing import ModelSpec, cost_matrix, count_tokens

if TYPE_CHECKING:
    from eccos_core.router import Router

logger = logging.getLogger(__name__)

TOLERANCE = 0.01
"""Realized success may fall this far below α and still count as meeting it (1 point)."""


@dataclass
class EvalReport:
    """Results of :func:`evaluate`: every policy's points and the dataset description."""

    policies: dict[str, list[dict[str, Any]]]
    dataset: dict[str, Any]
    comparison: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON form: ``{"policies": {...}, "dataset": {...}, "comparison": [...]}``."""
        return {"policies": self.policies, "dataset": self.dataset, "comparison": self.comparison}

    def write_json(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as indented JSON."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path

    def plot(self, path: str | Path) -> Path:
        """Cost vs realized success of every policy, as a PNG."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(8, 5.5))
        singles = {k: v for k, v in self.policies.items() if k.startswith("model:")}
        for name, points in self.policies.items():
            if name in singles:
                continue
            xs = [p["cost"] for p in points]
            ys = [p["success"] for p in points]
            style = {"eccos": "o-", "oracle": "k--", "per-query": "s-", "knn": "^-", "best-single": "d-"}
            ax.plot(xs, ys, style.get(name, "x"), label=name, markersize=4)
        for name, points in singles.items():
            ax.scatter([points[0]["cost"]], [points[0]["success"]], marker="*", s=60)
            ax.annotate(name.removeprefix("model:"), (points[0]["cost"], points[0]["success"]), fontsize=6)
        ax.set_xscale("log")
        ax.set_xlabel("realized cost of the test split (USD, log scale)")
        ax.set_ylabel("realized success")
        ax.set_title(f"{self.dataset.get('name', 'routing logs')}: cost vs success")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return path


def realized_cost(logs: RoutingLogs, models: Sequence[ModelSpec], input_tokens: np.ndarray) -> np.ndarray:
    """N×M cost of each logged call: the logged ``cost`` where present, else tokens × the pool's prices."""
    names = [m.name for m in models]
    logged = logs.matrix("cost", names)
    out_tokens = np.nan_to_num(logs.matrix("output_tokens", names), nan=0.0)
    in_tokens = logs.matrix("input_tokens", names)
    in_tokens = np.where(np.isnan(in_tokens), input_tokens[:, None], in_tokens)
    computed = np.zeros_like(logged)
    for j, spec in enumerate(models):
        computed[:, j] = in_tokens[:, j] * spec.input_cost_per_token + out_tokens[:, j] * spec.output_cost_per_token
    return np.where(np.isnan(logged), computed, logged)


def default_alphas(train_success: np.ndarray, step: float = 0.02) -> list[float]:
    """α grid from the weakest single model's training success to just above the strongest one's."""
    lo = math.ceil(float(train_success.min()) / step) * step
    hi = min(1.0, float(train_success.max()) + 0.06)
    return [round(a, 4) for a in np.arange(lo, hi + 1e-9, step)]


def _batches(n: int, batch_size: int | None, seed: int) -> list[np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    size = batch_size or n
    return [order[i : i + size] for i in range(0, n, size)]


def _point(
    key: str,
    value: float | None,
    chosen: np.ndarray,
    truth: np.ndarray,
    cost: np.ndarray,
    quality: np.ndarray,
    **extra: Any,
) -> dict[str, Any]:
    """One evaluated point: realized success and cost of the chosen models, and their predicted quality."""
    rows = np.arange(len(chosen))
    point: dict[str, Any] = {
        key: value,
        "success": float(truth[rows, chosen].mean()),
        "cost": float(cost[rows, chosen].sum()),
        "predicted_quality": float(quality[rows, chosen].mean()),
    }
    point.update(extra)
    return point


_STATUS_RANK = {status.value: rank for rank, status in enumerate(SolveStatus)}


def _route_batched(
    batches: list[np.ndarray], n: int, pick: Callable[[np.ndarray], tuple[np.ndarray, str]]
) -> tuple[np.ndarray, str]:
    """Run ``pick`` on every batch; returns the chosen model of every query and the worst status of any batch."""
    chosen = np.zeros(n, dtype=int)
    statuses = []
    for rows in batches:
        chosen[rows], status = pick(rows)
        statuses.append(status)
    return chosen, max(statuses, key=_STATUS_RANK.__getitem__)


def evaluate(
    train: RoutingLogs,
    test: RoutingLogs,
    models: Sequence[ModelSpec],
    *,
    router: Router | None = None,
    alphas: Sequence[float] | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    progress: bool = False,
    name: str = "routing logs",
) -> EvalReport:
    """Fit on ``train`` (unless a fitted ``router`` is given), route ``test`` with every policy, measure.

    Args:
        train: Logs the router is fitted on (and ``best-single`` chooses from).
        test: Held-out logs; only queries with an outcome for every pool model are routed.
        models: The pool.
        router: An already fitted router over ``models`` (``eccos demo`` passes the cached default one).
        alphas: min_quality values to evaluate; default: :func:`default_alphas` over the training logs.
        batch_size: Queries routed jointly; default the whole test split as one batch.
        seed: Seeds the batch order and the ``random`` policy.
        progress: Show progress bars.
        name: Dataset name for the report.
    """
    from eccos_core.predictors.retrieval import RetrievalPredictor
    from eccos_core.router import Router

    names = [m.name for m in models]
    truth = test.scores(names)
    complete = ~np.isnan(truth).any(axis=1)
    if not complete.all():
        missing = int((~complete).sum())
        logger.warning("evaluate: %d test queries lack an outcome for some pool model; not routed", missing)
        test = test.subset(np.flatnonzero(complete))
        truth = truth[complete]
    if len(test) == 0:
        raise ValueError("no test query has an outcome for every model of the pool")
    if router is None:
        router = Router.fit(models, train, RetrievalPredictor(show_progress=progress))
    train_truth = train.scores(names)
    train_success = np.nanmean(train_truth, axis=0)
    alphas = list(alphas) if alphas is not None else default_alphas(train_success)

    counting = tqdm(test.queries, desc="counting tokens", disable=not progress)
    input_tokens = np.array([count_tokens(q) for q in counting], dtype=float)
    prediction = router.predict(test.queries)
    quality = prediction.quality
    predicted_cost = cost_matrix(router.models, input_tokens, prediction.output_tokens)
    cost = realized_cost(test, models, input_tokens)
    n, m = truth.shape
    batches = _batches(n, batch_size, seed)
    policies: dict[str, list[dict[str, Any]]] = {}

    def eccos_pick(alpha: float) -> Callable[[np.ndarray], tuple[np.ndarray, str]]:
        def pick(rows: np.ndarray) -> tuple[np.ndarray, str]:
            plan = router.plan_prediction(prediction.rows(rows), input_tokens[rows], alpha)
            return np.array([names.index(q.model) for q in plan.queries]), plan.status

        return pick

    def per_query_pick(alpha: float) -> Callable[[np.ndarray], tuple[np.ndarray, str]]:
        def pick(rows: np.ndarray) -> tuple[np.ndarray, str]:
            a = per_query(predicted_cost[rows], quality[rows], alpha)
            return a.model_index, a.status.value

        return pick

    def oracle_pick(alpha: float) -> Callable[[np.ndarray], tuple[np.ndarray, str]]:
        def pick(rows: np.ndarray) -> tuple[np.ndarray, str]:
            a = solve(cost[rows], truth[rows], alpha)
            return a.model_index, a.status.value

        return pick

    for policy, factory in (("eccos", eccos_pick), ("per-query", per_query_pick), ("oracle", oracle_pick)):
        points = []
        for alpha in tqdm(alphas, desc=policy, disable=not progress):
            chosen, status = _route_batched(batches, n, factory(alpha))
            met = bool(truth[np.arange(n), chosen].mean() >= alpha - TOLERANCE)
            points.append(_point("alpha", alpha, chosen, truth, cost, quality, status=status, met=met))
        policies[policy] = points

    for j, spec in enumerate(models):
        policies[f"model:{spec.name}"] = [_point("alpha", None, np.full(n, j), truth, cost, quality)]
    rng = np.random.default_rng(seed)
    policies["random"] = [_point("alpha", None, rng.integers(0, m, size=n), truth, cost, quality)]

    # cheapest model first, by predicted cost (prices and predicted lengths: nothing of the test outcomes)
    price_rank = np.argsort(predicted_cost.mean(axis=0))
    best_single = []
    for alpha in alphas:
        ok = [j for j in price_rank if train_success[j] >= alpha]
        if ok:
            best_single.append(_point("alpha", alpha, np.full(n, ok[0]), truth, cost, quality, model=names[ok[0]]))
    policies["best-single"] = best_single

    scale = float(np.mean(predicted_cost)) or 1.0
    knn = []
    for lam in [0.0, *np.logspace(-3, 2, 26).tolist()]:
        chosen = np.argmax(quality - lam * predicted_cost / scale, axis=1)
        knn.append(_point("lambda", float(lam), chosen, truth, cost, quality))
    policies["knn"] = knn

    dataset = {
        "name": name,
        "train_queries": len(train),
        "test_queries": n,
        "models": names,
        "batch_size": batch_size or n,
        "seed": seed,
        "train_success": dict(zip(names, map(float, train_success), strict=True)),
        "guard": router.guard.to_dict() if router.guard is not None else None,
    }
    report = EvalReport(policies, dataset)
    report.comparison = compare(report)
    return report


def _cheapest_reaching(points: list[dict[str, Any]], success: float) -> float | None:
    costs = [p["cost"] for p in points if p["success"] >= success - 1e-12]
    return min(costs) if costs else None


def compare(report: EvalReport) -> list[dict[str, Any]]:
    """For every eccos point: did it meet α, and what did the alternatives pay for the same success?"""
    singles = [p[0] for k, p in report.policies.items() if k.startswith("model:")]
    per_query_points = report.policies["per-query"]
    by_alpha = {p["alpha"]: p for p in per_query_points}
    oracle = {p["alpha"]: p for p in report.policies["oracle"]}
    rows = []
    for p in report.policies["eccos"]:
        success = p["success"]
        single = _cheapest_reaching(singles, success)
        pq_same = _cheapest_reaching(per_query_points, success)
        knn_same = _cheapest_reaching(report.policies["knn"], success)
        row = {
            "alpha": p["alpha"],
            "status": p["status"],
            "success": success,
            "met": p["met"],
            "cost": p["cost"],
            "per_query_cost_same_alpha": by_alpha[p["alpha"]]["cost"],
            "per_query_success_same_alpha": by_alpha[p["alpha"]]["success"],
            "per_query_cost_same_success": pq_same,
            "cheapest_single_same_success": single,
            "knn_cost_same_success": knn_same,
            "oracle_cost": oracle[p["alpha"]]["cost"],
        }
        rows.append(row)
    return rows


def format_table(report: EvalReport) -> str:
    """The comparison as a fixed-width text table (what ``eccos demo`` prints)."""

    def money(v: float | None) -> str:
        return "-" if v is None else f"{v:.5f}"

    header = (
        f"{'alpha':>6} {'success':>8} {'met':>4} {'eccos $':>10} {'per-query $':>12} "
        f"{'pq $ same succ':>14} {'single $ same succ':>18} {'knn $ same succ':>15} {'oracle $':>10}  status"
    )
    lines = [header, "-" * len(header)]
    for r in report.comparison:
        lines.append(
            f"{r['alpha']:>6.2f} {r['success']:>8.3f} {'yes' if r['met'] else 'NO':>4} {money(r['cost']):>10} "
            f"{money(r['per_query_cost_same_alpha']):>12} {money(r['per_query_cost_same_success']):>14} "
            f"{money(r['cheapest_single_same_success']):>18} {money(r['knn_cost_same_success']):>15} "
            f"{money(r['oracle_cost']):>10}  {r['status']}"
        )
    return "\n".join(lines)
