"""Learning from feedback on the shared routing sets: start small, feed the rest as outcomes, refit on a schedule.

For each set: the fixed split (seed 0, 20 % held out, stratified by task), then the training split in a fixed
random order (seed 0). A router is fitted on the first 10 % of it; every remaining training query is fed
through ``record_outcome`` (one call per model that has an outcome for it), and every ``--refit-every`` queries
the router is evaluated on the held-out split as it stands (new outcomes, old calibration: "stale"), refitted
(``refit``) and evaluated again. The reference is the router fitted on the whole training split at once.

Evaluation is `eccos eval`'s: the whole held-out split routed as one batch at each fixed α; realized success is
the mean logged score of the chosen models, realized cost their logged cost (or tokens x prices).

    python benchmarks/bench_feedback.py [--sets NAME ...] [--refit-every 500]

Writes ``benchmarks/results/feedback-<set>.{json,txt,png}``. Queries are embedded once per set (cached under
``benchmarks/data/``, which is git-ignored).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np

from eccos_core.evaluate import realized_cost
from eccos_core.feedback import record_outcome, refit
from eccos_core.logs import RoutingLogs, load_logs, split_logs
from eccos_core.messages import count_text_tokens
from eccos_core.predictors.retrieval import RetrievalPredictor
from eccos_core.predictors.trained import CachedEncoder
from eccos_core.pricing import load_models
from eccos_core.router import Router

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
RESULTS = HERE / "results"

ALPHAS = {
    # inside each set's feasible range (benchmarks/results/eval-*.txt: α the fully fitted router accepts)
    "llmrouter-9llm": (0.56, 0.60),
    "routerbench-routerdc-subset": (0.70, 0.80),
    "routerdc-7llm": (0.54, 0.56),
}
START_FRACTION = 0.10


def cached_encoder(name: str, texts: list[str]) -> CachedEncoder:
    """An encoder holding every text's embedding, computed once per set and kept on disk."""
    mine = DATA / f"{name}.feedback-minilm"
    shared = [p.with_suffix("") for p in sorted(DATA.glob(f"{name}.minilm*.npy"))]  # other benchmarks' caches
    for prefix in (mine, *shared):
        if prefix.with_name(prefix.name + ".npy").is_file():
            try:
                encoder = CachedEncoder.load(prefix)
                break
            except Exception as exc:  # another encoder or precision: embed again
                logging.warning("embedding cache %s unusable (%s)", prefix, exc)
    else:
        encoder = CachedEncoder(remember=True)
    missing = [t for t in dict.fromkeys(texts) if t not in encoder._memo]
    if missing:
        print(f"  embedding {len(missing)} queries (once; cached in {mine.name}.npy)", flush=True)
        encoder.encode(missing, show_progress=True)
        encoder.save(mine)
    return encoder


class Scorer:
    """Routes the held-out split at fixed α and measures realized success and cost."""

    def __init__(self, test: RoutingLogs, models: list[Any], alphas: tuple[float, ...]) -> None:
        names = [m.name for m in models]
        truth = test.scores(names)
        complete = ~np.isnan(truth).any(axis=1)
        self.test = test.subset(np.flatnonzero(complete))
        self.truth = truth[complete]
        self.names = names
        self.alphas = alphas
        self.input_tokens = np.array([count_text_tokens(q) for q in self.test.queries], dtype=float)
        self.cost = realized_cost(self.test, models, self.input_tokens)

    def __call__(self, router: Router) -> dict[str, dict[str, Any]]:
        prediction = router.predict(self.test.queries)
        rows = np.arange(len(self.test))
        out = {}
        for alpha in self.alphas:
            plan = router.plan_prediction(prediction, self.input_tokens, alpha)
            chosen = np.array([self.names.index(q.model) for q in plan.queries])
            out[f"{alpha:.2f}"] = {
                "success": float(self.truth[rows, chosen].mean()),
                "cost": float(self.cost[rows, chosen].sum()),
                "predicted_quality": float(plan.expected_quality),
                "status": plan.status.value,
            }
        return out


