"""A model without logs joining with a prior (``ModelSpec.like``): leave-one-model-out on the shared sets.

    python benchmarks/bench_priors.py --cache /tmp/eccos-bench-cache   # -> benchmarks/results/priors.{json,txt}

Each model of a set in turn is treated as new. **prior**: it has no logs; it is predicted as ``like``, the
other model whose training outcomes are closest to its own (mean absolute score difference on the training
queries both answered: the best a user naming a similar model could do), and the router's targets are refitted
on the training queries with no outcome of it (as a user's router would be). **full**: the router fitted on
all its logs (the cached ``bench_dual`` router). **without**: the pool without it.

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
    alphas = DEFAULT_ALPHAS[name]
    out: dict[str, Any] = {"set": name, "test_queries": len(test), "alphas": list(alphas), "models": []}
    for h, new in enumerate(names):
        like = closest(train_scores, h)
        quality = prediction.quality.copy()
        quality[:, h] = prediction.quality[:, like]
        oof_q = oof.quality.copy()
        oof_q[:, h] = oof.quality[:, like]
        scores = train_scores.copy()
        scores[:, h] = np.nan  # the new model has no logs
        targets = fit_targets(Prediction(oof.models, oof_q, oof.output_tokens), scores, train_cost)
        variants = {
            "prior": (Router(router.models, router.predictor, targets), quality, None),
            "full": (router, prediction.quality, None),
            "without": (router, prediction.quality, {new: 0}),
        }
        entry: dict[str, Any] = {
            "model": new,
            "like": names[like],
            "auroc_prior": pooled_auroc(prediction.quality[:, [like]], truth[:, [h]]),
            "auroc_full": pooled_auroc(prediction.quality[:, [h]], truth[:, [h]]),
            "brier_prior": float(np.mean((prediction.quality[:, like] - truth[:, h]) ** 2)),
            "brier_full": float(np.mean((prediction.quality[:, h] - truth[:, h]) ** 2)),
            "brier_mean": float(np.mean((np.nanmean(train_scores[:, h]) - truth[:, h]) ** 2)),
            "routing": [],
        }
        for alpha in alphas:
            point: dict[str, Any] = {"alpha": alpha}
            for variant, (use, q, capacity) in variants.items():
                planned = Prediction(tuple(names), q, prediction.output_tokens)
                plan = use.plan_prediction(planned, tokens, alpha, capacity)
                chosen = np.array([names.index(m) for m in plan.models])
                picked = np.arange(len(chosen))
                point[variant] = {
                    "success": float(truth[picked, chosen].mean()),
                    "cost": float(paid[picked, chosen].sum()),
                    "share_new": float((chosen == h).mean()),
                    "status": plan.status.value,
                }
            entry["routing"].append(point)
        out["models"].append(entry)
        print(f"{name} {new}: like {names[like]}, AUROC {entry['auroc_prior']:.3f} / {entry['auroc_full']:.3f}",
              flush=True)  # fmt: skip
    return out


def summarize(results: list[dict[str, Any]]) -> str:
    lines = []
    for result in results:
        lines.append(f"{result['set']}: {result['test_queries']} held-out queries, α {result['alphas']}")
        lines.append(
            f"{'new model':34} {'like':34} {'AUROC prior/full':>17} {'Brier prior/full/mean':>22}  "
            "per α: success prior/full/without, cost prior/full (share routed to it: prior/full)"
        )
        for entry in result["models"]:
            cells = []
            for point in entry["routing"]:
                p, f, w = point["prior"], point["full"], point["without"]
                miss = "!" if p["success"] < point["alpha"] - 0.01 else " "
                cells.append(
                    f"{point['alpha']:.2f}: {p['success']:.3f}{miss}/{f['success']:.3f}/{w['success']:.3f} "
                    f"${p['cost']:.4g}/${f['cost']:.4g} ({p['share_new']:.2f}/{f['share_new']:.2f})"
                )
            lines.append(
                f"{entry['model'][:34]:34} {entry['like'][:34]:34} "
                f"{entry['auroc_prior']:8.3f}/{entry['auroc_full']:.3f} "
                f"{entry['brier_prior']:8.3f}/{entry['brier_full']:.3f}/{entry['brier_mean']:.3f}  " + "; ".join(cells)
            )
        gains = [(e["auroc_prior"] - 0.5, e["auroc_full"] - 0.5) for e in result["models"]]
        ratio = sum(p for p, _ in gains) / sum(f for _, f in gains)
        misses = sum(pt["prior"]["success"] < pt["alpha"] - 0.01 for e in result["models"] for pt in e["routing"])
        misses_full = sum(pt["full"]["success"] < pt["alpha"] - 0.01 for e in result["models"] for pt in e["routing"])
        total = sum(len(e["routing"]) for e in result["models"])
        lines.append(
            f"  prior: {ratio:.0%} of the full fit's AUROC gain over the per-model mean (0.5); α missed by more "
            f"than 1 pt: prior {misses}/{total}, full {misses_full}/{total}"
        )
        lines.append("")
    lines.append("'!': realized success more than 1 point below α; cost is the logged cost of the whole held-out split")
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
