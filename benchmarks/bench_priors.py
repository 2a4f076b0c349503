"""A model without logs joining with a prior (``ModelSpec.like``): leave-one-model-out on the shared sets.

    python benchmarks/bench_priors.py --cache /tmp/eccos-bench-cache   # -> benchmarks/results/priors.{json,txt}

Each model of a set in turn is treated as new. **prior**: it has no logs; it is predicted as ``like``, the
other model whose training outcomes are closest to its own (mean absolute score difference on the training
queries both answered: the best a user naming a similar model could do), and the router's targets are refitted
on the training queries with no outcome of it (as a user's router would be). **full**: the router fitted on
all its logs (the cached ``bench_dual`` router). **probeN**: N of its training outcomes (stratified by task, seed
0) fit a :class:`~eccos_core.priors.ProbeFit` on the other models' out-of-fold predictions for those questions
(what a 50/100/200-question probe of the model would give); the targets are refitted as for the prior.
Two comparisons on the same probe rows (benchmark only): **knnN**, plain kNN on the probe alone (the
similarity-weighted mean of the probe scores of the ``K_PROBE`` nearest probe questions, cosine similarity of the
router's encoder embeddings clipped at 0, the probe's mean score blended in with weight ``KNN_PRIOR``; a training
row that is itself a probe row leaves itself out), and **irtN**, an item-response (2PL, IRT-Router style) form:
each question's difficulty ``b_i`` is minus the other models' mean predicted logit, and the new model's
``sigmoid(a·(θ − b_i))`` is a logistic regression (L2, C = 1) of the probe outcomes (score ≥ 0.5) on ``−b_i``,
lowered by the same margin as the ProbeFit of those rows (kNN gets no margin).
**without**: the pool without it.

Measured on the held-out split (seed 0) with the logged outcomes: the new model's AUROC and Brier, and one joint
plan of the whole split at 3 α per set: realized success, realized cost, and the share routed to the new model.
The retrieval predictor predicts each model from its own outcomes only, so the other models' predictions are
the same whether or not the new model's logs were fitted.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from bench_dual import RESULTS, SETS, fitted_router
from bench_shells import DEFAULT_ALPHAS

PROBES = (50, 100, 200)
K_PROBE = 16
"""Nearest probe questions a knnN column averages over (fewer if the probe is smaller)."""
KNN_PRIOR = 0.01
"""Weight (in summed cosine similarity) of the probe's mean score in a knnN prediction: it only counts where the
nearest probe questions are all (nearly) orthogonal to the query."""


def closest(train_scores: np.ndarray, h: int) -> int:
    """The other column whose training scores differ least from column ``h``'s (mean absolute difference)."""
    best, best_gap = -1, np.inf
    for k in range(train_scores.shape[1]):
        both = ~np.isnan(train_scores[:, h]) & ~np.isnan(train_scores[:, k])
        if k == h or not both.any():
            continue
        gap = float(np.mean(np.abs(train_scores[both, h] - train_scores[both, k])))
        if gap < best_gap:
            best, best_gap = k, gap
    return best


def measure_set(name: str, cache: Path | None) -> dict[str, Any]:
    from eccos_core.evaluate import realized_cost
    from eccos_core.messages import count_text_tokens
    from eccos_core.predictors.base import Prediction
    from eccos_core.predictors.trained import pooled_auroc
    from eccos_core.router import Router, out_of_fold_problem
    from eccos_core.targets import fit_targets

    router, _, train, test = fitted_router(name, cache)
    names = list(router.planner.names)
    truth = test.scores(names)
    rows = np.flatnonzero(~np.isnan(truth).any(axis=1))
    test, truth = test.subset(rows), truth[rows]
    tokens = np.array([count_text_tokens(q) for q in test.queries], dtype=float)
    paid = realized_cost(test, router.models, tokens)
    prediction = router.predict(test.queries)
    oof, train_scores, train_cost = out_of_fold_problem(router.models, train, router.predictor)
    tasks = np.array([str(r.task) for r in train.records])
    alphas = DEFAULT_ALPHAS[name]
    out: dict[str, Any] = {"set": name, "test_queries": len(test), "alphas": list(alphas), "models": []}

    def joined(h: int, oof_column: np.ndarray) -> Router:
        """The router a user gets: the new model's training outcomes unknown, its column from the variant."""
        oof_q = oof.quality.copy()
        oof_q[:, h] = oof_column
        scores = train_scores.copy()
        scores[:, h] = np.nan
        return Router(router.models, router.predictor, fit_targets(Prediction(oof.models, oof_q, oof.output_tokens),
                                                                   scores, train_cost))  # fmt: skip

    predicted = (prediction.quality, oof.quality)
    emb = (embeddings(router.predictor, test.queries), embeddings(router.predictor, train.queries))
    for h, new in enumerate(names):
        like = closest(train_scores, h)
        columns = {"prior": (prediction.quality[:, like], oof.quality[:, like])}
        columns |= probe_columns(h, names, tasks, train_scores, predicted, emb)
        columns["full"] = (prediction.quality[:, h], None)
        entry: dict[str, Any] = {
            "model": new,
            "like": names[like],
            "brier_mean": float(np.mean((np.nanmean(train_scores[:, h]) - truth[:, h]) ** 2)),
            "variants": {},
        }
        for variant, (column, oof_column) in columns.items():
            use = router if oof_column is None else joined(h, oof_column)
            quality = prediction.quality.copy()
            quality[:, h] = column
            planned = Prediction(tuple(names), quality, prediction.output_tokens)
            points = [route(use, planned, tokens, alpha, truth, paid, h) for alpha in alphas]
            entry["variants"][variant] = {
                "auroc": pooled_auroc(column[:, None], truth[:, [h]]),
                "brier": float(np.mean((column - truth[:, h]) ** 2)),
                "routing": points,
            }
        without = Prediction(tuple(names), prediction.quality, prediction.output_tokens)
        entry["without"] = [route(router, without, tokens, alpha, truth, paid, h, {new: 0}) for alpha in alphas]
        out["models"].append(entry)
        aurocs = " ".join(f"{v} {e['auroc']:.3f}" for v, e in entry["variants"].items())
        print(f"{name} {new} (like {names[like]}): AUROC {aurocs}", flush=True)
    return out


