"""Learning from feedback: a recorded outcome is seen by the next similar query, persists, and is thread-safe;
the calibration and guard change only when the user refits.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from eccos_core.errors import InputError, PredictorStateError
from eccos_core.feedback import record_outcome, refit
from eccos_core.logs import RoutingLogs
from eccos_core.predictors.base import Prediction, Predictor
from eccos_core.predictors.retrieval import RetrievalPredictor
from eccos_core.predictors.trained import CachedEncoder
from eccos_core.router import Router

CHEAP, STRONG = "gemma-2-9b-it", "llama-3.3-nemotron-super-49b-v1"
NOVEL = "Which planet of the solar system has the most moons, Saturn or Jupiter?"
PARAPHRASE = "Of Jupiter and Saturn, which planet has more moons?"


@pytest.fixture(scope="module")
def base_logs(small_logs: RoutingLogs) -> RoutingLogs:
    return small_logs.subset(range(0, 120, 2))  # 60 records over several tasks


@pytest.fixture(scope="module")
def more_logs(small_logs: RoutingLogs) -> RoutingLogs:
    return small_logs.subset(range(1, 61, 2))


@pytest.fixture(scope="module")
def probe(small_logs: RoutingLogs) -> list[str]:
    return [r.query for r in small_logs.subset(range(200, 240))]


@pytest.fixture(scope="module")
def encoder(base_logs: RoutingLogs, more_logs: RoutingLogs, probe: list[str]) -> CachedEncoder:
    """Embeds each text once for the whole module (the CPU is the slow part of these tests)."""
    cached = CachedEncoder(remember=True)
    cached.encode([*base_logs.queries, *more_logs.queries, *probe, NOVEL, PARAPHRASE])
    return cached


@pytest.fixture
def router(make_pool: Any, base_logs: RoutingLogs, encoder: CachedEncoder) -> Router:
    return Router.fit(make_pool([CHEAP, STRONG]), base_logs, RetrievalPredictor(k=4, encoder=encoder))


def p_success(router: Router, query: str) -> dict[str, float]:
    quality = router.predict([query]).quality[0]
    return {m.name: float(q) for m, q in zip(router.models, quality, strict=True)}


def test_a_recorded_outcome_is_seen_by_the_next_similar_query(
    make_pool: Any, base_logs: RoutingLogs, encoder: CachedEncoder
) -> None:
    predictor = RetrievalPredictor(k=4, calibrate=False, encoder=encoder).fit(base_logs)
    router = Router(make_pool([CHEAP, STRONG]), predictor)
    before = p_success(router, PARAPHRASE)

    record_outcome(router, NOVEL, CHEAP, 0.0, output_tokens=900)
    record_outcome(router, [{"role": "system", "content": "Be brief."}, {"role": "user", "content": NOVEL}], STRONG, 1)

    after = p_success(router, PARAPHRASE)
    assert after[STRONG] > before[STRONG] + 0.1 and after[CHEAP] < before[CHEAP] - 0.1
    tokens = router.predict([NOVEL]).output_tokens[0]
    assert tokens[[m.name for m in router.models].index(CHEAP)] > 200  # the logged length counts too


def test_outcomes_of_one_query_share_its_stored_row(router: Router) -> None:
    predictor = router.predictor
    n = predictor.n_queries
    record_outcome(router, NOVEL, CHEAP, 1.0)
    record_outcome(router, NOVEL, STRONG, 1.0)  # same query, another model: same row
    assert predictor.n_queries == n + 1
    record_outcome(router, NOVEL, CHEAP, 0.0)  # a second observation of one pair is one more neighbour
    assert predictor.n_queries == n + 2
    assert predictor._index.ntotal == predictor.n_queries


def test_calibration_and_guard_change_only_on_refit(router: Router) -> None:
    guard, calibration = router.guard, router.predictor._calibration
    oof_rows = len(router.predictor.out_of_fold.quality)
    for i in range(30):
        record_outcome(router, f"{NOVEL} (variant {i})", CHEAP, 0.0)
        record_outcome(router, f"{NOVEL} (variant {i})", STRONG, 1.0)
    assert router.guard is guard and router.predictor._calibration is calibration

    new_guard = refit(router)
    assert router.guard is new_guard and new_guard is not guard
    assert router.predictor._calibration is not calibration
    assert len(router.predictor.out_of_fold.quality) == oof_rows + 30 == router.predictor.n_queries


def test_feeding_logs_then_refitting_matches_fitting_on_them(
    make_pool: Any, base_logs: RoutingLogs, more_logs: RoutingLogs, probe: list[str], encoder: CachedEncoder
) -> None:
    pool, more = make_pool([CHEAP, STRONG]), more_logs
    fed = Router.fit(pool, base_logs, RetrievalPredictor(k=4, encoder=encoder))
    for record in more:
        for name in (CHEAP, STRONG):
            outcome = record.outcomes[name]
            record_outcome(fed, record.query, name, outcome.score, outcome.output_tokens)
    refit(fed)

    everything = RoutingLogs(base_logs.records + more.records)
    fitted = Router.fit(pool, everything, RetrievalPredictor(k=4, encoder=encoder))
    assert fed.predictor.n_queries == fitted.predictor.n_queries == 90
    assert np.allclose(fed.predict(probe).quality, fitted.predict(probe).quality)
    assert fed.guard == fitted.guard
    assert fed.targets == fitted.targets  # guard, margin and per-call curve: one fit for fit() and refit()


def test_refit_refits_the_per_call_curve_too(router: Router) -> None:
    """Feedback that changes the models' realized success moves the per-call curve (it used to stay stale)."""
    curve, margin = router.targets.curve, router.margin
    router.complete  # noqa: B018  (the per-call path reads router.dual; a stream made now must not survive)
    router.planner.dual.quality_stream(0.5, router.targets.per_call(0.5)[0])
    for i in range(30):
        record_outcome(router, f"{NOVEL} (variant {i})", CHEAP, 1.0)
        record_outcome(router, f"{NOVEL} (variant {i})", STRONG, 0.0)
    refit(router)
    assert curve is not None and router.targets.curve is not None
    assert router.targets.curve != curve and router.margin is not margin
    assert router.dual.curve is router.targets.curve and router.dual.stats() == {}


