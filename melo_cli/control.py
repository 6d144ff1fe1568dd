"""Message commands while `melo listen` holds the profile: a local control socket.

A profile's encrypted store is open in one process at a time. While `melo listen` runs, it serves a Unix
socket, and `melo send`, `edit`, `delete`, `react`, `pin`, `read`, `history` and `send --at` on the same
profile hand their work to it instead of failing with ``profile_in_use``: the listener runs the very
same action (registered in ``melo_cli.actions``) with its Messenger and answers with the result or the error,
which the caller prints and exits with as if it had done the work itself. So a script can listen and
reply on one profile, as with signal-cli's daemon, with no new commands to learn.

The socket lives in a directory only this user can enter (``$XDG_RUNTIME_DIR``, else
``/tmp/melo-<uid>``, mode 0700), is itself mode 0600, and the listener checks each peer's uid
(SO_PEERCRED): the same trust boundary as the profile's credential files. One JSON line each way:
``{"v": 1, "action": NAME, "params": {...}}`` → ``{"ok": true, "result": {...}}`` or
``{"ok": false, "error": {"code", "message", "exit"}}``.
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

from melo_cli.actions import ACTIONS, load_actions

if TYPE_CHECKING:
    from melo_protocol.client import CredentialStore
    from melo_protocol.client.messenger import Messenger

log = logging.getLogger("melo.control")

VERSION = 1
MAX_REQUEST = 4 * 1024 * 1024  # a long message, JSON-escaped
ANSWER_TIMEOUT_S = 300.0  # sharing keys with many devices takes a while; a dead listener is seen at once


def _caller_error(code: str, message: str, exit_code: int) -> Exception:
    """What the listener answered, as the caller's own error: same code, message and exit status."""
    from melo_cli.errors import CliError, ExitCode

    try:
        status = ExitCode(exit_code)
    except ValueError:
        status = ExitCode.USER_ERROR
    return CliError(message, code=code, exit_code=status)


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


# -- the listener's side -------------------------------------------------------------------------------
def _peer_uid(writer: asyncio.StreamWriter) -> int | None:
    sock = writer.get_extra_info("socket")
    if sock is None or not hasattr(socket, "SO_PEERCRED"):
        return None
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", raw)[1])


def _error(code: str, message: str, exit_code: int) -> dict[str, Any]:
    return {"ok": False, "error": {"code": code, "message": message, "exit": exit_code}}


async def _answer(messenger: "Messenger", line: bytes) -> dict[str, Any]:
    from melo_cli.errors import CliError, ExitCode, describe, exit_code_for
    from melo_protocol.client import MeloError

    try:
        request = json.loads(line)
        name, params = request["action"], request.get("params") or {}
        if request.get("v") != VERSION or not isinstance(name, str) or not isinstance(params, dict):
            raise ValueError("bad request")
    except (ValueError, KeyError, TypeError):
        return _error("bad_request", "the listener could not read this request", int(ExitCode.USAGE))
    action = ACTIONS.get(name)
    if action is None:
        return _error("bad_request", f"the listener does not run {name!r}", int(ExitCode.USAGE))
    try:
        inspect.signature(action).bind(messenger, **params)
    except TypeError:
        return _error("bad_request", f"bad parameters for {name!r}", int(ExitCode.USAGE))
    try:
        return {"ok": True, "result": await action(messenger, **params)}
    except (MeloError, CliError) as exc:
        code, message = describe(exc)
        return _error(code, message, int(exit_code_for(exc)))
    except Exception as exc:  # never take the listener down, never leak a traceback to the caller
        log.exception("control action %s failed", name)
        return _error("error", f"the listener failed to run {name!r}: {type(exc).__name__}", int(ExitCode.USER_ERROR))


@contextlib.asynccontextmanager
async def serving(messenger: "Messenger", store: "CredentialStore") -> AsyncIterator[Path | None]:
    """Serve this profile's control socket while the block runs (None when it cannot be made)."""
    load_actions()
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
                answer = _error("forbidden", "another user's process", 1)
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
        path.unlink()  # one listener per profile (the store lock): a file here is a crashed one's
    old_umask = os.umask(0o177)
    try:
        server = await asyncio.start_unix_server(handle, path, limit=MAX_REQUEST)
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    try:
        yield path
    finally:
        server.close()
        for task in list(busy):
            task.cancel()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


# -- the caller's side ---------------------------------------------------------------------------------
async def forward(store: "CredentialStore", name: str, params: dict[str, Any]) -> dict[str, Any] | None:
    """Have the listening process run action ``name``; None when no listener serves this profile."""
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
        raise _caller_error("profile_in_use", "the process listening on this profile did not answer", 1) from None
    finally:
        writer.close()
    answer = json.loads(line)
    if answer.get("ok"):
        return dict(answer["result"])
    error = answer.get("error") or {}
    raise _caller_error(str(error.get("code", "error")), str(error.get("message", "")), int(error.get("exit", 1)))
