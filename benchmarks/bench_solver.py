"""Solver wall time, peak memory, status and gap at scale: N = 10^4..10^6 queries × M = 3, 9, 20 models.

Run by hand: ``python benchmarks/bench_solver.py`` (about 10 minutes on the 2-core machine); writes
``benchmarks/results/solver.json`` and a readable ``benchmarks/results/solver.txt``. ``--sizes``,
``--models`` and ``--caps`` pick a subset; ``--exact-max`` is the largest N the exact method is timed at.

The instances are SYNTHETIC (the bundled routing logs hold 5,608 queries; resampled to 10^6 they would only
repeat rows, which makes the problem easier than it is), generated from a seed per case:

- model j has an input price drawn from U(0.05, 10) USD per million tokens (sorted), an output price 2-5 times
  that, and a skill that rises with price;
- query i has lognormal(5.5, 1) input tokens, lognormal(5, 0.7) output tokens per model and a difficulty
  d_i ~ N(0, 1.2); cost = tokens × prices, quality = logistic(skill_j - d_i + N(0, 0.6) noise);
- α sits 60 % of the way from the mean quality of every query's cheapest model to the reachable maximum;
- caps: ``off``; ``quarter``, every model capped at max(N/4, 1.5 N/M) (N/4 at M = 9 and 20); ``tight``, every
  model capped at 1.25 N/M, so several caps bind.

Each case runs ``solve()`` in its own subprocess with the default time limit (10 s). ``peak_mb`` is
tracemalloc's peak during the call (what the solver allocates beyond the N×M inputs it is handed);
``rss_mb`` is the subprocess's maximum resident set size (interpreter, libraries, instance and solve).
``seconds`` is wall time, ``cpu_seconds`` the process's CPU time for the call: on a shared machine the wall time
grows with the load (``load_average`` records it) while the CPU time barely moves.
``gap`` is the reported bound on the distance to the optimum (0 when proven optimal), ``rel_gap`` that over
the cost; ``excess`` is the cost above the exact method's where both ran. ``auto`` marks the method that
``method="auto"`` picks for the case.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
TIME_LIMIT = 10.0
CASE_TIMEOUT = 300


def instance(n: int, m: int, caps: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray, float, list[int] | None]:
    """A synthetic batch (see the module docstring), built in place to keep its memory at the two N×M inputs."""
    rng = np.random.default_rng([seed, n, m])
    price_in = np.sort(rng.uniform(0.05, 10.0, m)) * 1e-6
    price_out = price_in * rng.uniform(2, 5, m)
    skill = np.sort(rng.normal(0, 1.0, m) + np.linspace(0, 1.5, m))
    tokens = rng.lognormal(5.5, 1.0, n)
    cost = rng.lognormal(5.0, 0.7, (n, m))
    cost *= price_out[None, :]
    cost += tokens[:, None] * price_in[None, :]
    difficulty = rng.normal(0, 1.2, n)
    quality = rng.normal(0, 0.6, (n, m))
    quality += skill[None, :]
    quality -= difficulty[:, None]
    np.negative(quality, out=quality)
    np.exp(quality, out=quality)
    quality += 1.0
    np.reciprocal(quality, out=quality)
    cheapest = float(quality[np.arange(n), cost.argmin(axis=1)].mean())
    alpha = cheapest + 0.6 * (float(quality.max(axis=1).mean()) - cheapest)
    if caps == "quarter":
        capacity: list[int] | None = [max(n // 4, math.ceil(1.5 * n / m))] * m
    elif caps == "tight":
        capacity = [math.ceil(1.25 * n / m)] * m
    else:
        capacity = None
    return cost, quality, alpha, capacity


def run_case(n: int, m: int, caps: str, method: str) -> dict[str, object]:
    """One solve, measured (runs inside the case's subprocess)."""
    from eccos_core.optimize import solve
    from eccos_core.optimize.methods import choose_method

    cost, quality, alpha, capacity = instance(n, m, caps)
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    started, cpu = time.perf_counter(), time.process_time()
    result = solve(cost, quality, alpha, capacity, method=method, time_limit=TIME_LIMIT)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    load = np.bincount(result.model_index, minlength=m)
    return {
        "n": n,
        "m": m,
        "caps": caps,
        "capacity": capacity[0] if capacity else None,
        "alpha": alpha,
        "method": method,
        "auto_picks": choose_method(n, m),
        "seconds": seconds,
        "cpu_seconds": cpu,
        "load_average": os.getloadavg()[0],
        "peak_mb": (peak - base) / 2**20,
        "input_mb": (cost.nbytes + quality.nbytes) / 2**20,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "status": result.status.value,
        "ran": result.method,
        "cost_usd": result.expected_cost,
        "quality": result.expected_quality,
        "gap_usd": result.gap,
        "rel_gap": result.gap / result.expected_cost if result.expected_cost else 0.0,
        "models_at_cap": int(np.count_nonzero(load == capacity[0])) if capacity else 0,
        "message": result.message,
    }


def _spawn(n: int, m: int, caps: str, method: str) -> dict[str, object]:
    command = [sys.executable, __file__, "--case", str(n), str(m), caps, method]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=CASE_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        return {"n": n, "m": m, "caps": caps, "method": method, "status": f"killed after {CASE_TIMEOUT} s"}
    if done.returncode != 0:
        return {"n": n, "m": m, "caps": caps, "method": method, "status": "error", "message": done.stderr[-2000:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _table(rows: list[dict[str, object]]) -> str:
    header = (
        f"{'N':>9} {'M':>3} {'caps':<8} {'method':<11} {'auto':>4} {'wall s':>7} {'CPU s':>6} {'peak MB':>8} "
        f"{'input MB':>8} "
        f"{'RSS MB':>7} {'status':<10} {'gap USD':>10} {'rel gap':>8} {'excess USD':>10}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        if "seconds" not in row:
            lines.append(f"{row['n']:>9} {row['m']:>3} {row['caps']:<8} {row['method']:<11} {row['status']}")
            continue
        excess = row.get("excess_usd")
        lines.append(
            f"{row['n']:>9,} {row['m']:>3} {row['caps']:<8} {row['method']:<11} "
            f"{'*' if row['auto_picks'] == row['method'] else '':>4} {row['seconds']:>7.2f} {row['cpu_seconds']:>6.2f} "
            f"{row['peak_mb']:>8.0f} "
            f"{row['input_mb']:>8.1f} {row['rss_mb']:>7.0f} {row['status']:<10} {row['gap_usd']:>10.2e} "
            f"{row['rel_gap']:>8.1e} {'' if excess is None else f'{excess:>10.2e}':>10}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--models", type=int, nargs="+", default=[3, 9, 20])
    parser.add_argument("--caps", nargs="+", default=["off", "quarter", "tight"])
    parser.add_argument("--exact-max", type=int, default=100_000, help="largest N the exact method is timed at")
    parser.add_argument("--case", nargs=4, metavar=("N", "M", "CAPS", "METHOD"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        n, m, caps, method = args.case
        print(json.dumps(run_case(int(n), int(m), caps, method)))
        return

    started = time.perf_counter()
    rows: list[dict[str, object]] = []
    for n in args.sizes:
        for m in args.models:
            for caps in args.caps:
                methods = ["exact", "lagrangian"] if n <= args.exact_max else ["lagrangian"]
                found = {method: _spawn(n, m, caps, method) for method in methods}
                if "exact" in found and found["exact"].get("status") == "optimal":
                    for row in found.values():
                        if "cost_usd" in row:
                            row["excess_usd"] = float(row["cost_usd"]) - float(found["exact"]["cost_usd"])
                rows.extend(found.values())
                print("\n".join(_table(rows).splitlines()[-len(found) :]), flush=True)
    table = _table(rows)
    notes = (
        "Synthetic instances (see benchmarks/bench_solver.py). Default time limit 10 s. '*' marks what "
        'method="auto" picks. peak MB: tracemalloc peak during solve(); RSS MB: the case subprocess\'s maximum '
        "resident set; excess USD: cost above the exact method's proven optimum. wall s / CPU s: one run's wall "
        "and CPU seconds; the machine was shared with other work while measured (load averages in solver.json), "
        "so wall time overstates what an idle machine takes and CPU time is the steadier figure; the exact "
        "method's 10 s time limit is wall time."
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "solver.txt").write_text(f"python benchmarks/bench_solver.py\n{notes}\n\n{table}\n")
    (RESULTS / "solver.json").write_text(
        json.dumps(
            {
                "command": "python benchmarks/bench_solver.py " + " ".join(sys.argv[1:]),
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                    "numpy": np.__version__,
                },
                "instances": "synthetic; see the docstring of benchmarks/bench_solver.py",
                "time_limit_s": TIME_LIMIT,
                "notes": notes,
                "rows": rows,
                "total_seconds": time.perf_counter() - started,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\n{table}\n\nwrote {RESULTS / 'solver.json'} and solver.txt in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
