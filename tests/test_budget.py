"""Budget mode: the best mean predicted quality a total cost budget buys, checked against brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from eccos_core.errors import CapacityError, InputError
from eccos_core.optimize.budget import lower_hulls, solve_budget
from eccos_core.router import Router


def brute_force(cost, quality, budget, caps=None, allowed=None):
    """Best mean quality within budget (and caps/mask) by enumeration; None when nothing fits the budget."""
    n, m = cost.shape
    allowed = np.ones((n, m), dtype=bool) if allowed is None else allowed
    rows = np.arange(n)
    best = None
    for combo in itertools.product(range(m), repeat=n):
        chosen = np.array(combo)
        if not allowed[rows, chosen].all():
            continue
        if caps is not None and any(c is not None and (chosen == j).sum() > c for j, c in enumerate(caps)):
            continue
        if cost[rows, chosen].sum() <= budget + 1e-12:
            value = quality[rows, chosen].mean()
            best = value if best is None else max(best, value)
    return best


def random_instance(rng, n, m):
    cost = rng.uniform(0.0, 1.0, (n, m)).round(2)
    quality = rng.uniform(0.0, 1.0, (n, m)).round(2)
    allowed = rng.uniform(size=(n, m)) < 0.8
    allowed[np.arange(n), rng.integers(0, m, n)] = True
    return cost, quality, allowed


@pytest.mark.parametrize("seed", range(6))
def test_budget_plans_match_brute_force_on_tiny_instances(seed):
    rng = np.random.default_rng(seed)
    for _ in range(40):
        n, m = int(rng.integers(1, 6)), int(rng.integers(1, 5))
        cost, quality, allowed = random_instance(rng, n, m)
        caps = [None if rng.uniform() < 0.5 else int(rng.integers(1, n + 1)) for _ in range(m)]
        if sum(c if c is not None else n for c in caps) < n:
            caps = None
        budget = float(rng.uniform(0.0, cost.max(axis=1).sum()))
        best = brute_force(cost, quality, budget, caps, allowed)
        if brute_force(cost, quality, np.inf, caps, allowed) is None:  # the caps and mask cannot hold the batch
            with pytest.raises(CapacityError):
                solve_budget(cost, quality, budget, caps, allowed=allowed)
            continue

        plan = solve_budget(cost, quality, budget, caps, allowed=allowed)

        rows = np.arange(n)
        assert allowed[rows, plan.model_index].all()
        if best is None:
            assert plan.status == "quality_unreachable" and "budget" in plan.message
            continue
        assert plan.status == "optimal"
        assert plan.expected_cost <= budget + 1e-9
        assert plan.expected_quality == pytest.approx(best, abs=1e-9)
        assert plan.bound >= best - 1e-9
        if caps is not None:
            counts = np.bincount(plan.model_index, minlength=m)
            assert all(c is None or counts[j] <= c for j, c in enumerate(caps))


def test_a_bigger_budget_never_buys_less_quality():
    rng = np.random.default_rng(7)
    cost, quality, _ = random_instance(rng, 300, 6)
    cheapest = cost.min(axis=1).sum()
    values = [solve_budget(cost, quality, cheapest * f).expected_quality for f in (1.0, 1.5, 2.0, 4.0, 100.0)]

    assert values == sorted(values)
    assert values[-1] == pytest.approx(quality.max(axis=1).mean())  # a slack budget buys every best model


def test_large_batches_come_with_an_honest_gap():
    rng = np.random.default_rng(3)
    n, m = 5000, 9
    quality = np.clip(rng.normal(0.6, 0.2, (n, m)), 0, 1)
    cost = rng.uniform(1e-5, 1e-3, (n, m)) * np.linspace(1, 10, m)
    budget = float(cost.min(axis=1).sum() * 2)

    plan = solve_budget(cost, quality, budget, time_limit=5.0)

    assert plan.status in ("optimal", "feasible")
    assert plan.expected_cost <= budget
    assert 0.0 <= plan.gap < 1e-5  # the LP bound is at most one query's upgrade away


def test_a_budget_below_the_cheapest_plan_routes_the_cheapest_and_says_so():
    cost = np.array([[1.0, 2.0], [3.0, 1.0]])
    quality = np.array([[0.5, 0.9], [0.9, 0.1]])

    plan = solve_budget(cost, quality, budget=1.5)

    assert plan.model_index.tolist() == [0, 1]
    assert plan.status == "quality_unreachable"
    assert "$2" in plan.message and "cheapest" in plan.message


def test_bad_inputs_are_typed_errors():
    cost, quality = np.ones((2, 2)), np.full((2, 2), 0.5)
    with pytest.raises(InputError, match="budget"):
        solve_budget(cost, quality, -1.0)
    with pytest.raises(InputError, match="budget"):
        solve_budget(cost, quality, float("nan"))
    with pytest.raises(InputError, match="shape"):
        solve_budget(cost, quality[:1], 1.0)
    with pytest.raises(CapacityError, match="hold"):
        solve_budget(cost, quality, 1.0, [1, 0])


def test_hulls_pick_what_the_price_says():
    rng = np.random.default_rng(11)
    cost, quality, allowed = random_instance(rng, 200, 5)
    hulls = lower_hulls(cost, quality, allowed)
    for price in (0.0, 0.3, 1.0, 3.0, 1e6):
        score = np.where(allowed, cost - price * quality, np.inf)
        best = score.min(axis=1)
        chosen = hulls.choose(price)
        assert np.allclose(score[np.arange(200), chosen], best)


# --------------------------------------------------------------------------------------------- router
QUESTIONS = [f"Question {i}: what is {i} * {i + 3}?" * (1 + i % 4) for i in range(12)]


def test_router_plans_a_batch_within_a_budget(make_pool, fake_predictor):
    router = Router(make_pool(), fake_predictor)
    cheapest = router.plan(QUESTIONS, 0.0)
    best = router.plan(QUESTIONS, 1.0)
    budget = cheapest.expected_cost + 0.5 * (best.expected_cost - cheapest.expected_cost)

    plan = router.plan(QUESTIONS, budget=budget)

    assert plan.budget == budget and plan.solver == "budget"
    assert plan.status in ("optimal", "feasible")
    assert plan.expected_cost <= budget + 1e-12
    assert cheapest.expected_quality < plan.expected_quality <= best.expected_quality
    assert all(q.budget == budget for q in plan.queries)
    # the same budget as a quality-constrained plan's cost buys at least its quality (the two are duals)
    mid = router.plan(QUESTIONS, plan.expected_quality)
    assert router.plan(QUESTIONS, budget=mid.expected_cost).expected_quality >= mid.expected_quality - 1e-9


def test_router_budget_errors_say_what_to_fix(make_pool, fake_predictor):
    router = Router(make_pool(), fake_predictor)
    with pytest.raises(InputError, match="not both"):
        router.plan(QUESTIONS, 0.5, budget=1.0)
    with pytest.raises(InputError, match="not neither"):
        router.plan(QUESTIONS)
    with pytest.raises(InputError, match="budget must"):
        router.plan(QUESTIONS, budget=-1.0)
    tiny = router.plan(QUESTIONS, budget=0.0)
    assert tiny.status == "quality_unreachable" and "cheapest" in tiny.message
