"""Batch fault run through both shells: 500 items, 10 % provider faults, 5 % bad items of each kind; 0 lost.

    python benchmarks/bench_shell_faults.py [--items 500] [--fault-rate 0.1] [--bad-rate 0.05]

The bundled pool is re-pointed at a loopback OpenAI-compatible server (``tests/loopback.py``, in a thread of this
process on 127.0.0.1) whose models all answer HTTP 503 to a seeded ``--fault-rate`` share of requests, so calls
fall back along their chains. The items are held-out prompts of the bundled logs with ``--bad-rate`` of them
replaced by each kind of bad item: a prompt longer than every context window, an empty prompt, a prompt with a
lone surrogate. Each shell batches them once with ``return_exceptions=True``: ``ChatECCOS.batch`` (the default
router re-pointed with ``models=``) and ``ECCOSLLM.complete_batch``. Measured per shell: items in and out, items
lost (no result in their slot), whether every bad item holds its typed error in its own slot and every good one an
answer (order kept), answers whose model had failed over, provider requests per good item, and wall time.

Writes ``benchmarks/results/shell-faults.json`` and ``.txt``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests")]
RESULTS = ROOT / "benchmarks" / "results"
KINDS = ("oversize", "empty", "surrogate")


def _items(n: int, bad_rate: float) -> tuple[list[str], list[str]]:
    """``n`` held-out prompts, each kind of bad item at ``bad_rate``; returns the prompts and each one's kind."""
    import numpy as np

    from eccos_core.bundled import bundled_logs
    from eccos_core.logs import split_logs

    prompts = list(split_logs(bundled_logs(), test_frac=0.2, seed=0)[1].queries[:n])
    kinds = ["good"] * n
    rng = np.random.default_rng(0)
    slots = rng.permutation(n)
    per_kind = round(n * bad_rate)
    bad = {"oversize": "word " * 300_000, "empty": "", "surrogate": "why \ud800 here?"}
    for k, kind in enumerate(KINDS):
        for i in slots[k * per_kind : (k + 1) * per_kind]:
            prompts[int(i)], kinds[int(i)] = bad[kind], kind
    return prompts, kinds


def _pool(api_base: str) -> list[Any]:
    from eccos_core.bundled import bundled_models
    from eccos_core.pricing import ModelSpec

    fields = ("input_cost_per_token", "output_cost_per_token", "max_input_tokens", "max_output_tokens")
    return [
        ModelSpec(
            m.name,
            litellm_model=f"openai/flaky-{m.name}",
            litellm_params={"api_base": api_base, "api_key": "sk-loopback"},
            **{f: getattr(m, f) for f in fields},
        )
        for m in bundled_models()
    ]


def _measure(shell: str, results: list[Any], kinds: list[str], seconds: float, requests: int) -> dict[str, Any]:
    from eccos_core.errors import EccosError

    good = [i for i, kind in enumerate(kinds) if kind == "good"]
    answered = [i for i in good if not isinstance(results[i], Exception)]
    in_place = all(isinstance(results[i], EccosError) for i, kind in enumerate(kinds) if kind != "good")
    fell_back = 0
    for i in answered:
        meta = getattr(results[i], "response_metadata", None) or getattr(results[i], "additional_kwargs", {})
        fell_back += bool((meta.get("eccos") or {}).get("fallbacks"))
    errors: dict[str, int] = {}
    for i, kind in enumerate(kinds):
        if isinstance(results[i], Exception):
            key = f"{kind}: {type(results[i]).__name__}"
            errors[key] = errors.get(key, 0) + 1
    return {
        "shell": shell,
        "items_in": len(kinds),
        "items_out": len(results),
        "lost": sum(1 for r in results if r is None) + (len(kinds) - len(results)),
        "good": len(good),
        "answered": len(answered),
        "bad_items_in_their_slots": in_place,
        "answers_after_a_fallback": fell_back,
        "errors": errors,
        "requests_per_good_item": round(requests / max(1, len(good)), 3),
        "wall_s": round(seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--fault-rate", type=float, default=0.1)
    parser.add_argument("--bad-rate", type=float, default=0.05)
    args = parser.parse_args()
    import litellm
    from loopback import serve_loopback

    from langchain_eccos import ChatECCOS
    from llamaindex_eccos import ECCOSLLM

    litellm.suppress_debug_info = True
    prompts, kinds = _items(args.items, args.bad_rate)
    rows, load = [], [os.getloadavg()]
    with serve_loopback() as provider:
        pool = _pool(provider.api_base)
        chat = ChatECCOS(models=pool, min_quality=0.6)
        llm = ECCOSLLM(router=chat.get_router(), min_quality=0.6)
        for shell, run in (
            ("ChatECCOS.batch", lambda: chat.batch(prompts, {"max_concurrency": 16}, return_exceptions=True)),
            ("ECCOSLLM.complete_batch", lambda: llm.complete_batch(prompts, return_exceptions=True)),
        ):
            provider.clear()  # (which also resets the fault rate)
            provider.fail_rate = args.fault_rate
            started = time.perf_counter()
            results = run()
            rows.append(_measure(shell, results, kinds, time.perf_counter() - started, len(provider.requests)))
    load.append(os.getloadavg())
    report = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load": load}, **vars(args)}
    report["runs"] = rows
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "shell-faults.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    lines = [
        f"shell fault run: {args.items} items, {args.fault_rate:.0%} provider faults, {args.bad_rate:.0%} bad items of "
        f"each kind ({', '.join(KINDS)}); load {load[0]} -> {load[1]}",
        f"{'shell':<24} {'in':>4} {'out':>4} {'lost':>4} {'answered':>9} {'bad in slot':>11} {'fell back':>9} "
        f"{'req/good':>8} {'wall s':>7}",
    ]
    for r in rows:
        lines.append(
            f"{r['shell']:<24} {r['items_in']:>4} {r['items_out']:>4} {r['lost']:>4} {r['answered']:>4}/{r['good']:<4} "
            f"{'yes' if r['bad_items_in_their_slots'] else 'NO':>11} {r['answers_after_a_fallback']:>9} "
            f"{r['requests_per_good_item']:>8} {r['wall_s']:>7}"
        )
        lines.append(f"    errors: {r['errors']}")
    text = "\n".join(lines) + "\n"
    (RESULTS / "shell-faults.txt").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
