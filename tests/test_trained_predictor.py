"""The trained, fused, MLP and MF predictors: the predictor protocol, determinism, persistence, out-of-fold."""

import json
from pathlib import Path

import numpy as np
import pytest

from eccos_core.errors import PredictorStateError
from eccos_core.logs import LogRecord, Outcome, RoutingLogs
from eccos_core.predictors import PREDICTORS, load_predictor
from eccos_core.predictors.baselines import MFPredictor, MLPPredictor
from eccos_core.predictors.fused import FusedPredictor
from eccos_core.predictors.retrieval import RetrievalPredictor
from eccos_core.predictors.trained import CachedEncoder, TrainedPredictor

FAST = {"hidden": 32, "max_epochs": 4, "folds": 3, "patience": 2, "members": 2}


@pytest.fixture(scope="module")
def encoder(small_logs):
    """MiniLM, embedding the ~300 small_logs queries once for every test of this module."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # on a busy machine one thread embeds several times faster than two spinning ones
    try:
        cached = CachedEncoder(remember=True)
        cached.encode(small_logs.queries)
    finally:
        torch.set_num_threads(threads)
    return cached


@pytest.fixture(scope="module")
def split(small_logs):
    return small_logs[:240], small_logs[240:]


@pytest.fixture(scope="module")
def trained(split, encoder):
    return TrainedPredictor(encoder=encoder, seed=0, **FAST).fit(split[0])


def test_trained_predicts_probabilities_and_lengths_for_every_model(trained, split):
    train, test = split
    prediction = trained.predict(test.queries)
    assert prediction.models == tuple(train.models)
    assert prediction.quality.shape == prediction.output_tokens.shape == (len(test), len(train.models))
    assert ((prediction.quality >= 0) & (prediction.quality <= 1)).all()
    # the bundled logs carry no lengths: every model falls back to its logged mean, 0
    assert (prediction.output_tokens == 0).all()


def test_out_of_fold_covers_every_training_query(trained, split):
    oof = trained.out_of_fold
    assert oof is not None and oof.models == trained.models
    assert oof.quality.shape == (len(split[0]), len(trained.models))
    assert np.isfinite(oof.quality).all() and ((oof.quality >= 0) & (oof.quality <= 1)).all()
    assert len(trained.history) == len(trained._nets) == FAST["folds"] * FAST["members"]
    assert [(h["fold"], h["member"]) for h in trained.history] == [(k, m) for k in range(3) for m in range(2)]


def test_trained_defaults_to_three_members_per_fold_in_float16():
    from eccos_core.predictors.trained import TrainConfig

    config = TrainedPredictor().config
    assert config.members == 3 and config.float16
    # the baselines keep one float32 network per fold, as published
    assert MLPPredictor().config.members == MFPredictor().config.members == TrainConfig().members == 1
    assert not MLPPredictor().config.float16 and not MFPredictor().config.float16


def test_float16_weights_are_saved_as_float16_and_reload_exactly(trained, split, encoder, tmp_path):
    from safetensors.numpy import load_file

    assert trained.config.float16
    for net in trained._nets:  # rounded when trained, so the fitted predictor is the one that is saved
        for value in net.state_dict().values():
            assert torch_equal_after_half(value)
    path = trained.save(tmp_path / "trained")
    weights = load_file(str(path / "weights.safetensors"))
    assert {v.dtype for k, v in weights.items() if k.startswith("fold")} == {np.dtype(np.float16)}
    assert weights["feature_mean"].dtype == np.float32
    loaded = load_predictor(path)
    loaded.encoder = encoder
    queries = split[1].queries[:10]
    np.testing.assert_array_equal(loaded.predict(queries).quality, trained.predict(queries).quality)
    full = TrainedPredictor(encoder=encoder, seed=0, **{**FAST, "float16": False}).fit(split[0])
    assert np.abs(full.predict(queries).quality - trained.predict(queries).quality).max() < 1e-2
    assert load_file(str(full.save(tmp_path / "full") / "weights.safetensors"))["fold0.capability.weight"].dtype == (
        np.float32
    )


def torch_equal_after_half(value):
    import torch

    return bool(torch.equal(value, value.half().float()))


def test_same_seed_same_predictor_other_seed_other_one(trained, split, encoder):
    train, test = split
    again = TrainedPredictor(encoder=encoder, seed=0, **FAST).fit(train)
    other = TrainedPredictor(encoder=encoder, seed=1, **FAST).fit(train)
    np.testing.assert_allclose(again.predict(test.queries).quality, trained.predict(test.queries).quality, atol=1e-6)
    np.testing.assert_allclose(again.out_of_fold.quality, trained.out_of_fold.quality, atol=1e-6)
    assert np.abs(other.predict(test.queries).quality - trained.predict(test.queries).quality).max() > 1e-4


def test_save_load_round_trip_uses_no_pickle(trained, split, encoder, tmp_path):
    path = trained.save(tmp_path / "trained")
    names = sorted(p.name for p in path.iterdir())
    assert names == ["out_of_fold.safetensors", "predictor.json", "weights.safetensors"]
    assert not any(p.read_bytes().startswith(b"\x80") for p in path.iterdir())  # pickle's protocol marker
    loaded = load_predictor(path)
    assert isinstance(loaded, TrainedPredictor) and loaded.models == trained.models
    loaded.encoder = encoder
    queries = split[1].queries[:10]
    np.testing.assert_allclose(loaded.predict(queries).quality, trained.predict(queries).quality, atol=1e-6)
    np.testing.assert_allclose(loaded.out_of_fold.quality, trained.out_of_fold.quality)


def test_load_rejects_another_pool(trained, tmp_path):
    path = trained.save(tmp_path / "trained")
    with pytest.raises(PredictorStateError, match="trained for the pool"):
        TrainedPredictor.load(path, models=list(reversed(trained.models)))
    manifest = json.loads((path / "predictor.json").read_text())
    manifest["models"] = manifest["models"][:-1]
    for key in ("has_length", "token_mean", "log_len_var", "log_len_cap"):
        manifest[key] = manifest[key][:-1]
    (path / "predictor.json").write_text(json.dumps(manifest))
    with pytest.raises(PredictorStateError, match="do not fit"):
        load_predictor(path)


def test_unfitted_predictor_says_what_to_do():
    with pytest.raises(PredictorStateError, match="call fit"):
        TrainedPredictor().predict(["hello"])


def test_length_head_learns_logged_lengths_and_unlogged_models_get_their_mean(split, encoder):
    train, test = split

    # model "short" writes ~20 tokens on short prompts, ~200 on long ones; "silent" logs no lengths at all
    def outcomes(record):
        score = next(iter(record.outcomes.values())).score
        return {
            "short": Outcome(score, output_tokens=20.0 if len(record.query) < 200 else 200.0),
            "silent": Outcome(1.0),
        }

    records = [LogRecord(r.id, r.query, outcomes(r)) for r in train]
    predictor = TrainedPredictor(encoder=encoder, seed=0, **{**FAST, "max_epochs": 30, "patience": 30})
    predictor.fit(RoutingLogs(tuple(records)))
    tokens = predictor.predict(test.queries).select(["short", "silent"]).output_tokens
    long = np.array([len(q) >= 200 for q in test.queries])
    assert tokens[long, 0].mean() > 2 * tokens[~long, 0].mean()
    assert (tokens[:, 1] == 0).all()


@pytest.mark.parametrize("cls", [MLPPredictor, MFPredictor])
def test_baselines_follow_the_protocol(cls, split, encoder, tmp_path):
    train, test = split
    predictor = cls(encoder=encoder, seed=0, **FAST).fit(train)
    assert PREDICTORS[cls.kind] is cls
    prediction = predictor.predict(test.queries[:7])
    assert prediction.quality.shape == (7, len(train.models))
    assert predictor.out_of_fold.quality.shape == (len(train), len(train.models))
    loaded = load_predictor(predictor.save(tmp_path / cls.kind))
    loaded.encoder = encoder
    np.testing.assert_allclose(loaded.predict(test.queries[:7]).quality, prediction.quality, atol=1e-6)


def test_fused_blends_with_weights_in_unit_interval_and_round_trips(trained, split, encoder, tmp_path):
    train, test = split
    retrieval = RetrievalPredictor(k=8, encoder=encoder).fit(train)
    fused = FusedPredictor.from_parts(retrieval, trained, train)
    assert 0.0 <= fused.gamma <= 1.0 and 0.0 <= fused.delta <= 1.0
    assert fused.out_of_fold.quality.shape == (len(train), len(train.models))
    prediction = fused.predict(test.queries)
    assert ((prediction.quality >= 0) & (prediction.quality <= 1)).all()
    loaded = load_predictor(fused.save(tmp_path / "fused"))
    assert isinstance(loaded, FusedPredictor) and loaded.gamma == fused.gamma
    loaded.retrieval.encoder = loaded.trained.encoder = loaded.encoder = encoder
    np.testing.assert_allclose(loaded.predict(test.queries[:5]).quality, prediction.quality[:5], atol=1e-6)
    with pytest.raises(PredictorStateError, match="fitted for the pool"):
        FusedPredictor.load(tmp_path / "fused", models=["someone-else"])


def test_fused_learns_from_feedback_and_keeps_it_across_a_save(trained, split, encoder, tmp_path):
    train, test = split
    retrieval = RetrievalPredictor(k=8, calibrate=False, encoder=encoder).fit(train)  # no isotonic plateaus
    fused = FusedPredictor.from_parts(retrieval, trained, train, gamma=0.5, calibrate=False)
    model = train.models[0]
    queries = [f"{q} (asked again, {i})" for i, q in enumerate(test.queries[:6])]
    before = fused.predict(queries).select([model]).quality[:, 0]
    assert fused.add_outcomes(queries, model, [1.0] * len(queries)) == len(queries)
    after = fused.predict(queries).select([model]).quality[:, 0]
    assert (after > before).all()  # the retrieval part now finds these successes as nearest neighbours
    refit = fused.recalibrate()
    assert refit.out_of_fold.quality.shape == (len(train) + len(queries), len(train.models))
    assert np.isfinite(refit.out_of_fold.quality).all() and len(refit.scores) == len(train) + len(queries)
    loaded = load_predictor(fused.save(tmp_path / "fed"))
    loaded.retrieval.encoder = loaded.trained.encoder = loaded.encoder = encoder
    assert loaded._learned == fused._learned and len(loaded._learned) == len(queries)
    np.testing.assert_allclose(loaded.recalibrate().out_of_fold.quality, refit.out_of_fold.quality, atol=1e-9)


def test_fused_chooses_gamma_and_calibration_together_by_out_of_fold_brier(trained, split, encoder):
    from eccos_core.predictors.fused import _GRID

    train, _ = split
    retrieval = RetrievalPredictor(k=8, encoder=encoder).fit(train)
    fused = FusedPredictor.from_parts(retrieval, trained, train)
    scores = train.scores(list(fused.models))
    seen = ~np.isnan(scores)

    def brier(quality):
        return float(np.mean((quality[seen] - scores[seen]) ** 2))

    t, r = trained.out_of_fold.quality, retrieval.out_of_fold.quality
    candidates = [brier(g * t + (1 - g) * r) for g in _GRID]
    candidates += [brier(fused._cross_calibrated(g * t + (1 - g) * r, scores)) for g in _GRID]
    assert fused.gamma in _GRID
    assert brier(fused.out_of_fold.quality) == pytest.approx(min(candidates), abs=1e-12)
    assert (fused._calibration is not None) == (min(candidates[len(_GRID) :]) < min(candidates[: len(_GRID)]))
    never = FusedPredictor.from_parts(retrieval, trained, train, calibrate=False)
    assert never._calibration is None
    assert brier(never.out_of_fold.quality) == pytest.approx(min(candidates[: len(_GRID)]), abs=1e-12)


def test_fused_with_fixed_weights_is_one_part(trained, split, encoder):
    train, _ = split
    retrieval = RetrievalPredictor(k=8, encoder=encoder).fit(train)
    only_trained = FusedPredictor.from_parts(retrieval, trained, train, gamma=1.0, delta=1.0)
    assert only_trained.gamma == 1.0 and only_trained.delta == 1.0


def test_cached_encoder_forgets_what_it_saw_outside_a_remembering_block(encoder, tmp_path):
    plain = CachedEncoder(encoder)
    plain.encode(["a query seen once"])
    assert len(plain) == 0
    with plain.remembering():
        plain.encode(["a query seen once"])
        assert len(plain) == 1
    assert len(plain) == 0
    encoder.save(tmp_path / "cache")
    assert len(CachedEncoder.load(tmp_path / "cache")) == len(encoder)


def test_train_command_writes_a_router_that_loads(small_logs, encoder, tmp_path, capsys, monkeypatch):
    from eccos_core.bundled import BUNDLED_MODELS
    from eccos_core.cli import main
    from eccos_core.logs import write_logs
    from eccos_core.predictors.encoder import SentenceEncoder
    from eccos_core.router import Router

    # the command builds its own encoder: serve it the embeddings this module already computed
    monkeypatch.setattr(SentenceEncoder, "encode", lambda self, texts, show_progress=False: encoder.encode(texts))
    data = write_logs(small_logs[:150], tmp_path / "logs.jsonl")
    code = main(["train", "--data", str(data), "--models", str(BUNDLED_MODELS), "--out", str(tmp_path / "router"),
                 "--predictor", "trained", "--epochs", "2"])  # fmt: skip
    assert code == 0
    assert "router saved to" in capsys.readouterr().out
    router = Router.load(tmp_path / "router")
    assert isinstance(router.predictor, TrainedPredictor)
    assert Path(tmp_path / "router").is_dir()


def test_saved_fused_predicts_exactly_what_it_did_with_a_float32_encoder(small_logs, tmp_path):
    """An AVX2-only CPU embeds in float32 (no native bfloat16): a save and load must still change nothing."""
    from eccos_core.predictors.encoder import SentenceEncoder

    encoder = CachedEncoder(SentenceEncoder(dtype="float32"), remember=True)
    train, test = small_logs[:120], small_logs[120:150]
    retrieval = RetrievalPredictor(k=8, calibrate=False, encoder=encoder).fit(train)
    trained = TrainedPredictor(encoder=encoder, seed=0, **FAST).fit(train)
    fused = FusedPredictor.from_parts(retrieval, trained, train, gamma=0.5, calibrate=False)
    fused.add_outcomes(test.queries[:4], train.models[0], [1.0, 0.0, 1.0, 1.0])
    loaded = load_predictor(fused.save(tmp_path / "fp32"))
    loaded.retrieval.encoder = loaded.trained.encoder = loaded.encoder = encoder
    np.testing.assert_array_equal(loaded.predict(test.queries).quality, fused.predict(test.queries).quality)
    np.testing.assert_array_equal(loaded.recalibrate().out_of_fold.quality, fused.recalibrate().out_of_fold.quality)
