"""Hardening (issue 7): no hang, no silently wrong route, no leaked credential, a typed error for every bad input,
a default-router cache that heals.

Each test is one case of the issue, read as a hostile user would try it: build a router, feed it the bad input or
the failing provider, and check what a user sees. Saved routers here use a hashing stand-in for the sentence
encoder (:class:`StubEncoder`), so nothing loads torch.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from stubs import StubEncoder

from eccos_core.bundled import bundled_logs, bundled_models
from eccos_core.calibration import MIN_OUTCOMES, IsotonicCalibration, QualityGuard
from eccos_core.errors import (
    ConfigError,
    ContextWindowError,
    EccosError,
    InputError,
    LogFormatError,
    PredictorStateError,
)
from eccos_core.logs import LogRecord, Outcome, RoutingLogs, load_logs, write_logs
from eccos_core.optimize import SolveStatus
from eccos_core.planner import Planner
from eccos_core.policies import joint
from eccos_core.predictors.base import file_sha256
from eccos_core.predictors.retrieval import RetrievalPredictor
from eccos_core.pricing import ModelSpec, load_models, write_models
from eccos_core.router import Router
from eccos_core.targets import BatchGoal

CHEAP, MID, STRONG = "gemma-2-9b-it", "llama-3.1-8b-instruct", "llama3-chatqa-1.5-70b"
CANARY = "canary-7e1f-Secret-93ab"


def tiny_logs(step: int = 100) -> RoutingLogs:
    logs = bundled_logs()
    return logs.subset(range(0, len(logs), step))


@pytest.fixture(scope="module")
def saved_router(tmp_path_factory) -> Path:
    """A router (retrieval predictor on ~60 bundled records, stub encoder, fitted targets, a per-call stream) saved
    once."""
    router = Router.fit(bundled_models(), tiny_logs(), RetrievalPredictor(k=8, encoder=StubEncoder()))
    router.plan_call("What is 2 + 2?", 0.5)
    return router.save(tmp_path_factory.mktemp("saved") / "router")


@pytest.fixture
def copy_of(saved_router, tmp_path):
    def make(name: str = "copy") -> Path:
        return Path(shutil.copytree(saved_router, tmp_path / name))

    return make


def resign(predictor_dir: Path) -> None:
    """Record the current files' checksums in the manifest, as a buggy writer (not an editor) would leave them."""
    manifest = json.loads((predictor_dir / "predictor.json").read_text())
    manifest["checksums"] = {name: file_sha256(predictor_dir / name) for name in manifest["checksums"]}
    (predictor_dir / "predictor.json").write_text(json.dumps(manifest))


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


# ------------------------------------------------------------------------------------------------ hangs
def test_a_never_answering_provider_times_out_by_default_and_falls_back(
    make_pool, fake_predictor, loopback, monkeypatch
):
    import eccos_core.dispatch

    planned = Router(make_pool([CHEAP, MID, STRONG]), fake_predictor).plan(["hi"], 0.0).queries[0]
    router = Router(make_pool([CHEAP, MID, STRONG], modes={planned.model: "hang"}), fake_predictor)
    assert all(spec.timeout is None for spec in router.models)  # nothing set: the default applies
    monkeypatch.setattr(eccos_core.dispatch, "DEFAULT_TIMEOUT", 1.0)

    started = time.perf_counter()
    reply = router.complete("hi", 0.0)

    assert time.perf_counter() - started < 5.0
    assert reply.model == planned.chain[0]
    assert reply.fallbacks[0].model == planned.model and "Timeout" in reply.fallbacks[0].error_type


def test_every_call_carries_a_timeout_per_model_and_per_call_overrides_it(make_pool, fake_predictor, loopback):
    from eccos_core.pricing import DEFAULT_TIMEOUT

    assert 0 < DEFAULT_TIMEOUT <= 600  # never LiteLLM's 6,000 s
    planned = Router(make_pool([CHEAP, MID, STRONG]), fake_predictor).plan(["hi"], 0.0).queries[0]
    slow = Router(make_pool([CHEAP, MID, STRONG], modes={planned.model: "hang"}, timeout=60.0), fake_predictor)
    per_model = Router(make_pool([CHEAP, MID, STRONG], modes={planned.model: "hang"}, timeout=0.5), fake_predictor)

    started = time.perf_counter()
    assert per_model.complete("hi", 0.0).fallbacks[0].error_type.endswith("Timeout")
    assert slow.complete("hi", 0.0, timeout=0.5).fallbacks[0].error_type.endswith("Timeout")  # per call wins
    assert time.perf_counter() - started < 8.0


