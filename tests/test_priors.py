"""A model without logs joins a pool with a prior (``ModelSpec(like=...)``): routed, named in every plan.

The fake predictor and the loopback provider stand in for the fitted predictor and the user's own endpoint; the
fit test uses the real retrieval predictor on bundled logs that lack the new model.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from langchain_core.messages import HumanMessage

from eccos_core.bundled import bundled_logs
from eccos_core.errors import ConfigError, PredictorStateError
from eccos_core.logs import load_logs
from eccos_core.pricing import ModelSpec, load_models
from eccos_core.router import Router
from langchain_eccos import ChatECCOS

OWN = "my-local-llama"
QUESTIONS = [f"Question {i}: what is {i} * {i + 3}?" + " Explain." * (i % 5) for i in range(40)]


def own_model(loopback_server, api_key, like: str | None, **fields) -> ModelSpec:
    """The user's own endpoint: a model name no log has, served by the loopback provider, nearly free."""
    return ModelSpec(
        name=OWN,
        litellm_model=f"openai/{OWN}",
        input_cost_per_token=1e-9,
        output_cost_per_token=1e-9,
        litellm_params={"api_base": loopback_server.api_base, "api_key": api_key},
        like=like,
        **fields,
    )


@pytest.fixture
def weakest(fake_predictor) -> str:
    return fake_predictor.models[0]


def test_a_prior_is_predicted_as_its_like_model_and_named_in_every_plan(
    make_pool, fake_predictor, loopback_server, api_key, weakest
):
    strongest = fake_predictor.models[-1]
    pool = [*make_pool([weakest, strongest]), own_model(loopback_server, api_key, like=strongest, like_offset=-0.1)]
    router = Router(pool, fake_predictor)

    prediction = router.predict(QUESTIONS)
    by_name = {n: k for k, n in enumerate(prediction.models)}
    expected = np.clip(prediction.quality[:, by_name[strongest]] - 0.1, 0, 1)
    assert prediction.quality[:, by_name[OWN]] == pytest.approx(expected)
    assert router.planner.priors == {OWN: strongest}

    plan = router.plan(QUESTIONS, 0.6)
    assert OWN in plan.models  # as good as the strongest, less the offset, and nearly free
    assert {q.prior for q in plan.queries if q.model == OWN} == {strongest}
    assert all(q.prior is None for q in plan.queries if q.model != OWN)
    assert plan.expected_cost < router.plan(QUESTIONS, 0.6, capacity={OWN: 0}).expected_cost  # it pays to have it
    call = router.plan_call(QUESTIONS[0], 0.6).queries[0]  # the per-call price says so too
    assert call.model == OWN and call.prior == strongest
    reply = router.complete(QUESTIONS[0], 0.6)
    assert reply.model == OWN and reply.to_metadata()["prior"] == strongest


def test_a_model_with_neither_logs_nor_like_names_the_ways_in(make_pool, fake_predictor, loopback_server, api_key):
    pool = [*make_pool(fake_predictor.models[:2]), own_model(loopback_server, api_key, like=None)]
    ways = r"like=.*eccos onboard.*eccos collect"
    with pytest.raises(PredictorStateError, match=rf"without pool models \['{OWN}'\].*{ways}"):
        Router(pool, fake_predictor)
    stranger = own_model(loopback_server, api_key, like="gpt-17")
    with pytest.raises(PredictorStateError, match=r"is like 'gpt-17', which the predictor does not know either"):
        Router([*make_pool(fake_predictor.models[:2]), stranger], fake_predictor)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"like": OWN}, "like must name another"),
        ({"like": ""}, "like must name another"),
        ({"like": 3}, "like must name another"),
        ({"like": "x", "like_offset": 1.5}, r"like_offset must be a number in \[-1, 1\]"),
        ({"like": "x", "like_offset": True}, "like_offset must be a number"),
    ],
)
def test_like_is_checked_when_the_spec_is_built(fields, message):
    with pytest.raises(ConfigError, match=message):
        ModelSpec(name=OWN, input_cost_per_token=1e-9, output_cost_per_token=1e-9, **fields)


