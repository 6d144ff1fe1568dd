"""MeloClient against a real server: typed results, error mapping, transparent and serialised refresh."""

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from melo_protocol.client import (
    BadRequest,
    Conflict,
    CredentialStore,
    Forbidden,
    InvalidCredentials,
    MeloClient,
    NotFound,
    NotLoggedIn,
    RateLimited,
    ServerUnreachable,
    SessionRevoked,
)
from melo_protocol.wire import AccountOut, RegistrationMode, TokenResponse
from tests.live import LiveServer, closed_port_url, create_admin, running_server
from tests.protocol.conftest import PASSWORD, CountingTransport, new_username

REFRESH = "/v1/auth/refresh"


async def _registered(server: LiveServer, store: CredentialStore) -> str:
    name = new_username()
    async with MeloClient(server.url, store=store) as c:
        tokens = await c.register(name, PASSWORD, device_name="test")
        assert isinstance(tokens, TokenResponse)
    return name


def _age_access_token(store: CredentialStore, *, garbage: bool = False) -> None:
    """Make the stored access token due for refresh (or unusable), as time or tampering would."""
    creds = store.load()
    assert creds is not None
    if garbage:
        creds = dataclasses.replace(creds, access_token="not-a-jwt", access_expires_at=time.time() + 600)
    else:
        creds = dataclasses.replace(creds, access_expires_at=time.time() + 1)
    store.save(creds)


async def test_register_whoami_and_profile_are_typed(client: MeloClient, store: CredentialStore) -> None:
    name = new_username()
    tokens = await client.register(name, PASSWORD)
    me = await client.whoami()
    assert isinstance(me, AccountOut)
    assert me.username == name and me.session_id == tokens.session_id
    stored = store.load()
    assert stored is not None and stored.session_id == tokens.session_id
    profile = await client.update_profile(display_name="Alice A.", bio="hi")
    assert (profile.display_name, profile.bio) == ("Alice A.", "hi")
    assert (await client.get_user(name)).display_name == "Alice A."
    sessions = await client.list_sessions()
    assert [s.current for s in sessions] == [True]


async def test_error_mapping_against_the_server(live_server: LiveServer, client: MeloClient) -> None:
    name = new_username()
    await client.register(name, PASSWORD)
    with pytest.raises(Conflict) as taken:
        await client.register(name, PASSWORD)
    assert taken.value.code == "username_taken"
    with pytest.raises(InvalidCredentials):
        await client.login(name, "wrong password!")
    with pytest.raises(NotFound) as missing:
        await client.get_user(new_username())
    assert missing.value.code == "user_not_found"
    with pytest.raises(NotFound):
        await client.revoke_session("0" * 32)
    with pytest.raises(Forbidden) as forbidden:
        await client.admin_stats()
    assert forbidden.value.code == "admin_required"
    with pytest.raises(BadRequest) as weak:
        await client.change_password(PASSWORD, "short")
    assert weak.value.code == "weak_password"
    with pytest.raises(BadRequest):
        await client.set_avatar(b"not an image", "image/png")
    with pytest.raises(BadRequest) as local:  # refused before sending: the wire model's limit
        await client.update_profile(bio="x" * 1000)
    assert "bio" in local.value.message


async def test_not_logged_in_and_unreachable(live_server: LiveServer, tmp_path: Path) -> None:
    async with MeloClient(live_server.url, store=CredentialStore(tmp_path / "h", warn=print)) as c:
        with pytest.raises(NotLoggedIn):
            await c.whoami()
    async with MeloClient(closed_port_url(), store=CredentialStore(tmp_path / "h2", warn=print)) as c:
        with pytest.raises(ServerUnreachable):
            await c.login("someone", PASSWORD)


async def test_rate_limit_is_raised_with_retry_after(tmp_path: Path) -> None:
    with running_server(tmp_path / "srv", {"MELO_RATE_LOGIN_ACCOUNT": "2/minute"}) as server:
        store = CredentialStore(tmp_path / "home", warn=lambda _m: None)
        name = await _registered(server, store)
        async with MeloClient(server.url) as c:
            for _ in range(2):
                with pytest.raises(InvalidCredentials):
                    await c.login(name, "wrong password!")
            with pytest.raises(RateLimited) as limited:
                await c.login(name, "wrong password!")
    assert limited.value.retry_after is not None and limited.value.retry_after > 0


async def test_refresh_rotates_and_a_reused_token_revokes_the_session(
    live_server: LiveServer, client: MeloClient, store: CredentialStore
) -> None:
    await client.register(new_username(), PASSWORD)
    before = store.load()
    assert before is not None
    after = await client.refresh()
    assert after.refresh_token != before.refresh_token and after.access_token != before.access_token
    saved = store.load()
    assert saved is not None and saved.refresh_token == after.refresh_token  # persisted at once
    assert (await client.whoami()).session_id == before.session_id

    # someone replays the spent refresh token: the server ends the session
    async with MeloClient(live_server.url, store=CredentialStore(store.home, "replay", warn=print)) as thief:
        thief.store.save(before)  # type: ignore[union-attr]
        thief._creds = before
        with pytest.raises(SessionRevoked) as reused:
            await thief.refresh()
    assert reused.value.code == "refresh_token_reused"
    with pytest.raises(SessionRevoked):
        await client.whoami()
    assert store.load() is None  # the dead session was forgotten
    with pytest.raises(NotLoggedIn):
        await client.whoami()


async def test_expiring_access_token_is_refreshed_before_the_request(
    live_server: LiveServer, store: CredentialStore
) -> None:
    await _registered(live_server, store)
    _age_access_token(store)
    old = store.load()
    assert old is not None
    transport = CountingTransport()
    async with MeloClient(live_server.url, store=store, transport=transport) as c:
        assert (await c.whoami()).session_id == old.session_id
    assert transport.paths == [REFRESH, "/v1/account"]
    new = store.load()
    assert new is not None and new.refresh_token != old.refresh_token


