"""The optimizer: every method against brute force, the per-query rule, and every bad input."""

from __future__ import annotations

import ast
import itertools
import math
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from eccos_core.errors import CapacityError, InputError
from eccos_core.optimize import METHODS, Assignment, SolveStatus, per_query, solve
from eccos_core.optimize.assignment import validate_problem
from eccos_core.optimize.ilp import solve_ilp

TOL = 1e-9


@dataclass
class Instance:
    cost: np.ndarray
    quality: np.ndarray
    alpha: float
    capacity: list[int | None] | None
    allowed: np.ndarray | None


@dataclass
class Truth:
    fits: bool
    """Some assignment respects the caps and the mask."""
    reachable: bool
    cost: float
    """Optimal cost; when α is unreachable, the cheapest cost at the maximum quality."""
    quality: float
    """Maximum reachable mean quality."""


def brute_force(inst: Instance) -> Truth:
    n, m = inst.cost.shape
    allowed = np.ones((n, m), bool) if inst.allowed is None else inst.allowed
    options = [np.flatnonzero(allowed[i]).tolist() for i in range(n)]
    grid = np.array(list(itertools.product(*options)), dtype=int).reshape(-1, n)
    rows = np.arange(n)
    cost = inst.cost[rows, grid].sum(axis=1)
    mean = inst.quality[rows, grid].mean(axis=1)
    fits = np.ones(len(grid), bool)
    if inst.capacity is not None:
        for j, cap in enumerate(inst.capacity):
            if cap is not None:
                fits &= (grid == j).sum(axis=1) <= cap
    if not fits.any():
        return Truth(False, False, math.nan, math.nan)
    top = mean[fits].max()
    feasible = fits & (mean >= inst.alpha * (1 - TOL))
    if feasible.any():
        return Truth(True, True, float(cost[feasible].min()), float(top))
    at_top = fits & (mean >= top * (1 - TOL))
    return Truth(True, False, float(cost[at_top].min()), float(top))


def random_instance(rng: np.random.Generator, sizes: tuple[int, int] = (6, 3)) -> Instance:
    n = int(rng.integers(2, sizes[0] + 1))
    m = int(rng.integers(1, sizes[1] + 1))
    style = rng.integers(3)
    if style == 0:  # many ties
        cost = rng.choice([0.0, 1.0, 2.0, 3.0], size=(n, m))
        quality = rng.choice([0.0, 0.5, 1.0], size=(n, m))
    elif style == 1:  # priced like models: cost = tokens × price
        cost = rng.uniform(1, 100, size=(n, 1)) * rng.choice([0.1, 0.2, 0.9], size=(1, m)) * 1e-6
        quality = rng.uniform(size=(n, m)).round(2)
    else:
        cost = rng.uniform(size=(n, m))
        quality = rng.uniform(size=(n, m))
    allowed = None
    if rng.random() < 0.4:
        allowed = rng.random((n, m)) < 0.75
        allowed[np.arange(n), rng.integers(m, size=n)] = True
    capacity = None
    if rng.random() < 0.5:
        capacity = [None if rng.random() < 0.3 else int(rng.integers(0, n + 1)) for _ in range(m)]
    pick = rng.random()
    if pick < 0.15:
        alpha = 0.0
    elif pick < 0.25:
        alpha = 1.0
    elif pick < 0.5:  # exactly the mean of some assignment: the constraint is tight
        choice = rng.integers(m, size=n)
        alpha = float(quality[np.arange(n), choice].mean())
    else:
        alpha = float(rng.uniform(quality.min(), quality.max()))
    return Instance(cost, quality, alpha, capacity, allowed)


def check_feasible(inst: Instance, a: Assignment, target: float) -> None:
    n, m = inst.cost.shape
    index = a.model_index
    assert index.shape == (n,) and index.dtype.kind == "i"
    if inst.allowed is not None:
        assert inst.allowed[np.arange(n), index].all()
    if inst.capacity is not None:
        load = np.bincount(index, minlength=m)
        for j, cap in enumerate(inst.capacity):
            assert cap is None or load[j] <= cap
    mean = inst.quality[np.arange(n), index].mean()
    assert mean >= target * (1 - TOL) - 1e-12
    assert a.expected_quality == pytest.approx(mean, abs=1e-12)
    assert a.expected_cost == pytest.approx(inst.cost[np.arange(n), index].sum(), rel=1e-12, abs=1e-15)


