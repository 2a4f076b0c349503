"""Routing overhead of the default router: start-up, single-call plan latency (idle and beside a CPU-bound
process) and batch planning time.

Run by hand on an otherwise idle machine: ``python benchmarks/bench_plan.py``; writes
``benchmarks/results/plan.json``. Queries are the bundled held-out split (real prompts of 10+ tasks). The
"loaded" figures run while a separate process keeps two threads busy with matrix products (numpy/BLAS), the
way a local LLM would share the CPU.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results" / "plan.json"
BUSY = "import numpy as np\na = np.random.rand(1200, 1200)\nwhile True:\n    a @ a\n"


def _latencies(router, queries, picks) -> dict[str, float]:
    ms = []
    for i in picks:
        t = time.perf_counter()
        router.plan([queries[i]], 0.6)
        ms.append((time.perf_counter() - t) * 1e3)
    arr = np.array(ms)
    return {"n": len(arr), **{f"p{q}": float(np.percentile(arr, q)) for q in (50, 90, 99)}, "mean": float(arr.mean())}


def main() -> None:
    started = time.perf_counter()
    from eccos_core.router import Router

    router = Router.default()
    load_s = time.perf_counter() - started
    from eccos_core.bundled import bundled_logs
    from eccos_core.logs import split_logs

    _, test = split_logs(bundled_logs(), test_frac=0.2, seed=0)
    queries = test.queries
    t = time.perf_counter()
    router.plan([queries[0]], 0.6)  # loads the encoder and the tokenizer
    first_plan_s = time.perf_counter() - t
    rng = np.random.default_rng(0)
    picks = rng.permutation(len(queries))[:500]
    idle = _latencies(router, queries, picks)

    env = {**os.environ, "OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
    busy = subprocess.Popen([sys.executable, "-c", BUSY], env=env)
    try:
        time.sleep(1.0)
        loaded = _latencies(router, queries, picks[:300])
    finally:
        busy.kill()
        busy.wait()

    batch_queries = [queries[i] for i in rng.choice(len(queries), size=1000, replace=len(queries) < 1000)]
    batch = {}
    for alpha in (0.5, 0.6, 0.7):
        t = time.perf_counter()
        plan = router.plan(batch_queries, alpha)
        batch[str(alpha)] = {"seconds": time.perf_counter() - t, "status": plan.status.value, "solver": plan.solver}

    result = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "processor": platform.processor()},
        "default_router_load_seconds": load_s,
        "first_plan_seconds": first_plan_s,
        "single_call_plan_ms_idle": idle,
        "single_call_plan_ms_beside_two_busy_threads": loaded,
        "batch_1000_plan_seconds": batch,
        "targets": {"load_s": 2.0, "idle_p50_ms": 10.0, "loaded_p50_ms": 30.0},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
