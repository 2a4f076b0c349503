"""The per-batch guarantee margin: what a user setting confidence = 1 − δ relies on."""

import numpy as np
import pytest

from eccos_core.calibration import QualityGuard
from eccos_core.guarantee import BatchMargin
from eccos_core.targets import Targets


@pytest.fixture(scope="module")
def problem():
    """400 queries, 3 models: calibrated predictions, coin-flip outcomes drawn from them, rising prices."""
    rng = np.random.default_rng(0)
    quality = np.clip(rng.beta(2, 2, size=(400, 3)) + np.array([-0.15, 0.0, 0.15]), 0.02, 0.98)
    scores = (rng.random(quality.shape) < quality).astype(float)
    cost = np.tile(np.array([1.0, 3.0, 10.0]), (400, 1)) * rng.uniform(0.5, 1.5, size=(400, 1))
    return quality, scores, cost


@pytest.fixture(scope="module")
def guard(problem):
    quality, scores, cost = problem
    return QualityGuard.fit(_Oof(quality), scores, cost, grid=np.linspace(0.0, 1.0, 11))


@pytest.fixture(scope="module")
def margin(problem, guard):
    quality, scores, cost = problem
    return BatchMargin.fit(quality, scores, cost, guard, batch_sizes=(10, 40), alphas=(0.6, 0.7), n_batches=8)


class _Oof:
    def __init__(self, quality):
        self.quality = quality


def test_margin_grows_as_the_batch_shrinks(margin):
    sizes = [5, 10, 50, 100, 1000]
    values = [margin.margin(n, 0.9) for n in sizes]
    assert values == sorted(values, reverse=True)
    assert values[0] > values[-1] > 0 or values[-1] == margin.bias


def test_margin_grows_with_confidence(margin):
    values = [margin.margin(100, c) for c in (0.5, 0.8, 0.9, 0.99)]
    assert values == sorted(values)
    assert values[-1] > values[0]


def test_margin_is_about_a_coin_flip_standard_error(margin):
    # a batch of 100 coin flips at p = 0.5 has standard error 0.05; the 90 % margin is of that order
    assert 0.02 < margin.margin(100, 0.9) < 0.15


def test_guaranteed_target_is_above_the_plain_one(guard, margin):
    assert Targets(guard, margin).batch(0.6, 50, 0.9).target > guard.target(0.6)


def test_round_trips_through_json(margin):
    again = BatchMargin.from_dict(margin.to_dict())
    assert again == margin
    assert again.margin(30, 0.95) == margin.margin(30, 0.95)


@pytest.mark.parametrize(("size", "confidence"), [(0, 0.9), (10, 1.0), (10, 0.0)])
def test_rejects_meaningless_requests(margin, size, confidence):
    with pytest.raises(ValueError):
        margin.margin(size, confidence)