def embeddings(predictor: Any, queries: Sequence[str]) -> np.ndarray:
    """Unit-vector embeddings of ``queries`` by the router's encoder (inner product = cosine similarity).

    A query the retrieval store holds is read from it (what it was fitted on, no re-embedding); any other is
    embedded by its encoder (a bundled query is looked up, else embedded on CPU).
    """
    from eccos_core.predictors.encoder import query_key

    store = getattr(predictor, "retrieval", predictor)
    where = {key: row for row, key in enumerate(store.row_keys()) if key}
    found = np.array([where.get(query_key(q), -1) for q in queries], dtype=int)
    stored = store._embeddings
    out = np.empty((len(queries), stored.shape[1]), dtype=np.float32)
    out[found >= 0] = stored[found[found >= 0]]
    missing = np.flatnonzero(found < 0)
    if len(missing):
        out[missing] = store.encoder.encode([queries[i] for i in missing])
    return out


def probe_columns(
    h: int,
    names: Sequence[str],
    tasks: np.ndarray,
    train_scores: np.ndarray,
    quality: tuple[np.ndarray, np.ndarray],
    emb: tuple[np.ndarray, np.ndarray],
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Column ``h`` (test, out-of-fold training) from each n-question probe: probeN, knnN, irtN (same rows).

    ``quality`` and ``emb`` are (test, training) pairs: the predictor's predictions (out-of-fold for training)
    and the queries' embeddings.
    """
    from eccos_core.priors import ProbeFit

    test_q, oof_q = quality
    others = [k for k in range(len(names)) if k != h]
    out: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {"probe": {}, "knn": {}, "irt": {}}
    for n in PROBES:
        rows = probe_rows(tasks, train_scores[:, h], n)
        scores = train_scores[rows, h]
        fit = ProbeFit.fit(oof_q[np.ix_(rows, others)], scores, [names[k] for k in others])
        out["probe"][f"probe{n}"] = (fit.predict(test_q[:, others]), fit.predict(oof_q[:, others]))
        probe = emb[1][rows]
        out["knn"][f"knn{n}"] = (knn_predict(emb[0], probe, scores), knn_predict(emb[1], probe, scores, rows))
        out["irt"][f"irt{n}"] = irt_predict((test_q[:, others], oof_q[:, others]), rows, scores, fit.margin)
    return {variant: pair for group in out.values() for variant, pair in group.items()}


def knn_predict(
    queries: np.ndarray, probe: np.ndarray, scores: np.ndarray, itself: np.ndarray | None = None
) -> np.ndarray:
    """p(success) per query: the similarity-weighted mean probe score over its ``K_PROBE`` nearest probe questions.

    ``queries`` and ``probe`` are unit-vector embeddings; weights are cosine similarities clipped at 0, with the
    probe's mean score as ``KNN_PRIOR`` extra weight. ``itself`` (the query row of each probe row, for training
    queries) leaves a probe question out of its own prediction.
    """
    sims = queries @ probe.T
    if itself is not None:
        sims[itself, np.arange(len(itself))] = -np.inf
    k = min(K_PROBE, len(probe))
    nearest = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    weights = np.clip(np.take_along_axis(sims, nearest, axis=1), 0.0, None)
    votes = (weights * scores[nearest]).sum(axis=1) + KNN_PRIOR * float(scores.mean())
    return np.clip(votes / (weights.sum(axis=1) + KNN_PRIOR), 0.0, 1.0)


def irt_predict(
    quality: tuple[np.ndarray, np.ndarray], rows: np.ndarray, scores: np.ndarray, margin: float
) -> tuple[np.ndarray, np.ndarray]:
    """2PL item response: ``sigmoid(a·(θ − b_i))`` fitted on the probe, for (test, out-of-fold training) rows.

    ``quality`` holds the other models' predictions (test, out-of-fold training); a question's difficulty
    ``b_i`` is minus their mean logit (p clipped to [1e-3, 1 − 1e-3]). ``a`` and ``aθ`` are a logistic regression
    (L2, C = 1) of the probe outcomes (score ≥ 0.5) on ``−b_i``; ``margin`` is subtracted (clipped at 0).
    """
    from sklearn.linear_model import LogisticRegression

    def ease(q: np.ndarray) -> np.ndarray:  # −b_i
        q = np.clip(q, 1e-3, 1 - 1e-3)
        return np.log(q / (1 - q)).mean(axis=1, keepdims=True)

    test_q, oof_q = quality
    model = LogisticRegression(C=1.0, max_iter=1000).fit(ease(oof_q[rows]), scores >= 0.5)
    test_p, oof_p = (model.predict_proba(ease(q))[:, 1] for q in (test_q, oof_q))
    return np.clip(test_p - margin, 0.0, 1.0), np.clip(oof_p - margin, 0.0, 1.0)


def probe_rows(tasks: np.ndarray, outcomes: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``n`` training rows with an outcome, stratified by task (round robin over tasks in a seeded order)."""
    rng = np.random.default_rng(seed)
    pools = {}
    for task in sorted(set(tasks)):
        rows = np.flatnonzero((tasks == task) & ~np.isnan(outcomes))
        if len(rows):
            pools[task] = list(rng.permutation(rows))
    picked: list[int] = []
    while len(picked) < n and any(pools.values()):
        for rows in pools.values():
            if rows and len(picked) < n:
                picked.append(int(rows.pop()))
    return np.array(sorted(picked))