INSTANCES = [random_instance(np.random.default_rng(seed)) for seed in range(240)]
WIDER = [random_instance(np.random.default_rng(1000 + seed), sizes=(8, 4)) for seed in range(40)]


@pytest.mark.parametrize("method", ["exact", "ilp", "lagrangian"])
@pytest.mark.parametrize("instances", ["small", "wider"])
def test_methods_match_brute_force(method: str, instances: str) -> None:
    for seed, inst in enumerate(INSTANCES if instances == "small" else WIDER):
        truth = brute_force(inst)
        if not truth.fits:
            with pytest.raises(CapacityError, match="raise capacity"):
                solve(inst.cost, inst.quality, inst.alpha, inst.capacity, allowed=inst.allowed, method=method)
            continue
        a = solve(inst.cost, inst.quality, inst.alpha, inst.capacity, allowed=inst.allowed, method=method)
        scale = max(1.0, truth.cost) if truth.cost > 1e-3 else max(truth.cost, 1e-9)
        context = f"seed {seed}: {a}"
        if truth.reachable:
            check_feasible(inst, a, inst.alpha)
            assert a.status in (SolveStatus.OPTIMAL, SolveStatus.FEASIBLE), context
        else:
            assert a.status is SolveStatus.QUALITY_UNREACHABLE, context
            check_feasible(inst, a, truth.quality)
            assert a.expected_quality == pytest.approx(truth.quality, abs=1e-9), context
        if method == "lagrangian":
            assert a.expected_cost <= truth.cost + a.gap + TOL * scale, context
            if a.status is SolveStatus.OPTIMAL:
                assert a.expected_cost == pytest.approx(truth.cost, rel=TOL, abs=TOL * scale), context
        else:
            if truth.reachable:
                assert a.status is SolveStatus.OPTIMAL, context
            assert a.gap == 0.0
            assert a.expected_cost == pytest.approx(truth.cost, rel=TOL, abs=TOL * scale), context


def test_ilp_with_cbc_matches_brute_force() -> None:
    for inst in INSTANCES[:25]:
        truth = brute_force(inst)
        if not truth.fits or not truth.reachable:
            continue
        problem = validate_problem(inst.cost, inst.quality, inst.alpha, inst.capacity, inst.allowed)
        a = solve_ilp(problem, 10.0, solver="cbc")
        assert a.method == "ilp-cbc"
        check_feasible(inst, a, inst.alpha)
        assert a.expected_cost == pytest.approx(truth.cost, rel=1e-7, abs=1e-9 * max(truth.cost, 1e-6))


def test_larger_capped_instance_agrees_across_methods() -> None:
    rng = np.random.default_rng(7)
    n, m = 300, 5
    tokens = rng.uniform(20, 2000, size=(n, 1))
    cost = tokens * np.array([[0.1, 0.2, 0.2, 0.6, 0.9]]) * 1e-6
    quality = np.clip(rng.normal([0.45, 0.55, 0.6, 0.7, 0.8], 0.15, size=(n, m)), 0, 1)
    allowed = tokens <= np.array([[1500, 1e9, 1800, 1e9, 1e9]])
    capacity = [40, None, 80, 60, None]
    exact = solve(cost, quality, 0.68, capacity, allowed=allowed, method="exact")
    ilp = solve(cost, quality, 0.68, capacity, allowed=allowed, method="ilp")
    lag = solve(cost, quality, 0.68, capacity, allowed=allowed, method="lagrangian")
    assert exact.status is SolveStatus.OPTIMAL and ilp.status is SolveStatus.OPTIMAL
    assert exact.expected_cost == pytest.approx(ilp.expected_cost, rel=1e-9)
    assert lag.status in (SolveStatus.OPTIMAL, SolveStatus.FEASIBLE)
    assert lag.expected_cost <= exact.expected_cost + lag.gap + 1e-15
    assert lag.expected_quality >= 0.68 * (1 - TOL)
    for a in (exact, ilp, lag):
        assert (np.bincount(a.model_index, minlength=m)[[0, 2, 3]] <= [40, 80, 60]).all()
        assert allowed[np.arange(n), a.model_index].all()


