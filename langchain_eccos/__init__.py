"""LangChain integration of eccos: a chat model that routes each call, or a whole batch, to the cheapest good model.

- :class:`ChatECCOS`: a ``BaseChatModel`` for chains, RAG pipelines and agents; ``.batch()`` is routed jointly.
- :class:`ECCOSSelector`: a ``Runnable`` that returns the routing decision for your own chat models.
- :class:`ECCOSMiddleware`: agent middleware (``langchain.agents.create_agent``) routing each model call of an
  agent among your chat models; needs ``langchain`` (``pip install eccos[agents]``), imported only when used.
- :class:`ECCOSDecisionModel`: eccos as the decision model of LangChain's ``ModelRouterMiddleware``.

Names load on first use, so importing the package costs neither ``eccos_core``'s numeric stack nor
``langchain``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from langchain_eccos.chat_models import ChatECCOS
    from langchain_eccos.decision import ECCOSDecisionModel
    from langchain_eccos.middleware import ECCOSMiddleware
    from langchain_eccos.selector import ECCOSSelector

_EXPORTS = {
    "ChatECCOS": "langchain_eccos.chat_models",
    "ECCOSDecisionModel": "langchain_eccos.decision",
    "ECCOSMiddleware": "langchain_eccos.middleware",
    "ECCOSSelector": "langchain_eccos.selector",
}

__all__ = ["ChatECCOS", "ECCOSDecisionModel", "ECCOSMiddleware", "ECCOSSelector"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'langchain_eccos' has no attribute {name!r}")
