"""llamaindex_eccos: a LlamaIndex LLM that routes every call to the cheapest model meeting ``min_quality``.

``ECCOSLLM`` is a ``FunctionCallingLLM``: set it as ``Settings.llm`` or hand it to a query engine or an agent.
Its routing decisions reach LlamaIndex instrumentation as :class:`ECCOSRoutingEvent` (before a call is sent)
and :class:`ECCOSResponseEvent` (once it is answered).
"""

from llamaindex_eccos.base import ECCOSLLM
from llamaindex_eccos.events import ECCOSResponseEvent, ECCOSRoutingEvent

__all__ = ["ECCOSLLM", "ECCOSResponseEvent", "ECCOSRoutingEvent"]
