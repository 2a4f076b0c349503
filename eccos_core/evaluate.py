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

With ``replay`` / ``replay_sorted`` / ``budget`` (``eccos eval --replay --replay-sorted --budget``), the policies
of single calls and of budgets too (:func:`stream_policies`):

* ``strict``: each query routed alone as a batch of one (every call reaches α on its own: the guard's target
  for α, per query);
* ``dual-replay``: the test split sent one query at a time in a random order, each routed at its stream's
  price on quality (``policy="dual"``, the default for single calls), the price adapting as it goes;
* ``dual-replay-sorted``: the same with the test split sorted by task (a traffic shift);
* ``budget``: the batch plan with the best mean predicted quality within a total budget, over a grid of
  budgets; ``budget-replay``: the same budgets spread per call over a one-at-a-time replay.
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
from eccos_core.messages import count_text_tokens
from eccos_core.optimize import SolveStatus, per_query, solve
from eccos_core.predictors.base import Prediction
from eccos_core.pricing import ModelSpec, cost_matrix

if TYPE_CHECKING:
    from eccos_core.guarantee import BatchMargin
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
            style = {
                "eccos": "o-",
                "oracle": "k--",
                "per-query": "s-",
                "knn": "^-",
                "best-single": "d-",
                **STREAM_STYLE,
            }
            ax.plot(xs, ys, style.get(name, "x"), label=name, markersize=4)
        for name, points in singles.items():
            ax.scatter([points[0]["cost"]], [points[0]["success"]], marker="*", s=60)
            ax.annotate(name.removeprefix("model:"), (points[0]["cost"], points[0]["success"]), fontsize=6)
        return save_cost_plot(fig, ax, f"{self.dataset.get('name', 'routing logs')}: cost vs success", path)


def save_cost_plot(fig: Any, ax: Any, title: str, path: str | Path) -> Path:
    """Finish a cost-vs-success figure (log cost axis, labels, legend) and write it as a PNG at ``path``."""
    import matplotlib.pyplot as plt

    ax.set_xscale("log")
    ax.set_xlabel("realized cost of the test split (USD, log scale)")
    ax.set_ylabel("realized success")
    ax.set_title(title)
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
    predictor: str = "retrieval",
    replay: bool = False,
    replay_sorted: bool = False,
    budget: bool = False,
    prediction: Prediction | None = None,
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
        predictor: Kind of predictor to fit when no ``router`` is given (:data:`eccos_core.predictors.KINDS`).
        replay: Add ``strict`` and ``dual-replay`` (one query at a time, random order; see :func:`stream_policies`).
        replay_sorted: Add ``dual-replay-sorted`` (one at a time, sorted by task).
        budget: Add ``budget`` and ``budget-replay`` over a grid of total budgets.
        prediction: The router's predictions for ``test`` made earlier (``eccos demo`` caches the bundled
            held-out split's); default: predicted here.
    """
    from eccos_core.predictors import make_predictor
    from eccos_core.router import Router

    names = [m.name for m in models]
    test, truth, prediction = _routable_test(test, names, prediction)
    if router is None:
        router = Router.fit(models, train, make_predictor(predictor, show_progress=progress))
    train_truth = train.scores(names)
    train_success = np.nanmean(train_truth, axis=0)
    alphas = list(alphas) if alphas is not None else default_alphas(train_success)

    counting = tqdm(test.queries, desc="counting tokens", disable=not progress, leave=False)
    input_tokens = np.array([count_text_tokens(q) for q in counting], dtype=float)
    prediction = _test_prediction(router, test, prediction)
    quality = prediction.quality
    predicted_cost = cost_matrix(router.models, input_tokens, prediction.output_tokens)
    cost = realized_cost(test, models, input_tokens)
    n = len(truth)
    batches = _batches(n, batch_size, seed)
    measured = _Measured(truth, cost, quality, predicted_cost)
    policies = _optimizer_policies(router, prediction, input_tokens, names, measured, alphas, batches, progress)
    policies.update(_fixed_policies(names, measured, train_success, alphas, seed))
    policies["knn"] = _knn_policy(measured)
    if replay or replay_sorted or budget:
        kinds = {"replay": replay, "replay_sorted": replay_sorted, "budget": budget}
        arrays = (quality, predicted_cost, truth, cost)
        policies.update(stream_policies(router, alphas, *arrays, test.tasks, seed=seed, progress=progress, **kinds))

    report = EvalReport(policies, _describe(name, router, len(train), n, names, batch_size, seed, train_success))
    report.comparison = compare(report)
    return report


def _describe(
    name: str,
    router: Router,
    train_queries: int,
    n: int,
    names: list[str],
    batch_size: int | None,
    seed: int,
    train_success: np.ndarray,
) -> dict[str, Any]:
    """The report's dataset description."""
    return {
        "name": name,
        "train_queries": train_queries,
        "test_queries": n,
        "models": names,
        "batch_size": batch_size or n,
        "seed": seed,
        "predictor": getattr(router.predictor, "kind", type(router.predictor).__name__),
        "train_success": dict(zip(names, map(float, train_success), strict=True)),
        "guard": router.guard.to_dict() if router.guard is not None else None,
    }