@pytest.mark.parametrize("capped", [False, True])
def test_exact_matches_ilp_on_repeating_qualities(capped: bool) -> None:
    # k-of-10 votes and repeated prompts: the knapsack left after reduced-cost fixing has few distinct
    # quality steps, the case the exact method's dynamic program is for.
    rng = np.random.default_rng(5)
    base = rng.integers(0, 120, size=80)
    prompts = base[rng.integers(0, 80, size=400)]
    tokens = (20 + 15 * prompts)[:, None].astype(float)
    cost = tokens * np.array([[0.1, 0.2, 0.2, 0.6, 0.9, 0.9]]) * 1e-6
    votes = rng.binomial(10, [0.35, 0.5, 0.55, 0.65, 0.75, 0.8], size=(120, 6)) / 10
    quality = votes[prompts]
    capacity = [60, None, 90, None, 70, None] if capped else None
    for alpha in (0.55, 0.62, 0.68):
        exact = solve(cost, quality, alpha, capacity, method="exact")
        ilp = solve(cost, quality, alpha, capacity, method="ilp")
        assert exact.status is SolveStatus.OPTIMAL and ilp.status is SolveStatus.OPTIMAL
        assert exact.expected_cost == pytest.approx(ilp.expected_cost, rel=1e-9)
        assert exact.expected_quality >= alpha * (1 - TOL)


def test_single_query_takes_cheapest_model_that_reaches_alpha() -> None:
    cost = np.array([[3.0, 1.0, 2.0]])
    quality = np.array([[0.95, 0.5, 0.8]])
    for method in ("exact", "ilp", "lagrangian"):
        a = solve(cost, quality, 0.7, method=method)
        assert a.model_index.tolist() == [2] and a.expected_cost == 2.0
    a = solve(cost, quality, 0.99)
    assert a.status is SolveStatus.QUALITY_UNREACHABLE and a.model_index.tolist() == [0]


def test_unreachable_returns_cheapest_best_assignment_and_says_so() -> None:
    cost = np.array([[1.0, 5.0, 4.0], [1.0, 3.0, 3.0]])
    quality = np.array([[0.2, 0.9, 0.9], [0.3, 0.95, 0.8]])
    a = solve(cost, quality, 0.95)
    assert a.status is SolveStatus.QUALITY_UNREACHABLE
    assert a.model_index.tolist() == [2, 1]  # the cheaper of the two 0.9 models
    assert a.expected_quality == pytest.approx(0.925)
    assert "target 0.95 is unreachable" in a.message and "reaches 0.925" in a.message

    capped = solve(cost, quality, 0.95, [None, 1, 0])
    assert capped.status is SolveStatus.QUALITY_UNREACHABLE
    # Model 2 is capped at 0 and model 1 at one query: the better use of model 1 is query 0 (0.9 + 0.3).
    assert capped.model_index.tolist() == [1, 0]
    assert capped.expected_quality == pytest.approx(0.6)
    assert "the best assignment the caps allow reaches 0.6;" in capped.message


def test_message_never_rounds_the_maximum_up_to_alpha() -> None:
    quality = np.array([[0.94999, 0.1]])
    a = solve(np.array([[1.0, 1.0]]), quality, 0.95)
    assert a.status is SolveStatus.QUALITY_UNREACHABLE
    assert "reaches 0.9499" in a.message


def test_low_alpha_takes_every_query_cheapest_model() -> None:
    rng = np.random.default_rng(3)
    cost = rng.uniform(size=(50, 4))
    quality = rng.uniform(size=(50, 4))
    a = solve(cost, quality, 0.0)
    assert a.status is SolveStatus.OPTIMAL
    assert a.model_index.tolist() == cost.argmin(axis=1).tolist()


