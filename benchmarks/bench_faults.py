"""The 10 %-fault run: 1,000 items through ``Router.batch`` and ``Router.abatch`` against failing providers.

The script starts its own OpenAI-compatible server on 127.0.0.1. Two pool models fail 10 % of their calls
(HTTP 503), one accepts every connection and never answers, and one is steady. Every model has a short
``timeout``, so a call to the silent model falls back after it. Measured per run: items in and out, errors,
fallbacks by cause, wall time and item latency. The provider times how long each request to the silent model
stays open (arrival to the client hanging up): no call may wait on it past its timeout. Every attempt is also
timed on the client (LiteLLM's own work and the wait for a pooled connection included), and provider requests are
counted against attempts (no hidden retries), as are bytes printed to stdout.

Usage::

    python benchmarks/bench_faults.py [--items 1000] [--timeout 2] [--concurrency 16]

Writes ``benchmarks/results/faults.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import io
import json
import os
import platform
import random
import select
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from eccos_core.dispatch import RoutedResponse
from eccos_core.predictors.base import Prediction
from eccos_core.pricing import ModelSpec
from eccos_core.router import Router

RESULTS = Path(__file__).resolve().parent / "results" / "faults.json"
SCHEDULING_SLACK_S = 1.0
"""How late a client's timeout may fire on a loaded 2-core machine (event loop and threads starved of CPU) before
a wait on the silent provider counts as past its timeout. Measured from the provider's side: request in, hang-up."""
API_KEY = "sk-bench-faults-0000"
# name: (served model name, USD per token, mean predicted quality)
POOL = {
    "flaky-small": ("flaky-small", 1e-7, 0.55),
    "silent-mid": ("hang-mid", 2e-7, 0.78),
    "flaky-large": ("flaky-large", 6e-7, 0.80),
    "steady-xl": ("steady-xl", 2e-6, 0.92),
}


class Attempts:
    """Times every ``litellm.completion`` / ``acompletion`` call the router makes: one per provider attempt."""

    def __init__(self) -> None:
        import litellm

        self.lock = threading.Lock()
        self.seconds: list[tuple[str, float, bool]] = []
        sync, async_ = litellm.completion, litellm.acompletion

        def completion(**kwargs: Any) -> Any:
            started = time.perf_counter()
            ok = False
            try:
                response = sync(**kwargs)
                ok = True
                return response
            finally:
                self.add(kwargs["model"], time.perf_counter() - started, ok)

        async def acompletion(**kwargs: Any) -> Any:
            started = time.perf_counter()
            ok = False
            try:
                response = await async_(**kwargs)
                ok = True
                return response
            finally:
                self.add(kwargs["model"], time.perf_counter() - started, ok)

        litellm.completion, litellm.acompletion = completion, acompletion

    def add(self, model: str, seconds: float, ok: bool) -> None:
        with self.lock:
            self.seconds.append((model, seconds, ok))

    def take(self) -> list[tuple[str, float, bool]]:
        with self.lock:
            out, self.seconds = self.seconds, []
        return out

    @staticmethod
    def summary(attempts: list[tuple[str, float, bool]]) -> dict[str, Any]:
        """Client-side attempt durations, LiteLLM's own work and the wait for a pooled connection included."""
        quick = np.array([s for m, s, _ in attempts if "hang" not in m])
        silent = np.array([s for m, s, _ in attempts if "hang" in m])

        def spread(values: np.ndarray) -> dict[str, float]:
            return {k: round(float(f(values)), 3) for k, f in (("min", np.min), ("p50", np.median), ("max", np.max))}

        return {
            "attempts_timed": len(attempts),
            "quick_attempt_s": spread(quick),
            "silent_model_attempts": len(silent),
            "silent_attempts_ended_by_error": sum(not ok for m, _, ok in attempts if "hang" in m),
            "silent_model_attempt_s": spread(silent),
        }


class Provider:
    """The server's state: failure share, a seeded draw, requests per model, and the event that frees hangs."""

    def __init__(self, fail_rate: float) -> None:
        self.fail_rate = fail_rate
        self.rng = random.Random(0)
        self.lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        self.stop = threading.Event()
        self.silent_waits: list[float] = []
        """Seconds each request to the silent model stayed open: from its arrival until the client hung up."""

    def fails_now(self) -> bool:
        with self.lock:
            return self.rng.random() < self.fail_rate


def make_handler(provider: Provider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _json(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            model = str(body.get("model", ""))
            with provider.lock:
                provider.requests[model] += 1
            if "hang" in model:  # accepts the connection, never answers; times how long the client waits
                arrived = time.perf_counter()
                while not provider.stop.is_set():
                    readable, _, _ = select.select([self.connection], [], [], 0.02)
                    if readable and not self.connection.recv(1, socket.MSG_PEEK):
                        break  # the client closed the connection: its timeout fired
                with provider.lock:
                    provider.silent_waits.append(time.perf_counter() - arrived)
                self.close_connection = True
                return
            if "flaky" in model and provider.fails_now():
                self._json(503, {"error": {"message": f"model {model} is overloaded", "type": "server_error"}})
                return
            reply = f"answer from {model}"
            self._json(
                200,
                {
                    "id": "chatcmpl-bench",
                    "object": "chat.completion",
                    "created": 1700000000,
                    "model": model,
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}
                    ],
                    "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
                },
            )

    return Handler