def test_a_large_plan_reports_progress_to_the_logger_and_a_callback_never_stdout(
    make_pool, fake_predictor, monkeypatch, caplog, capsys
):
    import eccos_core.planner

    monkeypatch.setattr(eccos_core.planner, "PROGRESS_CHUNK", 10)
    router = Router(make_pool([CHEAP, MID, STRONG]), fake_predictor)
    seen = []
    router.planner.progress = lambda stage, done, total: seen.append((stage, done, total))

    with caplog.at_level(logging.INFO, logger="eccos.planner"):
        plan = router.plan([f"question {i}" for i in range(35)], 0.5)

    assert len(plan.queries) == 35
    assert [s for s in seen if s[0] == "predict"] == [("predict", 10, 35), ("predict", 20, 35), ("predict", 30, 35),
                                                       ("predict", 35, 35)]  # fmt: skip
    assert ("solve", 35, 35) in seen
    assert "plan: predict 35/35 queries" in caplog.text
    assert capsys.readouterr().out == ""


def test_feasible_says_what_it_promises(make_pool, fake_predictor):
    planner = Router(make_pool([CHEAP, MID]), fake_predictor).planner
    status, message = joint.status_of(planner, SolveStatus.FEASIBLE, "gap 0.4%", BatchGoal(0.5, 0.55, True, 10))
    assert status is SolveStatus.FEASIBLE
    assert "not proven the cheapest" in message and "time limit" in message and "gap 0.4%" in message
    assert planner.time_limit == 10.0 and isinstance(planner, Planner)


# ------------------------------------------------------------------------------------ silently wrong routes
def test_a_model_logged_once_is_shrunk_toward_the_pool_and_reported_at_fit(bundled_pool_specs, caplog):
    base = list(tiny_logs())
    lone = LogRecord(id="lone", query="what is the boiling point of water", outcomes={"lucky-model": Outcome(1.0)})
    logs = RoutingLogs((*base, lone))
    with caplog.at_level(logging.WARNING, logger="eccos_core.calibration"):
        predictor = RetrievalPredictor(k=8, encoder=StubEncoder()).fit(logs)
    assert "lucky-model (1)" in caplog.text and f"fewer than {MIN_OUTCOMES}" in caplog.text

    queries = [r.query for r in base[:20]] + [lone.query]
    quality = predictor.predict(queries).select(["lucky-model"]).quality[:, 0]
    pool_mean = np.nanmean(logs.scores(logs.models))
    assert quality.max() < 0.9  # was 1.00 for every query
    assert abs(float(quality.mean()) - pool_mean) < 0.15

    lucky = ModelSpec("lucky-model", input_cost_per_token=1.5e-7, output_cost_per_token=1.5e-7)
    pool = [bundled_pool_specs[CHEAP], bundled_pool_specs[MID], bundled_pool_specs[STRONG], lucky]
    router = Router(pool, predictor)
    for alpha in (0.3, 0.4, 0.45):
        assert router.plan(queries, alpha).models.count("lucky-model") < len(queries)


def test_the_bundled_pool_knows_every_context_window_so_a_2mb_prompt_is_refused(fake_predictor):
    pool = bundled_models()
    assert all(isinstance(m.max_input_tokens, int) and m.max_input_tokens >= 4096 for m in pool)
    router = Router(pool, fake_predictor)
    with pytest.raises(ContextWindowError, match="more than every model's context window"):
        router.plan(["lorem ipsum dolor sit amet " * 80_000], 0.5)


def test_a_model_with_unknown_context_window_is_reported_at_load(tmp_path, caplog):
    entry = {"name": "local-model", "input_cost_per_token": 1e-7, "output_cost_per_token": 1e-7}
    (tmp_path / "models.json").write_text(json.dumps({"models": [entry]}))
    with caplog.at_level(logging.WARNING, logger="eccos.pricing"):
        load_models(tmp_path / "models.json")
    assert "local-model" in caplog.text and "max_input_tokens" in caplog.text


