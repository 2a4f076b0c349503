"""eccos inside LiteLLM Proxy: routing overhead, fleet quality and cost with and without shared Redis, start-up.

    python benchmarks/bench_proxy.py                    # -> benchmarks/results/proxy.{json,txt}
    python benchmarks/bench_proxy.py --requests 300     # a shorter stream

Needs ``redis-server`` and the proxy environment (``.venv-proxy``, made by ``.ci/run``, or
``$ECCOS_PROXY_PYTHON``). Everything runs on 127.0.0.1: the loopback provider of the tests answers for every
deployment, so latencies are the proxy's and the plugin's own, not a provider's.

The request stream is the bundled logs' held-out split (1,199 queries, the same every run), each asking for
``min_quality`` = α in its metadata. Realized success and cost come from the logged outcomes of the
(query, chosen model) pairs.

1. Overhead: one proxy, one request at a time, with the eccos plugin vs with LiteLLM's default strategy
   (``simple-shuffle``): LiteLLM's own ``x-litellm-overhead-duration-ms`` per request, the plugin's ``ms``,
   and the client's round trip.
2. Fleet: 2 replicas sharing Redis vs 1 replica vs 2 replicas without Redis, 8 requests in flight. The stream
   reaches the replicas round-robin, and split by task (replica 1 gets one half of the tasks, replica 2 the
   other: a load balancer keyed by tenant), where only a shared price can trade one half's quality against
   the other's cost as one batch would.
3. Start-up: time to a healthy proxy, with and without the plugin.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "proxy")]
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import httpx  # noqa: E402
from loopback import serve_loopback  # noqa: E402
from proxy_support import MASTER_KEY, start_proxies, start_redis, write_config  # noqa: E402

from eccos_core.bundled import bundled_logs, bundled_models  # noqa: E402
from eccos_core.evaluate import realized_cost  # noqa: E402
from eccos_core.logs import split_logs  # noqa: E402
from eccos_core.messages import count_text_tokens  # noqa: E402

ALPHA = 0.6
KEY = "sk-bench-provider-key"


def stream(order: str = "split") -> dict[str, Any]:
    """The held-out queries with their logged outcomes and costs per model.

    ``order``: ``"split"`` (as the split lists them: grouped by task) or ``"shuffled"`` (seeded).
    """
    _, test = split_logs(bundled_logs(), test_frac=0.2, seed=0)
    if order == "shuffled":
        test = test.subset(np.random.default_rng(0).permutation(len(test)).tolist())
    models = list(bundled_models())
    names = [m.name for m in models]
    tokens = np.array([count_text_tokens(q) for q in test.queries], dtype=float)
    tasks = [t or "" for t in test.tasks]
    kinds = sorted(set(tasks))
    return {
        "queries": list(test.queries),
        "tasks": tasks,
        "half": [kinds.index(t) < len(kinds) / 2 for t in tasks],
        "names": names,
        "scores": test.scores(names),
        "cost": realized_cost(test, models, tokens),
    }


async def replay(urls: list[str], data: dict[str, Any], spread: str, concurrency: int, limit: int) -> list[dict]:
    """Send the stream; returns per request the status, the eccos headers, LiteLLM's overhead and the wall time."""
    gate = asyncio.Semaphore(concurrency)

    async def one(client: httpx.AsyncClient, i: int) -> dict[str, Any]:
        url = urls[0 if len(urls) == 1 else (i % 2 if spread == "round-robin" else int(not data["half"][i]))]
        body = {
            "model": "eccos",
            "messages": [{"role": "user", "content": data["queries"][i]}],
            "metadata": {"min_quality": ALPHA},
        }
        async with gate:
            started = time.perf_counter()
            response = await client.post(url + "/v1/chat/completions", json=body)
            wall = (time.perf_counter() - started) * 1000.0
        headers = response.headers
        model = response.json()["choices"][0]["message"]["content"].removeprefix("answer from ")
        return {
            "i": i,
            "status": response.status_code,
            "model": model,
            "p_success": float(headers.get("x-eccos-p-success", "nan")),
            "plugin_ms": float(headers.get("x-eccos-ms", "nan")),
            "litellm_overhead_ms": float(headers.get("x-litellm-overhead-duration-ms", "nan")),
            "wall_ms": wall,
        }

    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=300.0) as client:
        return list(await asyncio.gather(*(one(client, i) for i in range(limit))))


def outcome(rows: list[dict], data: dict[str, Any]) -> dict[str, Any]:
    """Realized success and cost of the routed stream from the logged outcomes."""
    col = {name: k for k, name in enumerate(data["names"])}
    picks = [(r["i"], col[r["model"]]) for r in rows if r["status"] == 200]
    success = np.array([data["scores"][i, j] for i, j in picks])
    cost = np.array([data["cost"][i, j] for i, j in picks])
    shares = np.bincount([j for _, j in picks], minlength=len(col)) / len(picks)
    return {
        "answered": len(picks),
        "errors": len(rows) - len(picks),
        "realized_success": round(float(np.nanmean(success)), 4),
        "mean_predicted_quality": round(float(np.nanmean([r["p_success"] for r in rows])), 4),
        "cost_usd": round(float(np.nansum(cost)), 6),
        "shares": {name: round(float(shares[k]), 3) for name, k in col.items() if shares[k] > 0},
    }


def percentiles(values: list[float]) -> dict[str, float]:
    v = np.asarray([x for x in values if np.isfinite(x)])
    return {"p50": round(float(np.percentile(v, 50)), 2), "p99": round(float(np.percentile(v, 99)), 2)}


