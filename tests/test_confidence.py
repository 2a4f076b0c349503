"""The per-batch guarantee in the public API: ``confidence=`` on plans and batches, fitted, saved and refused."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from eccos_core.bundled import bundled_logs
from eccos_core.errors import InputError, PredictorStateError
from eccos_core.guarantee import BatchMargin
from eccos_core.logs import split_logs
from eccos_core.messages import count_text_tokens
from eccos_core.optimize import SolveStatus
from eccos_core.planner import RoutingPlan
from eccos_core.predictors.base import file_sha256
from eccos_core.predictors.retrieval import RetrievalPredictor
from eccos_core.router import Router
from eccos_core.targets import Targets

CONFIDENCE = 0.9


@pytest.fixture(scope="module")
def fitted(make_pool, small_logs) -> Router:
    """A router fitted (guard, prices, margin) on 120 bundled records, over the loopback pool (read-only)."""
    return Router.fit(make_pool(), small_logs.subset(range(120)), RetrievalPredictor())


@pytest.fixture(scope="module")
def shipped(make_pool) -> Router:
    """The shipped default router (fitted on 4,790 training queries, margin included), over the loopback pool."""
    default = Router.default()
    assert default.margin is not None, "the shipped default router has no margin: run eccos build-default"
    return default.with_models(make_pool())


@pytest.fixture(scope="module")
def queries() -> list[str]:
    """200 random queries of the bundled held-out split (never fitted on): exchangeable with the logs."""
    test = split_logs(bundled_logs(), test_frac=0.2, seed=0)[1]
    return list(test.subset(np.random.default_rng(0).choice(len(test), 200, replace=False)).queries)


@pytest.fixture(scope="module")
def alpha(shipped) -> float:
    """A min_quality whose guarantee for batches of 100 is within what routing reached on held-out data."""
    guard, margin = shipped.guard, shipped.margin
    alpha = round(guard.max_quality - margin.margin(100, CONFIDENCE) - 0.02, 3)
    assert guard.reachable(alpha + margin.margin(100, CONFIDENCE, alpha))
    return alpha


@pytest.fixture(scope="module")
def planned(shipped, queries) -> Callable[..., RoutingPlan]:
    """``planned(n, alpha, confidence=None)``: the shipped router's plan of the first n queries, predicted once."""
    prediction = shipped.predict(queries)
    tokens = [count_text_tokens(q) for q in queries]

    def plan(n: int, alpha: float, confidence: float | None = None) -> RoutingPlan:
        return shipped.plan_prediction(prediction.rows(range(n)), tokens[:n], alpha, confidence=confidence)

    return plan


@pytest.fixture
def saved(fitted, tmp_path) -> Path:
    return fitted.save(tmp_path / "router")


def _rewrite(path: Path, change: Any) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _as_old_save(path: Path) -> None:
    """What an eccos without confidence= saved: guard.json, no margin.json, no checksums in router.json."""
    targets = json.loads((path / "targets.json").read_text())
    (path / "targets.json").unlink()
    (path / "guard.json").write_text(json.dumps(targets["guard"]))
    _rewrite(path / "router.json", lambda d: d.pop("checksums"))


# ------------------------------------------------------------------------------------------------ planning
def test_fit_fits_a_margin_and_the_plan_records_confidence_and_margin(fitted, shipped, queries, alpha):
    assert isinstance(fitted.margin, BatchMargin) and fitted.margin.residuals
    plan = shipped.plan(queries[:100], alpha, confidence=CONFIDENCE)

    assert plan.confidence == CONFIDENCE
    assert plan.margin == pytest.approx(shipped.margin.margin(100, CONFIDENCE, alpha))
    assert plan.target_quality == pytest.approx(shipped.targets.batch(alpha, 100, CONFIDENCE).target)
    assert all(q.confidence == CONFIDENCE and q.margin == plan.margin for q in plan.queries)
    assert plan.queries[0].to_dict()["confidence"] == CONFIDENCE
    assert plan.status in (SolveStatus.OPTIMAL, SolveStatus.FEASIBLE)

    plain = shipped.plan(queries[:10], alpha)
    assert plain.confidence is None and plain.margin is None
    assert plain.queries[0].to_dict()["margin"] is None


