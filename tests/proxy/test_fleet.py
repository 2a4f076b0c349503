"""The per-call price over a shared store (:mod:`eccos_core.policies.stores`): replicas sharing one quality price
and the caps through Redis.

The calls are the bundled logs' queries with a real fitted predictor's out-of-fold predictions; "replicas" are
:class:`StreamPrice` objects over one store, routed concurrently (async), or routers over a sync Redis client.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import numpy as np
import pytest

from eccos_core.calibration import QualityGuard
from eccos_core.dual import DualPrices, StreamPrice, check_caps, quality_key
from eccos_core.errors import InputError
from eccos_core.policies.stores import FailoverStore, MemoryStore, RedisStore
from eccos_core.router import training_problem
from eccos_core.targets import Targets

CALLS = 2000


@pytest.fixture(scope="module")
def problem(predictor: Any, small_logs: Any, bundled_pool_specs: dict[str, Any]) -> dict[str, Any]:
    pool = [bundled_pool_specs[name] for name in predictor.models]
    oof, scores, cost = training_problem(pool, small_logs, predictor.out_of_fold)
    dual = DualPrices.fit(oof.quality, scores, cost)
    alpha = round((dual.curve.success[0] + dual.curve.max_success) / 2, 3)  # inside what the logs reached
    rows = np.random.default_rng(0).integers(0, len(cost), CALLS)
    return {
        "names": [m.name for m in pool],
        "quality": oof.quality,
        "cost": cost,
        "allowed": ~np.isnan(scores),
        "dual": dual,
        "alpha": alpha,
        "target": Targets(QualityGuard.identity(), curve=dual.curve).per_call(alpha)[0],
        "rows": rows,
    }


def _replicas(problem: dict[str, Any], store: Any, count: int, caps: list[float | None] | None = None) -> list[Any]:
    dual = problem["dual"]
    key = f"test:{quality_key(problem['alpha'])}"
    alpha, target = problem["alpha"], problem["target"]
    return [StreamPrice("quality", alpha, target, dual.curve, store, stream=key, caps=caps) for _ in range(count)]


async def _run(problem: dict[str, Any], replicas: list[Any], rows: np.ndarray, concurrency: int = 16) -> list[Any]:
    """Route ``rows`` spread round-robin over ``replicas``, ``concurrency`` calls in flight."""
    gate = asyncio.Semaphore(concurrency)

    async def one(n: int, i: int) -> Any:
        async with gate:
            replica = replicas[n % len(replicas)]
            return await replica.aroute(problem["quality"][i], problem["cost"][i], problem["allowed"][i])

    return list(await asyncio.gather(*(one(n, int(i)) for n, i in enumerate(rows))))


def _mean_quality(problem: dict[str, Any], rows: np.ndarray, decisions: list[Any]) -> float:
    return float(np.mean([problem["quality"][i, d.model] for i, d in zip(rows, decisions, strict=True)]))


async def test_two_replicas_sharing_redis_keep_the_fleet_mean_and_lose_no_update(problem, redis_server) -> None:
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_server.url)
    store = RedisStore(client, prefix="t1")
    replicas = _replicas(problem, store, 2)
    decisions = await _run(problem, replicas, problem["rows"])
    totals = await replicas[0].atotals()
    await client.aclose()
    assert len(decisions) == CALLS and totals["calls"] == CALLS  # every concurrent commit landed
    fleet = _mean_quality(problem, problem["rows"], decisions)
    assert totals["quality"] / CALLS == pytest.approx(fleet, abs=1e-6)
    assert fleet >= problem["target"] - 0.01
    assert all(d.shared for d in decisions)


async def test_caps_hold_fleet_wide(problem, redis_server) -> None:
    import redis.asyncio as aioredis

    names = problem["names"]
    unbounded = await _run(problem, _replicas(problem, MemoryStore(), 1), problem["rows"][:500])
    favourite = int(np.bincount([d.model for d in unbounded], minlength=len(names)).argmax())
    share = 0.15
    caps: list[float | None] = [None] * len(names)
    caps[favourite] = share
    client = aioredis.from_url(redis_server.url)
    replicas = _replicas(problem, RedisStore(client, prefix="t2"), 2, caps)
    decisions = await _run(problem, replicas, problem["rows"])
    await client.aclose()
    picks = np.array([d.model for d in decisions])
    uncapped = np.array([d.model for d in unbounded])
    assert (uncapped == favourite).mean() > 2 * share  # so the cap binds
    window = 1024  # the decayed window's weights: a running check of the fleet-wide share
    weights = (1 - 1 / window) ** np.arange(len(picks))[::-1]
    assert (weights * (picks == favourite)).sum() <= share * weights.sum() + 1.0 + 1e-6
    assert (picks == favourite).mean() <= share + 0.02


async def test_replicas_without_a_shared_store_price_alone(problem) -> None:
    replicas = [_replicas(problem, MemoryStore(), 1)[0] for _ in range(2)]
    decisions = await _run(problem, replicas, problem["rows"][:400])
    assert not any(d.shared for d in decisions)
    assert [(await r.atotals())["calls"] for r in replicas] == [200, 200]


async def test_a_redis_that_dies_turns_the_price_local_without_losing_a_call(problem, redis_server, caplog) -> None:
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_server.url, socket_timeout=1.0, socket_connect_timeout=1.0)
    store = FailoverStore(RedisStore(client, prefix="t3"), retry_after=60.0)
    (replica,) = _replicas(problem, store, 1)
    rows = problem["rows"][:200]
    first = await _run(problem, [replica], rows[:100], concurrency=4)
    redis_server.stop()
    with caplog.at_level(logging.WARNING, logger="eccos.fleet"):
        second = await _run(problem, [replica], rows[100:], concurrency=4)
    await client.aclose()
    assert len(first) + len(second) == 200
    assert all(d.shared for d in first) and not any(d.shared for d in second)
    assert sum("Redis failed" in r.getMessage() for r in caplog.records) == 1


def test_caps_are_checked() -> None:
    with pytest.raises(InputError, match="does not know"):
        check_caps({"gpt-9": 0.1}, ["a", "b"])
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        check_caps({"a": 1.5}, ["a", "b"])
    with pytest.raises(InputError, match="no room"):
        check_caps({"a": 0.3, "b": 0.3}, ["a", "b"])
    assert check_caps({"a": 0.3}, ["a", "b"]) == [0.3, None]


async def test_the_shared_store_is_bounded_whatever_goals_clients_send(problem, redis_server) -> None:
    """Each min_quality value is a stream of 3 keys; past max_streams the least recently used are deleted."""
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_server.url)
    store = RedisStore(client, prefix="t4", max_streams=50)
    dual = problem["dual"]
    for k in range(300):  # a client sending a fresh min_quality per call
        alpha = round(0.3 + k * 1e-4, 6)
        price = StreamPrice("quality", alpha, problem["target"], dual.curve, store, stream=f"t:{quality_key(alpha)}")
        await price.aroute(problem["quality"][k], problem["cost"][k], problem["allowed"][k])
    keys = await client.dbsize()
    ttl = await client.ttl(f"t4:t:{quality_key(round(0.3 + 299e-4, 6))}:sums")
    await client.aclose()
    assert keys <= 3 * 50 + 1 and keys >= 3 * 49
    assert 0 < ttl <= store.ttl_s


def test_routers_in_two_processes_share_one_price_through_a_sync_redis(problem, redis_server) -> None:
    """The sync face: two routers' per-call prices (as two worker processes would hold) over one Redis."""
    import redis

    client = redis.Redis.from_url(redis_server.url)
    dual = problem["dual"]
    shared = [DualPrices(dual.curve, store=RedisStore(client, prefix="t5"), namespace="n:") for _ in range(2)]
    alone = DualPrices(dual.curve)
    rows = problem["rows"][:400]
    alpha, target = problem["alpha"], problem["target"]
    picks = [
        shared[n % 2].quality_stream(alpha, target).route(problem["quality"][i], problem["cost"][i],
                                                           problem["allowed"][i])
        for n, i in enumerate(rows)
    ]  # fmt: skip
    solo = alone.new_quality_stream(alpha, target).replay(
        problem["quality"][rows], problem["cost"][rows], problem["allowed"][rows]
    )
    totals = shared[0].quality_stream(alpha, target).totals()
    shared[1].reset(alpha)
    after = shared[0].quality_stream(alpha, target).totals()
    client.close()

    assert all(d.shared for d in picks) and totals["calls"] == len(rows)
    assert [d.model for d in picks] == solo.tolist()  # one stream, as if one process had routed every call
    assert after["calls"] == 0  # a reset is the fleet's
    with pytest.raises(InputError, match=r"needs a redis\.asyncio\.Redis"):
        asyncio.run(RedisStore(client).aread("s", 3, 2))