def test_a_model_twice_in_one_line_and_an_overflowing_token_count_are_log_errors(tmp_path):
    path = tmp_path / "logs.jsonl"
    good = '{"id": "a", "query": "q", "outcomes": {"m": {"score": 1}}}\n'
    path.write_text(good + '{"id": "b", "query": "q2", "outcomes": {"m": {"score": 1}, "m": {"score": 0}}}\n')
    with pytest.raises(LogFormatError, match=rf"{path}:2: .*\['m'\] given twice"):
        load_logs(path)

    for value in ("1e308", "1e999", "NaN", "-Infinity", "1" + "0" * 400):
        path.write_text(
            good + f'{{"id": "b", "query": "q2", "outcomes": {{"m": {{"score": 1, "output_tokens": {value}}}}}}}\n'
        )
        with pytest.raises(LogFormatError, match=rf"{path}:2: outcome of model 'm': 'output_tokens'"):
            load_logs(path)


def test_an_edited_saved_router_is_refused_naming_the_file(copy_of):
    reordered = copy_of("reordered")
    edit_json(reordered / "predictor" / "predictor.json", lambda d: d["models"].reverse())
    with pytest.raises(PredictorStateError, match=r"predictor\.json: 'models' does not match the checksum"):
        Router.load(reordered)

    edited = copy_of("edited")
    scores = np.load(edited / "predictor" / "scores.npy")
    np.save(edited / "predictor" / "scores.npy", np.nan_to_num(scores, nan=0.5) * 0.9)
    with pytest.raises(PredictorStateError, match=r"scores\.npy does not match the sha256"):
        Router.load(edited)


@pytest.mark.parametrize(
    ("name", "mutate", "message"),
    [
        ("scores above 1", lambda a: a * 3.0, r"scores\.npy holds values outside \[0\.0, 1\.0\]"),
        ("NaN embeddings", None, r"embeddings\.npy holds NaN"),
        ("one row short", lambda a: a[:-1], r"scores\.npy has shape"),
    ],
)
def test_saved_state_is_validated_even_when_its_checksums_match(copy_of, name, mutate, message):
    # a state a buggy writer produced (checksums re-recorded), not an edit: shapes, ranges and finiteness still hold
    path = copy_of()
    if mutate is None:
        emb = np.load(path / "predictor" / "embeddings.npy")
        emb[3, 7] = np.nan
        np.save(path / "predictor" / "embeddings.npy", emb)
    else:
        np.save(path / "predictor" / "scores.npy", mutate(np.nan_to_num(np.load(path / "predictor" / "scores.npy"))))
    resign(path / "predictor")
    with pytest.raises(PredictorStateError, match=message):
        Router.load(path)


@pytest.mark.parametrize(
    ("guard", "message"),
    [
        ({"alphas": [0.1, float("nan"), 0.5], "targets": [0.1, 0.3, 0.5]}, "finite"),
        ({"alphas": [0.1, 0.3], "targets": [0.1, 0.3, 0.5]}, "equally long"),
        ({"alphas": [], "targets": []}, "non-empty"),
        ({"alphas": [0.5, 0.1], "targets": [0.1, 0.3]}, "never decrease"),
        ({"alphas": [0.1, 0.3]}, r"lacks \['targets'\]"),
    ],
)
def test_a_broken_guard_is_refused_at_load_not_at_plan(copy_of, guard, message):
    path = copy_of()
    edit_json(path / "targets.json", lambda d: d.update(guard=guard))
    with pytest.raises(PredictorStateError, match=r"targets\.json does not match the sha256 recorded in"):
        Router.load(path)  # an edit after the save: refused before it is read
    sha = file_sha256(path / "targets.json")
    edit_json(path / "router.json", lambda d: d["checksums"].update({"targets.json": sha}))
    with pytest.raises(PredictorStateError, match=rf"targets: guard is not valid.*{message}"):
        Router.load(path)  # saved so (or by an eccos that did not validate it): refused at load, not at plan
    with pytest.raises(PredictorStateError, match=message):
        QualityGuard.from_dict(guard)


