"""Single calls at batch prices and budget mode, measured (issue 8).

Run by hand from the repo root after ``python benchmarks/convert_data.py``:

    python benchmarks/bench_dual.py                      # the three shared sets, then the overhead
    python benchmarks/bench_dual.py --sets llmrouter-9llm --no-overhead

Per data set (fixed split, seed 0, 20 % held out): fits the router on the train split (or loads it from
``--cache``), routes the test split with the batch plan, each query alone (``strict``), one query at a time in a
random order at the per-call price (``dual-replay``), the same sorted by task (``dual-replay-sorted``) and with
budgets (``budget``, ``budget-replay``); writes ``benchmarks/results/dual-<name>.{json,txt,png}``. Then the
per-call routing overhead of the default router (``policy="dual"`` and ``"strict"``, 500 held-out prompts):
``benchmarks/results/dual-overhead.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
SETS = ("llmrouter-9llm", "routerbench-routerdc-subset", "routerdc-7llm")


def fitted_router(name: str, cache: Path | None) -> tuple[Any, Any, Any, Any]:
    """The router fitted on the set's train split (loaded from ``cache`` when it holds one), its pool and splits.

    A cached router saved before per-call prices existed gets its targets refitted as ``Router.fit`` fits them.
    """
    from eccos_core.logs import load_logs, split_logs
    from eccos_core.predictors.retrieval import RetrievalPredictor
    from eccos_core.pricing import load_models
    from eccos_core.router import Router, out_of_fold_problem
    from eccos_core.targets import fit_targets

    logs = load_logs(ROOT / "data" / f"{name}.jsonl.gz")
    models = load_models(ROOT / "data" / f"{name}.models.json")
    train, test = split_logs(logs, test_frac=0.2, seed=0)
    saved = None if cache is None else cache / name
    if saved is not None and (saved / "router.json").is_file():
        router = Router.load(saved, models=models)
    else:
        router = Router.fit(models, train, RetrievalPredictor(k=16, show_progress=True))
        if saved is not None:
            router.save(saved)
    if router.targets.curve is None:
        problem = out_of_fold_problem(router.models, train, router.predictor)
        if problem is not None:
            router.planner.retarget(fit_targets(*problem, method=router.method))
    return router, models, train, test


def evaluate_set(name: str, cache: Path | None) -> None:
    from eccos_core.evaluate import evaluate, format_streams, format_table, plot_streams

    started = time.perf_counter()
    router, models, train, test = fitted_router(name, cache)
    report = evaluate(
        train,
        test,
        models,
        router=router,
        seed=0,
        progress=True,
        name=name,
        replay=True,
        replay_sorted=True,
        budget=True,
    )
    report.dataset["dual_curve"] = router.dual.curve.to_dict() if router.dual.curve is not None else None
    report.write_json(RESULTS / f"dual-{name}.json")
    text = "\n".join(
        [
            f"{name}: fitted on {len(train)} queries, routed {report.dataset['test_queries']} held-out queries",
            "",
            format_table(report),
            "",
            format_streams(report),
            f"({time.perf_counter() - started:.0f} s)",
        ]
    )
    (RESULTS / f"dual-{name}.txt").write_text(text + "\n", encoding="utf-8")
    plot_streams(report, RESULTS / f"dual-{name}.png")
    print(text, flush=True)


def overhead(n: int = 500) -> None:
    from eccos_core.bundled import bundled_logs
    from eccos_core.logs import split_logs
    from eccos_core.router import Router

    started = time.perf_counter()
    router = Router.default()
    load_s = time.perf_counter() - started
    _, test = split_logs(bundled_logs(), test_frac=0.2, seed=0)
    queries = test.queries
    router.plan_call(queries[0], 0.6, policy="strict")  # loads the encoder and the tokenizer
    picks = np.random.default_rng(0).permutation(len(queries))[:n]
    result: dict[str, object] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_start": os.getloadavg(),
            "note": "shared 2-core machine: other processes were running; see load averages",
        },
        "default_router_load_seconds": load_s,
        "fitted_prices": router.dual.curve is not None,
    }
    # interleaved, so both policies see the same load on a shared machine
    ms: dict[str, list[float]] = {"dual": [], "strict": []}
    for k, i in enumerate(picks):
        for policy in ("dual", "strict") if k % 2 == 0 else ("strict", "dual"):
            t = time.perf_counter()
            router.plan_call(queries[i], 0.6, policy=policy)
            ms[policy].append((time.perf_counter() - t) * 1e3)
    for policy, values in ms.items():
        arr = np.array(values)
        result[f"plan_call_ms_{policy}"] = {
            "n": len(arr),
            **{f"p{q}": float(np.percentile(arr, q)) for q in (50, 90, 99)},
            "mean": float(arr.mean()),
        }
    # the price alone (prediction excluded): a stream's decision on a precomputed row
    prediction = router.predict([queries[i] for i in picks])
    tokens = np.array([float(len(queries[i]) // 4 + 1) for i in picks])
    from eccos_core.pricing import cost_matrix

    cost = cost_matrix(router.models, tokens, prediction.output_tokens)
    stream = router.dual.new_quality_stream(0.6, router.targets.per_call(0.6)[0])
    us = []
    for k in range(len(picks)):
        t = time.perf_counter()
        stream.route(prediction.quality[k], cost[k])
        us.append((time.perf_counter() - t) * 1e6)
    result["price_decision_us"] = {f"p{q}": float(np.percentile(us, q)) for q in (50, 99)}
    result["load_average_at_end"] = os.getloadavg()
    (RESULTS / "dual-overhead.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


def summarize(sets: list[str]) -> None:
    """Per data set and single-call policy: the alphas accepted, the worst realized success − alpha and the
    cost relative to the batch plan on the same queries; writes ``dual-summary.{json,txt}``."""
    rows = []
    for name in sets:
        path = RESULTS / f"dual-{name}.json"
        if not path.is_file():
            continue
        policies = json.loads(path.read_text(encoding="utf-8"))["policies"]
        batch = {p["alpha"]: p for p in policies["eccos"]}
        for policy in ("dual-replay", "dual-replay-sorted", "strict"):
            accepted = [p for p in policies.get(policy, []) if p["status"] != "quality_unreachable"]
            if not accepted:
                continue
            ratios = [p["cost"] / batch[p["alpha"]]["cost"] for p in accepted]
            rows.append(
                {
                    "set": name,
                    "policy": policy,
                    "alphas": [accepted[0]["alpha"], accepted[-1]["alpha"], len(accepted)],
                    "worst_success_minus_alpha": min(p["success"] - p["alpha"] for p in accepted),
                    "met_within_1pt": sum(p["met"] for p in accepted),
                    "cost_vs_batch_max": max(ratios),
                    "cost_vs_batch_min": min(ratios),
                }
            )
    lines = [
        f"{'set':<28} {'policy':<19} {'alphas (n)':<17} {'worst succ-α':>12} {'met':>5} {'$/batch max':>11} {'min':>6}"
    ]
    for r in rows:
        lo, hi, k = r["alphas"]
        lines.append(
            f"{r['set']:<28} {r['policy']:<19} {f'{lo:.2f}..{hi:.2f} ({k})':<17} "
            f"{r['worst_success_minus_alpha']:>+12.3f} {r['met_within_1pt']:>2}/{k:<2} "
            f"{r['cost_vs_batch_max']:>11.2f} {r['cost_vs_batch_min']:>6.2f}"
        )
    (RESULTS / "dual-summary.json").write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    (RESULTS / "dual-summary.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="*", default=list(SETS), help="data sets to evaluate (default: all three)")
    parser.add_argument("--cache", type=Path, help="directory to keep fitted routers in between runs")
    parser.add_argument("--no-overhead", action="store_true", help="skip the per-call overhead measurement")
    parser.add_argument("--summary-only", action="store_true", help="only summarise the results already written")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    for name in [] if args.summary_only else args.sets:
        evaluate_set(name, args.cache)
    summarize(list(SETS))
    if not args.no_overhead and not args.summary_only:
        overhead()


if __name__ == "__main__":
    main()
