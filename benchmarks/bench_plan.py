"""Routing overhead of the default router: single-call plan latency and batch planning time.

Run by hand: ``python benchmarks/bench_plan.py``; writes ``benchmarks/results/plan.json``.
Queries are the bundled held-out split (real prompts of 10+ tasks), so lengths are realistic.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from eccos_core.bundled import bundled_logs
from eccos_core.logs import split_logs
from eccos_core.router import Router

RESULTS = Path(__file__).parent / "results" / "plan.json"


def main() -> None:
    started = time.perf_counter()
    router = Router.default()
    load_s = time.perf_counter() - started
    _, test = split_logs(bundled_logs(), test_frac=0.2, seed=0)
    queries = test.queries
    rng = np.random.default_rng(0)
    router.plan([queries[0]], 0.6)  # warm-up: loads the encoder

    single = []
    for i in rng.permutation(len(queries))[:500]:
        t = time.perf_counter()
        router.plan([queries[i]], 0.6)
        single.append(time.perf_counter() - t)

    batch_queries = [queries[i] for i in rng.choice(len(queries), size=1000, replace=len(queries) < 1000)]
    batch = {}
    for alpha in (0.5, 0.6, 0.7):
        t = time.perf_counter()
        plan = router.plan(batch_queries, alpha)
        batch[str(alpha)] = {"seconds": time.perf_counter() - t, "status": plan.status, "solver": plan.solver}

    ms = np.array(single) * 1e3
    result = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "processor": platform.processor()},
        "default_router_load_seconds": load_s,
        "single_call_plan_ms": {
            "n": len(ms),
            "p50": float(np.percentile(ms, 50)),
            "p90": float(np.percentile(ms, 90)),
            "p99": float(np.percentile(ms, 99)),
            "mean": float(statistics.fmean(ms)),
        },
        "batch_1000_plan_seconds": batch,
        "targets": {"single_call_p50_ms": 10.0, "batch_1000_seconds": 3.0},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