# ----------------------------------------------------------------------------------------------- credentials
def test_credentials_in_api_base_are_never_saved_and_a_basic_auth_echo_is_redacted(tmp_path, saved_router):
    from eccos_core.redaction import redact, secrets_in

    params = {"api_base": f"http://user:{CANARY}@127.0.0.1:9/v1?key={CANARY}", "api_key": CANARY}
    pool = [ModelSpec(m.name, input_cost_per_token=1e-7, output_cost_per_token=1e-7, litellm_params=params)
            for m in bundled_models()]  # fmt: skip
    write_models(pool, tmp_path / "models.json")
    router = Router.load(saved_router, models=pool)
    router.save(tmp_path / "router")
    for file in [tmp_path / "models.json", *(tmp_path / "router").rglob("*")]:
        if file.is_file():
            assert CANARY.encode() not in file.read_bytes(), file
    assert "127.0.0.1:9/v1" in (tmp_path / "models.json").read_text()  # the host stays, the secret goes

    basic = base64.b64encode(f"user:{CANARY}".encode()).decode()
    echoed = redact(f"401: rejected Authorization: Basic {basic}", router.dispatcher.secrets)
    assert basic not in echoed and CANARY not in echoed
    assert basic in secrets_in([params])


def test_a_malformed_yaml_models_file_names_file_line_and_key_never_the_secret(tmp_path):
    path = tmp_path / "models.yaml"
    path.write_text(f'models:\n  - name: a\n    litellm_params:\n      api_key: "{CANARY}\n      api_base: x\n')
    with pytest.raises(ConfigError) as error:
        load_models(path)
    assert f"models file {path}:6:1 is not valid YAML" in str(error.value)
    assert "at key 'api_key', a credential" in str(error.value)
    assert CANARY not in str(error.value) and CANARY not in repr(error.value)

    path.write_text(f"models:\n  - [a, {CANARY}]\n")
    with pytest.raises(ConfigError, match=rf"{path}:2 models\[0\]: each model must be an object") as error:
        load_models(path)
    assert CANARY not in str(error.value)

    path.write_text(f"models:\n  - name: a\n    litellm_params:\n      api_key: *{CANARY}\n")
    with pytest.raises(ConfigError, match=rf"{path}:4:\d+ is not valid YAML") as error:
        load_models(path)
    assert CANARY not in str(error.value)


# -------------------------------------------------------------------------------------------- cache healing
@pytest.fixture
def default_cache(monkeypatch, tmp_path):
    """Router.default() with no shipped router, a tiny fit counted per call, and a private temp fallback."""
    import eccos_core.default_router as default_router

    fits = []

    def tiny_fit(cls, models=None):
        fits.append(1)
        return Router.fit(models or bundled_models(), tiny_logs(200), RetrievalPredictor(k=4, encoder=StubEncoder()))

    monkeypatch.setattr(default_router, "shipped_matches", lambda: False)
    monkeypatch.setattr(default_router, "fallback_root", lambda: tmp_path / "temp-fallback")
    monkeypatch.setattr(default_router, "_WARNED", set())
    monkeypatch.setattr(default_router, "_IN_MEMORY", {})
    monkeypatch.setattr(Router, "fit_default", classmethod(tiny_fit))
    return fits


def same_router(a: Router, b: Router) -> bool:
    """Whether two routers hold the same fitted state (a loaded one predicts with the real encoder: not compared)."""
    return (
        [m.name for m in a.models] == [m.name for m in b.models]
        and a.guard == b.guard
        and np.array_equal(a.predictor._scores, b.predictor._scores, equal_nan=True)
    )


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "eccos.default" and r.levelno >= logging.WARNING]


@pytest.mark.parametrize("damage", ["0-byte npy", "empty guard", "truncated manifest", "not a directory"])
def test_an_unusable_cache_is_discarded_refitted_and_reported_once(default_cache, tmp_path, caplog, damage):
    root = tmp_path / "cache"
    Router.default(cache_dir=root)
    [cache] = list(root.iterdir())
    if damage == "0-byte npy":
        (cache / "predictor" / "scores.npy").write_bytes(b"")
    elif damage == "empty guard":
        edit_json(cache / "targets.json", lambda d: d.update(guard={"alphas": [], "targets": []}))
    elif damage == "truncated manifest":
        (cache / "predictor" / "predictor.json").write_text('{"kind": "retr')
    else:
        shutil.rmtree(cache)
        cache.write_text("not a router")

    with caplog.at_level(logging.WARNING, logger="eccos.default"):
        healed = Router.default(cache_dir=root)
        again = Router.default(cache_dir=root)

    assert default_cache == [1, 1]  # refitted once, then loaded
    assert len(_warnings(caplog)) == 1 and "refitting" in _warnings(caplog)[0]
    assert same_router(healed, again)


