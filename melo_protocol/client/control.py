"""Message commands while another process holds the profile: a local control socket.

A profile's encrypted store is open in one process at a time. While `melo listen` or `melo-tui` runs, it
serves a Unix socket, and `melo send`, `edit`, `delete`, `react`, `pin`, `read`, `history` and `send --at`
on the same profile hand their work to it instead of failing with ``profile_in_use``: the holder runs the
very same action (``melo_protocol.client.actions``) with its Messenger and answers with the result or the
error, which the caller raises, prints and exits with as if it had done the work itself. So a script can
listen and reply on one profile, as with signal-cli's daemon, or post into the chat open in `melo-tui`,
with no new commands to learn.

The socket lives in a directory only this user can enter (``$XDG_RUNTIME_DIR``, else
``/tmp/melo-<uid>``, mode 0700), is itself mode 0600, and the holder checks each peer's uid
(SO_PEERCRED): the same trust boundary as the profile's credential files. One JSON line each way:
``{"v": 2, "action": NAME, "params": {...}}`` → ``{"ok": true, "result": {...}}`` or
``{"ok": false, "error": {"type", "code", "message", "details", "status"}}``, where ``type`` names the
SDK error (``NotFound``, ``ClientError``…), so the caller raises the same error the action raised and
its front end (the CLI's exit-code table) decides what it means there.
"""

import asyncio
import contextlib
import hashlib
import inspect
import json
import logging
import os
import socket
import stat
import struct
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from melo_protocol.client.actions import ACTIONS
from melo_protocol.client.errors import ClientError, ControlRequestRefused, E2EError, MeloError, ProfileInUse

if TYPE_CHECKING:
    from melo_protocol.client import CredentialStore
    from melo_protocol.client.messenger import Messenger

log = logging.getLogger("melo.control")

VERSION = 2  # 2: errors name their SDK type (1 carried the CLI's exit code, which melo-tui cannot know)
MAX_REQUEST = 4 * 1024 * 1024  # a long message, JSON-escaped
ANSWER_TIMEOUT_S = 300.0  # sharing keys with many devices takes a while; a dead holder is seen at once


# -- where ---------------------------------------------------------------------------------------------
def _private_dir() -> Path:
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) if runtime and Path(runtime).is_dir() else Path(tempfile.gettempdir()) / f"melo-{os.getuid()}"
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = base.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise PermissionError(f"{base} must be a directory of this user that no one else can enter (mode 0700)")
    return base


def socket_path(store: "CredentialStore") -> Path:
    """Short (a Unix socket path has at most 107 bytes) and unique per home and profile."""
    key = hashlib.sha256(f"{store.home.resolve()}\0{store.profile}".encode()).hexdigest()[:20]
    return _private_dir() / f"melo-{key}.sock"


# -- the holder's side ---------------------------------------------------------------------------------
def _peer_uid(writer: asyncio.StreamWriter) -> int | None:
    sock = writer.get_extra_info("socket")
    if sock is None or not hasattr(socket, "SO_PEERCRED"):
        return None
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", raw)[1])


def _error(exc: MeloError) -> dict[str, Any]:
    """An SDK error as an answer: enough for the caller to raise the same error (see ``_answered_error``)."""
    doc: dict[str, Any] = {
        "type": type(exc).__name__,
        "code": getattr(exc, "code", "error"),
        "message": exc.message,
        "details": dict(getattr(exc, "details", None) or {}),
        "status": getattr(exc, "status", None),
    }
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        doc["retry_after"] = retry_after
    return {"ok": False, "error": doc}


def _refused(message: str) -> dict[str, Any]:
    return _error(ControlRequestRefused("bad_request", message))


async def _answer(messenger: "Messenger", line: bytes) -> dict[str, Any]:
    try:
        request = json.loads(line)
        name, params = request["action"], request.get("params") or {}
        if request.get("v") != VERSION or not isinstance(name, str) or not isinstance(params, dict):
            raise ValueError("bad request")
    except (ValueError, KeyError, TypeError):
        return _refused("the process holding this profile could not read this request")
    action = ACTIONS.get(name)
    if action is None:
        return _refused(f"the process holding this profile does not run {name!r}")
    try:
        inspect.signature(action).bind(messenger, **params)
    except TypeError:
        return _refused(f"bad parameters for {name!r}")
    try:
        return {"ok": True, "result": await action(messenger, **params)}
    except MeloError as exc:
        return _error(exc)
    except Exception as exc:  # never take the holder down, never leak a traceback to the caller
        log.exception("control action %s failed", name)
        return _error(MeloError(f"the process holding this profile failed to run {name!r}: {type(exc).__name__}"))


