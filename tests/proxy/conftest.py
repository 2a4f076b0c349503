"""Fixtures of the LiteLLM Proxy tests (helpers in ``proxy_support``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from proxy_support import RedisServer, start_redis


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh ``redis-server`` on 127.0.0.1 for one test."""
    server = start_redis(tmp_path)
    try:
        yield server
    finally:
        server.stop()
