"""Route between bundled models and a model of your own that no log has seen, from its first call.

Your model joins with a prior (``like:`` in the models file): it is predicted as the fitted model it resembles.
Against any OpenAI-compatible server (vLLM, llama.cpp, Ollama, a LiteLLM proxy) serving every name below:

    python examples/own_model.py --api-base http://127.0.0.1:8000/v1

Offline: no provider key, the bundled router; only the server at ``--api-base`` is called.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from langchain_eccos import ChatECCOS

MODELS = """\
models:
  - name: my-local-llama               # yours: no routing logs, nearly free
    litellm_model: openai/my-local-llama
    input_cost_per_token: 1.0e-8
    output_cost_per_token: 2.0e-8
    max_input_tokens: 8192
    litellm_params: {{api_base: "{api_base}", api_key: none}}
    like: llama-3.1-8b-instruct        # predicted as this bundled model...
    like_offset: -0.05                 # ...a little worse
  - name: llama-3.3-nemotron-super-49b-v1  # a bundled model, served by the same server here
    litellm_model: openai/llama-3.3-nemotron-super-49b-v1
    input_cost_per_token: 9.0e-7
    output_cost_per_token: 9.0e-7
    max_input_tokens: 131072
    litellm_params: {{api_base: "{api_base}", api_key: none}}
"""

QUESTIONS = [
    "What is 17 * 23?",
    "Translate 'good morning' into French.",
    "Prove that the square root of 2 is irrational.",
    "Which planet has the most moons?",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api-base", default="http://127.0.0.1:8000/v1", help="OpenAI-compatible server")
    parser.add_argument("--min-quality", type=float, default=0.6)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        models = Path(folder) / "models.yaml"
        models.write_text(MODELS.format(api_base=args.api_base), encoding="utf-8")
        llm = ChatECCOS(models=str(models), min_quality=args.min_quality, max_tokens=128)
        for question in QUESTIONS:
            reply = llm.invoke(question)
            eccos = reply.response_metadata["eccos"]
            prior = f" (prior: predicted as {eccos['prior']})" if eccos["prior"] else ""
            print(f"{eccos['model']}{prior}, p(success) {eccos['p_success']:.2f}: {question}")
        replies = llm.batch(QUESTIONS)  # jointly: the batch's mean reaches min_quality
        print("batch:", [r.response_metadata["eccos"]["model"] for r in replies])


if __name__ == "__main__":
    main()