def test_chat_eccos_takes_the_users_own_model_from_the_first_call(
    make_pool, fake_predictor, loopback_server, api_key, weakest
):
    strongest = fake_predictor.models[-1]
    own = own_model(loopback_server, api_key, like=strongest)
    chat = ChatECCOS(router=Router([*make_pool([weakest]), own], fake_predictor), min_quality=0.6)

    reply = chat.invoke([HumanMessage("What is 17 * 23?")])

    assert reply.response_metadata["eccos"]["model"] == OWN
    assert reply.response_metadata["eccos"]["prior"] == strongest


def test_a_models_file_takes_like_and_the_saved_router_keeps_it(tmp_path, make_pool, fake_predictor, weakest):
    strongest = fake_predictor.models[-1]
    (tmp_path / "models.yaml").write_text(
        f"models:\n  - name: {OWN}\n    input_cost_per_token: 1.0e-9\n    output_cost_per_token: 1.0e-9\n"
        f"    max_input_tokens: 8192\n    like: {strongest}\n    like_offset: -0.05\n"
    )
    [own] = load_models(tmp_path / "models.yaml")
    assert (own.like, own.like_offset) == (strongest, -0.05)
    assert own.to_dict()["like"] == strongest


def test_fit_takes_a_pool_with_a_prior_and_refuses_a_model_with_neither(small_logs, loopback_server, api_key):
    from stubs import StubEncoder

    from eccos_core.predictors.retrieval import RetrievalPredictor

    logged = sorted(small_logs.models)[:3]
    pool = [
        ModelSpec(name=n, litellm_model=f"openai/{n}", input_cost_per_token=1e-7 * (k + 1),
                  output_cost_per_token=1e-7 * (k + 1)) for k, n in enumerate(logged)
    ]  # fmt: skip
    own = own_model(loopback_server, api_key, like=logged[-1])

    router = Router.fit([*pool, own], small_logs, RetrievalPredictor(k=8, encoder=StubEncoder()))

    assert router.planner.priors == {OWN: logged[-1]}
    assert router.plan(list(small_logs.queries[:20]), 0.5).queries[0].status is not None
    with pytest.raises(ConfigError, match=rf"no outcomes for pool models \['{OWN}'\].*like="):
        Router.fit([*pool, own_model(loopback_server, api_key, like=None)], small_logs)