def route(
    use: Any, planned: Any, tokens: np.ndarray, alpha: float, truth: np.ndarray, paid: np.ndarray, h: int,
    capacity: Any = None,
) -> dict[str, Any]:  # fmt: skip
    """One joint plan of the whole split: realized success and cost, and the share sent to the new model."""
    plan = use.plan_prediction(planned, tokens, alpha, capacity)
    chosen = np.array([planned.models.index(m) for m in plan.models])
    picked = np.arange(len(chosen))
    return {
        "alpha": alpha,
        "success": float(truth[picked, chosen].mean()),
        "cost": float(paid[picked, chosen].sum()),
        "share_new": float((chosen == h).mean()),
        "status": plan.status.value,
    }


def summarize(results: list[dict[str, Any]]) -> str:
    lines = []
    for result in results:
        variants = list(result["models"][0]["variants"])
        lines.append(f"{result['set']}: {result['test_queries']} held-out queries, α {result['alphas']}")
        lines.append(f"{'new model':34} {'like':34} " + " ".join(f"{v:>8}" for v in variants) + "  (AUROC)")
        for entry in result["models"]:
            cells = " ".join(f"{entry['variants'][v]['auroc']:8.3f}" for v in variants)
            lines.append(f"{entry['model'][:34]:34} {entry['like'][:34]:34} {cells}")
        full_gain = sum(e["variants"]["full"]["auroc"] - 0.5 for e in result["models"])
        total = sum(len(result["alphas"]) for _ in result["models"])
        lines.append(f"  {'variant':9} {'AUROC gain':>10} {'Brier':>7} {'α misses':>9} {'cost/full':>9}")
        for v in variants:
            gain = sum(e["variants"][v]["auroc"] - 0.5 for e in result["models"]) / full_gain
            brier = np.mean([e["variants"][v]["brier"] for e in result["models"]])
            points = [
                (p, f)
                for e in result["models"]
                for p, f in zip(e["variants"][v]["routing"], e["variants"]["full"]["routing"], strict=True)
            ]
            misses = sum(p["success"] < p["alpha"] - 0.01 for p, _ in points)
            cost = sum(p["cost"] for p, _ in points) / sum(f["cost"] for _, f in points)
            lines.append(f"  {v:9} {gain:10.0%} {brier:7.3f} {misses:4d}/{total:<4d} {cost:9.3f}")  # fmt: skip
        points = [p for e in result["models"] for p in e["without"]]
        lines.append(
            f"  {'without':9} {'':>10} {'':>7} {sum(p['success'] < p['alpha'] - 0.01 for p in points):4d}/{total:<4d}"
        )
        lines.append("")
    lines.append("AUROC gain: the variant's summed AUROC − 0.5 over the full fit's (a constant predictor gains 0); "
                 "α misses: joint plans of the whole held-out split whose realized success fell more than 1 point "
                 "below α; cost/full: summed realized cost over the full fit's at the same α; probeN / knnN / "
                 "irtN: ProbeFit blend / kNN on the probe alone / 2PL item response, on the same N probe "
                 "questions")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="*", default=list(SETS))
    parser.add_argument("--cache", type=Path, help="directory of the fitted routers bench_dual keeps")
    args = parser.parse_args()
    started = time.perf_counter()
    results = [measure_set(name, args.cache) for name in args.sets]
    text = summarize(results)
    meta = {"load_average": os.getloadavg(), "seconds": round(time.perf_counter() - started, 1)}
    (RESULTS / "priors.json").write_text(json.dumps({"machine": meta, "sets": results}, indent=1) + "\n")
    (RESULTS / "priors.txt").write_text(text + f"\n({meta['seconds']} s)\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
