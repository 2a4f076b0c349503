"""A model without logs joining with a prior (``ModelSpec.like``): leave-one-model-out on the shared sets.

    python benchmarks/bench_priors.py --cache /tmp/eccos-bench-cache   # -> benchmarks/results/priors.{json,txt}

Each model of a set in turn is treated as new. **prior**: it has no logs; it is predicted as ``like``, the
other model whose training outcomes are closest to its own (mean absolute score difference on the training
queries both answered: the best a user naming a similar model could do), and the router's targets are refitted
on the training queries with no outcome of it (as a user's router would be). **full**: the router fitted on
all its logs (the cached ``bench_dual`` router). **probeN**: N of its training outcomes (stratified by task, seed
0) fit a :class:`~eccos_core.priors.ProbeFit` on the other models' out-of-fold predictions for those questions
(what a 50/100/200-question probe of the model would give); the targets are refitted as for the prior.
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
from pathlib import Path
from typing import Any

import numpy as np
from bench_dual import RESULTS, SETS, fitted_router
from bench_shells import DEFAULT_ALPHAS

PROBES = (50, 100, 200)


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
    from eccos_core.priors import ProbeFit
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

    for h, new in enumerate(names):
        like = closest(train_scores, h)
        others = [k for k in range(len(names)) if k != h]
        columns = {"prior": (prediction.quality[:, like], oof.quality[:, like])}
        for n in PROBES:
            rows = probe_rows(tasks, train_scores[:, h], n)
            fit = ProbeFit.fit(oof.quality[np.ix_(rows, others)], train_scores[rows, h], [names[k] for k in others])
            columns[f"probe{n}"] = (fit.predict(prediction.quality[:, others]), fit.predict(oof.quality[:, others]))
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
                 "below α; cost/full: summed realized cost over the full fit's at the same α")  # fmt: skip
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