def run_fleet(tmp: Path, api_base: str, redis: Any, replicas: int, shared: bool, plugin: bool = True) -> Any:
    config = write_config(
        tmp, api_base, KEY, redis_port=redis.port if shared else None, plugin=plugin, name=f"c{time.time_ns()}.yaml"
    )
    env = {"ECCOS_MIN_QUALITY": str(ALPHA), "ECCOS_REDIS_URL": "auto" if shared else "off"}
    return start_proxies(config, replicas, env)


def flush(redis: Any) -> None:
    import redis as redis_py

    redis_py.Redis(port=redis.port).flushall()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, help="requests per fleet run (default: the whole held-out split)")
    parser.add_argument("--overhead-requests", type=int, default=300, help="sequential requests per overhead run")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument(
        "--only", choices=("overhead", "fleet"), help="re-measure one part; the other is kept from proxy.json"
    )
    parser.add_argument(
        "--order", choices=("split", "shuffled"), default="split", help="request order (default: the split's)"
    )
    parser.add_argument("--tag", default="proxy", help="results file prefix (default proxy)")
    args = parser.parse_args()
    data = stream(args.order)
    limit = min(args.requests or len(data["queries"]), len(data["queries"]))
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load": os.getloadavg()},
        "alpha": ALPHA,
        "requests": limit,
        "order": args.order,
    }
    with tempfile.TemporaryDirectory() as folder, serve_loopback() as provider:
        tmp = Path(folder)
        redis = start_redis(tmp)
        kept = json.loads((args.out / "proxy.json").read_text(encoding="utf-8")) if args.only else {}
        try:
            if args.only == "fleet":
                results["overhead"], results["startup"] = kept["overhead"], kept["startup"]
                results["machine"]["overhead_load"] = kept["machine"].get("overhead_load", kept["machine"]["load"])
            else:
                results["overhead"], results["startup"] = overhead(tmp, provider.api_base, redis, data, args)
                results["machine"]["overhead_load"] = os.getloadavg()
            if args.only == "overhead":
                results["fleet"] = kept["fleet"]
                results["requests"] = kept["requests"]
            else:
                results["fleet"] = fleet(tmp, provider.api_base, redis, data, limit)
        finally:
            redis.stop()
    results["machine"]["load_after"] = os.getloadavg()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.tag}.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (args.out / f"{args.tag}.txt").write_text(report(results), encoding="utf-8")
    print(report(results))


def overhead(tmp: Path, api_base: str, redis: Any, data: dict[str, Any], args: Any) -> tuple[dict, dict]:
    runs: dict[str, Any] = {}
    startup: dict[str, float] = {}
    for name, plugin in (("default routing", False), ("eccos plugin", True)):
        (proxy,) = run_fleet(tmp, api_base, redis, 1, shared=True, plugin=plugin)
        startup[name] = round(proxy.started_in, 2)
        try:
            rows = asyncio.run(replay([proxy.url], data, "round-robin", 1, args.overhead_requests))
        finally:
            proxy.stop()
        runs[name] = {
            "litellm_overhead_ms": percentiles([r["litellm_overhead_ms"] for r in rows]),
            "plugin_ms": percentiles([r["plugin_ms"] for r in rows]) if plugin else None,
            "round_trip_ms": percentiles([r["wall_ms"] for r in rows]),
        }
        flush(redis)
    return runs, startup


def fleet(tmp: Path, api_base: str, redis: Any, data: dict[str, Any], limit: int) -> list[dict[str, Any]]:
    rows_out = []
    setups = [("2 replicas + Redis", 2, True), ("1 replica", 1, True), ("2 replicas, no Redis", 2, False)]
    for spread in ("round-robin", "by task"):
        for name, replicas, shared in setups:
            if replicas == 1 and spread != "round-robin":
                continue
            proxies = run_fleet(tmp, api_base, redis, replicas, shared)
            try:
                rows = asyncio.run(replay([p.url for p in proxies], data, spread, 8, limit))
            finally:
                for proxy in proxies:
                    proxy.stop()
            flush(redis)
            rows_out.append({"setup": name, "spread": spread, **outcome(rows, data)})
    return rows_out


def report(results: dict[str, Any]) -> str:
    lines = [
        f"eccos in LiteLLM Proxy (alpha {results['alpha']}, {results['requests']} held-out requests of the bundled "
        f"logs in {results.get('order', 'split')} order; {results['machine']['cpus']} CPUs, "
        f"load {results['machine']['load']} -> "
        f"{results['machine'].get('load_after')})",
        "",
        "Overhead per request, one proxy, one request at a time "
        f"(ms; load average after: {results['machine']['overhead_load']})",
        f"{'routing':<18}{'LiteLLM overhead p50/p99':>28}{'plugin p50/p99':>18}{'round trip p50/p99':>24}",
    ]
    for name, run in results["overhead"].items():
        plugin = run["plugin_ms"]
        lines.append(
            f"{name:<18}{run['litellm_overhead_ms']['p50']:>16} / {run['litellm_overhead_ms']['p99']:<9}"
            f"{(str(plugin['p50']) + ' / ' + str(plugin['p99'])) if plugin else '-':>18}"
            f"{run['round_trip_ms']['p50']:>14} / {run['round_trip_ms']['p99']}"
        )
    lines += ["", "Start-up to a healthy proxy (s): " + ", ".join(f"{k} {v}" for k, v in results["startup"].items())]
    lines += [
        "",
        "Fleet (8 in flight): realized success and cost from the logged outcomes",
        f"{'spread':<13}{'setup':<24}{'answered':>9}{'success':>9}{'pred. q':>9}{'cost $':>10}",
    ]
    for row in results["fleet"]:
        lines.append(
            f"{row['spread']:<13}{row['setup']:<24}{row['answered']:>9}{row['realized_success']:>9}"
            f"{row['mean_predicted_quality']:>9}{row['cost_usd']:>10.5f}"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