def test_an_unwritable_cache_dir_falls_back_to_a_temp_dir_with_one_warning(
    default_cache, tmp_path, caplog, monkeypatch
):
    import tempfile

    real = tempfile.mkdtemp
    root = tmp_path / "read-only"

    def mkdtemp(*args, dir=None, **kwargs):
        if dir is not None and Path(dir) == root:
            raise PermissionError(13, "Permission denied", str(dir))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)
    with caplog.at_level(logging.WARNING, logger="eccos.default"):
        first = Router.default(cache_dir=root)
        second = Router.default(cache_dir=root)

    assert default_cache == [1]
    [warning] = _warnings(caplog)
    assert "could not write" in warning and "temp-fallback" in warning and "ECCOS_CACHE_DIR" in warning
    assert same_router(first, second)


def test_nothing_writable_keeps_the_router_in_memory_with_one_warning(default_cache, tmp_path, caplog, monkeypatch):
    import tempfile

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkdtemp", denied)
    with caplog.at_level(logging.WARNING, logger="eccos.default"):
        first = Router.default(cache_dir=tmp_path / "nowhere")
        second = Router.default(cache_dir=tmp_path / "nowhere")

    assert default_cache == [1] and second is first  # no refit on every call
    [warning] = _warnings(caplog)
    assert "from memory" in warning


def test_a_cache_published_by_another_user_is_explained_not_a_crash(default_cache, tmp_path, caplog, monkeypatch):
    import pathlib

    root = tmp_path / "theirs"
    real_stat = pathlib.Path.stat

    def stat(self, *args, **kwargs):  # what a mode-0700 directory of another user does to us
        if self.parent == root and self.name.startswith("default-"):
            raise PermissionError(13, "Permission denied", str(self))
        return real_stat(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "stat", stat)
    with caplog.at_level(logging.WARNING, logger="eccos.default"):
        router = Router.default(cache_dir=root)
        Router.default(cache_dir=root)

    assert isinstance(router, Router) and default_cache == [1]
    text = " ".join(_warnings(caplog))
    assert "Permission denied" in text and "temp-fallback" in text


# ---------------------------------------------------------------------------------- bad input: typed errors
def test_odd_prompts_are_planned_or_refused_as_a_user_would_expect(make_pool, fake_predictor):
    router = Router(make_pool([CHEAP, MID, STRONG]), fake_predictor)
    # a lone surrogate is not Unicode text: the real encoder's tokenizer raised an untyped TypeError on it, and a
    # provider may refuse it after the call was planned; it is refused up front, naming the character
    for odd in ("lone surrogate \ud800 in a prompt", [{"role": "user", "content": "x\udfff"}]):
        with pytest.raises(InputError, match="lone surrogate"):
            router.plan([odd], 0.5)
    plan = router.plan(["emoji 🙂 and CJK 漢字", [{"role": "user", "content": "RTL \u202e text"}]], 0.5)
    assert len(plan.queries) == 2 and plan.queries[0].input_tokens > 0

    for empty in ("", "   ", "\u200b\u200b", "\x00\x00", "\u200b \ufeff\x00"):
        with pytest.raises(InputError, match="no text"):
            router.plan([empty], 0.5)
        with pytest.raises(InputError, match="no text"):
            router.plan([[{"role": "user", "content": empty}]], 0.5)


def test_lone_surrogate_prompt_is_refused_before_anything_is_sent(make_pool, fake_predictor, loopback):
    with pytest.raises(InputError, match=r"lone surrogate \('\\ud800' at position 4\)"):
        Router(make_pool([CHEAP, MID]), fake_predictor).complete("why \ud800 here?", 0.0)
    assert loopback.requests == []


@pytest.mark.parametrize("value", ["abc", 0, -5, 1.5, True])
def test_a_bad_context_window_is_a_config_error_naming_file_and_key(tmp_path, value):
    with pytest.raises(ConfigError, match="max_input_tokens must be a positive integer"):
        ModelSpec("m", input_cost_per_token=1e-7, output_cost_per_token=1e-7, max_input_tokens=value)
    entry = {"name": "m", "input_cost_per_token": 1e-7, "output_cost_per_token": 1e-7, "max_input_tokens": value}
    (tmp_path / "models.json").write_text(json.dumps({"models": [entry]}, indent=2))
    with pytest.raises(ConfigError, match=rf"{tmp_path / 'models.json'}:3 models\[0\]: .*max_input_tokens"):
        load_models(tmp_path / "models.json")