def test_a_guarantee_costs_at_least_the_plain_plan_and_buys_more_predicted_quality(planned, alpha):
    plain, sure = planned(100, alpha), planned(100, alpha, CONFIDENCE)

    assert sure.target_quality > plain.target_quality
    assert sure.expected_cost >= plain.expected_cost - 1e-12
    assert sure.expected_quality > plain.expected_quality
    # a higher confidence asks for more still
    surer = planned(100, alpha, 0.99)
    assert surer.margin > sure.margin and surer.expected_cost >= sure.expected_cost - 1e-12


def test_the_margin_shrinks_as_the_batch_grows(planned, alpha):
    margins = [planned(n, alpha, CONFIDENCE).margin for n in (25, 50, 100, 200)]
    assert margins == sorted(margins, reverse=True) and margins[0] > margins[-1] > 0


def test_beyond_what_routing_reached_the_guarantee_is_refused_as_unreachable(shipped, planned):
    guard, margin = shipped.guard, shipped.margin
    alpha = guard.max_quality - 0.01  # reachable on average, not with a margin on top
    assert not guard.reachable(alpha + margin.margin(50, CONFIDENCE, alpha))
    plain, sure = planned(50, alpha), planned(50, alpha, CONFIDENCE)

    assert plain.status != SolveStatus.QUALITY_UNREACHABLE
    assert sure.status == SolveStatus.QUALITY_UNREACHABLE
    assert "guarantee cannot be given" in sure.message and f"confidence {CONFIDENCE:g}" in sure.message
    assert sure.target_quality == 1.0 and sure.expected_quality >= plain.expected_quality


def test_plan_prediction_takes_confidence_as_plan_does(shipped, planned, queries, alpha):
    online = shipped.plan(queries[:60], alpha, confidence=CONFIDENCE)
    offline = planned(60, alpha, CONFIDENCE)
    assert offline.margin == online.margin and offline.confidence == CONFIDENCE
    assert offline.target_quality == online.target_quality


# --------------------------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("confidence", [0, 0.0, 1, 1.0, 1.5, -0.1, math.nan, "high", True, [0.9]])
def test_confidence_outside_the_open_unit_interval_or_not_a_number_is_an_input_error(fitted, confidence):
    with pytest.raises(InputError, match="confidence must"):
        fitted.plan(["What is 2 + 2?"], 0.5, confidence=confidence)


def test_confidence_with_a_budget_is_refused(fitted):
    with pytest.raises(InputError, match="budget plan has no quality target"):
        fitted.plan(["What is 2 + 2?"], budget=0.01, confidence=CONFIDENCE)


@pytest.mark.parametrize("policy", ["dual", "strict"])
def test_single_calls_refuse_confidence_and_send_nothing(fitted, loopback, policy):
    with pytest.raises(InputError, match="a single call has no batch"):
        fitted.complete("What is 2 + 2?", 0.5, policy=policy, confidence=CONFIDENCE)
    with pytest.raises(InputError, match="a single call has no batch"):
        fitted.stream("What is 2 + 2?", 0.5, policy=policy, confidence=CONFIDENCE)
    with pytest.raises(InputError, match=r"Router\.plan / batch / abatch"):
        fitted.plan_call("What is 2 + 2?", 0.5, policy=policy, confidence=CONFIDENCE)
    assert loopback.requests == []


def test_a_router_without_a_guard_refuses_confidence_and_says_how_to_fix_it(make_pool, fake_predictor):
    router = Router(make_pool(), fake_predictor)
    assert router.margin is None
    with pytest.raises(PredictorStateError, match=r"has none.*Router\.fit\(models, logs\)"):
        router.plan(["What is 2 + 2?", "Name a prime."], 0.5, confidence=CONFIDENCE)
    assert router.plan(["What is 2 + 2?"], 0.5).confidence is None  # without it, nothing changes


