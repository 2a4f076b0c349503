"""A LlamaIndex FunctionAgent calling Python tools, every turn routed by eccos to the cheapest tool-capable model.

Offline, against any OpenAI-compatible server that supports tool calls (vLLM with ``--enable-auto-tool-choice``,
llama.cpp, or the loopback provider of the tests: ``python benchmarks/bench_llamaindex.py --serve`` prints its
URL)::

    python examples/llamaindex_agent.py --api-base http://127.0.0.1:8000/v1 [--served-model NAME]

The pool is the bundled models re-pointed at your server, marked as supporting tools (eccos only sends a call
that offers tools to models that support them). Without ``--api-base`` the bundled pool's own providers are
used (``NVIDIA_NIM_API_KEY``); none of them is known to LiteLLM as tool-capable, so the agent refuses to start.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def build_router(api_base: str | None, api_key: str, served_model: str | None, router_dir: str | None) -> Any:
    """The default router's predictor and guard, over the bundled pool re-pointed at ``api_base`` (with tools)."""
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
            supports_tools=True,
            litellm_params={"api_base": api_base, "api_key": api_key},
        )
        for m in bundled_models()
    ]
    return base.with_models(pool)


def multiply(a: int, b: int) -> int:
    """Multiply two integers and return the product."""
    return a * b


def add(a: int, b: int) -> int:
    """Add two integers and return the sum."""
    return a + b


async def run(args: argparse.Namespace) -> None:
    from llama_index.core.agent.workflow import FunctionAgent, ToolCallResult
    from llama_index.core.bridge.pydantic import Field
    from llama_index.core.instrumentation import get_dispatcher
    from llama_index.core.instrumentation.event_handlers import BaseEventHandler

    from llamaindex_eccos import ECCOSLLM, ECCOSResponseEvent

    class Turns(BaseEventHandler):
        """Collects which model answered each of the agent's LLM calls, and what it cost."""

        seen: list[Any] = Field(default_factory=list)

        def handle(self, event: Any, **kwargs: Any) -> None:
            if isinstance(event, ECCOSResponseEvent):
                self.seen.append(event)

    turns = Turns()
    get_dispatcher().add_event_handler(turns)
    llm = ECCOSLLM(
        router=build_router(args.api_base, args.api_key, args.served_model, args.router),
        min_quality=args.min_quality,
    )
    agent = FunctionAgent(
        tools=[multiply, add], llm=llm, system_prompt="You do arithmetic with the tools you are given."
    )
    handler = agent.run(user_msg=args.question)
    async for event in handler.stream_events():
        if isinstance(event, ToolCallResult):
            print(f"  tool call: {event.tool_name}({event.tool_kwargs}) -> {event.tool_output.content}")
    result = await handler
    print(f"question: {args.question}")
    for i, turn in enumerate(turns.seen, 1):
        fell_back = f", after {[f['model'] for f in turn.fallbacks]} failed" if turn.fallbacks else ""
        print(f"  LLM call {i}: routed to {turn.model}{fell_back}, ${turn.cost:.8f}")
    print(f"  answer: {str(result).strip()}")
    print(f"  cost:   ${sum(t.cost for t in turns.seen):.8f} for {len(turns.seen)} LLM call(s)")


def main() -> None:
    parser = argparse.ArgumentParser(description="A FunctionAgent with Python tools, ECCOSLLM as its LLM")
    parser.add_argument("--api-base", help="an OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY", "sk-local"))
    parser.add_argument("--served-model", help="the model name your server serves (default: each pool name)")
    parser.add_argument("--router", help="a router saved with Router.save (default: Router.default())")
    parser.add_argument("--min-quality", type=float, default=0.6)
    parser.add_argument("--question", default="What is 12 times 7, plus 5?")
    args = parser.parse_args()
    if args.api_base is None and not os.environ.get("NVIDIA_NIM_API_KEY"):
        parser.error("give --api-base URL of a local OpenAI-compatible server, or set NVIDIA_NIM_API_KEY")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