def test_models_files_that_are_not_utf8_or_hold_odd_shapes_are_config_errors(tmp_path):
    path = tmp_path / "models.json"
    path.write_bytes(b'{"models": [{"name": "caf\xe9"}]}')
    with pytest.raises(ConfigError, match=rf"{path}:1 is not UTF-8"):
        load_models(path)
    for entry, message in [
        ({"name": "m", "input_cost_per_token": 1e-7, "output_cost_per_token": 1e-7, "litellm_params": CANARY},
         "litellm_params must be an object"),
        ({"name": ["m"], "input_cost_per_token": 1e-7, "output_cost_per_token": 1e-7}, "non-empty string 'name'"),
        ({"name": "m", "litellm_model": 7, "input_cost_per_token": 1e-7, "output_cost_per_token": 1e-7},
         "litellm_model must be"),
    ]:  # fmt: skip
        path.write_text(json.dumps({"models": [entry]}))
        with pytest.raises(ConfigError, match=message) as error:
            load_models(path)
        assert CANARY not in str(error.value)


def test_corrupt_log_files_are_log_errors_naming_file_and_line(tmp_path):
    lines = [json.dumps({"id": str(i), "query": f"q{i}", "outcomes": {"m": {"score": 1}}}) + "\n" for i in range(3000)]
    data = "".join(lines).encode()

    truncated = tmp_path / "cut.jsonl.gz"
    packed = gzip.compress(data)
    truncated.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(LogFormatError, match=rf"{truncated}:\d+: the gzip data is truncated or corrupt"):
        load_logs(truncated)

    plain = tmp_path / "plain.jsonl.gz"
    plain.write_bytes(data)
    with pytest.raises(LogFormatError, match=rf"{plain}:1: the gzip data is truncated or corrupt .*Not a gzipped"):
        load_logs(plain)

    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(
        data[:200] + '{"id": "x", "query": "caf\xe9", "outcomes": {"m": {"score": 1}}}\n'.encode("latin-1")
    )
    with pytest.raises(LogFormatError, match=rf"{latin}:4: not UTF-8 text \(byte 0xe9"):
        load_logs(latin)
    latin_gz = tmp_path / "latin.jsonl.gz"
    latin_gz.write_bytes(gzip.compress(latin.read_bytes()))
    with pytest.raises(LogFormatError, match=rf"{latin_gz}:4: not UTF-8"):
        load_logs(latin_gz)

    deep = tmp_path / "deep.jsonl"
    deep.write_text("[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(LogFormatError, match=rf"{deep}:1:"):
        load_logs(deep)


def test_a_log_torn_inside_a_character_on_its_last_line_is_skipped(tmp_path):
    path = tmp_path / "torn.jsonl"
    good = '{"id": "a", "query": "q", "outcomes": {"m": {"score": 1}}}\n'
    path.write_bytes(good.encode() + '{"id": "b", "query": "caf\u00e9'.encode()[:-1])
    assert [r.id for r in load_logs(path)] == ["a"]


@pytest.mark.parametrize(
    "argv",
    [["--test-frac", "0"], ["--test-frac", "1.5"], ["--k", "0"], ["--batch-size", "-3"], ["--alpha", "0.5", "1.5"],
     ["--alpha", "nan"], ["--k", "many"]],
)  # fmt: skip
def test_cli_arguments_are_checked_before_any_fit(tmp_path, monkeypatch, capsys, argv):
    from eccos_core.cli import main

    write_logs(tiny_logs(), tmp_path / "logs.jsonl")

    def no_fit(*args, **kwargs):
        raise AssertionError("fitted before the arguments were checked")

    monkeypatch.setattr(Router, "fit", classmethod(no_fit))
    with pytest.raises(SystemExit) as stop:
        main(["eval", "--data", str(tmp_path / "logs.jsonl"), *argv])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert f"error: argument {argv[0]}" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("name", "damage", "message"),
    [
        ("truncated npy", lambda p: _truncate(p / "predictor" / "embeddings.npy", 100), r"embeddings\.npy"),
        ("truncated json", lambda p: _truncate(p / "router.json", 10), r"router\.json is not valid JSON"),
        ("truncated targets", lambda p: _truncate(p / "targets.json", 10), r"targets\.json does not match the sha"),
        ("truncated streams", lambda p: _truncate(p / "streams.json", 10), r"streams\.json does not match the sha"),
        ("missing key", lambda p: edit_json(p / "predictor" / "predictor.json", lambda d: d.pop("n_queries")),
         r"predictor\.json lacks the keys \['n_queries'\]"),
        ("k many", lambda p: edit_json(p / "predictor" / "predictor.json", lambda d: d.update(k="many")),
         r"predictor\.json: 'k' must be an integer >= 1, got 'many'"),
        ("k zero", lambda p: edit_json(p / "predictor" / "predictor.json", lambda d: d.update(k=0)),
         r"predictor\.json: 'k' must be an integer >= 1, got 0"),
        ("concurrency lots", lambda p: edit_json(p / "router.json", lambda d: d.update(max_concurrency="lots")),
         r"router\.json: 'max_concurrency' must be a positive integer, got 'lots'"),
        ("time limit", lambda p: edit_json(p / "router.json", lambda d: d.update(time_limit="soon")),
         r"router\.json: 'time_limit' must be a positive number"),
        ("manifest a list", lambda p: (p / "predictor" / "predictor.json").write_text("[1, 2]"),
         r"predictor\.json must hold a JSON object"),
        ("object array", lambda p: np.save(p / "predictor" / "scores.npy", np.array([{}], dtype=object)),
         r"scores\.npy does not match"),
    ],
)  # fmt: skip
def test_a_damaged_saved_router_is_a_predictor_state_error_naming_the_file(copy_of, name, damage, message):
    path = copy_of()
    damage(path)
    with pytest.raises(PredictorStateError, match=message):
        Router.load(path)