# ----------------------------------------------------------------------------------------------- sending
def test_batch_routes_with_the_guarantee_and_reports_it_in_each_reply(shipped, loopback, queries, alpha):
    replies = shipped.batch(queries[:16], alpha, confidence=CONFIDENCE)
    plan = shipped.plan(queries[:16], alpha, confidence=CONFIDENCE)
    assert [r.model for r in replies] == plan.models
    assert {r.to_metadata()["confidence"] for r in replies} == {CONFIDENCE}
    assert replies[0].to_metadata()["margin"] == pytest.approx(plan.margin)


async def test_abatch_routes_with_the_guarantee(shipped, loopback, queries, alpha):
    replies = await shipped.abatch(queries[:20], alpha, confidence=CONFIDENCE)
    assert [r.model for r in replies] == shipped.plan(queries[:20], alpha, confidence=CONFIDENCE).models


def test_langchain_batch_takes_confidence_and_invoke_refuses_it(shipped, loopback, queries, alpha):
    from langchain_eccos import ChatECCOS, ECCOSSelector

    llm = ChatECCOS(router=shipped, min_quality=alpha)
    replies = llm.bind(confidence=CONFIDENCE).batch(queries[:12])
    assert {r.response_metadata["eccos"]["confidence"] for r in replies} == {CONFIDENCE}
    assert [r.response_metadata["eccos"]["model"] for r in replies] == shipped.plan(
        queries[:12], alpha, confidence=CONFIDENCE
    ).models
    with pytest.raises(InputError, match="a single call has no batch"):
        llm.invoke(queries[0], confidence=CONFIDENCE)
    decisions = ECCOSSelector(router=shipped, min_quality=alpha).batch(queries[:12], confidence=CONFIDENCE)
    assert {d["confidence"] for d in decisions} == {CONFIDENCE} and decisions[0]["margin"] > 0


def test_llamaindex_batch_takes_confidence_and_a_single_call_refuses_it(shipped, loopback, queries, alpha):
    from llamaindex_eccos import ECCOSLLM

    llm = ECCOSLLM(router=shipped, min_quality=alpha)
    replies = llm.complete_batch(queries[:12], confidence=CONFIDENCE)
    assert {r.additional_kwargs["eccos"]["confidence"] for r in replies} == {CONFIDENCE}
    with pytest.raises(InputError, match="a single call has no batch"):
        llm.complete(queries[0], confidence=CONFIDENCE)


# ------------------------------------------------------------------------------------------- persistence
def test_the_margin_is_saved_checksummed_and_loaded_back(fitted, saved, queries, alpha):
    meta = json.loads((saved / "router.json").read_text())
    assert meta["checksums"] == {"targets.json": file_sha256(saved / "targets.json")}  # no calls: no streams
    loaded = Router.load(saved, models=fitted.models)
    assert loaded.margin == fitted.margin
    again, first = (r.plan(queries[:40], alpha, confidence=CONFIDENCE) for r in (loaded, fitted))
    assert again.models == first.models and again.margin == first.margin


def test_an_edited_margin_is_refused_naming_the_file(saved):
    _rewrite(saved / "targets.json", lambda d: d["margin"].update(bias=0.0, residuals=[-1.0] * 3))
    with pytest.raises(PredictorStateError, match=r"targets\.json does not match the sha256 recorded in .*router"):
        Router.load(saved)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: (p / "targets.json").unlink(), r"records targets\.json, which is missing"),
        (lambda p: _rewrite(p / "router.json", lambda d: d.pop("checksums")), r"targets\.json is not recorded"),
        (lambda p: _rewrite(p / "router.json", lambda d: d.update(checksums=[1])), r"'checksums' must map"),
    ],
)
def test_a_margin_out_of_step_with_router_json_is_refused(saved, damage, message):
    damage(saved)
    with pytest.raises(PredictorStateError, match=message):
        Router.load(saved)


def test_a_re_signed_but_invalid_margin_is_refused_at_load_not_at_plan(saved):
    _rewrite(saved / "targets.json", lambda d: d["margin"].update(residuals=list(reversed(d["margin"]["residuals"]))))
    _rewrite(saved / "router.json", lambda d: d.update(checksums={"targets.json": file_sha256(saved / "targets.json")}))
    with pytest.raises(PredictorStateError, match=r"targets: margin is not valid.*never decrease"):
        Router.load(saved)


