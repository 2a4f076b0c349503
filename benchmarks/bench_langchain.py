"""LangChain integration benchmark: ``prompt | ChatECCOS`` on 1,000 held-out prompts, and joint vs per-item routing.

1. A batch of 1,000 prompts from the bundled held-out split (``split_logs(bundled_logs(), 0.2, seed=0)[1]``)
   through ``prompt | ChatECCOS`` (the default router, re-pointed at a loopback OpenAI-compatible server that
   this script starts in a subprocess): wall time, time in routing (the one joint ``plan`` call) and its share,
   peak RSS. Run twice in one process: the first batch pays one-time costs (LiteLLM's clients, tokenizer).
2. Joint ``.batch()`` vs routing each item alone (``invoke`` in a loop) at the same ``min_quality`` over the whole
   held-out split, scored with its logged outcomes (``RoutingLogs.scores``; cost as in ``eccos eval``: logged
   cost, else tokens × prices). A sample is checked through the loopback server: ``ChatECCOS.batch`` and
   ``ChatECCOS.invoke`` decide exactly as ``ECCOSSelector.batch`` / ``.invoke`` (``router.plan``) do.

    python benchmarks/bench_langchain.py [--parts chain joint] [--n 1000] [--alphas 0.56 0.58 0.6 0.62]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

API_KEY = "sk-loopback"


# ------------------------------------------------------------------------------- loopback provider
class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        model = str(body.get("model", ""))
        reply = f"answer from {model}"
        prompt = sum(len(str(m.get("content", "")).split()) for m in body.get("messages") or [])
        payload = {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 1700000000,
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": 3, "total_tokens": prompt + 3},
        }
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def serve() -> None:
    """Run the loopback provider (``--serve``): prints its port, answers until killed."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