def _routable_test(
    test: RoutingLogs, names: list[str], prediction: Prediction | None
) -> tuple[RoutingLogs, np.ndarray, Prediction | None]:
    """The test queries with an outcome for every pool model, their scores and their rows of ``prediction``.

    The other queries are dropped with a warning.

    Raises:
        ValueError: No test query has an outcome for every pool model.
    """
    truth = test.scores(names)
    complete = ~np.isnan(truth).any(axis=1)
    if not complete.all():
        missing = int((~complete).sum())
        logger.warning("evaluate: %d test queries lack an outcome for some pool model; not routed", missing)
        test = test.subset(np.flatnonzero(complete))
        truth = truth[complete]
        if prediction is not None:
            prediction = prediction.rows(np.flatnonzero(complete))
    if len(test) == 0:
        raise ValueError("no test query has an outcome for every model of the pool")
    return test, truth, prediction


def _test_prediction(router: Router, test: RoutingLogs, prediction: Prediction | None) -> Prediction:
    """The router's prediction for ``test`` (made here unless given, checked if given), in the planner's columns."""
    if prediction is None:
        prediction = router.predict(test.queries)
    elif prediction.quality.shape[0] != len(test):
        raise ValueError(f"prediction has {prediction.quality.shape[0]} rows for {len(test)} test queries")
    return prediction.select(router.planner.names)


@dataclass(frozen=True)
class _Measured:
    """The test split's N×M arrays every policy is measured on."""

    truth: np.ndarray
    """Logged scores."""
    cost: np.ndarray
    """Realized (logged) cost of each call."""
    quality: np.ndarray
    """Predicted quality."""
    predicted_cost: np.ndarray
    """Predicted cost of each call."""

    def point(self, key: str, value: float | None, chosen: np.ndarray, **extra: Any) -> dict[str, Any]:
        """:func:`_point` of ``chosen`` on these arrays."""
        return _point(key, value, chosen, self.truth, self.cost, self.quality, **extra)


_Pick = Callable[[np.ndarray], tuple[np.ndarray, str]]


def _optimizer_policies(
    router: Router,
    prediction: Prediction,
    input_tokens: np.ndarray,
    names: list[str],
    measured: _Measured,
    alphas: list[float],
    batches: list[np.ndarray],
    progress: bool,
) -> dict[str, list[dict[str, Any]]]:
    """The ``eccos``, ``per-query`` and ``oracle`` policies: batch by batch, at every α."""
    truth, cost, quality, predicted_cost = measured.truth, measured.cost, measured.quality, measured.predicted_cost
    n = len(truth)

    def eccos_pick(alpha: float) -> _Pick:
        def pick(rows: np.ndarray) -> tuple[np.ndarray, str]:
            plan = router.plan_prediction(prediction.rows(rows), input_tokens[rows], alpha)
            return np.array([names.index(q.model) for q in plan.queries]), plan.status.value

        return pick

    def per_query_pick(alpha: float) -> _Pick:
        def pick(rows: np.ndarray) -> tuple[np.ndarray, str]:
            a = per_query(predicted_cost[rows], quality[rows], alpha)
            return a.model_index, a.status.value

        return pick

    def oracle_pick(alpha: float) -> _Pick:
        def pick(rows: np.ndarray) -> tuple[np.ndarray, str]:
            a = solve(cost[rows], truth[rows], alpha)
            return a.model_index, a.status.value

        return pick

    policies: dict[str, list[dict[str, Any]]] = {}
    for policy, factory in (("eccos", eccos_pick), ("per-query", per_query_pick), ("oracle", oracle_pick)):
        points = []
        for alpha in tqdm(alphas, desc=policy, disable=not progress, leave=False):
            chosen, status = _route_batched(batches, n, factory(alpha))
            met = bool(truth[np.arange(n), chosen].mean() >= alpha - TOLERANCE)
            points.append(measured.point("alpha", alpha, chosen, status=status, met=met))
        policies[policy] = points
    return policies


