"""Two LiteLLM Proxy replicas with the eccos plugin, sharing one quality price and the caps through Redis.

Everything is real and on 127.0.0.1: ``redis-server``, two ``litellm --config`` processes (from the proxy
environment, with LiteLLM's proxy extra) and the loopback provider behind them. 2,000 held-out queries of the
bundled logs go to both replicas, 16 in flight; one replica is killed part-way.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from proxy_support import MASTER_KEY, start_proxies, write_config

from eccos_core.bundled import bundled_logs, bundled_models
from eccos_core.logs import split_logs
from eccos_core.proxy import ECCOSRoutingPlugin

ALPHA = 0.6
REQUESTS = 2000
CONCURRENCY = 16
KILL_AFTER = 800
CAPPED, CAP = "llama-3.3-nemotron-super-49b-v1", 0.1

pytestmark = pytest.mark.slow


def _stream(count: int) -> tuple[list[str], list[dict[str, float]]]:
    """``count`` held-out queries of the bundled logs (repeating the split), with their logged scores."""
    _, test = split_logs(bundled_logs(), test_frac=0.2, seed=0)
    names = [spec.name for spec in bundled_models()]
    scores = test.scores(names)
    rows = [i % len(test) for i in range(count)]
    outcomes = [{name: float(scores[r, j]) for j, name in enumerate(names)} for r in rows]
    return [test.queries[r] for r in rows], outcomes


async def _send(client: httpx.AsyncClient, url: str, text: str) -> dict[str, Any]:
    body = {"model": "eccos", "messages": [{"role": "user", "content": text}], "metadata": {"min_quality": ALPHA}}
    try:
        response = await client.post(url + "/v1/chat/completions", json=body)
    except httpx.HTTPError as error:  # the client sees it fail
        return {"ok": False, "error": type(error).__name__, "url": url}
    if response.status_code != 200:
        return {"ok": False, "error": f"HTTP {response.status_code}", "url": url}
    headers = {k[len("x-eccos-") :]: v for k, v in response.headers.items() if k.startswith("x-eccos-")}
    content = response.json()["choices"][0]["message"]["content"]
    return {"ok": True, "url": url, "headers": headers, "content": content}


async def _drive(proxies: list[Any], queries: list[str]) -> list[dict[str, Any]]:
    """Send every query; replica 2 is killed after ``KILL_AFTER`` answers, later calls go to the survivor."""
    gate = asyncio.Semaphore(CONCURRENCY)
    done = 0
    killed = asyncio.Event()

    async def one(i: int, text: str) -> dict[str, Any]:
        nonlocal done
        async with gate:
            target = proxies[0] if killed.is_set() else proxies[i % 2]
            result = await _send(client, target.url, text)
            result["i"], result["after_kill"] = i, killed.is_set()
            done += 1
            if done == KILL_AFTER and not killed.is_set():
                proxies[1].kill()
                killed.set()
            return result

    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    async with httpx.AsyncClient(headers=headers, timeout=120.0) as client:
        return list(await asyncio.gather(*(one(i, q) for i, q in enumerate(queries))))


async def test_two_replicas_keep_one_price_and_lose_nothing(tmp_path, loopback_server, redis_server, api_key) -> None:
    config = write_config(tmp_path, loopback_server.api_base, api_key, redis_port=redis_server.port)
    env = {"ECCOS_MIN_QUALITY": str(ALPHA), "ECCOS_CAPS": json.dumps({CAPPED: CAP})}
    proxies = start_proxies(config, 2, env)
    try:
        queries, outcomes = _stream(REQUESTS)
        results = await _drive(proxies, queries)
    finally:
        for proxy in proxies:
            proxy.stop()
    answered = [r for r in results if r["ok"]]
    failed = [r for r in results if not r["ok"]]
    # nothing lost: every request got an answer or an error the client saw, and only the killed replica failed
    assert len(answered) + len(failed) == REQUESTS
    assert all(r["url"] == proxies[1].url for r in failed), failed[:3]
    assert len(failed) <= CONCURRENCY
    for r in answered:  # each answer came from the deployment the headers name
        assert r["content"] == f"answer from {r['headers']['model']}"
        assert r["headers"]["shared"] == "True"
    assert len(answered) >= REQUESTS - CONCURRENCY

    plugin = ECCOSRoutingPlugin(None, min_quality=ALPHA, redis=redis_server.url, warm=False)
    totals = await plugin.fleet_totals(ALPHA)
    assert totals["calls"] >= len(answered)  # every routed call was counted once by the fleet
    assert totals["calls"] <= len(answered) + len(failed)
    # the fleet kept min_quality: in predicted quality (Redis's totals and the headers), and in the logged
    # outcomes of the queries it routed (within 1 point, the tolerance of every α check here)
    fleet_quality = sum(float(r["headers"]["p-success"]) for r in answered) / len(answered)
    assert fleet_quality >= ALPHA - 0.01
    assert totals["quality"] / totals["calls"] >= ALPHA - 0.01
    logged = [outcomes[r["i"]][r["headers"]["model"]] for r in answered]
    realized = sum(v for v in logged if v == v) / sum(v == v for v in logged)  # v == v: not NaN
    assert realized >= ALPHA - 0.01
    # the cap held fleet-wide (a share of the calls, plus the one call its window allows)
    capped = sum(r["headers"]["model"] == CAPPED for r in answered)
    assert capped <= CAP * len(answered) + 2
    # the survivor kept the fleet's price: its calls after the kill still keep min_quality
    after = [r for r in answered if r["after_kill"]]
    assert len(after) >= REQUESTS - KILL_AFTER - CONCURRENCY
    assert sum(float(r["headers"]["p-success"]) for r in after) / len(after) >= ALPHA - 0.02


def test_the_example_config_starts_a_proxy_with_the_plugin(tmp_path, redis_server) -> None:
    """``examples/proxy/config.yaml`` as documented: the plugin loads, joins Redis, and the proxy is healthy."""
    from proxy_support import ROOT

    config = tmp_path / "config.yaml"
    config.write_text((ROOT / "examples" / "proxy" / "config.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    env = {
        "REDIS_HOST": "127.0.0.1",
        "REDIS_PORT": str(redis_server.port),
        "NVIDIA_NIM_API_KEY": "nvapi-not-used",
        "ECCOS_MIN_QUALITY": "0.6",
    }
    (proxy,) = start_proxies(config, 1, env)
    try:
        log = proxy.log.read_text(errors="replace")
    finally:
        proxy.stop()
    assert f"quality price shared through Redis at redis://127.0.0.1:{redis_server.port}" in log
    assert "nvapi-not-used" not in log
