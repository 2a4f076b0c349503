"""Names and helpers shared by the LlamaIndex tests (imported by their conftest and test modules)."""

from __future__ import annotations

from typing import Any

from llama_index.core.bridge.pydantic import Field
from llama_index.core.instrumentation.event_handlers import BaseEventHandler

CHEAP, MID, STRONG = "gemma-2-9b-it", "qwen2.5-7b-instruct", "llama3-chatqa-1.5-70b"
"""Three bundled models at three price points ($0.1, $0.2 and $0.9 per million tokens)."""
NAMES = (CHEAP, MID, STRONG)


class Recorder(BaseEventHandler):
    """Keeps every instrumentation event it is handed."""

    events: list[Any] = Field(default_factory=list)

    @classmethod
    def class_name(cls) -> str:
        return "Recorder"

    def handle(self, event: Any, **kwargs: Any) -> None:
        self.events.append(event)

    def of(self, kind: type) -> list[Any]:
        """The recorded events of one type, in order."""
        return [e for e in self.events if isinstance(e, kind)]
