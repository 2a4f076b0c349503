"""Your own models, measured: fitting a new pool, onboarding a model by probe, and predicted vs billed cost.

    python benchmarks/bench_onboard.py          # -> benchmarks/results/onboard.{json,txt}

1. **fit**: ``Router.fit`` on the bundled logs with a new 3-model pool (the default retrieval predictor), in a
   fresh process: wall time (imports included) and peak RSS.
2. **onboard**: ``eccos onboard --model NAME --models FILE --n 200 --out DIR`` in a fresh process against the
   loopback OpenAI-compatible server (``tests/loopback.py``, in this process on 127.0.0.1): the shipped probe's
   first 200 questions asked, graded, logged, the model fitted and the joined router saved. The server answers
   as ``llama-3.1-8b-instruct`` did: right where its bundled logged score is at least 0.5, "I do not know"
   otherwise (the probe questions of the logs' held-out split; the others alternate).
3. **lengths**: the shipped default router over the bundled pool, every model on the loopback server, answers
   300 held-out bundled questions one ``Router.complete`` at a time (min_quality 0.6). The server replies with
   each question's reference answer from LLMRouter's query data (worked solutions for maths, a letter for
   multiple choice, a few words for open questions; real texts of varied length, not model answers) and bills
   them in tiktoken tokens (the prompt as each message's tokens plus 3). Predicted cost (the plan's) against
   billed cost (the reply's): **before** = the same calls priced with 0 output tokens, as every bundled model was
   predicted before the length predictor; **after** = as planned now (a default length, then the answers').
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from bench_shells import API_KEY, loopback, machine, repointed  # noqa: E402

RESULTS = ROOT / "results"
OWN = "my-local-llama"
FIT_POOL = ("qwen2.5-7b-instruct", "llama-3.1-8b-instruct", "llama-3.3-nemotron-super-49b-v1")
CALLS = 300
ALPHA = 0.6

FIT_SCRIPT = textwrap.dedent(
    f"""
    from eccos_core.bundled import bundled_logs, bundled_models
    from eccos_core.router import Router
    pool = [m for m in bundled_models() if m.name in {FIT_POOL!r}]
    router = Router.fit(pool, bundled_logs())
    print("fitted", list(router.planner.names))
    """
)


def child(argv: list[str]) -> dict[str, Any]:
    """Run ``argv`` in a fresh process under ``/usr/bin/time``: its wall time and peak RSS (MiB); it must succeed."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as timing:
        done = subprocess.run(
            ["/usr/bin/time", "-f", "%e %M", "-o", timing.name, *argv], capture_output=True, text=True, check=False
        )
        wall, peak_kib = timing.read().split()[-2:]
    if done.returncode != 0:
        raise RuntimeError(f"{argv[:3]} failed ({done.returncode}): {done.stderr[-2000:]}")
    return {
        "wall_s": float(wall),
        "peak_rss_mib": round(int(peak_kib) / 1024, 1),
        "stdout": done.stdout.strip()[-400:],
        "load_average": os.getloadavg(),
    }


def measure_fit() -> dict[str, Any]:
    """``Router.fit`` on the bundled logs with a new 3-model pool, in a fresh process."""
    return {"pool": list(FIT_POOL), **child([sys.executable, "-c", FIT_SCRIPT])}


def script_probe(provider: Any, n: int, answered_as: str) -> int:
    """Script the loopback to answer the first ``n`` probe questions as ``answered_as`` did (see the module doc)."""
    from eccos_core.bundled import bundled_logs
    from eccos_core.probe import probe_questions

    logged = {r.query: r.outcomes.get(answered_as) for r in bundled_logs()}
    replayed = 0
    for k, q in enumerate(probe_questions(n)):
        outcome = logged.get(q.query)
        replayed += outcome is not None
        right = outcome.score >= 0.5 if outcome is not None else k % 2 == 0
        answer = {"mcq": f"The answer is ({q.answer}).", "numeric": f"So it is \\boxed{{{q.answer}}}."}
        provider.script[q.prompt or q.query] = answer.get(q.grader or "", str(q.answer)) if right else "I do not know."
    return replayed


def measure_onboard(provider: Any, work: Path) -> dict[str, Any]:
    """``eccos onboard --n 200`` of a model served by the loopback, in a fresh process."""
    replayed = script_probe(provider, 200, "llama-3.1-8b-instruct")
    models = work / "models.yaml"
    models.write_text(
        f"models:\n  - name: {OWN}\n    litellm_model: openai/{OWN}\n    input_cost_per_token: 1.0e-8\n"
        "    output_cost_per_token: 1.0e-8\n    max_input_tokens: 8192\n"
        f"    litellm_params: {{api_base: '{provider.api_base}', api_key: '{API_KEY}'}}\n"
    )
    argv = [sys.executable, "-m", "eccos_core.cli", "onboard", "--model", OWN, "--models", str(models)]
    result = child([*argv, "--n", "200", "--out", str(work / "joined")])
    return {"n": 200, "replayed_from_logs": replayed, "requests": len(provider.requests), **result}


