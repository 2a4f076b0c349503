"""Output lengths are never 0: a model whose logs give none is predicted from its own answers, similar models, or a
default, and every plan says which (``QueryPlan.length``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from eccos_core.errors import PredictorStateError
from eccos_core.lengths import DEFAULT_OUTPUT_TOKENS, PSEUDO_CALLS, OutputLengths
from eccos_core.logs import LogRecord, Outcome, RoutingLogs
from eccos_core.predictors.base import Prediction
from eccos_core.predictors.retrieval import RetrievalPredictor
from eccos_core.router import Router

QUESTION = "What is the capital of Australia?"


@pytest.fixture(scope="module")
def bundled_router(predictor, small_logs):
    """A retrieval router fitted on bundled logs, which log no output lengths."""
    return Router.fit(list(_specs(predictor.models[:3])), small_logs, RetrievalPredictor().fit(small_logs))


def _specs(names):
    from eccos_core.bundled import bundled_models

    return [m for m in bundled_models() if m.name in names]


def test_a_pool_without_logged_lengths_is_priced_at_the_default_and_says_so(make_pool, bundled_router):
    router = bundled_router.with_models(make_pool(bundled_router.planner.names))
    plan = router.plan([QUESTION], 0.5)
    entry = plan.queries[0]
    assert entry.output_tokens == DEFAULT_OUTPUT_TOKENS and entry.length == "default"
    spec = router.dispatcher.spec(entry.model)
    assert entry.cost == pytest.approx(
        entry.input_tokens * spec.input_cost_per_token + DEFAULT_OUTPUT_TOKENS * spec.output_cost_per_token
    )


def test_each_answer_feeds_its_models_length(make_pool, bundled_router, loopback):
    router = bundled_router.with_models(make_pool(bundled_router.planner.names))
    reply = router.complete(QUESTION, min_quality=0.5)
    assert reply.to_metadata()["length"] == "default"
    model = reply.model
    assert router.lengths.calls(model) == (1, float(reply.output_tokens))

    plan = router.plan([QUESTION], 0.5, policy="strict")
    column = router.predict([QUESTION])
    j = column.models.index(model)
    expected = reply.output_tokens  # its own answer, shrunk toward the pool's answers: the same one
    assert column.output_tokens[0, j] == pytest.approx(expected)
    assert all(q.length == "calls (1)" for q in plan.queries if q.model == model)
    assert bundled_router.lengths is router.lengths  # routers made from one share its record


def test_a_model_without_lengths_is_predicted_from_similar_models_that_have_them():
    lengths = OutputLengths()
    prediction = Prediction(("a", "b", "c"), np.full((2, 3), 0.5), np.array([[100.0, 0.0, 300.0], [10.0, 0.0, 30.0]]))
    filled = lengths.fill(prediction, {"b"})
    assert filled.output_tokens[:, 1].tolist() == [200.0, 20.0]
    assert lengths.source("b", {"b"}, ("a", "b", "c")) == "similar models"
    lengths.observe("b", 50)
    lengths.observe("b", float("nan"))  # not a length: ignored
    assert lengths.calls("b") == (1, 50.0)
    shrunk = (50 + PSEUDO_CALLS * 200) / (1 + PSEUDO_CALLS)
    assert lengths.fill(prediction, {"b"}).output_tokens[0, 1] == pytest.approx(shrunk)
    assert lengths.source("b", {"b"}, ("a", "b", "c")) == "calls (1)"


def test_a_model_not_yet_asked_is_predicted_from_the_pools_answers():
    lengths = OutputLengths()
    prediction = Prediction(("a", "b"), np.full((1, 2), 0.5), np.zeros((1, 2)))
    assert lengths.fill(prediction, {"a", "b"}).output_tokens.tolist() == [[DEFAULT_OUTPUT_TOKENS] * 2]
    lengths.observe("a", 10)
    lengths.observe("a", 30)
    filled = lengths.fill(prediction, {"a", "b"}).output_tokens[0]
    assert filled[1] == pytest.approx(20.0) and lengths.source("b", {"a", "b"}, ("a", "b")) == "pool calls (2)"
    assert filled[0] == pytest.approx((40 + PSEUDO_CALLS * 20) / (2 + PSEUDO_CALLS))


def test_logged_lengths_are_kept_and_only_the_missing_model_is_filled(small_logs):
    names = list(small_logs.models[:3])

    def outcome(name, logged):
        return Outcome(logged.score, output_tokens=None if name == names[2] else 40.0)

    records = [
        LogRecord(r.id, r.query, {n: outcome(n, r.outcomes[n]) for n in names if n in r.outcomes}, r.task)
        for r in small_logs
    ]
    predictor = RetrievalPredictor().fit(RoutingLogs(tuple(records)))
    router = Router(_specs(names), predictor)
    prediction = router.predict([QUESTION])
    tokens = dict(zip(prediction.models, prediction.output_tokens[0], strict=True))
    assert tokens[names[0]] == pytest.approx(40.0) and tokens[names[2]] == pytest.approx(40.0)
    assert router.planner.columns.unlogged == {names[2]}
    plan = router.plan([QUESTION] * 3, 0.3)
    assert {q.length for q in plan.queries} <= {None, "similar models"}


def test_the_record_is_saved_with_the_router_and_checked(make_pool, bundled_router, loopback, tmp_path):
    router = bundled_router.with_models(make_pool(bundled_router.planner.names))
    router.lengths.observe(router.planner.names[0], 120)
    path = router.save(tmp_path / "router")
    loaded = Router.load(path, models=router.models)
    assert loaded.lengths.to_dict() == router.lengths.to_dict()
    assert "lengths.json" in json.loads((path / "router.json").read_text())["checksums"]

    data = json.loads((path / "lengths.json").read_text())
    data["calls"][router.planner.names[0]] = [1, 1e6]
    (path / "lengths.json").write_text(json.dumps(data))
    with pytest.raises(PredictorStateError, match=r"lengths\.json does not match the sha256"):
        Router.load(path, models=router.models)


def test_a_router_saved_before_lengths_routes_as_fitted_until_refit(bundled_router, tmp_path):
    from eccos_core.predictors.base import file_sha256

    path = bundled_router.save(tmp_path / "old")
    targets = json.loads((path / "targets.json").read_text())
    del targets["output_lengths"]  # what the previous release wrote
    (path / "targets.json").write_text(json.dumps(targets))
    meta = json.loads((path / "router.json").read_text())
    meta["checksums"]["targets.json"] = file_sha256(path / "targets.json")
    (path / "router.json").write_text(json.dumps(meta))

    old = Router.load(path)
    entry = old.plan([QUESTION], 0.5).queries[0]
    assert entry.output_tokens == 0.0 and entry.length is None  # its targets were fitted on such costs
    old.refit()
    entry = old.plan([QUESTION], 0.5).queries[0]
    assert old.targets.output_lengths and entry.output_tokens > 0 and entry.length is not None