def test_empty_batch() -> None:
    a = solve(np.zeros((0, 3)), np.zeros((0, 3)), 0.9, [1, None, 2])
    assert a.status is SolveStatus.OPTIMAL and a.model_index.shape == (0,) and a.expected_cost == 0.0


def test_masked_entries_are_not_validated() -> None:
    cost = np.array([[np.inf, 1.0], [2.0, 1.0]])
    quality = np.array([[np.nan, 0.5], [0.9, 0.5]])
    allowed = np.array([[False, True], [True, True]])
    a = solve(cost, quality, 0.7, allowed=allowed)
    assert a.model_index.tolist() == [1, 0] and a.status is SolveStatus.OPTIMAL


def test_time_limit_stop_is_feasible_with_honest_gap() -> None:
    rng = np.random.default_rng(11)
    n, m = 4000, 9
    cost = rng.uniform(20, 2000, size=(n, 1)) * rng.uniform(0.1, 1, size=(1, m)) * 1e-6
    quality = rng.uniform(size=(n, m))
    a = solve(cost, quality, 0.8, method="exact", time_limit=1e-4)
    assert a.status in (SolveStatus.OPTIMAL, SolveStatus.FEASIBLE)
    assert a.expected_quality >= 0.8 * (1 - TOL)
    if a.status is SolveStatus.FEASIBLE:
        assert math.isfinite(a.gap) and a.gap >= 0
        assert "time limit" in a.message
        best = solve(cost, quality, 0.8, method="exact")
        assert a.expected_cost <= best.expected_cost + a.gap + 1e-12


# --- the per-query rule -------------------------------------------------------------------------------------


def test_per_query_picks_cheapest_model_reaching_alpha_else_best() -> None:
    cost = np.array([[3.0, 1.0, 2.0], [1.0, 2.0, 3.0], [1.0, 1.0, 1.0], [2.0, 1.0, 9.0]])
    quality = np.array([[0.9, 0.5, 0.8], [0.1, 0.2, 0.3], [0.8, 0.9, 0.7], [0.6, 0.6, 0.1]])
    a = per_query(cost, quality, 0.75)
    # q0: models 0 and 2 reach 0.75, 2 is cheaper; q1: none reaches it, best is 2; q2: all cost 1, models
    # 0 and 1 reach it (tie on cost: higher quality wins); q3: none reaches it, tie at 0.6, cheaper wins.
    assert a.model_index.tolist() == [2, 2, 1, 1]
    assert a.method == "per-query"
    assert a.status is SolveStatus.QUALITY_UNREACHABLE  # mean (0.8+0.3+0.9+0.6)/4 = 0.65
    assert "unreachable by the per-query rule" in a.message and "reaches 0.65" in a.message
    assert math.isnan(a.gap)


def test_per_query_feasible_and_dearer_than_the_batch_optimum() -> None:
    cost = np.array([[1.0, 10.0], [1.0, 10.0]])
    quality = np.array([[0.7, 0.9], [0.95, 0.96]])
    rule = per_query(cost, quality, 0.8)
    assert rule.model_index.tolist() == [1, 0] and rule.status is SolveStatus.FEASIBLE
    best = solve(cost, quality, 0.8)
    assert best.model_index.tolist() == [0, 0] and best.expected_cost < rule.expected_cost
    assert rule.expected_cost - best.expected_cost <= rule.gap + 1e-12


def test_per_query_honours_caps_in_query_order() -> None:
    cost = np.array([[1.0, 2.0, 3.0]] * 4)
    quality = np.array([[0.9, 0.9, 0.9]] * 4)
    a = per_query(cost, quality, 0.5, capacity=[2, 1, None])
    assert a.model_index.tolist() == [0, 0, 1, 2]


def test_per_query_moves_earlier_queries_when_a_later_one_is_stuck() -> None:
    cost = np.array([[1.0, 2.0], [1.0, 2.0]])
    quality = np.array([[0.9, 0.9], [0.9, 0.9]])
    allowed = np.array([[True, True], [True, False]])
    a = per_query(cost, quality, 0.5, capacity=[1, 1], allowed=allowed)
    assert a.model_index.tolist() == [1, 0]