def test_unequal_calibration_knots_fail_at_load_not_at_plan(copy_of):
    path = copy_of()
    edit_json(path / "predictor" / "calibration.json", lambda d: d["x"][0].append(1.0))
    resign(path / "predictor")
    with pytest.raises(PredictorStateError, match=r"calibration\.json: calibration knot lists x and y differ"):
        Router.load(path)
    with pytest.raises(PredictorStateError, match="differ in length"):
        IsotonicCalibration.from_dict({"x": [[0.0, 0.5, 1.0]], "y": [[0.1, 0.9]]})


def test_a_truncated_npy_with_matching_checksum_is_still_a_typed_error(copy_of):
    path = copy_of()
    _truncate(path / "predictor" / "scores.npy", 90)
    resign(path / "predictor")
    with pytest.raises(PredictorStateError, match=r"scores\.npy is not a readable \.npy array"):
        Router.load(path)


def test_numpy_scalars_are_accepted_wherever_python_numbers_are(make_pool, fake_predictor):
    spec = ModelSpec(
        "m",
        input_cost_per_token=np.float32(1e-7),
        output_cost_per_token=np.float64(2e-7),
        capacity=np.int64(3),
        max_input_tokens=np.int32(4096),
        timeout=np.float32(2.5),
    )
    assert (spec.capacity, spec.max_input_tokens, spec.timeout) == (3, 4096, 2.5)
    assert type(spec.input_cost_per_token) is float and type(spec.capacity) is int
    router = Router(make_pool([CHEAP, MID, STRONG]), fake_predictor, max_concurrency=np.int64(4))
    plan = router.plan(["a", "b", "c"], np.float32(0.5), capacity={CHEAP: np.int64(1), MID: np.uint8(2)})
    assert plan.models.count(CHEAP) <= 1 and plan.models.count(MID) <= 2
    assert router.plan(["a", "b"], 0.5, capacity=[np.int64(2), None, np.int16(1)]).queries


# ---------------------------------------------------------------------------------------------- quiet library
def test_failing_and_unknown_models_print_nothing(make_pool, fake_predictor, loopback, capfd, tmp_path):
    router = Router(make_pool([CHEAP, MID, STRONG], broken=(CHEAP, MID)), fake_predictor)
    router.batch([f"q{i}" for i in range(6)], 0.0, return_exceptions=True)
    entry = {"name": "not-a-litellm-model", "input_cost_per_token": 1e-7, "output_cost_per_token": 1e-7}
    (tmp_path / "models.json").write_text(json.dumps({"models": [entry]}))
    load_models(tmp_path / "models.json")  # LiteLLM looks it up (no window known) and would print a banner
    out, err = capfd.readouterr()
    assert out == ""
    assert "Provider List" not in err and "Give Feedback" not in err


