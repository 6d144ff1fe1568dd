"""Credential storage per (home, profile): who is logged in where, and the session's tokens.

Non-secret profile data (server URL, username, session and device ids, access-token expiry) lives in
``<home>/profiles/<profile>.json``. The secrets (refresh and access token) go to the OS keyring
(service ``melo``, key ``<profile>@<server>``). Without a usable keyring, or with ``MELO_KEYRING=file``,
they go to ``<home>/credentials/<profile>.json`` created 0600, and a one-time warning says so.
Tokens are never logged, printed or put in a repr.
"""

import contextlib
import json
import os
import re
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KEYRING_SERVICE = "melo"
PROFILE_RE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}")
FALLBACK_WARNING = (
    "melo: warning: {why}; tokens are stored in {path} (mode 0600). "
    "Anyone who can read that file can use your session."
)


@dataclass
class Credentials:
    server_url: str
    username: str
    session_id: str
    device_id: str
    refresh_token: str = field(repr=False)
    access_token: str = field(repr=False)
    access_expires_at: float  # Unix time, by this machine's clock
    user_id: int | None = None


def default_home() -> Path:
    env = os.environ.get("MELO_HOME")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("melo", appauthor=False))


def normalize_server_url(url: str) -> str:
    return url.strip().rstrip("/")


def check_profile_name(profile: str) -> str:
    """Profile names become file names: refuse anything that could leave the directory."""
    if not PROFILE_RE.fullmatch(profile):
        raise ValueError(f"invalid profile name {profile!r}: use letters, digits, '_', '-' or '.' (max 64)")
    return profile


def _keyring_usable(backend: Any) -> bool:
    from keyring.backends import chainer, fail

    if isinstance(backend, fail.Keyring):
        return False
    if isinstance(backend, chainer.ChainerBackend):
        return bool(backend.backends)
    return True


def _write_private(path: Path, text: str) -> None:
    """Write atomically, readable by the owner only, from the moment the file exists."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        if hasattr(os, "fchmod"):  # the umask cannot widen it, but an existing tmp file could
            os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    os.replace(tmp, path)


def _warn_stderr(message: str) -> None:
    print(message, file=sys.stderr)


class CredentialStore:
    """Load, save and clear one profile's credentials."""

    def __init__(
        self,
        home: Path | None = None,
        profile: str = "default",
        *,
        warn: Callable[[str], None] = _warn_stderr,
    ) -> None:
        self.home = Path(home) if home is not None else default_home()
        self.profile = check_profile_name(profile)
        self._warn = warn

    def profiles(self) -> list[str]:
        """The profiles of this home that have been used (logged in at least once), by name."""
        folder = self.home / "profiles"
        return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []

    def for_profile(self, profile: str) -> "CredentialStore":
        """The store of another profile in the same home (ValueError for a bad name)."""
        return CredentialStore(self.home, profile, warn=self._warn)

    @property
    def profile_path(self) -> Path:
        return self.home / "profiles" / f"{self.profile}.json"

    @property
    def credentials_path(self) -> Path:
        return self.home / "credentials" / f"{self.profile}.json"

    @property
    def _warned_marker(self) -> Path:
        return self.home / "credentials" / ".file-fallback-warned"

    def _keyring_key(self, server_url: str) -> str:
        return f"{self.profile}@{normalize_server_url(server_url)}"

    def uses_keyring(self) -> bool:
        if os.environ.get("MELO_KEYRING", "").lower() == "file":
            return False
        try:
            import keyring

            return _keyring_usable(keyring.get_keyring())
        except Exception:
            return False

    # -- reading -----------------------------------------------------------------------------

    def load(self) -> Credentials | None:
        try:
            meta = json.loads(self.profile_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except ValueError:
            return None
        secrets = self._load_secrets(meta)
        if not secrets or not secrets.get("refresh_token"):
            return None
        try:
            return Credentials(
                server_url=meta["server_url"],
                username=meta["username"],
                session_id=meta["session_id"],
                device_id=meta["device_id"],
                user_id=meta.get("user_id"),
                access_expires_at=float(meta.get("access_expires_at") or 0),
                refresh_token=secrets["refresh_token"],
                access_token=secrets.get("access_token") or "",
            )
        except (KeyError, TypeError, ValueError):
            return None

    def _load_secrets(self, meta: dict[str, Any]) -> dict[str, Any] | None:
        if meta.get("secret_store") == "keyring":
            try:
                import keyring

                raw = keyring.get_password(KEYRING_SERVICE, self._keyring_key(meta.get("server_url", "")))
            except Exception:
                return None
        else:
            try:
                raw = self.credentials_path.read_text(encoding="utf-8")
            except FileNotFoundError:
                return None
        if not raw:
            return None
        try:
            doc = json.loads(raw)
        except ValueError:
            return None
        return doc if isinstance(doc, dict) else None

    def stored_server(self) -> str | None:
        """The server this profile is logged in to, without touching the secrets."""
        try:
            return str(json.loads(self.profile_path.read_text(encoding="utf-8"))["server_url"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    # -- writing -----------------------------------------------------------------------------

    def save(self, creds: Credentials) -> None:
        server = normalize_server_url(creds.server_url)
        secrets = json.dumps({"refresh_token": creds.refresh_token, "access_token": creds.access_token})
        store = "file"
        if self.uses_keyring():
            try:
                import keyring

                keyring.set_password(KEYRING_SERVICE, self._keyring_key(server), secrets)
                store = "keyring"
            except Exception:
                store = "file"
        if store == "file":
            self._warn_once()
            _write_private(self.credentials_path, secrets)
        else:
            with contextlib.suppress(FileNotFoundError):
                self.credentials_path.unlink()
        old_server = self.stored_server()
        meta = {
            "server_url": server,
            "username": creds.username,
            "user_id": creds.user_id,
            "session_id": creds.session_id,
            "device_id": creds.device_id,
            "access_expires_at": creds.access_expires_at,
            "secret_store": store,
        }
        _write_private(self.profile_path, json.dumps(meta, indent=2) + "\n")
        if old_server and old_server != server:
            self._delete_keyring_entry(old_server)

    def clear(self) -> None:
        server = self.stored_server()
        for path in (self.credentials_path, self.profile_path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        if server:
            self._delete_keyring_entry(server)

    def _delete_keyring_entry(self, server: str) -> None:
        if os.environ.get("MELO_KEYRING", "").lower() == "file":
            return
        with contextlib.suppress(Exception):
            import keyring

            keyring.delete_password(KEYRING_SERVICE, self._keyring_key(server))

    def _warn_once(self) -> None:
        marker = self._warned_marker
        if marker.exists():
            return
        why = ("MELO_KEYRING=file" if os.environ.get("MELO_KEYRING", "").lower() == "file"
               else "no usable OS keyring")
        self._warn(FALLBACK_WARNING.format(why=why, path=self.credentials_path))
        with contextlib.suppress(OSError):
            _write_private(marker, "")

    # -- cross-process refresh lock --------------------------------------------------------------

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        lock_path = self.home / "profiles" / f".{self.profile}.lock"
        lock_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                import fcntl
            except ImportError:  # not POSIX: the in-process lock still holds
                yield
                return
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    @contextlib.asynccontextmanager
    async def refresh_lock(self) -> AsyncIterator[None]:
        """Held while refreshing, so two processes on one profile never spend one refresh token twice."""
        import asyncio

        cm = self._file_lock()
        await asyncio.to_thread(cm.__enter__)
        try:
            yield
        finally:
            cm.__exit__(None, None, None)


__all__ = ["CredentialStore", "Credentials", "check_profile_name", "default_home", "normalize_server_url"]
