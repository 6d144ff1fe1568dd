"""A real ``melo-server run`` on a free loopback port, for live tests of the SDK, CLI and TUI.

Use ``start_server``/``stop_server`` directly, or make a fixture in any tests/*/conftest.py::

    live_server = live_server_fixture(scope="session")

The server runs as its own process with a hermetic environment: only the MELO_* variables given here
reach it, so a developer's settings never leak into a test.
"""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.openapi_truth import assert_server_declared

READY_TIMEOUT_S = 30.0
POLL_EVERY_S = 0.05
STOP_TIMEOUT_S = 10.0

# Fast password hashing and generous limits: tests log in far more often than people do.
TEST_ENV: dict[str, str] = {
    "MELO_ARGON2_TIME_COST": "2",
    "MELO_ARGON2_MEMORY_KIB": "19456",
    "MELO_RATE_LOGIN_IP": "1000/minute",
    "MELO_RATE_LOGIN_ACCOUNT": "1000/minute",
    "MELO_RATE_REGISTER_IP": "1000/minute",
    "MELO_RATE_USER": "100000/minute",
    "MELO_JWT_KEY_PROPAGATION_S": "0.5",  # a rotated signing key is used half a second after it is published
}


@dataclass
class LiveServer:
    url: str
    port: int
    data_dir: Path
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def closed_port_url() -> str:
    """A loopback URL nothing listens on (the port was free a moment ago)."""
    return f"http://127.0.0.1:{free_port()}"


REPO_ROOT = Path(__file__).resolve().parents[1]


def server_command(port: int, preload: str | None = None) -> list[str]:
    """``melo-server run``; with ``preload``, that module is imported into the server process first (a test's
    fault injection, see tests/faults.py)."""
    script = Path(sys.executable).with_name("melo-server")
    if script.exists() and preload is None:
        return [str(script), "run", "--port", str(port)]
    imports = f"import {preload}; " if preload else ""
    return [sys.executable, "-c", f"{imports}from server.cli import main; main()", "run", "--port", str(port)]


def _server_env(data_dir: Path, extra: Mapping[str, str], minimal: bool, preload: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MELO_")}
    if preload is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    env["MELO_DATA_DIR"] = str(data_dir)
    if not minimal:
        env.update(TEST_ENV)
        env["MELO_LOG_LEVEL"] = "warning"
    env.update(extra)
    return env


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=1.0) as http:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"melo-server exited with code {proc.returncode} before it was ready:\n"
                    + log_path.read_text(encoding="utf-8", errors="replace")
                )
            with contextlib.suppress(httpx.TransportError):
                if http.get(url + "/healthz").status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"melo-server not ready after {timeout:.0f} s:\n"
                    + log_path.read_text(encoding="utf-8", errors="replace")
                )
            time.sleep(POLL_EVERY_S)  # readiness poll with a deadline, not synchronisation


def start_server(
    data_dir: Path,
    env: Mapping[str, str] | None = None,
    *,
    minimal: bool = False,
    timeout: float = READY_TIMEOUT_S,
    attempts: int = 3,
    preload: str | None = None,
) -> LiveServer:
    """Start ``melo-server run`` and wait until /healthz answers.

    ``minimal`` passes no settings but MELO_DATA_DIR (the zero-configuration start). ``preload`` names a
    module the server process imports first (tests/faults.py). A port taken by someone else between
    choosing and binding it is retried with another port.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    last_error: RuntimeError | None = None
    for attempt in range(attempts):
        port = free_port()
        log_path = data_dir / f"server-{port}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                server_command(port, preload),
                env=_server_env(data_dir, env or {}, minimal, preload),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        server = LiveServer(f"http://127.0.0.1:{port}", port, data_dir, proc, log_path)
        try:
            _wait_ready(proc, server.url, log_path, timeout)
            return server
        except RuntimeError as exc:
            stop_server(server)
            last_error = exc
            if "address already in use" not in server.log().lower() or attempt == attempts - 1:
                raise
    assert last_error is not None
    raise last_error


def stop_server(server: LiveServer) -> None:
    """SIGTERM, then SIGKILL if it has not exited in time."""
    proc = server.process
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=STOP_TIMEOUT_S)


@contextlib.contextmanager
def running_server(
    data_dir: Path, env: Mapping[str, str] | None = None, **kwargs: Any
) -> Iterator[LiveServer]:
    server = start_server(data_dir, env, **kwargs)
    try:
        yield server
        if server.process.poll() is None:  # still up: every status it gave is in its OpenAPI document
            assert_server_declared(server.url)
    finally:
        stop_server(server)


def create_admin(server: LiveServer, username: str, password: str) -> None:
    """``melo-server create-admin`` against a running live server's data dir (password on stdin)."""
    script = Path(sys.executable).with_name("melo-server")
    cmd = [str(script)] if script.exists() else [sys.executable, "-c", "from server.cli import main; main()"]
    env = _server_env(server.data_dir, {}, minimal=False)
    result = subprocess.run(
        [*cmd, "create-admin", username, "--password-stdin"],
        input=password + "\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"create-admin failed ({result.returncode}): {result.stderr}")


def live_server_fixture(
    scope: str = "session", env: Mapping[str, str] | None = None, name: str = "live-server"
) -> Callable[..., Iterator[LiveServer]]:
    """A pytest fixture running one live server for ``scope``; assign it in a conftest.py."""

    @pytest.fixture(scope=scope)  # type: ignore[call-overload]
    def _live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
        with running_server(tmp_path_factory.mktemp(name), env) as server:
            yield server

    return _live_server  # type: ignore[no-any-return]
