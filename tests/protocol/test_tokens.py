"""The credential store: file fallback 0600, one-time warning, keyring when one is usable."""

import json
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest
from keyring.backend import KeyringBackend
from keyring.backends import fail

from melo_protocol.client import Credentials, CredentialStore
from melo_protocol.client.tokens import _keyring_usable


def creds(server: str = "http://127.0.0.1:9", refresh: str = "refresh-secret") -> Credentials:
    return Credentials(
        server_url=server + "/",
        username="alice",
        user_id=3,
        session_id="sid",
        device_id="dev",
        refresh_token=refresh,
        access_token="access-secret",
        access_expires_at=time.time() + 600,
    )


class MemoryKeyring(KeyringBackend):
    """A keyring that keeps secrets in a dict, standing in for the OS keyring."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.items: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.items.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.items[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.items.pop((service, username), None)


@pytest.fixture
def memory_keyring(monkeypatch: pytest.MonkeyPatch) -> Iterator[MemoryKeyring]:
    monkeypatch.delenv("MELO_KEYRING", raising=False)
    previous = keyring.get_keyring()
    ring = MemoryKeyring()
    keyring.set_keyring(ring)
    try:
        yield ring
    finally:
        keyring.set_keyring(previous)


def test_file_store_round_trip_is_private_and_warns_once(tmp_path: Path) -> None:
    warnings: list[str] = []
    store = CredentialStore(tmp_path, "work", warn=warnings.append)
    store.save(creds())
    store.save(creds(refresh="rotated"))
    assert len(warnings) == 1 and "MELO_KEYRING=file" in warnings[0]
    assert "refresh-secret" not in warnings[0]
    assert stat.S_IMODE(store.credentials_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.profile_path.stat().st_mode) == 0o600
    loaded = store.load()
    assert loaded is not None
    assert loaded.refresh_token == "rotated" and loaded.server_url == "http://127.0.0.1:9"
    profile_text = store.profile_path.read_text()
    assert "refresh-secret" not in profile_text and "access-secret" not in profile_text
    assert "rotated" not in repr(loaded) and "access-secret" not in repr(loaded)
    # a second store on the same home does not warn again
    again: list[str] = []
    CredentialStore(tmp_path, "other", warn=again.append).save(creds())
    assert again == []
    store.clear()
    assert store.load() is None and not store.credentials_path.exists()


def test_keyring_holds_the_secrets_when_usable(tmp_path: Path, memory_keyring: MemoryKeyring) -> None:
    warnings: list[str] = []
    store = CredentialStore(tmp_path, "default", warn=warnings.append)
    store.save(creds())
    assert warnings == []
    assert not store.credentials_path.exists()
    secret = json.loads(memory_keyring.items[("melo", "default@http://127.0.0.1:9")])
    assert secret["refresh_token"] == "refresh-secret"
    assert json.loads(store.profile_path.read_text())["secret_store"] == "keyring"
    loaded = store.load()
    assert loaded is not None and loaded.access_token == "access-secret"
    store.clear()
    assert memory_keyring.items == {}


def test_unusable_keyring_falls_back_to_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MELO_KEYRING", raising=False)
    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        warnings: list[str] = []
        store = CredentialStore(tmp_path, "default", warn=warnings.append)
        store.save(creds())
        assert store.credentials_path.exists()
        assert len(warnings) == 1 and "no usable OS keyring" in warnings[0]
    finally:
        keyring.set_keyring(previous)


def test_keyring_usability() -> None:
    assert not _keyring_usable(fail.Keyring())
    assert _keyring_usable(MemoryKeyring())


@pytest.mark.parametrize("bad", ["", "../x", "a/b", ".hidden", "x" * 65])
def test_profile_names_cannot_escape_the_home(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError):
        CredentialStore(tmp_path, bad)


def test_profiles_of_a_home_are_listed_and_reachable(tmp_path: Path) -> None:
    work = CredentialStore(tmp_path, "work", warn=lambda _: None)
    assert work.profiles() == []
    work.save(creds())
    work.for_profile("home").save(creds(server="http://127.0.0.1:10"))
    assert work.profiles() == ["home", "work"]
    home = work.for_profile("home")
    assert home.home == tmp_path and home.profile == "home"
    loaded = home.load()
    assert loaded is not None and loaded.server_url == "http://127.0.0.1:10"
    with pytest.raises(ValueError):
        work.for_profile("../escape")