def run(name: str, refit_every: int) -> dict[str, Any]:
    logs = load_logs(DATA / f"{name}.jsonl.gz")
    models = load_models(DATA / f"{name}.models.json")
    names = [m.name for m in models]
    train, test = split_logs(logs, test_frac=0.2, seed=0)
    order = np.random.default_rng(0).permutation(len(train))
    n_start = round(START_FRACTION * len(train))
    start, rest = train.subset(order[:n_start]), train.subset(order[n_start:])
    print(f"{name}: {len(train)} training queries ({n_start} to start, {len(rest)} fed), {len(test)} held out")
    encoder = cached_encoder(name, train.queries + test.queries)
    scorer = Scorer(test, models, ALPHAS[name])

    started = time.perf_counter()
    full = Router.fit(models, train, RetrievalPredictor(encoder=encoder))
    full_fit_s = time.perf_counter() - started
    reference = scorer(full)
    print(f"  fully fitted ({full_fit_s:.1f} s): {reference}")
    # the fitted guard depends on the order of the logged rows (its cross-calibration halves are drawn by row
    # position): fully fitted routers on the same rows in other orders show how far that alone moves the result
    fed_order = scorer(Router.fit(models, train.subset(order), RetrievalPredictor(encoder=encoder)))
    other_orders = [
        scorer(Router.fit(models, train.subset(np.random.default_rng(seed).permutation(len(train))),
                          RetrievalPredictor(encoder=encoder)))
        for seed in (1, 2, 3)
    ]  # fmt: skip

    router = Router.fit(models, start, RetrievalPredictor(encoder=encoder))
    checkpoints = [{"fed": 0, "store": router.predictor.n_queries, "stage": "fit", "points": scorer(router)}]
    feed_s, calls, refit_s = 0.0, 0, []
    for begin in range(0, len(rest), refit_every):
        chunk = rest[begin : begin + refit_every]
        t0 = time.perf_counter()
        for record in chunk:
            for model in names:
                outcome = record.outcomes.get(model)
                if outcome is not None:
                    record_outcome(router, record.query, model, outcome.score, outcome.output_tokens)
                    calls += 1
        feed_s += time.perf_counter() - t0
        fed = begin + len(chunk)
        store = router.predictor.n_queries
        checkpoints.append({"fed": fed, "store": store, "stage": "stale", "points": scorer(router)})
        t0 = time.perf_counter()
        refit(router)
        refit_s.append(time.perf_counter() - t0)
        checkpoints.append({"fed": fed, "store": store, "stage": "refit", "points": scorer(router)})
        last = checkpoints[-1]["points"]
        summary = "  ".join(f"α {a}: {p['success']:.3f} ${p['cost']:.4f}" for a, p in last.items())
        print(f"  fed {fed:>6}/{len(rest)}  store {store:>6}  refit {refit_s[-1]:5.1f} s  {summary}", flush=True)

    return {
        "dataset": name,
        "alphas": list(ALPHAS[name]),
        "train_queries": len(train),
        "test_queries": len(scorer.test),
        "start_queries": n_start,
        "fed_queries": len(rest),
        "record_outcome_calls": calls,
        "refit_every": refit_every,
        "reference": reference,
        "reference_fed_order": fed_order,
        "reference_other_orders": other_orders,
        "fed_equals_fitting_in_fed_order": all(
            np.isclose(checkpoints[-1]["points"][a][k], fed_order[a][k], rtol=1e-9, atol=1e-12)
            for a in fed_order
            for k in ("success", "cost")
        ),
        "checkpoints": checkpoints,
        "timing": {
            "record_outcome_ms": 1000 * feed_s / max(calls, 1),
            "refit_s": refit_s,
            "full_fit_s_without_embedding": full_fit_s,
        },
        "machine": "2 CPU cores (shared), no GPU",
    }


