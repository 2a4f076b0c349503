"""Helpers of the LiteLLM Proxy tests and benchmark: a real ``redis-server`` and LiteLLM Proxy processes.

``redis-server`` comes from the Debian package (``.ci/run`` installs it). The proxies run from the proxy
environment, ``.venv-proxy`` at the repository root (``.ci/run`` makes it: a virtualenv over this one with
``pip install -e ".[proxy]"``, which resolves LiteLLM's proxy extra to the LiteLLM release whose extra the
registry serves), or the one ``$ECCOS_PROXY_PYTHON`` names. Tests that need either skip, saying why, when it is
missing; CI always has both.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MASTER_KEY = "sk-proxy-master-5d1e0c7b9a"
"""The proxies' master key (from the environment, as the example config reads it)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], bool], timeout: float, what: str, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} before it was ready")
        with contextlib.suppress(OSError):
            if check():
                return
        time.sleep(0.2)
    raise TimeoutError(f"{what} not ready after {timeout:.0f} s")


@dataclass
class RedisServer:
    port: int
    process: subprocess.Popen

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=5)
        if self.process.poll() is None:
            self.process.kill()


def _ping(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(16).startswith(b"+PONG")


def start_redis(directory: Path) -> RedisServer:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install -y redis-server; .ci/run does)")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=directory,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = RedisServer(port, process)
    try:
        wait_for(lambda: _ping(port), 20, "redis-server", process)
    except Exception:
        server.stop()
        raise
    return server


def proxy_python() -> Path:
    """The proxy environment's interpreter; skips the test when there is none."""
    named = os.environ.get("ECCOS_PROXY_PYTHON")
    path = Path(named) if named else ROOT / ".venv-proxy" / "bin" / "python"
    if not path.exists():
        pytest.skip(f"no LiteLLM Proxy environment at {path} (.ci/run makes .venv-proxy)")
    return path


def deployments(api_base: str, api_key: str, specs: Iterable[Any], group: str = "eccos") -> list[dict[str, Any]]:
    """LiteLLM ``model_list`` entries: each spec as ``openai/<name>`` at ``api_base``, priced as the spec."""
    return [
        {
            "model_name": group,
            "litellm_params": {
                "model": f"openai/{spec.name}",
                "api_base": api_base,
                "api_key": api_key,
                "input_cost_per_token": spec.input_cost_per_token,
                "output_cost_per_token": spec.output_cost_per_token,
            },
        }
        for spec in specs
    ]


def write_config(
    directory: Path,
    api_base: str,
    api_key: str,
    *,
    redis_port: int | None,
    plugin: bool = True,
    name: str = "config.yaml",
) -> Path:
    """A proxy config: the bundled pool as one model group ``eccos`` served by the loopback provider."""
    from eccos_core.bundled import bundled_models

    router_settings: dict[str, Any] = {"num_retries": 0}
    config: dict[str, Any] = {
        "model_list": deployments(api_base, api_key, bundled_models()),
        "router_settings": router_settings,
        "general_settings": {"master_key": "os.environ/LITELLM_MASTER_KEY"},
        "litellm_settings": {"num_retries": 0},
    }
    if plugin:
        router_settings["plugins"] = ["eccos_core.proxy.plugin"]
        config["litellm_settings"]["callbacks"] = ["eccos_core.proxy.plugin"]
    if redis_port is not None:
        router_settings.update({"redis_host": "127.0.0.1", "redis_port": redis_port})
    path = directory / name
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


@dataclass
class Proxy:
    port: int
    process: subprocess.Popen
    log: Path
    started_in: float

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


def _alive(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
        sock.sendall(b"GET /health/liveliness HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return b" 200 " in sock.recv(64)


def start_proxies(config: Path, count: int, env: dict[str, str], timeout: float = 240.0) -> list[Proxy]:
    """``count`` ``litellm --config`` processes (started together, each in its own process group)."""
    python = proxy_python()
    base = {
        **os.environ,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "LITELLM_MASTER_KEY": MASTER_KEY,
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": "1",
        **env,
    }
    script = "import sys; from litellm.proxy.proxy_cli import run_server; sys.exit(run_server())"
    proxies = []
    started = time.monotonic()
    for _ in range(count):
        port = free_port()
        log = config.parent / f"proxy-{port}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [str(python), "-c", script, "--config", str(config), "--host", "127.0.0.1", "--port", str(port)],
                cwd=config.parent,
                env=base,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        proxies.append(Proxy(port, process, log, 0.0))
    try:
        for proxy in proxies:
            wait_for(lambda p=proxy: _alive(p.port), timeout, f"LiteLLM Proxy on {proxy.port}", proxy.process)
            proxy.started_in = time.monotonic() - started
    except Exception as error:
        for proxy in proxies:
            proxy.stop()
        tail = proxies[0].log.read_text(errors="replace")[-3000:] if proxies else ""
        raise RuntimeError(f"{error}\n--- proxy log ---\n{tail}") from error
    return proxies
