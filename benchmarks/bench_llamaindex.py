"""ECCOSLLM.acomplete_batch over 1,000 real prompts against a local OpenAI-compatible server: wall time, the
share of it spent routing, and peak memory.

Run: ``python benchmarks/bench_llamaindex.py [--n 1000] [--min-quality 0.6] [--max-concurrency 16]
[--router DIR]``; writes ``benchmarks/results/llamaindex.json``. Prompts are the bundled held-out split
(``split_logs(bundled_logs(), test_frac=0.2, seed=0)[1]``). The router is the default router's predictor and
quality guard (``Router.default()``, or a router saved with ``Router.save`` given as ``--router``) over the
bundled pool, re-pointed at the loopback provider of ``tests/conftest.py``, which this script starts in a
separate process so that serving does not share this process's interpreter.

``python benchmarks/bench_llamaindex.py --serve`` only starts that provider and prints its ``/v1`` URL (what the
LlamaIndex examples take as ``--api-base``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "llamaindex.json"
API_KEY = "sk-loopback-bench"

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def serve() -> None:
    """Run the loopback provider of ``tests/conftest.py`` until killed; print its URL first."""
    from http.server import ThreadingHTTPServer

    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import LoopbackProvider, _make_handler

    provider = LoopbackProvider(url="")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(provider))
    server.daemon_threads = True
    server.request_queue_size = 256
    provider.url = f"http://127.0.0.1:{server.server_address[1]}"
    print(provider.api_base, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


def start_server() -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen([sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def loopback_router(api_base: str, router_dir: str | None) -> Any:
    """The default router's predictor and guard over the bundled pool, served at ``api_base``."""
    from eccos_core.bundled import bundled_models
    from eccos_core.pricing import ModelSpec
    from eccos_core.router import Router

    pool = [
        ModelSpec(
            name=m.name,
            litellm_model=f"openai/{m.name}",
            input_cost_per_token=m.input_cost_per_token,
            output_cost_per_token=m.output_cost_per_token,
            litellm_params={"api_base": api_base, "api_key": API_KEY},
        )
        for m in bundled_models()
    ]
    base = Router.load(router_dir) if router_dir else Router.default()
    return base.with_models(pool)


def rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def run_batch(llm: Any, router: Any, prompts: list[str], args: argparse.Namespace) -> dict[str, Any]:
    planning: list[float] = []
    plan = router.plan

    planning_cpu: list[float] = []

    def timed_plan(*a: Any, **kw: Any) -> Any:
        started, cpu = time.perf_counter(), time.process_time()
        try:
            return plan(*a, **kw)
        finally:
            planning.append(time.perf_counter() - started)
            planning_cpu.append(time.process_time() - cpu)  # nothing else runs while the batch is planned

    router.plan = timed_plan
    try:
        load_before = os.getloadavg()[0]
        started, cpu = time.perf_counter(), time.process_time()
        results = await llm.acomplete_batch(
            prompts, min_quality=args.min_quality, max_concurrency=args.max_concurrency, return_exceptions=True
        )
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    finally:
        del router.plan
    answered = [r for r in results if not isinstance(r, Exception)]
    decisions = [r.additional_kwargs["eccos"] for r in answered]
    in_order = all(r.text == f"answer from {d['model']}" for r, d in zip(answered, decisions, strict=True)) and len(
        results
    ) == len(prompts)
    return {
        "wall_s": wall,
        "plan_calls": len(planning),
        "plan_s": sum(planning),
        "routing_share": sum(planning) / wall,
        "send_s": wall - sum(planning),
        "cpu_s": cpu,
        "plan_cpu_s": sum(planning_cpu),
        "routing_share_of_cpu": sum(planning_cpu) / cpu,
        "load_average_1min": [load_before, os.getloadavg()[0]],
        "per_prompt_ms": 1e3 * wall / len(prompts),
        "answered": len(answered),
        "errors": len(results) - len(answered),
        "replies_match_routed_model": in_order,
        "status": decisions[0]["status"] if decisions else None,
        "predicted_cost_usd": sum(d["predicted_cost"] for d in decisions),
        "actual_cost_usd": sum(d["cost"] for d in decisions),
        "mean_p_success": sum(d["p_success"] for d in decisions) / max(1, len(decisions)),
        "models": dict(Counter(d["model"] for d in decisions).most_common()),
        "peak_rss_mb": rss_mb(),
    }


