"""The predictor reads the question a RAG chain wraps in retrieved context, through the frameworks' own templates."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.documents import Document
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda, RunnablePassthrough
from llama_index.core.prompts.default_prompts import DEFAULT_TEXT_QA_PROMPT

from eccos_core.bundled import bundled_logs
from eccos_core.messages import query_text
from eccos_core.questions import question_of
from eccos_core.router import Router
from langchain_eccos import ChatECCOS

RAG_PROMPT = (
    "You are an assistant for question-answering tasks. Use the following pieces of retrieved context to answer the "
    "question. If you don't know the answer, just say that you don't know. Use three sentences maximum and keep the "
    "answer concise.\nQuestion: {question} \nContext: {context} \nAnswer:"
)
"""LangChain's hub RAG prompt (``rlm/rag-prompt``), as its tutorials build it."""

QUESTION = "Which Bavarian town stages a Wagner festival every July and August?"
PASSAGES = [
    "The Ring cycle premiered in 1876.\n\nIt took four evenings.",
    "Bavaria is a state in the south-east of Germany.",
    "Richard Wagner's operas are long; Parsifal lasts about four hours.",
]


class RecordingPredictor:
    """The conftest fake predictor, remembering every text it was asked to predict."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.kind, self.models, self.out_of_fold = inner, "recording", inner.models, None
        self.texts: list[str] = []

    def predict(self, queries: Any) -> Any:
        self.texts.extend(queries)
        return self.inner.predict(queries)


def test_langchains_rag_chain_is_routed_on_its_question(make_pool, fake_predictor, loopback):
    predictor = RecordingPredictor(fake_predictor)
    llm = ChatECCOS(router=Router(make_pool(fake_predictor.models[:3]), predictor), min_quality=0.5)
    prompt = ChatPromptTemplate.from_messages([("human", RAG_PROMPT)])
    documents = [Document(page_content=p) for p in PASSAGES]
    context = RunnableLambda(lambda _: "\n\n".join(d.page_content for d in documents))
    chain = {"context": context, "question": RunnablePassthrough()} | prompt | llm | StrOutputParser()
    assert chain.invoke(QUESTION).startswith("answer from ")
    assert predictor.texts == [QUESTION]
    assert PASSAGES[0] in loopback.requests[-1].messages[-1]["content"]  # the model still gets the whole prompt


def test_llamaindex_text_qa_template_yields_its_query():
    prompt = DEFAULT_TEXT_QA_PROMPT.format(context_str="\n\n".join(PASSAGES), query_str=QUESTION)
    assert query_text([{"role": "user", "content": prompt}]) == QUESTION


@pytest.mark.parametrize(
    "layout",
    [
        "Context:\n{context}\n\n{question}",
        "{question}\n\nContext: {context}",
        "<context>\n{context}\n</context>\nQuestion: {question}",
        "Use these documents.\n-----\n{context}\n-----\nQuery: {question}\nAnswer:",
    ],
)
def test_common_layouts_yield_the_question(layout):
    assert question_of(layout.format(context="\n\n".join(PASSAGES), question=QUESTION)) == QUESTION


def test_a_prompt_without_context_is_read_whole_even_with_a_q_label():
    puzzle = "Q: There are 3 houses.\n\nClue(s):\n1. The cellist lives left.\n\nWhere does the cellist live?"
    assert question_of(puzzle) == puzzle
    assert question_of("Context: nothing here") == "Context: nothing here"  # no question found: read whole
    assert all(question_of(q) == q for q in bundled_logs().queries)  # no logged question is cut


def test_a_system_prompt_and_earlier_turns_leave_the_last_question():
    messages = [
        {"role": "system", "content": "You answer trivia.\nContext: none needed."},
        {"role": "user", "content": "Who wrote Parsifal?"},
        {"role": "assistant", "content": "Richard Wagner."},
        {"role": "user", "content": RAG_PROMPT.format(question=QUESTION, context=PASSAGES[1])},
    ]
    assert query_text(messages) == QUESTION
