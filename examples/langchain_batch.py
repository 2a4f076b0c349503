"""Route a batch jointly with ChatECCOS and see what min_quality buys.

Offline, against any OpenAI-compatible server (vLLM, llama.cpp, Ollama, a LiteLLM proxy):

    python examples/langchain_batch.py --api-base http://localhost:8000/v1 [--served-model NAME]

or, with the bundled pool's provider keys in the environment (NVIDIA_NIM_API_KEY):

    python examples/langchain_batch.py
"""

from __future__ import annotations

import argparse
from collections import Counter
from typing import Any

from langchain_core.prompts import ChatPromptTemplate

from langchain_eccos import ChatECCOS

QUESTIONS = [
    "What is 17 * 23?",
    "Write a Python function that returns the n-th Fibonacci number.",
    "Which planet has the most moons?",
    "If all bloops are razzies and all razzies are lazzies, are all bloops lazzies? Answer yes or no.",
    "Prove that the square root of 2 is irrational.",
    "Translate 'good morning' into French.",
    "A train leaves at 3pm going 60 mph; another at 4pm going 80 mph. When does the second catch up?",
    "Name three sorting algorithms and their worst-case complexity.",
]


def local_pool(api_base: str, served_model: str | None) -> list[Any]:
    """The bundled pool with every model behind ``api_base`` (all as ``served_model`` when given)."""
    from eccos_core.bundled import bundled_models
    from eccos_core.pricing import ModelSpec

    params = {"api_base": api_base, "api_key": "none"}
    return [
        ModelSpec(**{**s.to_dict(), "litellm_model": f"openai/{served_model or s.name}", "litellm_params": params})
        for s in bundled_models()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api-base", help="OpenAI-compatible server for every pool model (default: the providers)")
    parser.add_argument("--served-model", help="model name the server serves (default: each pool model's name)")
    args = parser.parse_args()

    models = local_pool(args.api_base, args.served_model) if args.api_base else None
    model = ChatECCOS(models=models, max_tokens=256)
    prompt = ChatPromptTemplate.from_messages([("human", "{question}")])
    inputs = [{"question": q} for q in QUESTIONS]

    for alpha in (0.55, 0.6, 0.63):
        chain = prompt | model.bind(min_quality=alpha)  # per chain; a sequence's call kwargs reach its first step only
        replies = chain.batch(inputs, {"max_concurrency": 8})  # one optimizer call for the whole batch
        routed = [r.response_metadata["eccos"] for r in replies]
        mean_p = sum(r["p_success"] for r in routed) / len(routed)
        print(
            f"min_quality {alpha}: {routed[0]['status']}, mean p(success) {mean_p:.3f}, "
            f"predicted ${sum(r['predicted_cost'] for r in routed):.6f}, paid ${sum(r['cost'] for r in routed):.6f}"
        )
        print(f"  models: {dict(Counter(r['model'] for r in routed))}")
        fallbacks = [r for r in routed if r["fallbacks"]]
        if fallbacks:
            print(f"  {len(fallbacks)} answers came from a fallback model")

    reply = model.invoke(QUESTIONS[4], min_quality=0.63)  # or per call
    print(f"\none call at min_quality 0.63: {reply.response_metadata['eccos']['model']}: {reply.content[:200]}")


if __name__ == "__main__":
    main()
