"""Wall time and cost of every optimizer method on real routing data.

Run by hand: ``python benchmarks/bench_solver.py``; writes ``benchmarks/results/solver.json`` and prints a
table. Takes about 5 minutes, most of it PuLP+CBC at N = 10,000 (120 s limit each). alpha = 0.7 lies above
the highest mean quality this data allows (about 0.67-0.68), so those rows time the quality_unreachable path;
0.65 is added as a feasible alpha close to the maximum.

Data: the LLMRouter default routing set (9 hosted LLMs, real 0/1 correctness per query, shared under
``/work/shared/data/llmrouter-9llm``).

- quality[i, j]: leave-one-out mean score of model j over the other training queries of query i's task
  (task from ``query_data/default_query_train.jsonl``), an honest predictor that never sees query i's own
  outcome.
- cost[i, j]: input tokens of query i x input price of model j (USD per million tokens, ``default_llm.json``);
  input tokens are estimated as len(question) / 4 because the copied files hold no token counts, and output
  tokens are left out for the same reason.
- N = 100 and 1,000 are drawn without replacement, N = 10,000 with replacement (there are 5,608 queries),
  all with seed 0.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import highspy
import numpy as np
import pulp
import scipy

from eccos_core.optimize import Assignment, per_query, run_method
from eccos_core.optimize.assignment import validate_problem
from eccos_core.optimize.exact import solve_exact
from eccos_core.optimize.ilp import solve_ilp
from eccos_core.optimize.lagrangian import solve_lagrangian

DATA = Path("/work/shared/data/llmrouter-9llm")
RESULTS = Path(__file__).parent / "results" / "solver.json"
CBC_LIMIT = 120.0
HIGHS_LIMIT = 300.0
FAST_REPEATS = 3


def load_matrices() -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str], dict[str, object]]:
    """Cost and quality matrices of every training query, and notes on how they were built."""
    train = json.loads((DATA / "dcrouter_preprocessed" / "train.json").read_text())
    prices = json.loads((DATA / "llm_candidates" / "default_llm.json").read_text())
    task_of: dict[str, str] = {}
    duplicates = 0
    with (DATA / "query_data" / "default_query_train.jsonl").open() as handle:
        for line in handle:
            record = json.loads(line)
            if record["query"] in task_of and task_of[record["query"]] != record["task_name"]:
                duplicates += 1
            task_of.setdefault(record["query"], record["task_name"])
    models = list(train[0]["scores"])
    scores = np.array([[row["scores"][m] for m in models] for row in train], dtype=float)
    tasks = np.array([task_of[row["question"]] for row in train])
    quality = np.empty_like(scores)
    for task in np.unique(tasks):
        members = tasks == task
        total = scores[members].sum(axis=0)
        quality[members] = (total[None, :] - scores[members]) / (members.sum() - 1)
    tokens = np.array([len(row["question"]) / 4.0 for row in train])
    price = np.array([float(prices[m]["input_price"]) for m in models])
    cost = tokens[:, None] * price[None, :] / 1e6
    notes = {
        "queries": len(train),
        "models": models,
        "input_price_usd_per_million_tokens": dict(zip(models, price.tolist(), strict=True)),
        "quality": "leave-one-out per-task mean score of each model (task from default_query_train.jsonl)",
        "cost": "input_tokens_i x input_price_j / 1e6 USD; input_tokens estimated as len(question) / 4 "
        "(no token counts in the data); output tokens not counted",
        "queries_listed_under_two_tasks": duplicates,
        "max_reachable_mean_quality_full_set": float(quality.max(axis=1).mean()),
    }
    return cost, quality, tokens, models, notes


def sample(n: int, total: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.choice(total, size=n, replace=n > total)


def timed(run: Callable[[], Assignment], repeats: int) -> tuple[Assignment, float]:
    times = []
    result = None
    for _ in range(repeats):
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
    assert result is not None
    return result, statistics.median(times)


def methods(cost: np.ndarray, quality: np.ndarray, alpha: float) -> dict[str, tuple[Callable[[], Assignment], int]]:
    def via(method: Callable, limit: float, name: str) -> Callable[[], Assignment]:
        def run() -> Assignment:
            problem = validate_problem(cost, quality, alpha)
            return run_method(problem, method, limit, name=name)

        return run

    return {
        "exact": (via(solve_exact, 60.0, "exact"), FAST_REPEATS),
        "lagrangian": (via(solve_lagrangian, 60.0, "lagrangian"), FAST_REPEATS),
        "per_query": (lambda: per_query(cost, quality, alpha), FAST_REPEATS),
        "ilp_highs": (via(lambda p, t: solve_ilp(p, t, solver="highs"), HIGHS_LIMIT, "ilp"), 1),
        "ilp_cbc": (via(lambda p, t: solve_ilp(p, t, solver="cbc"), CBC_LIMIT, "ilp"), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.6, 0.65, 0.7])
    parser.add_argument("--skip", nargs="*", default=[], help="methods to leave out, e.g. ilp_cbc")
    args = parser.parse_args()

    started = time.perf_counter()
    cost_all, quality_all, _, _, notes = load_matrices()
    rows: list[dict[str, object]] = []
    header = f"{'N':>6} {'alpha':>5} {'method':<11} {'seconds':>9} {'status':<20} {'cost USD':>12} "
    header += f"{'quality':>8} {'gap to exact':>13} {'rel gap':>9}"
    print(header)
    print("-" * len(header))
    for n in args.sizes:
        pick = sample(n, len(cost_all))
        cost, quality = cost_all[pick], quality_all[pick]
        reachable = float(quality.max(axis=1).mean())
        for alpha in args.alphas:
            runs = methods(cost, quality, alpha)
            results: dict[str, tuple[Assignment, float]] = {}
            for name, (run, repeats) in runs.items():
                if name in args.skip:
                    continue
                results[name] = timed(run, repeats)
            optimum = results["exact"][0].expected_cost
            for name, (a, seconds) in results.items():
                gap = a.expected_cost - optimum
                # The ILP's gap is 0 exactly when its solver proved optimality, so a gap means the limit hit.
                limit_hit = name.startswith("ilp") and a.gap > 0
                row = {
                    "n": n,
                    "m": cost.shape[1],
                    "alpha": alpha,
                    "max_reachable_quality": reachable,
                    "method": name,
                    "seconds": seconds,
                    "repeats": runs[name][1],
                    "status": a.status.value,
                    "expected_cost_usd": a.expected_cost,
                    "expected_quality": a.expected_quality,
                    "cost_gap_to_exact_usd": gap,
                    "cost_gap_to_exact_rel": gap / optimum if optimum else 0.0,
                    "reported_gap_usd": None if math.isnan(a.gap) else a.gap,
                    "time_limit_s": CBC_LIMIT if name == "ilp_cbc" else HIGHS_LIMIT if name == "ilp_highs" else 60.0,
                    "time_limit_hit": limit_hit,
                    "message": a.message,
                }
                rows.append(row)
                print(
                    f"{n:>6} {alpha:>5.2f} {name:<11} {seconds:>9.3f} {a.status.value:<20} {a.expected_cost:>12.6f} "
                    f"{a.expected_quality:>8.4f} {gap:>13.3e} {row['cost_gap_to_exact_rel']:>9.2e}"
                    + ("  (time limit hit)" if limit_hit else ""),
                    flush=True,
                )
    result = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "pulp": pulp.__version__,
            "highspy": f"{highspy.HIGHS_VERSION_MAJOR}.{highspy.HIGHS_VERSION_MINOR}.{highspy.HIGHS_VERSION_PATCH}",
        },
        "data": notes,
        "sampling": "N <= 5608 without replacement, larger N with replacement; numpy default_rng(0)",
        "timing": f"wall seconds of the whole call (validation included); median of {FAST_REPEATS} runs for "
        "exact, lagrangian and per_query, one run for the ILPs",
        "gap_definition": "expected_cost minus the exact method's (proven optimal) cost at the same N and alpha; "
        "per_query can be negative when it misses alpha (it then buys less quality)",
        "rows": rows,
        "total_seconds": time.perf_counter() - started,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {RESULTS} in {result['total_seconds']:.0f} s")


if __name__ == "__main__":
    main()