def _fixed_policies(
    names: list[str], measured: _Measured, train_success: np.ndarray, alphas: list[float], seed: int
) -> dict[str, list[dict[str, Any]]]:
    """Every ``model:<name>`` policy, ``random`` and ``best-single``."""
    n, m = measured.truth.shape
    policies: dict[str, list[dict[str, Any]]] = {}
    for j, model in enumerate(names):
        policies[f"model:{model}"] = [measured.point("alpha", None, np.full(n, j))]
    rng = np.random.default_rng(seed)
    policies["random"] = [measured.point("alpha", None, rng.integers(0, m, size=n))]

    # cheapest model first, by predicted cost (prices and predicted lengths: nothing of the test outcomes)
    price_rank = np.argsort(measured.predicted_cost.mean(axis=0))
    best_single = []
    for alpha in alphas:
        ok = [j for j in price_rank if train_success[j] >= alpha]
        if ok:
            best_single.append(measured.point("alpha", alpha, np.full(n, ok[0]), model=names[ok[0]]))
    policies["best-single"] = best_single
    return policies


def _knn_policy(measured: _Measured) -> list[dict[str, Any]]:
    """RouterBench-style argmax of predicted quality − λ·cost, over a grid of λ."""
    predicted_cost = measured.predicted_cost
    scale = float(np.mean(predicted_cost)) or 1.0
    knn = []
    for lam in [0.0, *np.logspace(-3, 2, 26).tolist()]:
        chosen = np.argmax(measured.quality - lam * predicted_cost / scale, axis=1)
        knn.append(measured.point("lambda", float(lam), chosen))
    return knn


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


def prediction_metrics(prediction: Any, logs: RoutingLogs) -> dict[str, float]:
    """How good a predictor's raw predictions are on held-out logs, pooled over every (query, model) outcome.

    ``auroc`` ranks p(success) against scores binarized at 0.5, ``brier`` is the squared error against the score
    itself (fractional scores count as they are), ``length_mae`` the absolute error of predicted output tokens
    where lengths are logged (NaN where none are).
    """
    from eccos_core.predictors.trained import pooled_auroc

    names = list(prediction.models)
    scores = logs.scores(names)
    seen = ~np.isnan(scores)
    tokens = logs.matrix("output_tokens", names)
    logged = ~np.isnan(tokens)
    errors = np.abs(prediction.output_tokens - tokens)[logged]
    return {
        "auroc": pooled_auroc(prediction.quality, scores),
        "brier": float(np.mean((prediction.quality[seen] - scores[seen]) ** 2)),
        "length_mae": float(errors.mean()) if logged.any() else float("nan"),
        "pairs": int(seen.sum()),
    }


