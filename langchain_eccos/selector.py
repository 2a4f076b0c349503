"""ECCOSSelector: the routing decision as a Runnable, for users who keep their own chat models.

It plans and never sends: ``invoke`` returns where one input should go, ``batch`` plans all its inputs in one
optimizer call. Route with the decision however your app already picks models, e.g. a configurable model::

    from langchain.chat_models import init_chat_model

    selector = ECCOSSelector(min_quality=0.7)
    llm = init_chat_model(configurable_fields=("model",))
    decision = selector.invoke(question)
    llm.invoke(question, config={"configurable": {"model": litellm_ids[decision["model"]]}})

or a ``RunnableBranch`` keyed on ``decision["model"]``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from langchain_core.language_models import LanguageModelInput
from langchain_core.runnables import RunnableConfig, RunnableSerializable
from langchain_core.runnables.config import get_config_list
from typing_extensions import override

from eccos_core.validation import check_policy, pin_capacity, single_call_confidence_error
from langchain_eccos.messages import input_messages, to_openai
from langchain_eccos.routing import RouterSettings

Decision = dict[str, Any]
"""One routing decision: ``model``, ``p_success``, ``predicted_cost``, ``predicted_output_tokens``,
``input_tokens``, ``chain`` (fallbacks in order), ``status``, ``message``, ``solver``, ``batch_size``,
``min_quality``, ``confidence`` and ``margin`` (of a per-batch guarantee, else ``None``), ``prior`` (the model is
routed on a ``like`` model or a probe) and ``length`` (where its predicted output length comes from when its logs
give none)."""


def _decision(entry: Any) -> Decision:
    return {
        "model": entry.model,
        "p_success": entry.p_success,
        "predicted_cost": entry.cost,
        "predicted_output_tokens": entry.output_tokens,
        "input_tokens": entry.input_tokens,
        "chain": list(entry.chain),
        "status": entry.status.value,
        "message": entry.message,
        "solver": entry.solver,
        "batch_size": entry.batch_size,
        "min_quality": entry.min_quality,
        "confidence": entry.confidence,
        "margin": entry.margin,
        "prior": entry.prior,
        "length": entry.length,
    }


class ECCOSSelector(RouterSettings, RunnableSerializable[LanguageModelInput, Decision]):
    """Returns which pool model should answer an input (or each input of a batch, planned jointly).

    Inputs are what a chat model takes (a string, messages, a prompt value). Call-time kwargs are the options
    the call will be sent with: ``tools`` or ``response_format`` restrict the choice to models supporting
    them; ``min_quality`` and ``capacity`` override the fields; ``confidence=`` asks ``Router.plan``'s per-batch
    guarantee of the inputs planned together (an ``invoke`` is a batch of one, whose margin is usually out of
    reach).

    Example:
        ```python
        from langchain_eccos import ECCOSSelector

        selector = ECCOSSelector(min_quality=0.7)
        selector.invoke("Prove that sqrt(2) is irrational.")["model"]
        [d["model"] for d in selector.batch(questions)]  # one optimizer call for all of them
        ```
    """

    @classmethod
    def is_lc_serializable(cls) -> bool:
        """Serializable: routing settings only (never the router or its credentials)."""
        return True

    @classmethod
    def get_lc_namespace(cls) -> list[str]:
        """``["langchain_eccos", "selector"]``."""
        return ["langchain_eccos", "selector"]

    def decide(self, inputs: list[LanguageModelInput], *, single: bool = False, **kwargs: Any) -> list[Decision]:
        """One decision per input, in order: a joint plan of all ``inputs``.

        With ``single`` the one input is routed as a single call (``Router.plan_call`` under :attr:`policy`, as
        ``ChatECCOS.invoke`` routes it).
        """
        options = dict(kwargs)
        min_quality = options.pop("min_quality", self.min_quality)
        capacity = options.pop("capacity", self.capacity)
        policy = options.pop("policy", None)
        if policy is not None:
            check_policy(policy)
        router = self.get_router()
        pinned = options.pop("model", None)
        if pinned is not None:
            capacity = pin_capacity(router.planner.names, capacity, pinned)
        queries = [to_openai(input_messages(value)) for value in inputs]
        if single:
            if options.get("confidence") is not None:
                raise single_call_confidence_error()
            options.pop("confidence", None)
            return [_decision(self.plan_single(queries[0], min_quality, capacity, policy, options))]
        plan = router.plan(queries, min_quality, capacity=capacity, **options)
        return [_decision(entry) for entry in plan.queries]

    @override
    def invoke(self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any) -> Decision:
        return self._call_with_config(lambda value: self.decide([value], single=True, **kwargs)[0], input, config)

    @override
    async def ainvoke(self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any) -> Decision:
        async def decide(value: LanguageModelInput) -> Decision:
            return (await asyncio.to_thread(self.decide, [value], single=True, **kwargs))[0]

        return await self._acall_with_config(decide, input, config)

    @override
    def batch(
        self,
        inputs: list[LanguageModelInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[Decision]:
        """One optimizer call for every input; each input still gets its own callback run.

        The plan is made for all inputs at once, so when it fails (an unreadable input, a capability no model
        has) every item fails with the same error.
        """
        if not inputs:
            return []
        try:
            decisions = self.decide(list(inputs), **kwargs)
        except Exception as exc:  # one plan for all: its failure is every item's
            if return_exceptions:
                return [exc] * len(inputs)
            raise
        configs = get_config_list(config, len(inputs))
        return [
            self._call_with_config(lambda _, d=decision: d, value, conf)
            for value, decision, conf in zip(inputs, decisions, configs, strict=True)
        ]

    @override
    async def abatch(
        self,
        inputs: list[LanguageModelInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[Decision]:
        """Async :meth:`batch`; planning runs off the event loop."""
        if not inputs:
            return []
        try:
            decisions = await asyncio.to_thread(self.decide, list(inputs), **kwargs)
        except Exception as exc:
            if return_exceptions:
                return [exc] * len(inputs)
            raise
        configs = get_config_list(config, len(inputs))
        out = []
        for value, decision, conf in zip(inputs, decisions, configs, strict=True):

            async def known(_: Any, d: Decision = decision) -> Decision:
                return d

            out.append(await self._acall_with_config(known, value, conf))
        return out


__all__ = ["Decision", "ECCOSSelector"]
