"""Router: plan a batch, send it through LiteLLM to the loopback provider, fall back on failures, persist.

Every call really goes through LiteLLM's client to the HTTP server started in ``conftest.py``; the server's
reply names the model it was asked for, so ``result.text`` shows where a query was routed.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter

import numpy as np
import pytest

from eccos_core.calibration import QualityGuard
from eccos_core.errors import (
    CapacityError,
    ConfigError,
    ContextWindowError,
    DispatchError,
    InputError,
    PredictorStateError,
)
from eccos_core.pricing import ModelSpec, cost_matrix
from eccos_core.router import Fallback, QueryPlan, RoutedResponse, Router, RoutingPlan
from eccos_core.targets import Targets

QUESTIONS = [
    "What is 17 * 23?",
    "Prove that the square root of 2 is irrational.",
    "Which planet is known as the Red Planet?",
    "Write a Python function that returns the n-th Fibonacci number.",
    "A train travels 120 km in 1.5 hours. What is its average speed in km/h?",
    "Who wrote the novel 'Pride and Prejudice'?",
    "Find all real x such that x^4 - 5x^2 + 4 = 0.",
    "Which gas do plants absorb from the air for photosynthesis? (A) oxygen (B) carbon dioxide (C) nitrogen",
]


def served(spec: ModelSpec) -> str:
    """The model name the provider sees for a pool entry (``openai/<name>`` → ``<name>``)."""
    return spec.litellm_model.removeprefix("openai/")


def cheapest(pool: list[ModelSpec]) -> ModelSpec:
    return min(pool, key=lambda m: (m.input_cost_per_token + m.output_cost_per_token, m.name))


@pytest.fixture
def router(pool, predictor) -> Router:
    return Router(pool, predictor)


# --------------------------------------------------------------------------------------------- planning
def test_plan_has_one_entry_per_query_in_order(router):
    plan = router.plan(QUESTIONS, min_quality=0.6)

    assert isinstance(plan, RoutingPlan)
    assert len(plan.queries) == len(QUESTIONS)
    assert plan.models == [q.model for q in plan.queries]
    assert set(plan.models) <= {m.name for m in router.models}
    for entry, question in zip(plan.queries, QUESTIONS, strict=True):
        assert isinstance(entry, QueryPlan)
        assert 0.0 <= entry.p_success <= 1.0 and entry.cost >= 0.0
        # the token count of each entry is its own query's, so entries are in input order
        assert entry.input_tokens == router.plan([question], 0.6).queries[0].input_tokens
    assert plan.expected_cost == pytest.approx(sum(q.cost for q in plan.queries))
    assert plan.expected_quality == pytest.approx(np.mean([q.p_success for q in plan.queries]))


def test_low_alpha_buys_cheap_models_and_high_alpha_buys_stronger_ones(router):
    low = router.plan(QUESTIONS, min_quality=0.0)
    best = router.plan(QUESTIONS, min_quality=1.0).expected_quality  # the most this pool can reach
    high = router.plan(QUESTIONS, min_quality=low.expected_quality + 0.7 * (best - low.expected_quality))

    # at α = 0 every query goes to whatever is cheapest for it
    tokens = np.array([q.input_tokens for q in low.queries])
    cost = cost_matrix(router.models, tokens, router.predict(QUESTIONS).output_tokens)
    assert [q.cost for q in low.queries] == pytest.approx(cost.min(axis=1).tolist())

    assert high.status in ("optimal", "feasible")
    assert high.expected_quality >= high.target_quality - 1e-9
    assert high.expected_quality > low.expected_quality
    assert high.expected_cost > low.expected_cost
    assert high.models != low.models


def test_min_quality_one_is_reported_unreachable_and_still_routes_every_query(router):
    plan = router.plan(QUESTIONS, min_quality=1.0)

    assert plan.status == "quality_unreachable"
    assert plan.message
    assert len(plan.queries) == len(QUESTIONS)
    assert plan.expected_quality < 1.0


def test_capacity_caps_how_many_queries_a_model_takes(router, pool):
    cheap = cheapest(pool).name
    assert router.plan(QUESTIONS, 0.0).models.count(cheap) > 2  # uncapped, it takes them

    by_name = router.plan(QUESTIONS, 0.0, capacity={cheap: 2})
    by_position = router.plan(QUESTIONS, 0.0, capacity=[2 if m.name == cheap else None for m in pool])

    assert by_name.models.count(cheap) <= 2
    assert by_position.models == by_name.models


def test_message_lists_use_the_last_user_message(router):
    conversation = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": [{"type": "text", "text": "Who wrote 'Pride and Prejudice'?"}]},
        {"role": "assistant", "content": "Jane Austen."},
        {"role": "user", "content": "What is 17 * 23?"},
    ]
    from_messages = router.plan([conversation], 0.6).queries[0]
    from_text = router.plan(["What is 17 * 23?"], 0.6).queries[0]

    assert from_messages.p_success == pytest.approx(from_text.p_success)
    assert from_messages.input_tokens > from_text.input_tokens  # the whole conversation is sent and billed


# --------------------------------------------------------------------------------------------- dispatch
def test_complete_sends_the_call_to_the_planned_model(router, loopback):
    plan = router.plan(["What is 17 * 23?"], 0.0).queries[0]

    result = router.complete("What is 17 * 23?", min_quality=0.0, policy="strict", temperature=0.2)

    assert isinstance(result, RoutedResponse)
    assert result.model == plan.model and result.plan == plan
    assert result.text == f"answer from {served(router.spec(plan.model))}"
    assert result.fallbacks == ()
    [request] = loopback.requests
    assert request.model == served(router.spec(plan.model))
    assert request.messages == [{"role": "user", "content": "What is 17 * 23?"}]
    assert request.body["temperature"] == 0.2
    spec = router.spec(result.model)
    usage = result.response.usage
    assert (result.input_tokens, result.output_tokens) == (usage.prompt_tokens, usage.completion_tokens)
    assert result.cost == pytest.approx(
        usage.prompt_tokens * spec.input_cost_per_token + usage.completion_tokens * spec.output_cost_per_token
    )


async def test_acomplete_sends_the_call_to_the_planned_model(router, loopback):
    messages = [{"role": "user", "content": "Prove that the square root of 2 is irrational."}]
    plan = router.plan([messages], 0.7).queries[0]

    result = await router.acomplete(messages, min_quality=0.7)

    assert result.model == plan.model
    assert result.text == f"answer from {served(router.spec(plan.model))}"
    assert loopback.models_called() == [served(router.spec(plan.model))]


def test_batch_sends_every_query_to_its_planned_model_in_order(router, loopback):
    plan = router.plan(QUESTIONS, 0.7)

    results = router.batch(QUESTIONS, min_quality=0.7)

    assert [r.model for r in results] == plan.models
    assert [r.text for r in results] == [f"answer from {served(router.spec(m))}" for m in plan.models]
    for question, model in zip(QUESTIONS, plan.models, strict=True):
        assert loopback.model_for(question) == [served(router.spec(model))]


async def test_abatch_sends_every_query_to_its_planned_model_in_order(router, loopback):
    conversations = [[{"role": "user", "content": [{"type": "text", "text": q}]}] for q in QUESTIONS]
    plan = router.plan(conversations, 0.7)

    results = await router.abatch(conversations, min_quality=0.7)

    assert [r.model for r in results] == plan.models
    for question, model in zip(QUESTIONS, plan.models, strict=True):
        assert loopback.model_for(question) == [served(router.spec(model))]


def test_streaming_through_complete_is_refused_with_the_method_to_use(router):
    with pytest.raises(InputError, match=r"Router\.stream"):
        router.complete("What is 17 * 23?", 0.0, stream=True)


def test_a_failing_provider_falls_back_without_leaking_the_key(make_pool, predictor, loopback, api_key, caplog):
    pool = make_pool()
    broken = cheapest(pool).name
    router = Router(make_pool(broken={broken}), predictor)
    caplog.set_level(logging.DEBUG, logger="eccos")

    result = router.complete("What is 17 * 23?", min_quality=0.0)

    assert result.plan.model == broken and result.model != broken
    assert result.text == f"answer from {result.model}"
    [fallback] = result.fallbacks
    assert isinstance(fallback, Fallback)
    assert (fallback.model, fallback.error_type) == (broken, "InternalServerError")
    assert "is down" in fallback.error and "***" in fallback.error  # the server echoed the key; it is redacted
    assert loopback.models_called() == [f"broken-{broken}", result.model]
    assert api_key not in repr(result)
    assert api_key not in fallback.error
    assert all(api_key not in record.getMessage() for record in caplog.records)
    warnings = [r.getMessage() for r in caplog.records if r.name.startswith("eccos") and r.levelno == logging.WARNING]
    assert any(broken in message and "InternalServerError" in message for message in warnings)


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_batch_of_20_with_a_failing_model_loses_no_item(make_pool, predictor, loopback, api_key, mode):
    broken = cheapest(make_pool()).name
    router = Router(make_pool(broken={broken}), predictor, max_concurrency=4)
    questions = [f"Question {i}: what is {i} + {i}?" for i in range(20)]

    results = router.batch(questions, 0.0) if mode == "sync" else await router.abatch(questions, 0.0)

    assert len(results) == 20
    for i, result in enumerate(results):
        assert isinstance(result, RoutedResponse)
        assert result.model != broken and [f.model for f in result.fallbacks] == [broken]
        assert loopback.model_for(f"Question {i}:")[-1] == result.model  # item i's answer is item i's
        assert api_key not in repr(result)


def test_every_model_failing_raises_dispatch_error_naming_each(make_pool, predictor, loopback, api_key):
    names = [m.name for m in make_pool()][:2]
    router = Router(make_pool(names, broken=set(names)), predictor)

    with pytest.raises(DispatchError, match=r"query 0: every model .*failed") as caught:
        router.complete("What is 17 * 23?", 0.5)

    message = str(caught.value)
    assert all(f"{name} (InternalServerError)" in message for name in names)
    assert sorted(f.model for f in caught.value.fallbacks) == sorted(names)
    assert api_key not in message and all(api_key not in f.error for f in caught.value.fallbacks)


@pytest.fixture
def half_broken_router(make_pool, predictor) -> Router:
    """Short prompts fit a working model; long ones fit only a broken model, so they fail everywhere."""
    good, bad = [m.name for m in make_pool()][:2]
    pool = [*make_pool([good], max_input_tokens=30), *make_pool([bad], broken={bad}, max_input_tokens=10_000)]
    return Router(pool, predictor)


LONG = "Summarise this: " + "the quick brown fox jumps over the lazy dog " * 20


async def test_batch_return_exceptions_keeps_every_slot(half_broken_router):
    queries = ["What is 2 + 2?", LONG, "Name a prime number."]

    for results in (
        half_broken_router.batch(queries, 0.0, return_exceptions=True),
        await half_broken_router.abatch(queries, 0.0, return_exceptions=True),
    ):
        assert len(results) == 3
        assert isinstance(results[0], RoutedResponse) and isinstance(results[2], RoutedResponse)
        assert isinstance(results[1], DispatchError) and "query 1" in str(results[1])


def test_batch_raises_after_every_item_finished(half_broken_router, loopback):
    queries = ["What is 2 + 2?", LONG, "Name a prime number."]

    with pytest.raises(DispatchError, match="query 1") as caught:
        half_broken_router.batch(queries, 0.0)

    results = caught.value.results
    assert len(results) == 3 and results[1] is caught.value
    assert isinstance(results[0], RoutedResponse) and isinstance(results[2], RoutedResponse)
    assert loopback.model_for("Name a prime number.")  # the item after the failure was still sent


# ------------------------------------------------------------------------------------------- bad input
def test_bad_queries_are_typed_errors_that_say_what_to_fix(router):
    with pytest.raises(InputError, match="batch is empty"):
        router.plan([], 0.5)
    with pytest.raises(InputError, match="query 0 has an empty message list"):
        router.complete([], 0.5)
    with pytest.raises(InputError, match=r"query 1, message 0 \(role 'user'\) has no text"):
        router.plan(["fine", [{"role": "user", "content": "  "}]], 0.5)
    with pytest.raises(InputError, match=r"query 0, message 1 .*has no text"):
        router.plan([[{"role": "system", "content": "Be brief."}, {"role": "user", "content": []}]], 0.5)
    with pytest.raises(InputError, match="router chooses"):
        router.complete("hi", 0.5, model="openai/gpt-4o")


@pytest.mark.parametrize("alpha", [-0.1, 1.5, math.nan, "high"])
def test_min_quality_outside_unit_interval_is_rejected(router, alpha):
    with pytest.raises(InputError, match="min_quality must"):
        router.plan(QUESTIONS, alpha)


def test_capacity_naming_an_unknown_model_lists_the_pool(router, pool):
    with pytest.raises(ConfigError, match=rf"'gpt-5'.*not in the pool.*{pool[0].name}"):
        router.plan(QUESTIONS, 0.5, capacity={"gpt-5": 3})
    with pytest.raises(InputError, match=f"pool has {len(pool)} models"):
        router.plan(QUESTIONS, 0.5, capacity=[1, 2])


def test_capacity_smaller_than_the_batch_is_a_capacity_error(router, pool):
    with pytest.raises(CapacityError, match=f"caps sum to {len(QUESTIONS) - 1} for a batch of {len(QUESTIONS)}"):
        router.plan(QUESTIONS, 0.5, capacity=[0] * (len(pool) - 1) + [len(QUESTIONS) - 1])


def test_bad_pools_are_config_errors(make_pool, predictor):
    with pytest.raises(ConfigError, match="empty"):
        Router([], predictor)
    spec = make_pool()[0]
    with pytest.raises(ConfigError, match=rf"duplicate model names.*{spec.name}"):
        Router([spec, spec], predictor)


def test_a_prompt_longer_than_every_context_window_names_the_query(make_pool, predictor):
    router = Router(make_pool(max_input_tokens=40), predictor)

    with pytest.raises(ContextWindowError, match=r"query 1 has \d+ input tokens.*largest is 40 tokens"):
        router.plan(["short", LONG], 0.5)


def test_predictor_fitted_on_another_pool_is_rejected(make_pool, predictor):
    stranger = ModelSpec("gpt-5-nano", "openai/gpt-5-nano", input_cost_per_token=5e-8, output_cost_per_token=4e-7)

    with pytest.raises(PredictorStateError, match="fitted without pool models \\['gpt-5-nano'\\]"):
        Router([*make_pool(), stranger], predictor)


def test_unfitted_predictor_is_rejected(pool):
    from eccos_core.predictors.retrieval import RetrievalPredictor

    with pytest.raises(PredictorStateError, match="not fitted"):
        Router(pool, RetrievalPredictor())


def test_a_pool_that_is_a_subset_of_the_predictors_models_is_fine(make_pool, predictor):
    names = [m.name for m in make_pool()][:3]
    router = Router(make_pool(list(reversed(names))), predictor)

    assert set(router.plan(QUESTIONS, 0.5).models) <= set(names)


# ----------------------------------------------------------------------------------------- persistence
def test_save_load_round_trip_gives_the_same_plan_and_saves_no_key(router, pool, tmp_path, api_key):
    guard = QualityGuard((0.0, 0.5, 0.9), (0.0, 0.6, 0.95))
    with pytest.raises(InputError, match=r"wrap a quality guard as Targets\(guard\)"):
        Router(pool, router.predictor, guard)
    router = Router(pool, router.predictor, Targets(guard))
    path = router.save(tmp_path / "router")

    loaded = Router.load(path, models=pool)
    anonymous = Router.load(path)

    before = router.plan(QUESTIONS, 0.7)
    assert loaded.plan(QUESTIONS, 0.7) == before
    assert anonymous.plan(QUESTIONS, 0.7).models == before.models
    assert all("api_key" not in m.litellm_params for m in anonymous.models)
    assert all(api_key not in f.read_text(errors="ignore") for f in path.rglob("*.json"))
    with pytest.raises(ConfigError, match="does not match"):
        Router.load(path, models=pool[:2])


def test_a_saved_router_with_missing_predictor_files_is_a_typed_error(router, tmp_path):
    path = router.save(tmp_path / "router")
    (path / "predictor" / "embeddings.npy").unlink()

    with pytest.raises(PredictorStateError, match="missing"):
        Router.load(path)


def test_fit_calibrates_the_guard_on_out_of_fold_predictions(make_pool, small_logs):
    pool = make_pool()
    router = Router.fit(pool, small_logs.subset(range(120)))

    assert router.guard != QualityGuard.identity()
    alpha = router.guard.max_quality - 0.05
    plan = router.plan(QUESTIONS, alpha)
    assert plan.target_quality == pytest.approx(router.guard.target(alpha))
    assert len(plan.queries) == len(QUESTIONS)

    # above what routing reached on held-out training queries, the plan says so instead of promising it
    beyond = router.plan(QUESTIONS, min(1.0, router.guard.max_quality + 0.02))
    assert beyond.status == "quality_unreachable"
    assert "unreachable" in beyond.message


def test_default_router_loads_the_shipped_fit_without_fitting(monkeypatch):
    def no_fit(*args, **kwargs):
        raise AssertionError("the shipped default router should have been loaded, not fitted")

    monkeypatch.setattr(Router, "fit", classmethod(no_fit))
    router = Router.default()
    assert {m.name for m in router.models} == set(router.predictor.models)
    assert router.guard.max_quality > 0.5  # a real guard, fitted on the bundled training split


def test_default_router_is_fitted_once_then_loaded_from_its_cache(monkeypatch, small_logs, tmp_path):
    import eccos_core.bundled
    import eccos_core.default_router

    monkeypatch.setattr(eccos_core.bundled, "bundled_logs", lambda: small_logs)
    monkeypatch.setattr(eccos_core.default_router, "shipped_matches", lambda: False)
    first = Router.default(cache_dir=tmp_path)
    [cache] = list(tmp_path.iterdir())  # one published directory, no temporary leftovers
    assert cache.name.startswith("default-")
    assert json.loads((cache / "router.json").read_text())["format"]

    def no_refit(*args, **kwargs):
        raise AssertionError("the cached default router should have been loaded, not refitted")

    monkeypatch.setattr(Router, "fit", classmethod(no_refit))
    second = Router.default(cache_dir=tmp_path)

    assert second.plan(QUESTIONS, 0.6) == first.plan(QUESTIONS, 0.6)
    assert Counter(m.name for m in second.models) == Counter(m.name for m in first.models)
