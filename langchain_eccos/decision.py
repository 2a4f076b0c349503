"""ECCOSDecisionModel: eccos as the decision model of LangChain's ``ModelRouterMiddleware``.

``ModelRouterMiddleware`` asks its decision model one ``Choice`` question per agent run (which route suits the
latest human message) and sends every model call of the run to the chosen route. Answering that question
with the router makes the choice the cheapest route predicted to reach ``min_quality``::

    from langchain.agents.middleware import ModelChoice, ModelRouterMiddleware

    middleware = ModelRouterMiddleware(
        choices={"gemma-2-9b-it": ModelChoice(cheap_model, "small tasks"),
                 "llama3-chatqa-1.5-70b": ModelChoice(strong_model, "hard tasks")},
        instructions="Choose the least costly model suited to the task.",
        classifier=ECCOSDecisionModel(min_quality=0.7),
    )

Route labels are pool model names, or mapped to them with ``routes``. The criteria texts are not read: the
router's predictor judges the message itself. Unlike :class:`~langchain_eccos.middleware.ECCOSMiddleware`, the
choice is made once per run and does not see the agent's tools.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.decisions import BaseDecisionModel, Choice, ChoiceAnswer, ClassifierResponse, Question
from langchain_core.messages import BaseMessage

from langchain_eccos.messages import to_openai
from langchain_eccos.routing import RouterSettings


def _state_messages(state: Any) -> list[dict[str, Any]]:
    """A decision state (text, a message, messages or JSON) as OpenAI chat messages."""
    if isinstance(state, str):
        return [{"role": "user", "content": state}]
    if isinstance(state, BaseMessage):
        return to_openai([state])
    if isinstance(state, Sequence) and state and all(isinstance(m, BaseMessage) for m in state):
        return to_openai(list(state))
    return [{"role": "user", "content": json.dumps(state, default=str)}]


class ECCOSDecisionModel(RouterSettings, BaseDecisionModel):
    """Answers ``Choice`` questions by routing: the chosen label is the cheapest model reaching ``min_quality``."""

    model: str = "eccos"
    """Reported to tracing as ``ls_model_name``."""

    routes: dict[str, str] | None = None
    """Route label → pool model name; labels missing here must be pool model names themselves."""

    @property
    def _provider(self) -> str:
        return "eccos"

    def _classify(self, state: Any, questions: dict[str, Question]) -> ClassifierResponse:
        router = self.get_router()
        names = [spec.name for spec in router.models]
        messages = _state_messages(state)
        answers = {}
        for key, question in questions.items():
            if not isinstance(question, Choice):
                raise ValueError(
                    f"ECCOSDecisionModel answers Choice questions only; question {key!r} is a {question.type}"
                )
            labels = self._pool_names(question.criteria, names)
            capacity = {**(self.capacity or {}), **{n: 0 for n in names if n not in labels.values()}}
            entry = self.plan_single(messages, self.min_quality, capacity, None, {})
            chosen = next(label for label, name in labels.items() if name == entry.model)
            answers[key] = ChoiceAnswer(
                type="choice",
                choice=chosen,
                probabilities={label: float(label == chosen) for label in labels},
                confidence=min(1.0, max(0.0, entry.p_success)),
            )
        return ClassifierResponse(model=self.model, answers=answers)

    def _pool_names(self, criteria: Mapping[str, Any], names: Sequence[str]) -> dict[str, str]:
        routes = self.routes or {}
        labels = {label: routes.get(label, label) for label in criteria}
        unknown = sorted(label for label, name in labels.items() if name not in names)
        if unknown:
            raise ValueError(
                f"routes {unknown} are not pool models {list(names)}: name routes after pool models or map them "
                "with ECCOSDecisionModel(routes={label: pool model name})"
            )
        return labels


__all__ = ["ECCOSDecisionModel"]
