"""The question inside its context: held-out queries wrapped as RAG chains and chats send them, predicted and routed.

    python benchmarks/bench_rag.py --cache /tmp/eccos-bench-cache   # -> benchmarks/results/rag.{json,txt}

On each shared set, 300 held-out queries with an outcome for every pool model (shuffled, seed 0) are wrapped in:
**rag3** / **rag8**: LangChain's hub RAG prompt (``rlm/rag-prompt``: ``Question: {question} Context: {context}
Answer:``) with 3 or 8 passages, the texts of other held-out queries; **llamaindex**: LlamaIndex's default text QA
template (``DEFAULT_TEXT_QA_PROMPT``) with 3 passages; **chat**: a system prompt and two earlier turns before the
question. Each is predicted as the router reads it now (**view**: ``query_text``, which finds the question inside
retrieved context) and as it read it before (**whole**: the last user message as it is), against the bare queries.

Reported per set and variant: the predictor's mean per-model AUROC (per model, then averaged) and Brier against the
logged outcomes, and one joint plan of the 300 at 3 α: realized success and cost. A plan sees the wrapped prompt's
token count; its realized cost is the logged cost of the bare question plus the passages' tokens at the chosen
model's input price.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from bench_dual import RESULTS, SETS, fitted_router
from bench_shells import DEFAULT_ALPHAS

N = 300
RAG_PROMPT = (
    "You are an assistant for question-answering tasks. Use the following pieces of retrieved context to answer the "
    "question. If you don't know the answer, just say that you don't know. Use three sentences maximum and keep the "
    "answer concise.\nQuestion: {question} \nContext: {context} \nAnswer:"
)
SYSTEM = "You are a helpful assistant. Answer accurately and concisely."


def wrapped(queries: list[str]) -> dict[str, list[list[dict[str, str]]]]:
    """Every variant's message lists for ``queries`` (passages and earlier turns are other held-out queries)."""
    from llama_index.core.prompts.default_prompts import DEFAULT_TEXT_QA_PROMPT

    n = len(queries)

    def passages(i: int, k: int) -> str:
        return "\n\n".join(queries[(i + 1 + j) % n] for j in range(k))

    def user(text: str) -> list[dict[str, str]]:
        return [{"role": "user", "content": text}]

    return {
        "bare": [user(q) for q in queries],
        "rag3": [user(RAG_PROMPT.format(question=q, context=passages(i, 3))) for i, q in enumerate(queries)],
        "rag8": [user(RAG_PROMPT.format(question=q, context=passages(i, 8))) for i, q in enumerate(queries)],
        "llamaindex": [
            user(DEFAULT_TEXT_QA_PROMPT.format(context_str=passages(i, 3), query_str=q)) for i, q in enumerate(queries)
        ],
        "chat": [
            [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": queries[(i + 1) % n]},
                {"role": "assistant", "content": "Here is my answer to that."},
                {"role": "user", "content": q},
            ]
            for i, q in enumerate(queries)
        ],
    }


def per_model_auroc(quality: np.ndarray, truth: np.ndarray) -> float:
    """Mean over models of the AUROC of each model's predictions (models with both outcomes only)."""
    from sklearn.metrics import roc_auc_score

    scores = [
        roc_auc_score(truth[:, j] >= 0.5, quality[:, j])
        for j in range(truth.shape[1])
        if 0 < (truth[:, j] >= 0.5).sum() < len(truth)
    ]
    return float(np.mean(scores))


def measure_set(name: str, cache: Path | None) -> dict[str, Any]:
    from eccos_core.evaluate import realized_cost
    from eccos_core.messages import count_input_tokens, message_text, query_text

    router, _, _, test = fitted_router(name, cache)
    names = list(router.planner.names)
    truth = test.scores(names)
    rows = np.flatnonzero(~np.isnan(truth).any(axis=1))
    rows = rows[np.random.default_rng(0).permutation(len(rows))][:N]
    test, truth = test.subset(rows), truth[rows]
    queries = list(test.queries)
    bare_tokens = np.array([count_input_tokens([{"role": "user", "content": q}]) for q in queries], dtype=float)
    paid = realized_cost(test, router.models, bare_tokens)
    in_price = np.array([m.input_cost_per_token for m in router.models])
    out: dict[str, Any] = {"set": name, "queries": len(queries), "alphas": list(DEFAULT_ALPHAS[name]), "rows": []}
    for variant, messages in wrapped(queries).items():
        tokens = np.array([count_input_tokens(m) for m in messages], dtype=float)
        cost = paid + (tokens - bare_tokens)[:, None] * in_price[None, :]
        readings = {"view": [query_text(m) for m in messages], "whole": [message_text(m[-1]) for m in messages]}
        for reading, texts in readings.items():
            if variant == "bare" and reading == "whole":
                continue
            prediction = router.predict(texts)
            row = {
                "variant": variant,
                "reading": reading,
                "auroc": per_model_auroc(prediction.quality, truth),
                "brier": float(np.mean((prediction.quality - truth) ** 2)),
                "question_found": float(np.mean([t.strip() == q.strip() for t, q in zip(texts, queries, strict=True)])),
                "routing": [route(router, prediction, tokens, a, truth, cost) for a in DEFAULT_ALPHAS[name]],
            }
            out["rows"].append(row)
            print(f"{name} {variant:10s} {reading:5s} AUROC {row['auroc']:.4f} Brier {row['brier']:.4f}", flush=True)
    return out


def route(router: Any, prediction: Any, tokens: np.ndarray, alpha: float, truth: np.ndarray, cost: np.ndarray) -> Any:
    """One joint plan of the whole sample: realized success and cost."""
    plan = router.plan_prediction(prediction, tokens, alpha)
    chosen = np.array([prediction.models.index(m) for m in plan.models])
    picked = np.arange(len(chosen))
    return {
        "alpha": alpha,
        "success": float(truth[picked, chosen].mean()),
        "cost": float(cost[picked, chosen].sum()),
        "status": plan.status.value,
    }


def summarize(results: list[dict[str, Any]]) -> str:
    """Text table: per set and variant, AUROC / Brier and α met, against the bare queries."""
    lines = [
        "| set | variant | read as | question found | mean per-model AUROC | Δ vs bare | Brier | "
        "α met (≥ α − 1 pt) | cost / bare cost (per α) |",
        "|---|---|---|---:|---:|---:|---:|---|---|",
    ]
    for result in results:
        bare = next(r for r in result["rows"] if r["variant"] == "bare")
        for row in result["rows"]:
            met = sum(p["success"] >= p["alpha"] - 0.01 for p in row["routing"])
            ratio = " / ".join(
                f"{p['cost'] / b['cost']:.2f}" for p, b in zip(row["routing"], bare["routing"], strict=True)
            )
            lines.append(
                f"| {result['set']} | {row['variant']} | {row['reading']} | {row['question_found']:.2f} | "
                f"{row['auroc']:.4f} | {row['auroc'] - bare['auroc']:+.4f} | {row['brier']:.4f} | "
                f"{met}/{len(row['routing'])} | {ratio} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, help="folder of fitted routers (bench_dual's), reused if present")
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=SETS)
    args = parser.parse_args()
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    results = [measure_set(name, args.cache) for name in args.sets]
    text = summarize(results)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "rag.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (RESULTS / "rag.txt").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