class SpreadPredictor:
    """Deterministic predictions: each model's mean quality, varied per query so that plans mix models."""

    kind = "bench"

    def __init__(self, names: list[str], means: list[float]) -> None:
        self.models = tuple(names)
        self.means = np.array(means)
        self.out_of_fold = None

    def predict(self, queries: list[str]) -> Prediction:
        wobble = np.array([[(_digest(q + m) % 21 - 10) / 100.0 for m in self.models] for q in queries])
        quality = np.clip(self.means[None, :] + wobble, 0.0, 1.0)
        return Prediction(self.models, quality, np.full(quality.shape, 50.0))


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "little")


def summarize(results: list[Any], items: int, wall_s: float, timeout: float) -> dict[str, Any]:
    answered = [r for r in results if isinstance(r, RoutedResponse)]
    errors = [r for r in results if not isinstance(r, RoutedResponse)]
    causes = Counter(f.error_type for r in answered for f in r.fallbacks)
    quick_timeouts = sum("Timeout" in f.error_type and f.model != "silent-mid" for r in answered for f in r.fallbacks)
    causes.update(f.error_type for e in errors for f in getattr(e, "fallbacks", ()))
    latency = np.array([r.latency_s for r in answered])
    timed_out = [sum("Timeout" in f.error_type for f in r.fallbacks) for r in answered]
    in_order = all(r.plan.index == i for i, r in enumerate(results) if isinstance(r, RoutedResponse))
    return {
        "items_in": items,
        "items_out": len(results),
        "lost": items - len(results),
        "answered": len(answered),
        "errors": len(errors),
        "error_types": dict(Counter(type(e).__name__ for e in errors)),
        "in_input_order": in_order,
        "fallbacks": sum(causes.values()),
        "fallbacks_by_cause": dict(causes),
        "items_with_fallback": sum(bool(r.fallbacks) for r in answered),
        "items_that_timed_out": sum(n > 0 for n in timed_out),
        "timeouts_on_answering_models": quick_timeouts,
        "attempts": sum(1 + len(r.fallbacks) for r in answered) + sum(len(getattr(e, "fallbacks", ())) for e in errors),
        "answered_by": dict(Counter(r.model for r in answered)),
        "wall_s": round(wall_s, 2),
        "latency_s": {
            "p50": round(float(np.percentile(latency, 50)), 3),
            "p99": round(float(np.percentile(latency, 99)), 3),
            "max": round(float(latency.max()), 3),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds each model may take (default 2)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--fail-rate", type=float, default=0.1)
    parser.add_argument("--min-quality", type=float, default=0.75)
    args = parser.parse_args()

    provider = Provider(args.fail_rate)
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(provider))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    api_base = f"http://127.0.0.1:{server.server_address[1]}/v1"
    params = {"api_base": api_base, "api_key": API_KEY}
    pool = [
        ModelSpec(name, litellm_model=f"openai/{served}", input_cost_per_token=price, output_cost_per_token=price,
                  max_input_tokens=8192, timeout=args.timeout, litellm_params=params)
        for name, (served, price, _) in POOL.items()
    ]  # fmt: skip
    predictor = SpreadPredictor(list(POOL), [mean for _, _, mean in POOL.values()])
    router = Router(pool, predictor, max_concurrency=args.concurrency)
    queries = [f"question {i}: what is {i} + {i * 7 % 13}?" for i in range(args.items)]
    plan = router.plan(queries, args.min_quality)
    planned = Counter(plan.models)

    runs: dict[str, Any] = {}
    printed = io.StringIO()
    attempts = Attempts()
    for mode in ("batch", "abatch"):
        with provider.lock:
            provider.requests.clear()
        started = time.perf_counter()
        with contextlib.redirect_stdout(printed):
            if mode == "batch":
                results = router.batch(queries, args.min_quality, return_exceptions=True)
            else:
                results = asyncio.run(router.abatch(queries, args.min_quality, return_exceptions=True))
        wall = time.perf_counter() - started
        runs[mode] = summarize(results, args.items, wall, args.timeout)
        runs[mode].update(Attempts.summary(attempts.take()))
        runs[mode]["provider_requests"] = sum(provider.requests.values())
        # more requests than attempts would be hidden retries; fewer, attempts that timed out before they were sent
        runs[mode]["requests_minus_attempts"] = runs[mode]["provider_requests"] - runs[mode]["attempts"]
        time.sleep(0.5)  # the last silent requests see their clients hang up
        with provider.lock:
            waits, provider.silent_waits = np.array(provider.silent_waits), []
        runs[mode]["provider_side_silent_wait_s"] = {
            "count": len(waits),
            "p50": round(float(np.median(waits)), 3),
            "p99": round(float(np.percentile(waits, 99)), 3),
            "max": round(float(waits.max()), 3),
        }
        late = waits - args.timeout
        runs[mode]["silent_waits_late_by_over_0.25s"] = int((late > 0.25).sum())
        runs[mode]["silent_waits_late_by_over_1s"] = int((late > SCHEDULING_SLACK_S).sum())
        runs[mode]["no_call_waits_past_its_timeout"] = bool(late.max() <= SCHEDULING_SLACK_S)
        print(f"{mode}: {json.dumps(runs[mode])}")
    provider.stop.set()
    server.shutdown()

    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared), Python {platform.python_version()}",
        "config": {
            "items": args.items,
            "min_quality": args.min_quality,
            "fail_rate": args.fail_rate,
            "timeout_s": args.timeout,
            "max_concurrency": args.concurrency,
            "pool": {name: served for name, (served, _, _) in POOL.items()},
            "planned": dict(planned),
        },
        "stdout_bytes_during_runs": len(printed.getvalue()),
        "runs": runs,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