# ---------------------------------------------------------------------------------------------- the canary
def canary_params(api_base: str, *, query: bool) -> dict:
    """The canary as api_key, nested headers and api_base userinfo (and query: a URL no provider routes)."""
    host = api_base.split("://", 1)[1]
    return {
        "api_key": CANARY,
        "api_base": f"http://user:{CANARY}@{host}" + (f"?key={CANARY}" if query else ""),
        "extra_headers": {"Authorization": f"Bearer {CANARY}", "X-Api-Key": CANARY, "X-Trace": "ok"},
    }


def test_a_canary_credential_shows_up_nowhere(saved_router, loopback, tmp_path, caplog, capfd):
    """The canary sits in api_key, nested headers, api_base userinfo and query, and a malformed YAML file."""
    from eccos_core.cli import main

    found: dict[str, bool] = {}

    def search(place: str, value) -> None:
        text = value if isinstance(value, str) else repr(value)
        basic = base64.b64encode(f"user:{CANARY}".encode()).decode()
        found[place] = CANARY in text or basic in text

    names = [m.name for m in bundled_models()]
    pool = [  # the three cheapest fail (500 echoing the credential, or 404 for the URL with a query); six answer
        ModelSpec(name, litellm_model=f"openai/{'broken-' if i < 3 else ''}{name}", input_cost_per_token=1e-7 * (i + 1),
                  output_cost_per_token=1e-7 * (i + 1), litellm_params=canary_params(loopback.api_base, query=i < 2))
        for i, name in enumerate(names)
    ]  # fmt: skip
    (tmp_path / "models.yaml").write_text(
        f"models:\n  - name: a\n    litellm_params:\n      api_key: {CANARY}\n      api_base: [x\n"
    )
    errors: list[BaseException] = []
    with caplog.at_level(logging.DEBUG):
        router = Router.load(saved_router, models=pool)
        router.predictor.encoder = StubEncoder()  # no torch in this test
        plan = router.plan(["What is 2 + 2?", "Name a red planet."], 0.0)
        replies = router.batch(["What is 2 + 2?", "Name a red planet.", "hi"], 0.0, return_exceptions=True)
        replies += [router.complete("one more", 0.0)]
        for attempt in (
            lambda: load_models(tmp_path / "models.yaml"),
            lambda: Router(pool[:3], router.predictor).complete("only broken models", 0.0),
        ):
            try:
                attempt()
            except EccosError as exc:
                errors.append(exc)
        code = main(["eval", "--data", str(tmp_path / "none.jsonl"), "--models", str(tmp_path / "models.yaml")])
        write_models(pool, tmp_path / "written.json")
        router.save(tmp_path / "saved")
    out, err = capfd.readouterr()

    assert code == 2 and len(errors) == 2
    answered = [r for r in replies if not isinstance(r, Exception)]
    assert len(answered) == 4 and all(r.text.startswith("answer from") for r in answered)
    kinds = {f.error_type for r in answered for f in r.fallbacks}
    assert {"NotFoundError", "InternalServerError"} <= kinds  # the 404 repeats the URL, the 500 the Authorization
    search("logs at DEBUG", caplog.text)
    search("stdout", out)
    search("stderr (CLI output included)", err)
    for k, exc in enumerate(errors):
        search(f"error {k} str", str(exc))
        search(f"error {k} repr", repr(exc))
        search(f"error {k} fallbacks", getattr(exc, "fallbacks", ()))
    search("router repr", repr(router))
    search("pool reprs", [repr(m) for m in router.models])
    search("pool to_dict", [m.to_dict() for m in router.models])
    search("plan repr", repr(plan))
    search("plan to_dict", [q.to_dict() for q in plan.queries])
    for k, reply in enumerate(replies):
        search(f"result {k} repr", repr(reply))
        if not isinstance(reply, Exception):
            search(f"result {k} metadata", json.dumps(reply.to_metadata()))
            search(f"result {k} fallbacks", reply.fallbacks)
    for file in [tmp_path / "written.json", *(tmp_path / "saved").rglob("*")]:
        if file.is_file():
            search(f"saved file {file.relative_to(tmp_path)}", file.read_bytes().decode("latin-1"))

    assert len(found) >= 30, len(found)
    assert [place for place, hit in found.items() if hit] == [], f"searched {len(found)} places"
    caplog.set_level(logging.WARNING)
    logging.getLogger("eccos.test").warning("canary: searched %d places, %d hits", len(found), sum(found.values()))


def _truncate(path: Path, size: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.write_bytes(path.read_bytes()[:size])
