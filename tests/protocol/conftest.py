"""SDK tests: a live server per run (a ``melo-server`` process), the app in-process for tests that also read
the server's state (``live``, ``live_backends``), and a credential store in the test's own home."""

import itertools
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from melo_protocol.client import CredentialStore, MeloClient
from tests.kit.livekit import live, live_backends  # noqa: F401  (the fixtures, re-exported)
from tests.live import LiveServer, live_server_fixture

live_server = live_server_fixture(scope="session", name="sdk-live")
PASSWORD = "correct horse battery"
_names = itertools.count(1)


def new_username(prefix: str = "sdk") -> str:
    return f"{prefix}{next(_names)}_{secrets.token_hex(3)}"


class CountingTransport(httpx.AsyncBaseTransport):
    """Passes every request to the real network and counts them by path (no faking of replies)."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.paths: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()

    def count(self, path: str) -> int:
        return self.paths.count(path)


@pytest.fixture
def store(tmp_path: Path) -> CredentialStore:
    return CredentialStore(tmp_path / "sdk-home", "default", warn=lambda _msg: None)


@pytest.fixture
async def client(live_server: LiveServer, store: CredentialStore) -> AsyncIterator[MeloClient]:
    async with MeloClient(live_server.url, store=store) as c:
        yield c