def start_server() -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen([sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    port = process.stdout.readline().strip()
    return process, f"http://127.0.0.1:{port}/v1"


# ------------------------------------------------------------------------------------------ helpers
def rss_mb() -> float:
    """Current resident set size in MB (Linux)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Timed:
    """Wraps ``router.plan``: records the batch size, wall seconds and process CPU seconds of every call.

    Nothing else runs while a batch is planned (sending starts after), so the process CPU time is the routing
    work itself, a fairer number than wall time on a machine shared with other jobs.
    """

    def __init__(self, router: Any) -> None:
        self.calls: list[tuple[int, float, float]] = []
        self._plan = router.plan
        router.plan = self

    def __call__(self, queries: Any, *args: Any, **kwargs: Any) -> Any:
        started, cpu = time.perf_counter(), time.process_time()
        try:
            return self._plan(queries, *args, **kwargs)
        finally:
            self.calls.append((len(queries), time.perf_counter() - started, time.process_time() - cpu))


# ------------------------------------------------------------------------------------------- parts
def loopback_pool(api_base: str) -> list[Any]:
    """The bundled pool (prices, context windows, capabilities), every model served by the loopback provider."""
    from eccos_core.bundled import bundled_models
    from eccos_core.pricing import ModelSpec

    local = {"api_base": api_base, "api_key": API_KEY}
    return [
        ModelSpec(**{**spec.to_dict(), "litellm_model": f"openai/{spec.name}", "litellm_params": local})
        for spec in bundled_models()
    ]


def bench_chain(model: Any, queries: list[str], alpha: float, concurrency: int) -> dict[str, Any]:
    """One ``prompt | ChatECCOS`` batch: wall time, routing time and share, results checked."""
    from langchain_core.prompts import ChatPromptTemplate

    chain = ChatPromptTemplate.from_messages([("human", "{query}")]) | model.bind(min_quality=alpha)
    timer = Timed(model.get_router())
    rss_before = rss_mb()
    started, cpu = time.perf_counter(), time.process_time()
    replies = chain.batch([{"query": q} for q in queries], {"max_concurrency": concurrency})
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    model.get_router().plan = timer._plan
    (size, routing, routing_cpu), *more = timer.calls
    assert not more and size == len(queries), f"expected one joint plan of {len(queries)}, got {timer.calls}"
    metas = [r.response_metadata["eccos"] for r in replies]
    assert all(r.content == f"answer from {m['model']}" for r, m in zip(replies, metas, strict=True))
    assert {m["min_quality"] for m in metas} == {alpha}
    mix: dict[str, int] = {}
    for meta in metas:
        mix[meta["model"]] = mix.get(meta["model"], 0) + 1
    return {
        "n": len(queries),
        "min_quality": alpha,
        "max_concurrency": concurrency,
        "wall_s": round(wall, 3),
        "routing_s": round(routing, 3),
        "routing_share": round(routing / wall, 3),
        "sending_s": round(wall - routing, 3),
        "cpu_s": round(cpu, 3),
        "routing_cpu_s": round(routing_cpu, 3),
        "routing_cpu_share": round(routing_cpu / cpu, 3),
        "per_item_ms": round(1000 * wall / len(queries), 2),
        "rss_before_mb": round(rss_before, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "batch_size_in_metadata": sorted({m["batch_size"] for m in metas}),
        "mean_p_success": round(sum(m["p_success"] for m in metas) / len(metas), 4),
        "predicted_cost_usd": round(sum(m["predicted_cost"] for m in metas), 6),
        "model_mix": dict(sorted(mix.items(), key=lambda kv: -kv[1])),
    }


def realized(test: Any, router: Any, picks: list[str], input_tokens: Any) -> tuple[float, float]:
    """Mean logged score and total cost (logged cost, else tokens × prices) of one model per query."""
    import numpy as np

    from eccos_core.evaluate import realized_cost

    names = [m.name for m in router.models]
    columns = np.array([names.index(p) for p in picks])
    rows = np.arange(len(picks))
    scores = test.scores(names)[rows, columns]
    cost = realized_cost(test, router.models, np.asarray(input_tokens, dtype=float))[rows, columns]
    return float(np.nanmean(scores)), float(np.nansum(cost))


def bench_joint_vs_loop(router: Any, test: Any, alphas: list[float]) -> list[dict[str, Any]]:
    """Joint batch vs per-item routing at each α, on every held-out query, scored with the logged outcomes.

    The predictor's output does not depend on what else is in the batch (each query's neighbours are its own),
    so the queries are embedded once and both policies are planned from that prediction: the joint one in one
    optimizer call, the per-item one in one call per query, exactly as ``.batch()`` and ``invoke`` plan.
    :func:`check_sample` confirms on real calls that ChatECCOS decides the same.
    """
    from eccos_core.messages import count_input_tokens

    queries = list(test.queries)
    started = time.perf_counter()
    prediction = router.predict(queries)
    tokens = [count_input_tokens([{"role": "user", "content": q}]) for q in queries]
    predict_s = time.perf_counter() - started
    rows = []
    for alpha in alphas:
        started = time.perf_counter()
        joint = router.plan_prediction(prediction, tokens, alpha)
        joint_s = time.perf_counter() - started
        started = time.perf_counter()
        alone = [router.plan_prediction(prediction.rows([i]), tokens[i : i + 1], alpha) for i in range(len(queries))]
        alone_s = time.perf_counter() - started
        joint_success, joint_cost = realized(test, router, joint.models, tokens)
        alone_success, alone_cost = realized(test, router, [p.models[0] for p in alone], tokens)
        rows.append(
            {
                "min_quality": alpha,
                "n": len(queries),
                "joint_status": joint.status.value,
                "joint_success": round(joint_success, 4),
                "joint_cost_usd": round(joint_cost, 6),
                "joint_solve_s": round(joint_s, 3),
                "loop_success": round(alone_success, 4),
                "loop_cost_usd": round(alone_cost, 6),
                "loop_unreachable": sum(p.status.value == "quality_unreachable" for p in alone),
                "loop_solve_s": round(alone_s, 2),
                "loop_over_joint_cost": round(alone_cost / joint_cost, 2) if joint_cost else None,
                "predict_s": round(predict_s, 2),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def check_sample(model: Any, router: Any, queries: list[str], alpha: float) -> dict[str, Any]:
    """On real calls, ChatECCOS decides exactly as ``router.plan`` and the offline replay in part 2 do."""
    from eccos_core.messages import count_input_tokens
    from langchain_eccos import ECCOSSelector

    selector = ECCOSSelector(router=router, min_quality=alpha)
    batch = [r.response_metadata["eccos"]["model"] for r in model.batch(queries, min_quality=alpha)]
    invoked = [model.invoke(q, min_quality=alpha).response_metadata["eccos"]["model"] for q in queries]
    prediction = router.predict(queries)
    tokens = [count_input_tokens([{"role": "user", "content": q}]) for q in queries]
    replay_joint = router.plan_prediction(prediction, tokens, alpha).models
    replay_alone = [
        router.plan_prediction(prediction.rows([i]), tokens[i : i + 1], alpha).models[0] for i in range(len(queries))
    ]
    return {
        "n": len(queries),
        "batch_matches_selector": batch == [d["model"] for d in selector.batch(queries)],
        "invoke_matches_selector": invoked == [selector.invoke(q)["model"] for q in queries],
        "batch_matches_replay": batch == replay_joint,
        "invoke_matches_replay": invoked == replay_alone,
    }


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--parts", nargs="+", choices=["chain", "joint"], default=["chain", "joint"])
    parser.add_argument("--n", type=int, default=1000, help="prompts in the chain batch")
    parser.add_argument("--alpha", type=float, default=0.6, help="min_quality of the chain batch")
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.56, 0.58, 0.6, 0.62])
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--sample", type=int, default=40, help="queries checked through ChatECCOS.invoke")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    if args.serve:
        serve()
        return

    from eccos_core.bundled import bundled_logs
    from eccos_core.logs import split_logs
    from eccos_core.router import Router
    from langchain_eccos import ChatECCOS

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "langchain.json"
    report = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    report["machine"] = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
    }
    started = time.perf_counter()
    default = Router.default()
    report["router_load_s"] = round(time.perf_counter() - started, 2)
    test = split_logs(bundled_logs(), test_frac=0.2, seed=0)[1]
    if "chain" in args.parts:
        server, api_base = start_server()
        try:
            model = ChatECCOS(models=loopback_pool(api_base), min_quality=args.alpha)
            model.get_router()  # load outside the timed batches
            queries = list(test.queries)[: args.n]
            report["chain_batch"] = []
            for run in ("first batch in process", "second batch"):
                result = {"run": run, **bench_chain(model, queries, args.alpha, args.concurrency)}
                report["chain_batch"].append(result)
                print(json.dumps(result), flush=True)
            report["decision_check"] = check_sample(model, default, list(test.queries)[: args.sample], args.alpha)
            print(json.dumps(report["decision_check"]), flush=True)
        finally:
            server.terminate()
            server.wait(timeout=10)
    if "joint" in args.parts:
        report["joint_vs_loop"] = bench_joint_vs_loop(default, test, args.alphas)
    report["machine"]["load_average_at_end"] = os.getloadavg()
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    text = [
        f"machine: {report['machine']}",
        "",
        f"# prompt | ChatECCOS, {args.n} held-out prompts, min_quality {args.alpha}, max_concurrency "
        f"{args.concurrency} (loopback provider in a subprocess)",
        table(
            report.get("chain_batch", []),
            [
                "run", "wall_s", "routing_s", "routing_share", "cpu_s", "routing_cpu_s", "routing_cpu_share",
                "rss_before_mb", "peak_rss_mb",
            ],
        ),
        "",
        f"# joint .batch() vs invoke in a loop, {len(test)} held-out queries, logged outcomes",
        table(
            report.get("joint_vs_loop", []),
            [
                "min_quality", "joint_success", "joint_cost_usd", "loop_success", "loop_cost_usd",
                "loop_unreachable", "loop_over_joint_cost", "joint_solve_s", "loop_solve_s",
            ],
        ),
        "",
        f"decision check (ChatECCOS.batch / .invoke through the loopback vs ECCOSSelector): "
        f"{report.get('decision_check')}",
    ]  # fmt: skip
    (out / "langchain.txt").write_text("\n".join(text) + "\n", encoding="utf-8")
    print("\n".join(text))


if __name__ == "__main__":
    main()
