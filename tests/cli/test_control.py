"""The control socket of `melo listen` and `melo-tui` (melo_protocol.client.control): private to its user,
and unreadable or unknown requests get a clear error line, never a crash of the holder. The real round
trips (send, react, read, history through a listener) are in test_listen.py against a live server, and
through melo-tui in tests/tui/test_control.py."""

import asyncio
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from melo_cli.errors import describe, exit_code_for
from melo_protocol.client import CredentialStore, control


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
            (json.dumps({"v": 2, "action": "format_disk", "params": {}}).encode() + b"\n", "does not run"),
            (json.dumps({"v": 2, "action": "send", "params": {"nope": 1}}).encode() + b"\n", "bad parameters"),
            (json.dumps({"v": 99, "action": "send", "params": {}}).encode() + b"\n", "could not read"),
        ]:
            answer = await _ask(path, raw)
            assert answer["ok"] is False and answer["error"]["code"] == "bad_request", raw
            assert needle in answer["error"]["message"] and answer["error"]["type"] == "ControlRequestRefused"
        # the caller's side raises such an answer as its own error, which the CLI exits 2 (usage) with
        with pytest.raises(control.ControlRequestRefused) as caught:
            await control.forward(store, "send", {"nope": 1})
        assert describe(caught.value)[0] == "bad_request" and exit_code_for(caught.value) == 2
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


def test_every_sdk_error_comes_back_as_itself() -> None:
    """An action's error crosses the socket as its SDK type, so the CLI prints the same code and message and
    exits with the same status as when it runs the action itself (exit codes are the CLI's to decide)."""
    from melo_protocol.client import errors as e
    from melo_protocol.client.errors import E2EError, ProfileInUse

    for exc in [
        e.NotFound(404, "chat_not_found", "no such chat", {"chat_id": 7}),
        e.ClientError("ambiguous_chat", "2 of your chats are titled 'x'", {"ids": [1, 2]}),
        e.RateLimited(429, "slow_mode", "slow down", {}, retry_after=3.0),
        e.Forbidden(403, "not_author", "not yours"),
        e.SessionRevoked(401, "session_revoked", "revoked"),
        e.ServerUnreachable("server error 502: bad gateway", status=502),
        e.NotLoggedIn("not logged in"),
        E2EError("cannot open the local encrypted store"),
        ProfileInUse("in use"),
        e.MeloError("something else"),
    ]:
        answer = json.loads(json.dumps(control._error(exc)))
        again = control._answered_error(answer["error"])
        assert type(again) is type(exc), exc
        assert describe(again) == describe(exc) and exit_code_for(again) == exit_code_for(exc), exc
        assert getattr(again, "details", None) == getattr(exc, "details", None)
        assert getattr(again, "retry_after", None) == getattr(exc, "retry_after", None)


async def test_making_the_socket_private_leaves_other_tasks_their_umask(runtime_dir: Path, tmp_path: Path) -> None:
    """melo-tui creates files and directories in other tasks while it starts serving: the 0600 socket must
    not lend them its umask (a directory made then would be unusable)."""

    def umask() -> int:
        mask = os.umask(0o022)
        os.umask(mask)
        return mask

    usual, seen = umask(), []

    async def meanwhile() -> None:
        while True:
            seen.append(umask())
            await asyncio.sleep(0)

    other = asyncio.create_task(meanwhile())
    await asyncio.sleep(0)
    try:
        async with control.serving(object(), CredentialStore(tmp_path / "home", "bot")) as path:  # type: ignore[arg-type]
            assert path is not None and stat.S_IMODE(path.stat().st_mode) == 0o600
    finally:
        other.cancel()
    assert len(seen) > 1 and set(seen) == {usual}