def measure_lengths(provider: Any) -> dict[str, Any]:
    """Predicted vs billed cost of 300 single calls over the bundled pool (see the module doc)."""
    from eccos_core.bundled import bundled_logs
    from eccos_core.logs import split_logs
    from eccos_core.messages import count_text_tokens
    from eccos_core.router import Router

    references = reference_answers()
    _, test = split_logs(bundled_logs(), test_frac=0.2, seed=0)
    order = np.random.default_rng(0).permutation(len(test))  # the split is grouped by task: mix it, seeded
    queries = [test.queries[i] for i in order if test.queries[i] in references][:CALLS]
    provider.script.update({q: references[q] for q in queries})
    provider.tokens = count_text_tokens  # billed in real tokens, as a provider bills
    router = repointed(Router.default(), provider.api_base)
    rows = []
    for query in queries:
        reply = router.complete(query, min_quality=ALPHA)
        spec = router.dispatcher.spec(reply.model)
        planned_input = reply.plan.input_tokens * spec.input_cost_per_token
        rows.append((reply.plan.cost, planned_input, reply.cost, reply.plan.length, reply.output_tokens,
                     reply.plan.output_tokens))  # fmt: skip
    return {"calls": len(rows), **ratios(rows), "by_hundred": [ratios(rows[k : k + 100]) for k in (0, 100, 200)]}


def ratios(rows: list[tuple[float, float, float, str | None, int, float]]) -> dict[str, Any]:
    """Summed predicted / summed billed cost (before and after) and output tokens, and what the lengths came from."""
    after, before, billed = (sum(r[i] for r in rows) for i in range(3))
    written, predicted = sum(r[4] for r in rows), sum(r[5] for r in rows)
    sources: dict[str, int] = {}
    for row in rows:
        source = (row[3] or "logs").split(" (")[0]
        sources[source] = sources.get(source, 0) + 1
    return {
        "predicted_before_usd": before,
        "predicted_after_usd": after,
        "billed_usd": billed,
        "ratio_before": before / billed,
        "ratio_after": after / billed,
        "mean_billed_output_tokens": written / len(rows),
        "mean_predicted_output_tokens": predicted / len(rows),
        "length_sources": sources,
    }


def reference_answers() -> dict[str, str]:
    """Query text → LLMRouter's reference answer, for the bundled queries whose query data holds one."""
    from eccos_core.datasets import shared_data_dir

    out: dict[str, str] = {}
    for name in ("default_query_train.jsonl", "default_query_test.jsonl"):
        with (shared_data_dir() / "llmrouter-9llm" / "query_data" / name).open(encoding="utf-8") as handle:
            for line in handle:
                record = json.loads(line)
                if isinstance(record.get("ground_truth"), str) and record["ground_truth"].strip():
                    out[record["query"]] = record["ground_truth"]
    return out


def report(results: dict[str, Any]) -> str:
    """The text table of :func:`main`'s results."""
    fit, onboard, lengths = results["fit"], results["onboard"], results["lengths"]
    lines = [
        f"machine: {results['machine']['platform']}, {results['machine']['cpus']} cpus",
        "",
        "| step | wall s | peak RSS MiB | load avg (1/5/15 min) at end | target |",
        "|---|---:|---:|---|---|",
        f"| Router.fit, bundled logs, 3-model pool | {fit['wall_s']} | {fit['peak_rss_mib']} | "
        f"{' / '.join(f'{v:.2f}' for v in fit['load_average'])} | <= 60 s, <= 1024 MiB |",
        f"| eccos onboard --n 200 (loopback) | {onboard['wall_s']} | {onboard['peak_rss_mib']} | "
        f"{' / '.join(f'{v:.2f}' for v in onboard['load_average'])} | <= 60 s, <= 1024 MiB |",
        "",
        f"onboard: {onboard['requests']} probe calls, {onboard['replayed_from_logs']} answered as the logs say; "
        f"{onboard['stdout'].splitlines()[0] if onboard['stdout'] else ''}",
        "",
        f"predicted vs billed cost, {lengths['calls']} single calls, bundled pool, min_quality {ALPHA}:",
        "",
        "| calls | billed USD | predicted / billed, before | predicted / billed, after | output tokens per call, "
        "predicted / billed | lengths from |",
        "|---|---:|---:|---:|---:|---|",
    ]
    parts = [("all", lengths), *((f"{100 * k + 1}-{100 * (k + 1)}", p) for k, p in enumerate(lengths["by_hundred"]))]
    for label, part in parts:
        sources = ", ".join(f"{k} {v}" for k, v in sorted(part["length_sources"].items()))
        lines.append(
            f"| {label} | {part['billed_usd']:.6f} | {part['ratio_before']:.3f} | {part['ratio_after']:.3f} | "
            f"{part['mean_predicted_output_tokens']:.1f} / {part['mean_billed_output_tokens']:.1f} | {sources} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    results: dict[str, Any] = {"machine": machine()}
    results["fit"] = measure_fit()
    print("fit", results["fit"], flush=True)
    with loopback() as provider, tempfile.TemporaryDirectory() as work:
        results["onboard"] = measure_onboard(provider, Path(work))
        print("onboard", results["onboard"], flush=True)
        provider.clear()
        results["lengths"] = measure_lengths(provider)
    text = report(results)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "onboard.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (RESULTS / "onboard.txt").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