def _bound_privately(path: Path) -> socket.socket:
    """A Unix socket bound at ``path``, mode 0600 from its first instant. Synchronous on purpose: the
    umask is the whole process's, and no other task (melo-tui runs many) may create files under it."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        sock.bind(str(path))
    except OSError:
        sock.close()
        raise
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    return sock


@contextlib.asynccontextmanager
async def serving(messenger: "Messenger", store: "CredentialStore") -> AsyncIterator[Path | None]:
    """Serve this profile's control socket while the block runs (None when it cannot be made)."""
    try:
        path = socket_path(store)
    except OSError as exc:
        log.warning("no control socket: %s", exc)
        yield None
        return
    busy: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        busy.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            uid = _peer_uid(writer)
            if uid is not None and uid != os.getuid():
                answer = _error(ClientError("forbidden", "another user's process"))
            else:
                try:
                    line = await reader.readuntil(b"\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                    return
                answer = await _answer(messenger, line)
            writer.write(json.dumps(answer, ensure_ascii=False).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, OSError):
            pass  # the caller went away
        finally:
            busy.discard(asyncio.current_task())  # type: ignore[arg-type]
            writer.close()

    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # one holder per profile (the store lock): a file here is a crashed one's
    try:
        server = await asyncio.start_unix_server(handle, sock=_bound_privately(path), limit=MAX_REQUEST)
    except OSError as exc:  # the holder runs on without it, as when the directory is refused
        log.warning("no control socket: %s", exc)
        yield None
        return
    try:
        yield path
    finally:
        server.close()
        for task in list(busy):
            task.cancel()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


# -- the caller's side ---------------------------------------------------------------------------------
def _answered_error(error: dict[str, Any]) -> MeloError:
    """The error the holder's action raised, raised again here: same type, code, message and details."""
    from melo_protocol.client import errors as e

    kind, code = str(error.get("type", "")), str(error.get("code", "error"))
    message = str(error.get("message") or code)
    details = error.get("details") if isinstance(error.get("details"), dict) else {}
    status = error.get("status") if isinstance(error.get("status"), int) else None
    api: dict[str, type[e.ApiError]] = {
        cls.__name__: cls
        for cls in (
            e.ApiError,
            e.BadRequest,
            e.NotAuthenticated,
            e.InvalidCredentials,
            e.SessionRevoked,
            e.Forbidden,
            e.NotFound,
            e.Conflict,
        )
    }
    if kind == "RateLimited":
        retry_after = error.get("retry_after")
        return e.RateLimited(
            status or 429,
            code,
            message,
            details,
            retry_after=float(retry_after) if isinstance(retry_after, int | float) else None,
        )
    if kind in api:
        return api[kind](status or 400, code, message, details)
    if kind == "ServerUnreachable":
        return e.ServerUnreachable(message, status)
    plain: dict[str, type[MeloError]] = {
        "NotLoggedIn": e.NotLoggedIn,
        "E2EError": E2EError,
        "ProfileInUse": ProfileInUse,
    }
    if kind in plain:
        return plain[kind](message)
    if kind == "ControlRequestRefused" or (not kind and code == "bad_request"):  # not kind: a version-1 holder
        return ControlRequestRefused(code, message, details)
    if kind == "ClientError" or code != "error":
        return ClientError(code, message, details)
    return MeloError(message)


async def forward(store: "CredentialStore", name: str, params: dict[str, Any]) -> dict[str, Any] | None:
    """Have the process holding this profile run action ``name``; None when none serves this profile."""
    try:
        path = socket_path(store)
        reader, writer = await asyncio.open_unix_connection(path, limit=MAX_REQUEST)
    except OSError:
        return None
    try:
        writer.write(json.dumps({"v": VERSION, "action": name, "params": params}).encode() + b"\n")
        await writer.drain()
        async with asyncio.timeout(ANSWER_TIMEOUT_S):
            line = await reader.readuntil(b"\n")
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
        raise ProfileInUse("the process holding this profile did not answer") from None
    finally:
        writer.close()
    answer = json.loads(line)
    if answer.get("ok"):
        return dict(answer["result"])
    raise _answered_error(answer.get("error") or {})