# --- bad inputs ---------------------------------------------------------------------------------------------

GOOD_COST = np.array([[1.0, 2.0], [1.0, 2.0]])
GOOD_QUALITY = np.array([[0.5, 0.9], [0.5, 0.9]])


@pytest.mark.parametrize("entry", [solve, per_query])
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"target": -0.1}, InputError, r"target must lie in \[0, 1\].*-0\.1"),
        ({"target": 1.5}, InputError, r"target must lie in \[0, 1\].*1\.5"),
        ({"target": math.nan}, InputError, r"target must lie in \[0, 1\].*nan"),
        ({"target": "high"}, InputError, r"target must be a number"),
        ({"cost": np.array([[1.0, np.nan], [1.0, 2.0]])}, InputError, r"cost\[0, 1\] is nan"),
        ({"cost": np.array([[1.0, -2.0], [1.0, 2.0]])}, InputError, r"cost\[0, 1\] is -2\.0.*>= 0"),
        ({"cost": np.array([[1.0, np.inf], [1.0, 2.0]])}, InputError, r"cost\[0, 1\] is inf"),
        ({"quality": np.array([[0.5, 1.2], [0.5, 0.9]])}, InputError, r"quality\[0, 1\] is 1\.2.*\[0, 1\]"),
        ({"quality": np.array([[0.5, -0.1], [0.5, 0.9]])}, InputError, r"quality\[0, 1\] is -0\.1"),
        ({"quality": np.array([[0.5, 0.9]])}, InputError, r"cost has shape \(2, 2\) but quality has shape"),
        ({"cost": np.array([1.0, 2.0])}, InputError, r"cost must be a 2-D N×M array"),
        ({"capacity": [1]}, InputError, r"capacity has 1 entries but there are 2 models"),
        ({"capacity": [1, -1]}, InputError, r"capacity of model 'column 1' must be a non-negative integer.*-1"),
        ({"capacity": [1, 0.5]}, InputError, r"capacity of model 'column 1'.*0\.5"),
        ({"capacity": [1, 0]}, CapacityError, r"caps sum to 1 for a batch of 2 queries: raise capacity"),
        (
            {"allowed": np.array([[True, False], [False, False]])},
            InputError,
            r"query \[1\] has no allowed model",
        ),
        ({"allowed": np.array([[True, False]])}, InputError, r"allowed has shape \(1, 2\) but cost is"),
        (
            {"allowed": np.array([[True, False], [True, False]]), "capacity": [1, 5]},
            CapacityError,
            r"place only 1 of the 2 queries.*raise capacity of model column\(s\) \[0\]",
        ),
    ],
)
def test_bad_inputs_raise_typed_errors(entry, kwargs: dict, error: type[Exception], match: str) -> None:
    args = {"cost": GOOD_COST, "quality": GOOD_QUALITY, "target": 0.7, "capacity": None, "allowed": None}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        entry(**args)


def test_unknown_method_lists_the_choices() -> None:
    choices = "auto, exact, ilp, lagrangian, per_query"
    with pytest.raises(InputError, match=rf"unknown method 'simplex': choose one of {choices}"):
        solve(GOOD_COST, GOOD_QUALITY, 0.7, method="simplex")
    assert METHODS == ("auto", "exact", "ilp", "lagrangian", "per_query")


def test_bad_time_limit() -> None:
    with pytest.raises(InputError, match="time_limit must be a positive number"):
        solve(GOOD_COST, GOOD_QUALITY, 0.7, time_limit=0)


def test_library_prints_nothing(capfd: pytest.CaptureFixture[str]) -> None:
    for method in ("exact", "ilp", "lagrangian"):
        solve(GOOD_COST, GOOD_QUALITY, 0.7, [1, None], method=method)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


# --- the per-query rule as a method ---------------------------------------------------------------------------