def test_a_router_saved_without_a_margin_loads_and_refuses_only_confidence(fitted, saved, queries, alpha):
    _as_old_save(saved)
    old = Router.load(saved, models=fitted.models)
    assert old.margin is None
    assert old.plan(queries[:20], alpha).models == fitted.plan(queries[:20], alpha).models
    with pytest.raises(PredictorStateError, match=r"saved by an eccos without confidence=.*refit"):
        old.plan(queries[:20], alpha, confidence=CONFIDENCE)

    old.refit()  # the fix the error names: refit (here on the same store) gives it a margin
    assert old.margin is not None
    assert old.plan(queries[:20], alpha, confidence=CONFIDENCE).confidence == CONFIDENCE
    old.save(saved)
    assert Router.load(saved).margin == old.margin


def test_saving_a_router_without_a_margin_over_one_with_it_removes_the_old_file(fitted, saved):
    Router(fitted.models, fitted.predictor, Targets(fitted.guard)).save(saved)
    assert json.loads((saved / "targets.json").read_text())["margin"] is None
    assert Router.load(saved).margin is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"bias": -0.1}, "bias"),
        ({"bias": "high"}, "bias"),
        ({"batch_sizes": [0]}, "batch_sizes"),
        ({"alphas": [1.5]}, "alphas"),
        ({"residuals": [0.1, math.inf]}, "finite"),
    ],
)
def test_from_dict_refuses_a_margin_that_would_promise_nonsense(fitted, change, message):
    data = {**fitted.margin.to_dict(), **change}
    with pytest.raises(PredictorStateError, match=message):
        BatchMargin.from_dict(data)


# ------------------------------------------------------------------------------------------ evaluation
def test_eval_confidence_routes_through_the_planners_goal(fitted, small_logs):
    from eccos_core.evaluate import evaluate_guarantee

    test = bundled_logs().subset(range(3, 3 + 60 * 7, 7))
    rows = evaluate_guarantee(
        fitted, small_logs, test, confidence=CONFIDENCE, batch_size=20, n_batches=4, alphas=[0.5, 0.99]
    )
    for row in rows:
        goal = fitted.targets.batch(row["alpha"], 20, CONFIDENCE)
        assert row["margin"] == pytest.approx(goal.margin) and row["promisable"] == goal.reachable
    assert rows[1]["promisable"] is False


def test_eval_confidence_needs_the_guard(tmp_path, capsys, monkeypatch):
    from eccos_core.cli import main
    from eccos_core.logs import write_logs

    write_logs(bundled_logs().subset(range(0, 600, 10)), tmp_path / "logs.jsonl")

    def no_fit(*args: Any, **kwargs: Any) -> Router:
        raise AssertionError("fitted before the arguments were checked")

    monkeypatch.setattr(Router, "fit", classmethod(no_fit))
    argv = ["eval", "--data", str(tmp_path / "logs.jsonl"), "--no-guard", "--confidence", "0.9"]
    assert main(argv) == 2
    assert "drop --no-guard" in capsys.readouterr().err


def test_eval_without_the_guard_routes_on_predicted_success(tmp_path, capsys):
    """--no-guard fits no targets (identity guard, no per-call curve) and evaluates; it used to crash."""
    from eccos_core.bundled import bundled_models
    from eccos_core.cli import main
    from eccos_core.logs import write_logs
    from eccos_core.pricing import write_models

    write_logs(bundled_logs().subset(range(0, 1200, 10)), tmp_path / "logs.jsonl")
    write_models(bundled_models(), tmp_path / "models.json")
    argv = ["eval", "--models", str(tmp_path / "models.json")]
    argv += [
        "--data",
        str(tmp_path / "logs.jsonl"),
        "--no-guard",
        "--alpha",
        "0.5",
        "--json",
        str(tmp_path / "r.json"),
    ]
    assert main(argv) == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "r.json").read_text())["policies"]