def test_the_own_model_example_runs_as_the_readme_says(loopback_server):
    import subprocess
    import sys
    from pathlib import Path

    example = Path(__file__).resolve().parents[1] / "examples" / "own_model.py"
    done = subprocess.run(
        [sys.executable, str(example), "--api-base", loopback_server.api_base],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert len(lines) == 5 and lines[-1].startswith("batch: [")
    assert any("my-local-llama (prior: predicted as llama-3.1-8b-instruct)" in line for line in lines)


# ------------------------------------------------------------------------------------------------ onboarding
@pytest.fixture(scope="module")
def fitted_router():
    """A retrieval router (stub encoder) fitted on every 8th bundled record's training split, three models."""
    from stubs import StubEncoder

    from eccos_core.bundled import bundled_models
    from eccos_core.predictors.retrieval import RetrievalPredictor

    logs = bundled_logs()
    models = [
        m for m in bundled_models() if m.name in ("gemma-2-9b-it", "llama-3.1-8b-instruct", "llama3-chatqa-1.5-70b")
    ]
    return Router.fit(models, logs.subset(range(0, len(logs), 8)), RetrievalPredictor(k=8, encoder=StubEncoder()))


def probe_logs(n: int, answered_as: str, name: str = OWN):
    """``n`` bundled questions the router was not fitted on, with ``answered_as``'s logged outcomes as ``name``'s."""
    from eccos_core.logs import LogRecord, RoutingLogs

    logs = bundled_logs()
    records = [r for k, r in enumerate(logs) if k % 8 == 3 and answered_as in r.outcomes][:n]
    return RoutingLogs(tuple(LogRecord(r.id, r.query, {name: r.outcomes[answered_as]}, r.task) for r in records))


def test_onboard_fits_a_probe_routes_with_it_and_saves_it(fitted_router, loopback_server, api_key, tmp_path):
    base = fitted_router
    own = own_model(loopback_server, api_key, like=None)
    joined = base.onboard(own, probe_logs(120, "llama3-chatqa-1.5-70b"))

    assert joined.planner.priors == {OWN: "probe of 120"} and base.planner.priors == {}
    questions = [r.query for k, r in enumerate(__import__("eccos_core.bundled").bundled.bundled_logs()) if k % 8 == 5][
        :80
    ]
    prediction = joined.predict(questions)
    strong = prediction.quality[:, prediction.models.index("llama3-chatqa-1.5-70b")]
    new = prediction.quality[:, prediction.models.index(OWN)]
    assert np.corrcoef(strong, new)[0, 1] > 0.5  # its probe answered as the 70b did: predicted alike
    plan = joined.plan(questions, 0.5)
    assert {q.prior for q in plan.queries if q.model == OWN} <= {"probe of 120"} and OWN in plan.models
    assert joined.targets == base.targets  # no training outcome of the new model: a refit gives the same

    path = joined.save(tmp_path / "router")
    loaded = Router.load(path, models=joined.models)
    assert loaded.probes == joined.probes and loaded.planner.priors == {OWN: "probe of 120"}
    assert "probes.json" in json.loads((path / "router.json").read_text())["checksums"]


def test_feedback_turns_a_prior_into_a_fitted_blend_and_sharpens_a_probe(fitted_router, loopback, api_key, tmp_path):
    own = own_model(loopback, api_key, like="gemma-2-9b-it")
    router = fitted_router.with_models([*fitted_router.models, own])
    assert router.planner.priors == {OWN: "gemma-2-9b-it"}
    graded = probe_logs(30, "llama3-chatqa-1.5-70b")  # it answers as the 70b did, not as gemma
    for record in graded.records[:5]:
        router.record_outcome(record.query, OWN, record.outcomes[OWN].score)
    router.refit()
    assert router.planner.priors == {OWN: "gemma-2-9b-it"}  # 5 outcomes: too few to fit, the prior stays
    for record in graded.records[5:]:
        router.record_outcome(record.query, OWN, record.outcomes[OWN].score)
    router.refit()
    assert router.planner.priors == {OWN: "probe of 30"}
    prediction = router.predict([r.query for r in probe_logs(60, "gemma-2-9b-it").records[30:]])
    new, gemma = (prediction.quality[:, prediction.models.index(m)] for m in (OWN, "gemma-2-9b-it"))
    assert not np.allclose(new, gemma)  # predicted from its own outcomes now, no longer as gemma

    path = router.save(tmp_path / "router")
    loaded = Router.load(path, models=router.models)
    assert loaded.evidence[OWN].scores == router.evidence[OWN].scores and loaded.probes == router.probes

    joined = fitted_router.onboard(own, probe_logs(20, "gemma-2-9b-it"))
    assert len(joined.evidence[OWN].scores) == 20
    joined.record_outcome(graded.records[0].query, OWN, 1.0)
    joined.refit()
    assert joined.planner.priors == {OWN: "probe of 21"}


def test_onboard_refuses_a_probe_too_small_or_all_alike(fitted_router, loopback_server, api_key):
    from eccos_core.errors import InputError

    own = own_model(loopback_server, api_key, like=None)
    with pytest.raises(InputError, match="at least 10 outcomes"):
        fitted_router.onboard(own, probe_logs(5, "gemma-2-9b-it"))


def test_eccos_onboard_joins_a_model_from_its_collected_probe(fitted_router, tmp_path, capsys):
    from eccos_core.cli import main
    from eccos_core.logs import write_logs

    router_dir = fitted_router.save(tmp_path / "base")
    write_logs(probe_logs(60, "gemma-2-9b-it"), tmp_path / "probe.jsonl")
    (tmp_path / "models.yaml").write_text(
        f"models:\n  - name: {OWN}\n    input_cost_per_token: 1.0e-9\n    output_cost_per_token: 1.0e-9\n"
        "    max_input_tokens: 8192\n"
    )
    argv = [
        "onboard",
        "--model",
        OWN,
        "--models",
        str(tmp_path / "models.yaml"),
        "--probe",
        str(tmp_path / "probe.jsonl"),
        "--n",
        "0",
    ]
    assert main([*argv, "--router", str(router_dir), "--out", str(tmp_path / "joined")]) == 0

    out = capsys.readouterr().out
    assert f"{OWN}: probe of 60 graded answers" in out and "router saved to" in out
    assert Router.load(tmp_path / "joined").planner.priors == {OWN: "probe of 60"}
    assert main([*argv[:2], "nobody", *argv[3:], "--out", str(tmp_path / "x")]) == 2  # a typed error, exit 2


def script_probe(provider, n: int, answered_as: str) -> None:
    """Script the loopback to answer the first ``n`` probe questions as ``answered_as`` did in the bundled logs.

    Right where that model's logged score is at least 0.5, else "I do not know"; a question the logs lack is
    answered right every other time.
    """
    from eccos_core.probe import probe_questions

    logged = {r.query: r.outcomes.get(answered_as) for r in bundled_logs()}
    for k, q in enumerate(probe_questions(n)):
        outcome = logged.get(q.query)
        right = outcome.score >= 0.5 if outcome is not None else k % 2 == 0
        answer = {"mcq": f"The answer is ({q.answer}).", "numeric": f"So it is \\boxed{{{q.answer}}}."}
        provider.script[q.prompt] = answer.get(q.grader, q.answer) if right else "I do not know."


def test_onboard_asks_the_shipped_probe_and_resumes_it(fitted_router, loopback, api_key, tmp_path):
    from eccos_core.probe import probe_questions

    script_probe(loopback, 40, "llama3-chatqa-1.5-70b")
    own = own_model(loopback, api_key, like=None)
    log = tmp_path / "probe.jsonl"
    joined = fitted_router.onboard(own, n=40, log=log, concurrency=4)

    questions = probe_questions(40)
    assert sorted(r.messages[-1]["content"] for r in loopback.requests) == sorted(q.prompt for q in questions)
    probe = load_logs(log)
    assert sorted(probe.queries) == sorted(q.query for q in questions)
    assert joined.planner.priors == {OWN: "probe of 40"}
    fit = joined.probes[OWN]
    assert fit.output_tokens == pytest.approx(np.nanmean(probe.matrix("output_tokens", [OWN])))
    assert fit.output_tokens > 0  # the answers' real lengths, not the bundled logs' zeros
    assert joined.predict(["What is 2 + 2?"]).output_tokens[0, -1] == pytest.approx(fit.output_tokens)

    loopback.clear()
    again = fitted_router.onboard(own, n=40, log=log)
    assert loopback.requests == [] and again.probes[OWN] == fit  # every answer was in the log: nothing asked


def test_a_probe_nobody_answers_says_why(fitted_router, loopback, api_key, tmp_path):
    from eccos_core.collect import CollectError

    own = own_model(loopback, api_key, like=None)
    broken = dataclasses.replace(own, litellm_model="openai/broken-model")
    with pytest.raises(CollectError, match="0 graded answers of 12"):
        fitted_router.onboard(broken, n=12, num_retries=0, max_consecutive_failures=3)


def test_eccos_onboard_asks_the_probe_against_the_users_endpoint(fitted_router, loopback, api_key, tmp_path, capsys):
    from eccos_core.cli import main

    script_probe(loopback, 30, "gemma-2-9b-it")
    router_dir = fitted_router.save(tmp_path / "base")
    (tmp_path / "models.yaml").write_text(
        f"models:\n  - name: {OWN}\n    litellm_model: openai/{OWN}\n    input_cost_per_token: 1.0e-9\n"
        "    output_cost_per_token: 1.0e-9\n    max_input_tokens: 8192\n"
        f"    litellm_params: {{api_base: '{loopback.api_base}', api_key: '{api_key}'}}\n"
    )
    argv = ["onboard", "--model", OWN, "--models", str(tmp_path / "models.yaml"), "--n", "30"]
    assert main([*argv, "--router", str(router_dir), "--out", str(tmp_path / "joined")]) == 0

    out = capsys.readouterr().out
    assert f"{OWN}: probe of 30 graded answers in {tmp_path / 'joined.probe.jsonl'}" in out
    assert len(loopback.requests) == 30 and api_key not in out
    assert Router.load(tmp_path / "joined").planner.priors == {OWN: "probe of 30"}


def test_a_yaml_models_file_reads_1e_7_as_a_price(tmp_path):
    (tmp_path / "models.yaml").write_text(
        "models:\n  - name: a\n    input_cost_per_token: 1e-7\n    output_cost_per_token: 2E-6\n"
        "    max_input_tokens: 1000\n    like: b\n    like_offset: -5e-2\n"
    )
    [spec] = load_models(tmp_path / "models.yaml")
    assert (spec.input_cost_per_token, spec.output_cost_per_token, spec.like_offset) == (1e-7, 2e-6, -0.05)