def write_text(result: dict[str, Any], path: Path) -> None:
    lines = [
        f"{result['dataset']}: fit on {result['start_queries']} training queries (10 %), then "
        f"{result['fed_queries']} more fed one by one as outcomes ({result['record_outcome_calls']} record_outcome "
        f"calls), refit every {result['refit_every']}; held-out split: {result['test_queries']} queries",
        "",
    ]
    header = f"{'fed':>6} {'stored':>7} {'stage':>6}"
    for alpha in result["alphas"]:
        header += f" | α={alpha:.2f} {'success':>7} {'cost $':>9} {'status':>19}"
    lines += [header, "-" * len(header)]

    def row(label: str, stored: str, stage: str, points: dict[str, Any]) -> str:
        text = f"{label:>6} {stored:>7} {stage:>6}"
        for alpha in result["alphas"]:
            p = points[f"{alpha:.2f}"]
            text += f" |        {p['success']:>7.3f} {p['cost']:>9.4f} {p['status']:>19}"
        return text

    for c in result["checkpoints"]:
        lines.append(row(str(c["fed"]), str(c["store"]), c["stage"], c["points"]))
    lines.append(row("all", str(result["train_queries"]), "full", result["reference"]))
    lines.append(row("all", str(result["train_queries"]), "full*", result["reference_fed_order"]))
    for k, points in enumerate(result["reference_other_orders"], start=1):
        lines.append(row("all", str(result["train_queries"]), f"full{k}", points))
    timing = result["timing"]
    same = "identical to" if result["fed_equals_fitting_in_fed_order"] else "DIFFERENT from"
    lines += [
        "",
        "stale = outcomes fed, calibration and guard as at the last refit; refit = right after refit(router);",
        "full = Router.fit on the whole training split at once, rows in file order (eval's reference);",
        "full* = Router.fit on the same rows in the order they were fed; full1-3 = in three other random orders",
        f"(the guard's cross-calibration halves follow row order). The last refit is {same} full*.",
        f"record_outcome: {timing['record_outcome_ms']:.3f} ms per call (embeddings cached); refit: "
        f"{min(timing['refit_s']):.1f}-{max(timing['refit_s']):.1f} s; machine: {result['machine']}",
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    alphas = [f"{a:.2f}" for a in result["alphas"]]
    fig, axes = plt.subplots(2, len(alphas), figsize=(6 * len(alphas), 7), sharex=True)
    start = result["start_queries"]
    for col, alpha in enumerate(alphas):
        for stage, style in (("refit", "o-"), ("stale", "x")):
            points = [c for c in result["checkpoints"] if c["stage"] in (stage, "fit")]
            xs = [start + c["fed"] for c in points]
            axes[0, col].plot(xs, [c["points"][alpha]["success"] for c in points], style, ms=4, label=stage)
            axes[1, col].plot(xs, [c["points"][alpha]["cost"] for c in points], style, ms=4, label=stage)
        ref = result["reference"][alpha]
        fits = [ref, result["reference_fed_order"][alpha]] + [o[alpha] for o in result["reference_other_orders"]]
        for row, key in ((0, "success"), (1, "cost")):
            values = [f[key] for f in fits]
            axes[row, col].axhspan(min(values), max(values), color="k", alpha=0.08, label="fully fitted, 5 row orders")
            axes[row, col].axhline(ref[key], color="k", ls="--", lw=1, label="fully fitted (file order)")
        axes[0, col].axhline(float(alpha), color="r", ls=":", lw=1, label="α")
        axes[0, col].set_title(f"min_quality α = {alpha}")
        axes[0, col].set_ylabel("realized success (held-out)")
        axes[1, col].set_ylabel("realized cost of the held-out split (USD)")
        axes[1, col].set_xlabel("training queries in the store (10 % fitted, the rest fed as outcomes)")
        for ax in axes[:, col]:
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.suptitle(f"{result['dataset']}: learning from feedback, refit every {result['refit_every']} queries")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=list(ALPHAS), choices=list(ALPHAS))
    parser.add_argument("--refit-every", type=int, default=500)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    RESULTS.mkdir(parents=True, exist_ok=True)
    for name in args.sets:
        started = time.perf_counter()
        result = run(name, args.refit_every)
        result["wall_s"] = time.perf_counter() - started
        base = RESULTS / f"feedback-{name}"
        base.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        write_text(result, base.with_suffix(".txt"))
        plot(result, base.with_suffix(".png"))
        print(f"  wrote {base}.{{json,txt,png}} ({result['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