def test_per_query_is_a_method_of_solve() -> None:
    rng = np.random.default_rng(21)
    cost = rng.uniform(size=(30, 4))
    quality = rng.uniform(size=(30, 4))
    for alpha in (0.3, 0.6, 0.9):
        a = solve(cost, quality, alpha, method="per_query")
        expected = [
            int(np.argmin(np.where(row_q >= alpha, row_c, np.inf))) if (row_q >= alpha).any() else int(row_q.argmax())
            for row_c, row_q in zip(cost, quality, strict=True)
        ]
        assert a.method == "per-query" and a.model_index.tolist() == expected
        meets = quality[np.arange(30), a.model_index].mean() >= alpha * (1 - TOL)
        assert a.status is (SolveStatus.FEASIBLE if meets else SolveStatus.QUALITY_UNREACHABLE)
        assert per_query(cost, quality, alpha).model_index.tolist() == expected  # the alias
    capped = solve(cost, quality, 0.5, [10, None, 12, None], method="per_query")
    assert (np.bincount(capped.model_index, minlength=4)[[0, 2]] <= [10, 12]).all()
    empty = solve(np.zeros((0, 2)), np.zeros((0, 2)), 0.5, method="per_query")
    assert empty.method == "per-query" and empty.status is SolveStatus.OPTIMAL


def test_per_query_says_whether_alpha_is_reachable_at_all() -> None:
    # The rule leaves the easy query on its cheapest model at α; the batch needs it higher to carry the hard one.
    cost = np.array([[1.0, 10.0], [1.0, 10.0]])
    quality = np.array([[0.5, 0.6], [0.8, 1.0]])
    rule = solve(cost, quality, 0.75, method="per_query")
    assert rule.status is SolveStatus.QUALITY_UNREACHABLE and math.isnan(rule.gap)
    assert "unreachable by the per-query rule" in rule.message and "method='exact'" in rule.message
    assert solve(cost, quality, 0.75).status is SolveStatus.OPTIMAL
    beyond = solve(cost, quality, 0.85, method="per_query")
    assert beyond.status is SolveStatus.QUALITY_UNREACHABLE
    assert "no assignment reaches it" in beyond.message and "reaches 0.8" in beyond.message


# --- auto ------------------------------------------------------------------------------------------------------


def test_auto_chooses_by_batch_size(monkeypatch: pytest.MonkeyPatch) -> None:
    from eccos_core.optimize import methods

    rng = np.random.default_rng(4)
    cost = rng.uniform(20, 2000, size=(400, 1)) * np.array([[0.1, 0.3, 0.9]]) * 1e-6
    quality = np.clip(rng.normal([0.5, 0.65, 0.8], 0.1, size=(400, 3)), 0, 1)
    small = solve(cost, quality, 0.66)
    assert small.method == "exact" and small.status is SolveStatus.OPTIMAL
    monkeypatch.setattr(methods, "AUTO_EXACT_MAX_PAIRS", 1000)  # 400 × 3 pairs is now "large"
    large = solve(cost, quality, 0.66)
    assert large.method == "lagrangian"
    assert large.expected_quality >= 0.66 * (1 - TOL)
    assert large.expected_cost <= small.expected_cost + large.gap + 1e-15
    assert methods.choose_method(300, 3) == "exact" and methods.choose_method(400, 3) == "lagrangian"


# --- caps: the fast path when they cannot bind, and caps priced in the dual ---------------------------------------


def test_caps_that_cannot_bind_give_the_uncapped_optimum(caplog: pytest.LogCaptureFixture) -> None:
    rng = np.random.default_rng(8)
    for trial in range(6):
        n, m = 300, 5
        cost = rng.uniform(20, 2000, size=(n, 1)) * rng.uniform(0.1, 1, size=(1, m)) * 1e-6
        quality = rng.uniform(size=(n, m))
        alpha = float(quality.mean() + 0.1)
        free = solve(cost, quality, alpha, method="exact")
        load = np.bincount(free.model_index, minlength=m)
        capacity = [int(x) + 2 for x in load]  # every cap below N, so each could bind in principle
        with caplog.at_level("DEBUG", logger="eccos_core.optimize.exact"):
            capped = solve(cost, quality, alpha, capacity, method="exact")
        assert "the caps cannot bind" in caplog.text, trial
        caplog.clear()
        assert capped.status is SolveStatus.OPTIMAL
        assert capped.expected_cost == pytest.approx(free.expected_cost, rel=1e-12)
        assert (np.bincount(capped.model_index, minlength=m) <= capacity).all()