async def test_rejected_access_token_is_refreshed_once_and_retried(
    live_server: LiveServer, store: CredentialStore
) -> None:
    await _registered(live_server, store)
    _age_access_token(store, garbage=True)
    transport = CountingTransport()
    async with MeloClient(live_server.url, store=store, transport=transport) as c:
        await c.whoami()
    assert transport.paths == ["/v1/account", REFRESH, "/v1/account"]


@pytest.mark.parametrize("garbage", [False, True], ids=["expiring", "rejected"])
async def test_concurrent_calls_share_one_refresh(
    live_server: LiveServer, store: CredentialStore, garbage: bool
) -> None:
    await _registered(live_server, store)
    _age_access_token(store, garbage=garbage)
    transport = CountingTransport()
    async with MeloClient(live_server.url, store=store, transport=transport) as c:
        results = await asyncio.gather(*(c.whoami() for _ in range(5)))
    assert len({r.session_id for r in results}) == 1
    assert transport.count(REFRESH) == 1


async def test_two_clients_on_one_profile_do_not_spend_one_token_twice(
    live_server: LiveServer, store: CredentialStore
) -> None:
    """Like two `melo` processes at once: the profile lock and re-reading the store keep the session."""
    await _registered(live_server, store)
    _age_access_token(store)
    transport = CountingTransport()
    other_store = CredentialStore(store.home, store.profile, warn=print)
    async with (
        MeloClient(live_server.url, store=store, transport=transport) as a,
        MeloClient(live_server.url, store=other_store, transport=transport) as b,
    ):
        await asyncio.gather(a.whoami(), b.whoami())
        assert transport.count(REFRESH) == 1
        await asyncio.gather(a.whoami(), b.whoami())  # both still hold a live session


@pytest.fixture
async def admin(live_server: LiveServer, tmp_path: Path) -> AsyncIterator[MeloClient]:
    name = new_username("adm")
    await asyncio.to_thread(create_admin, live_server, name, PASSWORD)
    async with MeloClient(live_server.url, store=CredentialStore(tmp_path / "admin", warn=print)) as c:
        await c.login(name, PASSWORD)
        yield c


async def test_admin_calls(admin: MeloClient, live_server: LiveServer, tmp_path: Path) -> None:
    assert (await admin.whoami()).is_admin
    store = CredentialStore(tmp_path / "target", warn=print)
    target = await _registered(live_server, store)

    users = await admin.admin_list_users(search=target)
    assert [u.username for u in users.users] == [target]
    detail = await admin.admin_show_user(target)
    assert detail.username == target and len(detail.sessions) == 1

    banned = await admin.admin_ban(target, reason="spam")
    assert banned.banned
    async with MeloClient(live_server.url, store=store) as victim:
        with pytest.raises(SessionRevoked):
            await victim.whoami()
    assert not (await admin.admin_unban(target)).banned

    assert (await admin.admin_promote(target)).is_admin
    assert not (await admin.admin_demote(target)).is_admin
    reset = await admin.admin_reset_password(target)
    assert reset.temporary_password
    async with MeloClient(live_server.url) as c:
        await c.login(target, reset.temporary_password)
    assert await admin.admin_revoke_user_sessions(target) >= 1

    assert await admin.admin_get_registration() == RegistrationMode.OPEN
    try:
        assert await admin.admin_set_registration("token") == RegistrationMode.TOKEN
        invite = await admin.admin_create_token(expires_in_seconds=3600, max_uses=1)
        assert invite.max_uses == 1 and not invite.revoked
        async with MeloClient(live_server.url) as c:
            with pytest.raises(Forbidden):
                await c.register(new_username(), PASSWORD)
            await c.register(new_username(), PASSWORD, registration_token=invite.token)
        assert invite.token in {t.token for t in await admin.admin_list_tokens()}
        assert (await admin.admin_revoke_token(invite.token)).revoked
    finally:
        await admin.admin_set_registration(RegistrationMode.OPEN)
    with pytest.raises(BadRequest):
        await admin.admin_set_registration("sometimes")

    stats = await admin.admin_stats()
    assert stats.users >= 2 and stats.admins >= 1
    audit = await admin.admin_audit(limit=100)
    assert "users.ban" in {e.action for e in audit.entries}
    keys = await admin.admin_list_keys()
    rotated = await admin.admin_rotate_keys()
    assert len(rotated.rotated) == 1 and rotated.rotated[0].activates_at is not None
    new_kid = rotated.rotated[0].kid
    assert new_kid not in {k.kid for k in keys.keys}
    async with asyncio.timeout(30):  # published now, used from its activation time (half a second here)
        while True:
            if next(k for k in (await admin.admin_list_keys()).keys if k.kid == new_kid).active:
                break
            await asyncio.sleep(0.1)  # polling for the activation time, with a deadline
    assert (await admin.whoami()).is_admin  # tokens from the old key still verify

    assert (await admin.admin_deactivate(target)).deactivated
    async with MeloClient(live_server.url) as c:
        with pytest.raises(Forbidden):
            await c.login(target, reset.temporary_password)


async def test_logout_ends_the_session(live_server: LiveServer, store: CredentialStore) -> None:
    await _registered(live_server, store)
    saved = store.load()
    assert saved is not None
    async with MeloClient(live_server.url, store=store) as c:
        await c.logout()
        with pytest.raises(NotLoggedIn):
            await c.whoami()
    assert store.load() is None
    # the old access token no longer works on the server either
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        r = await http.get("/v1/account", headers={"Authorization": f"Bearer {saved.access_token}"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "session_revoked"
