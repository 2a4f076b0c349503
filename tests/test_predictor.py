import json

import numpy as np
import pytest

from eccos_core import RetrievalPredictor
from eccos_core.bundled import bundled_logs
from eccos_core.calibration import IsotonicCalibration, QualityGuard
from eccos_core.errors import InputError, PredictorStateError
from eccos_core.logs import split_logs
from eccos_core.predictors import load_predictor


@pytest.fixture(scope="module")
def small_split():
    train, test = split_logs(bundled_logs(), test_frac=0.2, seed=0)
    return train[:400], test[:50]


@pytest.fixture(scope="module")
def fitted(small_split):
    train, _ = small_split
    return RetrievalPredictor(k=8).fit(train)


def test_predict_gives_probabilities_and_lengths_for_every_model(fitted, small_split):
    _, test = small_split
    prediction = fitted.predict(test.queries)
    assert prediction.models == tuple(small_split[0].models)
    assert prediction.quality.shape == (len(test), len(prediction.models))
    assert ((prediction.quality >= 0) & (prediction.quality <= 1)).all()
    assert prediction.output_tokens.shape == prediction.quality.shape


def test_out_of_fold_predictions_never_see_their_own_outcome(small_split):
    train, _ = small_split
    predictor = RetrievalPredictor(k=1, calibrate=False).fit(train)
    scores = train.scores(predictor.models)
    # with k=1 the leave-one-out prediction is the nearest *other* query's score, never its own
    oof = predictor.out_of_fold.quality
    assert oof.shape == scores.shape
    embeddings = predictor.encoder.encode(train.queries[:20])
    sims = embeddings @ predictor._embeddings.T
    np.fill_diagonal(sims[:, :20], -np.inf)
    nearest = sims.argmax(axis=1)
    np.testing.assert_allclose(oof[:20], scores[nearest], atol=1e-6)


def test_calibration_makes_predictions_match_observed_rates(fitted, small_split):
    train, _ = small_split
    scores = train.scores(fitted.models)
    oof = fitted.out_of_fold.quality
    # each half is calibrated on the other half, so means match the observed rates up to sampling noise
    np.testing.assert_allclose(oof.mean(axis=0), np.nanmean(scores, axis=0), atol=0.05)


def test_model_missing_among_neighbours_falls_back_to_its_global_mean(small_split):
    train, _ = small_split
    records = list(train[:30])
    from eccos_core.logs import LogRecord, Outcome, RoutingLogs

    extra = LogRecord(id="only-here", query="a query only one model answered", outcomes={"solo": Outcome(0.25)})
    logs = RoutingLogs((*records, extra))
    predictor = RetrievalPredictor(k=3, calibrate=False).fit(logs)
    quality = predictor.predict([records[0].query]).select(["solo"]).quality
    # 'solo' is absent among the 3 neighbours of records[0] -> its global mean, 0.25, but it has a single outcome
    # (fewer than MIN_OUTCOMES), so that mean is shrunk toward the pool's mean success
    from eccos_core.calibration import MIN_OUTCOMES

    scores = logs.scores(logs.models)
    pool_mean = np.nansum(scores) / np.sum(~np.isnan(scores))
    assert quality[0, 0] == pytest.approx((0.25 + (MIN_OUTCOMES - 1) * pool_mean) / MIN_OUTCOMES)


def test_save_load_round_trip_without_pickle(fitted, small_split, tmp_path):
    _, test = small_split
    fitted.save(tmp_path / "p")
    assert json.loads((tmp_path / "p" / "predictor.json").read_text())["kind"] == "retrieval"
    again = load_predictor(tmp_path / "p")
    np.testing.assert_allclose(again.predict(test.queries[:5]).quality, fitted.predict(test.queries[:5]).quality,
                               atol=2e-2)  # fmt: skip


def test_saved_dir_missing_files_is_a_typed_error(fitted, tmp_path):
    fitted.save(tmp_path / "p")
    (tmp_path / "p" / "scores.npy").unlink()
    with pytest.raises(PredictorStateError, match=r"missing files \['scores.npy'\]"):
        RetrievalPredictor.load(tmp_path / "p")
    with pytest.raises(PredictorStateError, match=r"predictor\.json is missing"):
        RetrievalPredictor.load(tmp_path / "nowhere")


def test_predict_before_fit_and_bad_arguments():
    with pytest.raises(PredictorStateError, match="not fitted"):
        RetrievalPredictor().predict(["hello"])
    with pytest.raises(ValueError, match="k must be a positive integer"):
        RetrievalPredictor(k=0)


def test_predict_takes_a_sequence_not_a_string(fitted):
    with pytest.raises(InputError, match="not a single string"):
        fitted.predict("hello")


def test_isotonic_calibration_is_monotone_and_round_trips():
    rng = np.random.default_rng(0)
    raw = rng.random((500, 2))
    scores = (rng.random((500, 2)) < raw**2).astype(float)
    cal = IsotonicCalibration.fit(raw, scores)
    grid = np.tile(np.linspace(0, 1, 50)[:, None], (1, 2))
    out = cal.apply(grid)
    assert (np.diff(out, axis=0) >= -1e-12).all()
    np.testing.assert_allclose(IsotonicCalibration.from_dict(cal.to_dict()).apply(grid), out)


def test_quality_guard_asks_for_more_than_alpha_when_selection_is_optimistic():
    guard = QualityGuard(alphas=(0.3, 0.5, 0.7, 0.8), targets=(0.3, 0.55, 0.78, 0.9))
    assert guard.target(0.5) == pytest.approx(0.55)
    assert guard.target(0.6) == pytest.approx(0.665)
    assert guard.target(0.85) == pytest.approx(0.95)  # above the measured range: last shortfall added
    assert QualityGuard.identity().target(0.42) == pytest.approx(0.42)
    assert QualityGuard.from_dict(guard.to_dict()) == guard