def test_binding_caps_priced_in_the_dual_match_the_ilp() -> None:
    from eccos_core.optimize.dual import scaled_costs
    from eccos_core.optimize.highs import run_highs
    from eccos_core.optimize.lp import lp_relaxation

    rng = np.random.default_rng(12)
    for trial in range(12):
        n, m = int(rng.integers(20, 120)), int(rng.integers(2, 6))
        cost = rng.uniform(20, 2000, size=(n, 1)) * rng.uniform(0.1, 1, size=(1, m)) * 1e-6
        quality = rng.uniform(size=(n, m)).round(2)
        alpha = float(np.quantile(quality.max(axis=1), 0.3))
        free = solve(cost, quality, alpha, method="exact")
        load = np.bincount(free.model_index, minlength=m)
        capacity = [None] * m
        busiest = int(load.argmax())
        capacity[busiest] = int(load[busiest] * 0.6)  # surely binds
        problem = validate_problem(cost, quality, alpha, capacity)
        exact = solve(cost, quality, alpha, capacity, method="exact")
        ilp = solve(cost, quality, alpha, capacity, method="ilp")
        assert exact.status is SolveStatus.OPTIMAL and ilp.status is SolveStatus.OPTIMAL, trial
        assert exact.expected_cost == pytest.approx(ilp.expected_cost, rel=1e-9), trial
        # The LP bound with μ on the binding cap equals the whole LP solved by HiGHS.
        costs, _ = scaled_costs(problem)
        lp = lp_relaxation(problem, costs, problem.quality_floor(), deadline=math.inf)
        assert lp is not None and lp.exact and lp.dual.mu[busiest] > 0
        pairs = np.nonzero(problem.allowed)
        whole = run_highs(
            col_cost=costs[pairs],
            col_query=pairs[0],
            col_model=pairs[1],
            col_quality=problem.quality[pairs],
            n_queries=n,
            need=problem.quality_floor(),
            caps={busiest: float(capacity[busiest])},
            integer=False,
            time_limit=60.0,
        )
        assert lp.dual.bound == pytest.approx(whole.objective, rel=1e-9, abs=1e-12), trial