async def core_abatch(router: Any, prompts: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """The same batch through ``Router.abatch`` alone: what the LlamaIndex layer adds on top.

    ``send_s`` is the wall time less a separate ``Router.plan`` of the same prompts (``abatch`` plans inside).
    """
    started = time.perf_counter()
    router.plan(prompts, args.min_quality)
    plan_s = time.perf_counter() - started
    started = time.perf_counter()
    results = await router.abatch(
        prompts, args.min_quality, max_concurrency=args.max_concurrency, return_exceptions=True
    )
    wall = time.perf_counter() - started
    errors = sum(isinstance(r, Exception) for r in results)
    return {"wall_s": wall, "plan_s": plan_s, "send_s": wall - plan_s, "errors": errors}


async def bench(args: argparse.Namespace, api_base: str) -> dict[str, Any]:
    from eccos_core.bundled import bundled_logs
    from eccos_core.logs import split_logs
    from llamaindex_eccos import ECCOSLLM

    rss_start = rss_mb()
    started = time.perf_counter()
    router = loopback_router(api_base, args.router)
    load_s = time.perf_counter() - started
    _, test = split_logs(bundled_logs(), test_frac=0.2, seed=0)
    prompts = list(test.queries[: args.n])
    llm = ECCOSLLM(router=router, min_quality=args.min_quality)
    rss_loaded = rss_mb()
    cold = await run_batch(llm, router, prompts, args)  # first batch of the process: encoder warm-up included
    warm = await run_batch(llm, router, prompts, args)
    core = await core_abatch(router, prompts, args)
    return {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "processor": platform.processor()},
        "prompts": len(prompts),
        "prompt_source": "bundled held-out split (split_logs(bundled_logs(), test_frac=0.2, seed=0)[1]), first N",
        "min_quality": args.min_quality,
        "max_concurrency": args.max_concurrency,
        "router": args.router or "Router.default()",
        "router_load_s": load_s,
        "rss_mb": {"start": rss_start, "router_loaded": rss_loaded, "peak": rss_mb()},
        "acomplete_batch": {"cold": cold, "warm": warm},
        "router_abatch_same_prompts": core,
        "provider": "loopback OpenAI-compatible server of tests/conftest.py, in a separate process",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", action="store_true", help="only run the loopback provider and print its URL")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--min-quality", type=float, default=0.6)
    parser.add_argument("--max-concurrency", type=int, default=16)
    parser.add_argument("--router", help="directory of a router saved with Router.save (default: Router.default())")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    server, api_base = start_server()
    try:
        result = asyncio.run(bench(args, api_base))
    finally:
        server.terminate()
        server.wait(timeout=10)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    for run in ("cold", "warm"):
        r = result["acomplete_batch"][run]
        print(
            f"{run}: {result['prompts']} prompts in {r['wall_s']:.2f} s ({r['per_prompt_ms']:.1f} ms each), "
            f"routing {r['plan_s']:.2f} s = {100 * r['routing_share']:.1f} % "
            f"(CPU {r['plan_cpu_s']:.2f} of {r['cpu_s']:.2f} s = {100 * r['routing_share_of_cpu']:.1f} %), "
            f"errors {r['errors']}, load {r['load_average_1min'][0]:.1f}, "
            f"peak RSS {r['peak_rss_mb']:.0f} MiB"
        )
    core = result["router_abatch_same_prompts"]
    print(
        f"Router.abatch alone: {core['wall_s']:.2f} s (sending about {core['send_s']:.2f} s; ECCOSLLM sent in "
        f"{result['acomplete_batch']['warm']['send_s']:.2f} s); wrote {args.out}"
    )


if __name__ == "__main__":
    main()
