"""The control socket of `melo listen` (melo_cli.control): private to its user, and unreadable or unknown
requests get a clear error line, never a crash of the listener. The real round trips (send, react, read,
history through a listener) are in test_listen.py against a live server."""

import asyncio
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from melo_cli import control
from melo_cli.errors import CliError
from melo_protocol.client import CredentialStore


async def _ask(path: Path, raw: bytes) -> dict[str, Any]:
    reader, writer = await asyncio.open_unix_connection(path)
    writer.write(raw)
    await writer.drain()
    async with asyncio.timeout(10):
        line = await reader.readuntil(b"\n")
    writer.close()
    return json.loads(line)


@pytest.fixture
def runtime_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private XDG_RUNTIME_DIR with a short path, as the real one is (/run/user/UID)."""
    with tempfile.TemporaryDirectory(prefix="mr") as run:  # mode 0700
        monkeypatch.setenv("XDG_RUNTIME_DIR", run)
        yield Path(run)


async def test_socket_is_private_and_bad_requests_get_error_lines(runtime_dir: Path, tmp_path: Path) -> None:
    store = CredentialStore(tmp_path / "home", "bot")
    messenger: Any = object()  # none of these requests reaches the Messenger
    async with control.serving(messenger, store) as path:
        assert path is not None and path == control.socket_path(store)
        assert len(bytes(path)) < 108  # fits a Unix socket address
        assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        for raw, needle in [
            (b"not json\n", "could not read"),
            (json.dumps({"v": 1, "action": "format_disk", "params": {}}).encode() + b"\n", "does not run"),
            (json.dumps({"v": 1, "action": "send", "params": {"nope": 1}}).encode() + b"\n", "bad parameters"),
            (json.dumps({"v": 99, "action": "send", "params": {}}).encode() + b"\n", "could not read"),
        ]:
            answer = await _ask(path, raw)
            assert answer["ok"] is False and answer["error"]["code"] == "bad_request", raw
            assert needle in answer["error"]["message"] and answer["error"]["exit"] == 2
        # the caller's side reports such an answer as its own usage error
        with pytest.raises(CliError) as caught:
            await control.forward(store, "send", {"nope": 1})
        assert caught.value.code == "bad_request" and caught.value.exit_code == 2
    assert not path.exists()  # gone with the listener
    assert await control.forward(store, "send", {}) is None  # no listener: the caller says profile_in_use


async def test_a_directory_others_can_enter_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(shared))
    with pytest.raises(PermissionError):
        control.socket_path(CredentialStore(tmp_path / "home", "bot"))
    async with control.serving(object(), CredentialStore(tmp_path / "home", "bot")) as path:  # type: ignore[arg-type]
        assert path is None  # the listener runs on, without a socket