def test_lagrangian_gap_is_honest_with_binding_caps() -> None:
    rng = np.random.default_rng(13)
    n, m = 2000, 6
    cost = rng.uniform(20, 2000, size=(n, 1)) * np.sort(rng.uniform(0.1, 1, size=m))[None, :] * 1e-6
    quality = np.clip(rng.normal(np.linspace(0.4, 0.85, m), 0.15, size=(n, m)), 0, 1)
    capacity = [n // 5] * m
    exact = solve(cost, quality, 0.65, capacity, method="exact", time_limit=60)
    lag = solve(cost, quality, 0.65, capacity, method="lagrangian")
    assert exact.status is SolveStatus.OPTIMAL
    assert lag.expected_quality >= 0.65 * (1 - TOL)
    assert (np.bincount(lag.model_index, minlength=m) <= capacity).all()
    assert exact.expected_cost - 1e-15 <= lag.expected_cost <= exact.expected_cost + lag.gap + 1e-15
    assert lag.gap <= 1e-3 * lag.expected_cost


def test_large_batch_code_paths_agree_with_the_ilp(monkeypatch: pytest.MonkeyPatch) -> None:
    # Shrink the thresholds above which the large-batch paths run (bisection before hulls, sampled multipliers,
    # Newton balancing, working sets, rough multipliers, the narrowed fill and local search), so that small
    # instances take them and the ILP can check the answers.
    from eccos_core.optimize import dual, lp, primal

    for module in (dual, lp, primal):
        monkeypatch.setattr(module, "HULL_ROWS", 40, raising=False)
    monkeypatch.setattr(lp, "BASE_ROWS", 30)
    monkeypatch.setattr(lp, "TARGET", 12)
    monkeypatch.setattr(lp, "APPROX_ROWS", 60)
    monkeypatch.setattr(primal, "_IMPROVE_ROWS", 16)
    monkeypatch.setattr(primal, "_FILL_SPARE", 8)
    rng = np.random.default_rng(30)
    for trial in range(8):
        n, m = int(rng.integers(150, 300)), int(rng.integers(2, 6))
        cost = rng.uniform(20, 2000, size=(n, 1)) * rng.uniform(0.1, 1, size=(1, m)) * 1e-6
        quality = rng.uniform(size=(n, m)).round(2)
        capacity = [int(rng.integers(n // (2 * m), n)) for _ in range(m - 1)] + [None] if trial % 2 else None
        alpha = float(rng.uniform(quality.mean(), quality.max(axis=1).mean()))
        exact = solve(cost, quality, alpha, capacity, method="exact")
        ilp = solve(cost, quality, alpha, capacity, method="ilp")
        lag = solve(cost, quality, alpha, capacity, method="lagrangian")
        assert exact.status is ilp.status, trial
        assert exact.expected_cost == pytest.approx(ilp.expected_cost, rel=1e-9), trial
        assert lag.expected_quality >= min(alpha, ilp.expected_quality) * (1 - TOL), trial
        assert ilp.expected_cost - 1e-12 <= lag.expected_cost <= ilp.expected_cost + lag.gap + 1e-12, trial


# --- module structure ------------------------------------------------------------------------------------------

OPTIMIZE = Path(__file__).resolve().parents[1] / "eccos_core" / "optimize"
ISOLATE = """
import sys, types
root = {root!r}
for name, path in (("eccos_core", root), ("eccos_core.optimize", root + "/optimize"))[:{depth}]:
    package = types.ModuleType(name)  # stands in for the package, whose __init__ would import more first
    package.__path__ = [path]
    sys.modules[name] = package
"""


def _isolated(code: str, depth: int) -> subprocess.CompletedProcess[str]:
    """Runs ``code`` in a fresh interpreter with eccos_core (depth 1) or eccos_core.optimize too (2) stubbed."""
    prelude = ISOLATE.format(root=str(OPTIMIZE.parent), depth=depth)
    return subprocess.run(
        [sys.executable, "-c", prelude + code], capture_output=True, text=True, timeout=120, check=False
    )


MODULES = ["assignment", "dual", "highs", "lp", "primal", "restricted", "exact", "lagrangian", "ilp", "per_query"]


@pytest.mark.parametrize("module", [*MODULES, "methods"])
def test_every_optimize_module_imports_on_its_own(module: str) -> None:
    result = _isolated(f"import eccos_core.optimize.{module}\n", depth=2)
    assert result.returncode == 0, result.stderr


def test_the_methods_do_not_import_each_other() -> None:
    # No import circle: the shared pieces live in dual/lp/primal/restricted/highs, and a method that cannot
    # build an assignment returns None for methods.py to fall back, so exact, lagrangian and ilp need none of
    # each other, not even lazily inside a function.
    methods = {"exact", "lagrangian", "ilp"}
    for name in methods:
        tree = ast.parse((OPTIMIZE / f"{name}.py").read_text())
        imported = {
            node.module.rsplit(".", 1)[-1]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("eccos_core.optimize.")
        }
        imported |= {
            alias.name.rsplit(".", 1)[-1]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
            if alias.name.startswith("eccos_core.optimize.")
        }
        assert not imported & (methods - {name}), (name, imported)


def test_import_loads_no_solver_libraries() -> None:
    heavy = ["highspy", "pulp", "scipy.sparse.csgraph", "scipy.sparse"]
    check = f"import eccos_core.optimize\nprint([m for m in {heavy!r} if m in sys.modules])\n"
    isolated = _isolated(check, depth=1)
    assert isolated.returncode == 0, isolated.stderr
    assert isolated.stdout.strip() == "[]"
    # A solve loads HiGHS only when a method needs it: the uncapped exact method needs no LP solver at all.
    solving = check.replace(
        "print(",
        "import numpy as np\neccos_core.optimize.solve(np.array([[1.0, 2.0]] * 3), "
        "np.array([[0.5, 0.9]] * 3), 0.7)\nprint(",
    )
    result = _isolated(solving, depth=1)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
