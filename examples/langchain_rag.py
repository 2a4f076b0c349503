"""A retrieval chain with ChatECCOS as its LLM: in-memory vector store, local MiniLM embeddings, routed answers.

Offline, against any OpenAI-compatible server (vLLM, llama.cpp, Ollama, a LiteLLM proxy):

    python examples/langchain_rag.py --api-base http://localhost:8000/v1 [--served-model NAME]

or, with the bundled pool's provider keys in the environment (NVIDIA_NIM_API_KEY):

    python examples/langchain_rag.py
"""

from __future__ import annotations

import argparse
from typing import Any

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnablePassthrough
from langchain_core.vectorstores import InMemoryVectorStore

from langchain_eccos import ChatECCOS

DOCUMENTS = [
    "eccos routes every LLM call to the cheapest model predicted to answer it well.",
    "A batch is routed jointly: the optimizer keeps the batch's mean predicted success at min_quality.",
    "The predictor embeds a query with all-MiniLM-L6-v2 and looks up similar past queries in routing logs.",
    "When a provider fails, the call falls back along a chain fixed when the batch was planned.",
    "min_quality means realized success: predictions are calibrated on held-out training queries.",
]
QUESTIONS = [
    "How does eccos route a batch?",
    "What happens when a provider is down?",
    "What does min_quality mean?",
]


class MiniLMEmbeddings(Embeddings):
    """all-MiniLM-L6-v2 from the installed package (the router's own encoder): no download, no API key."""

    def __init__(self) -> None:
        from eccos_core.predictors.encoder import SentenceEncoder

        self.encoder = SentenceEncoder()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.encoder.encode(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


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
    parser.add_argument("--min-quality", type=float, default=0.6)
    args = parser.parse_args()

    models = local_pool(args.api_base, args.served_model) if args.api_base else None
    llm = ChatECCOS(models=models, min_quality=args.min_quality, max_tokens=256)
    store = InMemoryVectorStore.from_documents([Document(page_content=d) for d in DOCUMENTS], MiniLMEmbeddings())
    retriever = store.as_retriever(search_kwargs={"k": 2})
    prompt = ChatPromptTemplate.from_messages(
        [
            ("system", "Answer from this context only:\n{context}"),
            ("human", "{question}"),
        ]
    )

    def join(docs: list[Document]) -> str:
        return "\n".join(doc.page_content for doc in docs)

    rag = {"context": retriever | join, "question": RunnablePassthrough()} | prompt | llm
    for question, reply in zip(QUESTIONS, rag.batch(QUESTIONS), strict=True):  # one joint routing decision
        routed = reply.response_metadata["eccos"]
        print(f"Q: {question}\n   -> {routed['model']} (p={routed['p_success']:.2f}, ${routed['cost']:.6f})")
        print(f"   {StrOutputParser().invoke(reply)[:200]}")


if __name__ == "__main__":
    main()
