"""The routing plugin inside ``litellm.Router(plugins=[...])`` (this environment's LiteLLM), no proxy process.

Real LiteLLM router, real HTTP to the loopback provider; the plugin narrows each call to one deployment.
"""

from __future__ import annotations

import logging
from typing import Any

import litellm
import numpy as np
import pytest
from proxy_support import deployments

from eccos_core.errors import InputError
from eccos_core.proxy import ECCOSRoutingPlugin, decision_headers
from eccos_core.router import Router


@pytest.fixture(scope="module")
def router(predictor: Any, bundled_pool_specs: dict[str, Any], small_logs: Any) -> Router:
    pool = [bundled_pool_specs[name] for name in predictor.models]
    return Router.fit(pool, small_logs, predictor=predictor)


@pytest.fixture
def setup(router, loopback, api_key, bundled_pool_specs) -> Any:
    def build(**kwargs: Any) -> tuple[ECCOSRoutingPlugin, litellm.Router]:
        plugin = ECCOSRoutingPlugin(router, redis=None, warm=False, **kwargs)
        model_list = deployments(loopback.api_base, api_key, bundled_pool_specs.values())
        model_list += deployments(loopback.api_base, api_key, [bundled_pool_specs["gemma-2-9b-it"]], "plain")
        litellm_router = litellm.Router(model_list=model_list, plugins=[plugin], num_retries=0)
        return plugin.attach(litellm_router), litellm_router

    return build


async def _ask(litellm_router: litellm.Router, text: str, group: str = "eccos", **metadata: Any) -> Any:
    extra = {"metadata": metadata} if metadata else {}
    return await litellm_router.acompletion(model=group, messages=[{"role": "user", "content": text}], **extra)


async def test_each_call_goes_to_the_deployment_the_plugin_picked(setup, loopback) -> None:
    plugin, litellm_router = setup(min_quality=0.6)
    questions = [f"Question {i}: what is {i} * 7? Explain the steps." for i in range(12)]
    for question in questions:
        response = await _ask(litellm_router, question)
        served = loopback.model_for(question)
        assert len(served) == 1  # narrowed to one deployment: no second try elsewhere
        assert response.choices[0].message.content == f"answer from {served[0]}"
    totals = await plugin.fleet_totals(0.6)
    assert totals["calls"] == len(questions)


async def test_min_quality_comes_from_the_request(setup, loopback) -> None:
    plugin, litellm_router = setup(min_quality=0.3)
    text = "Prove that the square root of 2 is irrational."
    for _ in range(5):
        await _ask(litellm_router, text)
        await _ask(litellm_router, text, min_quality=0.75)
    low, high = (await plugin.fleet_totals(0.3)), (await plugin.fleet_totals(0.75))
    assert low["calls"] == high["calls"] == 5
    assert high["quality"] / 5 > low["quality"] / 5  # a higher min_quality buys predicted quality
    assert high["cost"] > low["cost"]


async def test_bad_min_quality_is_a_client_error(setup) -> None:
    _, litellm_router = setup()
    with pytest.raises(litellm.BadRequestError, match=r"min_quality must lie in \[0, 1\]"):
        await _ask(litellm_router, "hello", min_quality=1.7)
    with pytest.raises(litellm.BadRequestError, match="min_quality must be a number"):
        await _ask(litellm_router, "hello", min_quality="high")


async def test_groups_outside_model_groups_are_left_alone(setup, loopback) -> None:
    plugin, litellm_router = setup(model_groups=["eccos"])
    await _ask(litellm_router, "plain call", group="plain")
    assert loopback.model_for("plain call") == ["gemma-2-9b-it"]
    assert (await plugin.fleet_totals(0.7))["calls"] == 0


async def test_deployment_prices_steer_the_pick(setup, loopback, router) -> None:
    plugin, litellm_router = setup(min_quality=0.3)
    text = "What is the capital of France?"
    await _ask(litellm_router, text)
    first = loopback.model_for(text)[0]
    pool = plugin._priced_pool(
        tuple(f"openai/{n}" for n in plugin.names), {f"openai/{n}": k for k, n in enumerate(plugin.names)}
    )
    assert [m.input_cost_per_token for m in pool] == [m.input_cost_per_token for m in router.planner.pool]
    # the same deployment made 1000x dearer is no longer the pick at a low min_quality
    for deployment in litellm_router.model_list:
        if deployment["litellm_params"]["model"] == f"openai/{first}":
            deployment["litellm_params"]["input_cost_per_token"] *= 1000
            deployment["litellm_params"]["output_cost_per_token"] *= 1000
    plugin.attach(litellm_router)
    await _ask(litellm_router, text + " ")
    assert loopback.model_for(text + " ")[0] != first


def test_settings_are_checked(router) -> None:
    with pytest.raises(InputError, match="does not know"):
        ECCOSRoutingPlugin(router, redis=None, warm=False, caps={"gpt-9": 0.1})
    with pytest.raises(InputError, match="min_quality"):
        ECCOSRoutingPlugin(router, redis=None, warm=False, min_quality=2.0)
    with pytest.raises(InputError, match="does not know"):
        ECCOSRoutingPlugin(router, redis=None, warm=False, models={"openai/x": "gpt-9"})


def test_without_redis_it_says_so(router, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="eccos.proxy"):
        ECCOSRoutingPlugin(router, redis=None, warm=False)
    assert any("no Redis configured" in r.getMessage() for r in caplog.records)


def test_headers_carry_the_decision() -> None:
    headers = decision_headers(
        {"model": "m", "p_success": 0.8, "predicted_cost": 1e-5, "min_quality": 0.7, "price": None}
    )
    assert headers == {
        "x-eccos-model": "m",
        "x-eccos-p-success": "0.8",
        "x-eccos-predicted-cost": "1e-05",
        "x-eccos-min-quality": "0.7",
    }
    assert decision_headers({"skipped": "why"}) == {"x-eccos-skipped": "why"}


async def test_min_quality_zero_is_its_own_stream_and_streams_are_bounded(setup) -> None:
    from eccos_core.policies.stores import MAX_STREAMS

    plugin, litellm_router = setup(min_quality=0.5)
    await _ask(litellm_router, "zero please", min_quality=0.0)
    assert (await plugin.fleet_totals(0.0))["calls"] == 1  # 0.0 is a min_quality, not "the default"
    assert (await plugin.fleet_totals(0.5))["calls"] == 0
    for k in range(MAX_STREAMS + 5):
        m = len(plugin.names)
        await plugin._stream("quality", k / 1000).aroute(np.linspace(0.4, 0.9, m), np.linspace(1e-6, 1e-5, m))
    assert len(plugin.prices._streams) == MAX_STREAMS
    assert len(plugin.store) <= MAX_STREAMS


def test_another_router_over_the_same_models_gets_its_own_streams(router, predictor) -> None:
    from eccos_core.targets import Targets

    first = ECCOSRoutingPlugin(router, redis=None, warm=False)
    other = Router(router.models, predictor, Targets(router.guard))  # same models, no fitted curve
    second = ECCOSRoutingPlugin(other, redis=None, warm=False)
    assert first._stream("quality", 0.6).stream != second._stream("quality", 0.6).stream
