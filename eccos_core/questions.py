"""The question inside a RAG prompt: what the predictor should read when retrieved passages wrap it.

The routing logs hold bare questions, and the encoder keeps a text's first 256 tokens: a RAG chain that puts a few
passages in front of the question hands the predictor passages, and routes on them. :func:`question_of` finds the
question of a prompt that carries retrieved context, in the layouts the frameworks ship:

* a labelled question (``Question: ...``, ``Query: ...``, ``Q: ...``), as in LangChain's hub RAG prompt
  (``Question: {question} Context: {context} Answer:``) and LlamaIndex's text QA template (``Context information
  is below. ---- {context_str} ---- ... Query: {query_str} Answer:``): the text after the label outside the
  context (the first before it, else the first after it), up to the next label (``Context:``, ``Answer:``, ...);
* no label: the last paragraph that ends with ``?``, after the context (``{context}`` then the question) or before
  it (the question, then ``Context: {context}``); else the last paragraph after the context.

Only a prompt that shows retrieved context (a ``Context:`` / ``Documents:`` / ``Sources:`` heading, a
``Context information is below`` line, a ``-----`` rule or a ``<context>`` tag) is cut; any other text is read
whole, so a bare question (even one that starts ``Q:``) is predicted exactly as the logs were.
"""

from __future__ import annotations

import re

_CONTEXT = re.compile(
    r"(?im)^\s*(?:(?:retrieved\s+)?(?:context|contexts|documents?|passages?|sources?|excerpts?)(?:\s+information)?"
    r"\b[^\n]{0,40}:|context information is below|-{5,}\s*$|<(?:context|documents?)>)"
)
"""A heading, rule or tag that introduces retrieved context."""
_QUESTION = re.compile(r"(?im)^\s*(?:user\s+)?(?:question|query|q)\s*:[ \t]*")
"""A label that introduces the question."""
_NEXT = re.compile(
    r"(?im)^\s*(?:context|contexts|documents?|passages?|sources?|answer|helpful answer|response)\s*:"
    r"|^\s*-{5,}\s*$|^\s*</?(?:context|documents?)>"
)
"""What ends a labelled question: the next label, rule or tag."""
_ANSWER_CUE = re.compile(r"(?is)\n\s*(?:answer|helpful answer|response)\s*:\s*$")
"""The template's own ``Answer:`` cue at the very end (a question may end with an ``Answer:`` line of its own)."""


def question_of(text: str) -> str:
    """The question of a prompt that carries retrieved context; ``text`` itself when it carries none."""
    markers = list(_CONTEXT.finditer(text))
    if not markers:
        return text
    labels = list(_QUESTION.finditer(text))
    # the question's own label sits outside the context: the first before it, else the first after its end
    # (a passage, or the question itself, may hold a "Q:" line of its own)
    before = [m for m in labels if m.start() < markers[0].start()]
    after = [m for m in labels if m.start() >= markers[-1].end()]
    if before:  # Question: {question} Context: {context} Answer:
        found = text[before[0].end() : markers[0].start()]
    elif after:  # {context} ---- Query: {question} Answer:
        rest = text[after[0].end() :]
        tail = _ANSWER_CUE.search(rest)
        found = rest[: tail.start()] if tail else rest
    elif labels:
        rest = text[labels[-1].end() :]
        stop = _NEXT.search(rest)
        found = rest[: stop.start()] if stop else rest
    else:
        found = _unlabelled(text[: markers[0].start()], text[markers[0].end() :])
    return found.strip() or text


def _unlabelled(before: str, after: str) -> str:
    """The question of a prompt without a question label: a last paragraph that asks, after the context or before."""
    last = _paragraphs(after)[-1:] or [""]
    first = _paragraphs(before)[-1:] or [""]
    for candidate in (last[0], first[0]):
        if candidate.rstrip().endswith("?"):
            return candidate
    return last[0] if len(_paragraphs(after)) > 1 else ""


def _paragraphs(text: str) -> list[str]:
    return [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]


__all__ = ["question_of"]