def evaluate_guarantee(
    router: Router,
    train: RoutingLogs,
    test: RoutingLogs,
    *,
    confidence: float,
    batch_size: int = 100,
    n_batches: int = 200,
    alphas: Sequence[float] | None = None,
    seed: int = 0,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Per α, how often a random test batch reached α in plain mode and in guarantee mode, and at what cost.

    Plain mode routes each batch as ``router.plan(..., min_quality=α)`` does (a promise on average); guarantee
    mode as ``router.plan(..., min_quality=α, confidence=confidence)`` does, with the router's own
    :class:`~eccos_core.guarantee.BatchMargin` (both through :meth:`eccos_core.targets.Targets.batch`), which should
    put at least ``confidence`` of the batches at or above α. Both solve with :func:`eccos_core.optimize.solve`
    on the same ``n_batches`` random batches of ``batch_size`` queries.

    Raises:
        PredictorStateError: The router has no batch margin (fitted without out-of-fold predictions).
    """
    from eccos_core.targets import require_margin

    margin = require_margin(router.margin)  # before the test split is embedded
    names = [m.name for m in router.models]
    test = test.subset(np.flatnonzero(~np.isnan(test.scores(names)).any(axis=1)))
    return guarantee_rows(
        router.models,
        router.guard,
        None,
        train,
        test,
        router.predict(test.queries),
        confidence=confidence,
        batch_size=batch_size,
        n_batches=n_batches,
        alphas=alphas,
        seed=seed,
        progress=progress,
        time_limit=router.time_limit,
        margin=margin,
    )


def guarantee_rows(
    models: Sequence[ModelSpec],
    guard: Any,
    out_of_fold: Any,
    train: RoutingLogs,
    test: RoutingLogs,
    prediction: Any,
    *,
    confidence: float,
    batch_size: int = 100,
    n_batches: int = 200,
    alphas: Sequence[float] | None = None,
    seed: int = 0,
    progress: bool = False,
    time_limit: float = 10.0,
    margin: BatchMargin | None = None,
) -> list[dict[str, Any]]:
    """:func:`evaluate_guarantee` from predictions already made (benchmarks reuse one prediction this way).

    ``out_of_fold`` is for ``train``, ``prediction`` for ``test`` (every test query must have an outcome for
    every model), both with columns in pool order. ``time_limit`` bounds each solve, as the router's does.
    ``margin`` is the router's; without one it is fitted on ``out_of_fold`` as :meth:`Router.fit` fits it.
    """
    from eccos_core.guarantee import BatchMargin
    from eccos_core.router import training_problem
    from eccos_core.targets import Targets

    names = [m.name for m in models]
    if margin is None:
        oof, scores, train_cost = training_problem(models, train, out_of_fold)
        margin = BatchMargin.fit(oof.quality, scores, train_cost, guard, seed=seed, time_limit=time_limit)
    truth = test.scores(names)
    tokens = np.array([count_text_tokens(q) for q in test.queries], dtype=float)
    predicted_cost = cost_matrix(models, tokens, np.nan_to_num(prediction.output_tokens).clip(0, None))
    cost = realized_cost(test, models, tokens)
    rng = np.random.default_rng(seed)
    size = min(batch_size, len(test))
    batches = [rng.choice(len(test), size, replace=False) for _ in range(n_batches)]
    alphas = list(alphas) if alphas is not None else default_alphas(np.nanmean(train.scores(names), axis=0))
    rows = []
    targets = Targets(guard, margin)
    for alpha in tqdm(alphas, desc="guarantee", disable=not progress, leave=False):
        goals = {"plain": targets.batch(alpha, size), "guaranteed": targets.batch(alpha, size, confidence)}
        runs: dict[str, list[tuple[float, float, str]]] = {mode: [] for mode in goals}
        for batch in batches:
            quality_b = np.clip(prediction.quality[batch], 0, 1)
            for mode, goal in goals.items():
                a = solve(predicted_cost[batch], quality_b, goal.target, time_limit=time_limit)
                picked = a.model_index
                runs[mode].append(
                    (float(truth[batch, picked].mean()), float(cost[batch, picked].sum()), a.status.value)
                )
        guaranteed = goals["guaranteed"]
        rows.append(_guarantee_row(alpha, guaranteed.margin or 0.0, runs, goals["plain"].reachable))
        # a guarantee needs α + margin within what routing reached on held-out data; above it, best effort only
        rows[-1]["promisable"] = guaranteed.reachable
    return rows


def _guarantee_row(
    alpha: float, margin: float, runs: dict[str, list[tuple[float, float, str]]], reachable: bool
) -> dict[str, Any]:
    row: dict[str, Any] = {"alpha": alpha, "margin": margin, "reachable": reachable}
    for mode, results in runs.items():
        success = np.array([r[0] for r in results])
        row[f"{mode}_share"] = float((success >= alpha - 1e-12).mean())
        row[f"{mode}_mean_success"] = float(success.mean())
        row[f"{mode}_p10_success"] = float(np.quantile(success, 0.1))
        row[f"{mode}_cost"] = float(np.mean([r[1] for r in results]))
        row[f"{mode}_unreachable"] = sum(r[2] == SolveStatus.QUALITY_UNREACHABLE.value for r in results)
    row["premium"] = row["guaranteed_cost"] / row["plain_cost"] - 1.0 if row["plain_cost"] > 0 else float("nan")
    return row


def format_guarantee(rows: Sequence[dict[str, Any]], confidence: float, batch_size: int) -> str:
    """The guarantee-mode comparison as a fixed-width text table."""
    header = (
        f"{'alpha':>6} {'margin':>7} {'plain share>=a':>15} {'guar. share>=a':>15} {'plain mean':>10} "
        f"{'guar. mean':>10} {'plain $/batch':>13} {'guar. $/batch':>13} {'premium':>8}"
    )
    lines = [f"guarantee mode: confidence {confidence:.2f}, batches of {batch_size}", header, "-" * len(header)]
    for r in rows:
        flag = "" if r.get("promisable", r["reachable"]) else "  (alpha + margin beyond reach: best effort)"
        flag = flag if r["reachable"] else "  (alpha beyond the guard's range)"
        lines.append(
            f"{r['alpha']:>6.2f} {r['margin']:>7.3f} {r['plain_share']:>15.3f} {r['guaranteed_share']:>15.3f} "
            f"{r['plain_mean_success']:>10.3f} {r['guaranteed_mean_success']:>10.3f} {r['plain_cost']:>13.6f} "
            f"{r['guaranteed_cost']:>13.6f} {r['premium']:>+8.1%}{flag}"
        )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ single calls
STREAM_STYLE = {"strict": "v-", "dual-replay": "o:", "dual-replay-sorted": "P:", "budget": "D-", "budget-replay": "*:"}
"""Plot styles of the policies :func:`stream_policies` adds."""


def stream_policies(
    router: Router,
    alphas: Sequence[float],
    quality: np.ndarray,
    predicted_cost: np.ndarray,
    truth: np.ndarray,
    cost: np.ndarray,
    tasks: Sequence[str | None],
    *,
    seed: int = 0,
    replay: bool = True,
    replay_sorted: bool = True,
    budget: bool = True,
    budgets: int = 24,
    progress: bool = False,
) -> dict[str, list[dict[str, Any]]]:
    """Policies of single calls and budgets on the test split's predictions (see the module docstring).

    Each replay starts fresh streams from the router's fitted prices (its live streams are left alone) and routes
    the queries in order, one at a time; its points carry ``target``, the stream's internal target. Budget points
    are keyed by the total budget (USD, predicted), and carry the plan's ``predicted_cost``.
    """
    n = len(truth)
    order = np.random.default_rng(seed).permutation(n)
    labels = np.array(["" if t is None else str(t) for t in tasks])
    by_task = order[np.argsort(labels[order], kind="stable")]
    measured = _Measured(truth, cost, quality, predicted_cost)
    out: dict[str, list[dict[str, Any]]] = {}

    if replay:
        out["strict"] = _strict_policy(router, alphas, measured)
    orders = {"dual-replay": order} if replay else {}
    if replay_sorted:
        orders["dual-replay-sorted"] = by_task
    for policy, sequence in orders.items():
        out[policy] = _dual_replay(router, alphas, measured, sequence, policy, progress)
    if budget:
        out["budget"], out["budget-replay"] = _budget_policies(router, measured, order, budgets, progress)
    return out


def _strict_policy(router: Router, alphas: Sequence[float], measured: _Measured) -> list[dict[str, Any]]:
    """``strict``: each query routed alone, as a batch of one, at every α."""
    truth, quality, predicted_cost = measured.truth, measured.quality, measured.predicted_cost
    rows = np.arange(len(truth))
    strict = []
    for alpha in alphas:
        goal = router.targets.batch(alpha, 1)
        chosen = per_query(predicted_cost, quality, goal.target).model_index
        status = "feasible" if goal.reachable else "quality_unreachable"
        met = bool(truth[rows, chosen].mean() >= alpha - TOLERANCE)
        strict.append(measured.point("alpha", alpha, chosen, status=status, met=met))
    return strict


def _dual_replay(
    router: Router,
    alphas: Sequence[float],
    measured: _Measured,
    sequence: np.ndarray,
    policy: str,
    progress: bool,
) -> list[dict[str, Any]]:
    """A ``dual-replay`` policy: the queries sent one at a time in ``sequence``, at a fresh stream's price."""
    truth, quality, predicted_cost = measured.truth, measured.quality, measured.predicted_cost
    n = len(truth)
    rows = np.arange(n)
    points = []
    for alpha in tqdm(alphas, desc=policy, disable=not progress, leave=False):
        target, reachable = router.targets.per_call(alpha)
        stream = router.dual.new_quality_stream(alpha, target)
        chosen = np.empty(n, dtype=int)
        chosen[sequence] = stream.replay(quality[sequence], predicted_cost[sequence])
        status = "feasible" if reachable else "quality_unreachable"
        met = bool(truth[rows, chosen].mean() >= alpha - TOLERANCE)
        points.append(measured.point("alpha", alpha, chosen, status=status, met=met, target=stream.target))
    return points


def _budget_policies(
    router: Router, measured: _Measured, order: np.ndarray, budgets: int, progress: bool
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``budget`` and ``budget-replay``: the batch plan and the one-at-a-time replay over a grid of budgets."""
    from eccos_core.optimize.budget import solve_budget

    quality, predicted_cost = measured.quality, measured.predicted_cost
    n = len(quality)
    rows = np.arange(n)
    cheapest = float(predicted_cost.min(axis=1).sum())
    best = float(predicted_cost[rows, np.argmax(quality - 1e-12 * predicted_cost, axis=1)].sum())
    grid = np.geomspace(max(cheapest, 1e-12), max(best, cheapest * 1.01, 1e-12), budgets)
    batch, stream_points = [], []
    for total in tqdm(grid, desc="budget", disable=not progress, leave=False):
        found = solve_budget(predicted_cost, quality, float(total), time_limit=5.0)
        batch.append(
            measured.point(
                "budget",
                float(total),
                found.model_index,
                status=found.status.value,
                predicted_cost=found.expected_cost,
            )
        )
        stream = router.dual.new_budget_stream(float(total) / n)
        chosen = np.empty(n, dtype=int)
        chosen[order] = stream.replay(quality[order], predicted_cost[order])
        stream_points.append(
            measured.point("budget", float(total), chosen, predicted_cost=float(predicted_cost[rows, chosen].sum()))
        )
    return batch, stream_points


def format_streams(report: EvalReport) -> str:
    """Single calls vs the batch plan at each α, and the budget curve, as fixed-width text tables."""
    policies = report.policies
    batch = {p["alpha"]: p for p in policies["eccos"]}
    columns = [name for name in ("strict", "dual-replay", "dual-replay-sorted") if name in policies]
    lines: list[str] = []
    if columns:
        by = {name: {p["alpha"]: p for p in policies[name]} for name in columns}
        header = f"{'alpha':>6} {'batch succ':>10} {'batch $':>9}" + "".join(
            f" {name + ' succ':>{max(12, len(name) + 5)}} {'$':>9} {'x batch':>7}" for name in columns
        )
        lines += [header, "-" * len(header)]
        for alpha, b in batch.items():
            line = f"{alpha:>6.2f} {b['success']:>10.3f} {b['cost']:>9.5f}"
            for name in columns:
                p = by[name].get(alpha)
                if p is None:
                    line += " " * (max(12, len(name) + 5) + 19)
                    continue
                mark = "" if p["met"] or p["status"] == "quality_unreachable" else "!"
                succ = f"{p['success']:.3f}{mark}"
                ratio = p["cost"] / b["cost"] if b["cost"] > 0 else float("nan")
                line += f" {succ:>{max(12, len(name) + 5)}} {p['cost']:>9.5f} {ratio:>7.2f}"
            line += "" if b["status"] != "quality_unreachable" else "  (unreachable)"
            lines.append(line)
        lines.append("'!' = realized success more than 1 point below alpha at an alpha the router accepted")
    if "budget" in policies:
        if lines:
            lines.append("")
        header = f"{'budget $':>10} {'batch succ':>10} {'batch $':>9} {'replay succ':>11} {'replay $':>9}  status"
        lines += [header, "-" * len(header)]
        for b, r in zip(policies["budget"], policies.get("budget-replay", []), strict=False):
            lines.append(
                f"{b['budget']:>10.5f} {b['success']:>10.3f} {b['cost']:>9.5f} {r['success']:>11.3f} "
                f"{r['cost']:>9.5f}  {b['status']}"
            )
        lines.append("budgets are on predicted cost; the $ columns are realized (logged) cost of the test split")
    return "\n".join(lines)


def plot_streams(report: EvalReport, path: str | Path) -> Path:
    """Realized cost vs success of the batch plan (quality-constrained), the budget curve and the replays."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    style = {"eccos": "o-", "oracle": "k--", **STREAM_STYLE}
    labels = {
        "eccos": "batch, min_quality (eccos)",
        "budget": "batch, budget",
        "dual-replay": "one at a time, dual price",
        "dual-replay-sorted": "one at a time by task, dual price",
        "budget-replay": "one at a time, budget per call",
        "strict": "one at a time, strict",
        "oracle": "oracle",
    }
    for name, label in labels.items():
        points = report.policies.get(name)
        if not points:
            continue
        xs = [p["cost"] for p in points]
        ys = [p["success"] for p in points]
        ax.plot(xs, ys, style[name], label=label, markersize=4, alpha=0.85)
    title = f"{report.dataset.get('name', 'routing logs')}: budget and per-call routing vs the batch plan"
    return save_cost_plot(fig, ax, title, path)