def test_the_store_survives_save_and_restart(router: Router, make_pool: Any, tmp_path: Path) -> None:
    record_outcome(router, NOVEL, CHEAP, 0.0, 50)
    before = router.predict([PARAPHRASE, NOVEL]).quality
    n = router.predictor.n_queries
    router.save(tmp_path / "router")

    restarted = Router.load(tmp_path / "router", models=make_pool([CHEAP, STRONG]))
    assert restarted.predictor.n_queries == n
    assert np.allclose(restarted.predict([PARAPHRASE, NOVEL]).quality, before, atol=0.02)
    record_outcome(restarted, NOVEL, STRONG, 1.0)  # the stored query is recognised after the restart
    assert restarted.predictor.n_queries == n
    refit(restarted)


def test_concurrent_writers_and_readers_are_safe(router: Router) -> None:
    predictor = router.predictor
    n = predictor.n_queries
    errors: list[BaseException] = []

    def write(t: int) -> None:
        try:
            for i in range(8):
                record_outcome(router, f"Worker {t} asks question number {i} about tides.", CHEAP, (t + i) % 2)
                record_outcome(router, f"Worker {t} asks question number {i} about tides.", STRONG, 1.0, 30)
        except BaseException as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    def read() -> None:
        try:
            for _ in range(10):
                assert router.predict([NOVEL]).quality.shape == (1, 2)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(t,)) for t in range(6)] + [threading.Thread(target=read)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert predictor.n_queries == n + 48 == predictor._index.ntotal
    columns = [predictor.models.index(CHEAP), predictor.models.index(STRONG)]
    assert not np.isnan(predictor._scores[n:, columns]).any()  # each query got both outcomes, in its own row


def test_bad_feedback_is_refused_with_what_to_fix(router: Router, make_pool: Any) -> None:
    with pytest.raises(InputError, match="not in the router's pool"):
        record_outcome(router, NOVEL, "gpt-4o", 1.0)
    with pytest.raises(InputError, match=r"score must be a number in \[0, 1\]"):
        record_outcome(router, NOVEL, CHEAP, 1.5)
    with pytest.raises(InputError, match="output_tokens"):
        record_outcome(router, NOVEL, CHEAP, 1.0, -3)
    with pytest.raises(InputError, match="no text"):
        record_outcome(router, "   ", CHEAP, 1.0)

    class Frozen(Predictor):
        kind = "frozen-test"
        models = (CHEAP,)
        out_of_fold = None

        def fit(self, logs: RoutingLogs) -> Frozen:
            return self

        def predict(self, queries: Any) -> Prediction:
            return Prediction(self.models, np.full((len(queries), 1), 0.5), np.zeros((len(queries), 1)))

        def save(self, path: Any) -> Path:
            return Path(path)

        @classmethod
        def load(cls, path: Any) -> Frozen:
            return cls()

    frozen = Router(make_pool([CHEAP]), Frozen())
    with pytest.raises(PredictorStateError, match="cannot learn from feedback"):
        record_outcome(frozen, NOVEL, CHEAP, 1.0)
    with pytest.raises(PredictorStateError, match="cannot learn from feedback"):
        refit(frozen)
