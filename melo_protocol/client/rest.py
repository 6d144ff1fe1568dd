"""``MeloClient``: the async REST client. All of the clients' HTTP I/O happens here.

Access tokens are refreshed transparently: ahead of time when they expire within
``REFRESH_MARGIN_S``, and once after a 401 ``token_expired``/``invalid_token``. The refresh token
rotates on every use and presenting a spent one revokes the whole session, so refreshes are
serialised (an asyncio lock in-process, a file lock across processes on one profile) and the rotated
tokens are saved before anything else happens.

A 429 whose ``Retry-After`` is at most ``rate_limit_wait`` seconds (30 by default) is waited out and
the same request sent again (a send keeps its transaction id, so it cannot post twice); the
``on_rate_limited`` hook hears of each wait. A longer one raises ``RateLimited`` at once.
"""

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, ParamSpec, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from melo_protocol import __version__
from melo_protocol.client import api
from melo_protocol.client.api import ApiRequest
from melo_protocol.client.errors import (
    REFRESHABLE_CODES,
    SESSION_OVER_CODES,
    ApiError,
    BadRequest,
    MeloError,
    NotAuthenticated,
    NotLoggedIn,
    RateLimited,
    ServerUnreachable,
    SessionRevoked,
    error_from_response,
)
from melo_protocol.client.tokens import Credentials, CredentialStore, normalize_server_url
from melo_protocol.client.validation import describe_errors
from melo_protocol.wire import (
    AccountOut,
    AdminKeyList,
    AdminPasswordResetOut,
    AdminUserDetail,
    AdminUserList,
    AdminUserSummary,
    AuditList,
    KeyRotateResult,
    RegistrationMode,
    RegistrationModeBody,
    RegistrationTokenList,
    RegistrationTokenOut,
    SessionList,
    SessionOut,
    StatsOut,
    TokenResponse,
    UserPublic,
)
from melo_protocol.wire.calls import IceServers, MissedCallOut
from melo_protocol.wire.chats import (
    ChatList,
    ChatOut,
    InviteList,
    InviteOut,
    MemberList,
    MemberOut,
    MessageOut,
    MessagePage,
)
from melo_protocol.wire.jobs import (
    PushSubscriptionList,
    PushSubscriptionOut,
    RetentionOut,
    RetentionRun,
    ScheduledList,
    ScheduledOut,
    TimerOut,
    VapidKeyOut,
)
from melo_protocol.wire.keys import KeyCounts, KeysClaimResult, KeysQueryResult, ToDeviceList, ToDeviceOut

REFRESH_MARGIN_S = 30.0
DEFAULT_TIMEOUT_S = 15.0
DEFAULT_RATE_LIMIT_WAIT_S = 30.0
RATE_LIMIT_RETRIES = 3  # waits per request before its 429 is raised
log = logging.getLogger("melo.sdk")
P = ParamSpec("P")
M = TypeVar("M", bound=BaseModel)


def _build(builder: Callable[P, ApiRequest], *args: P.args, **kwargs: P.kwargs) -> ApiRequest:
    """Build a request; a value the wire model refuses becomes BadRequest, said in the user's words with
    the limit ("timer too long: 1,000 days, at most 366 days"); details name the fields, never values."""
    try:
        return builder(*args, **kwargs)
    except ValidationError as exc:
        errors = exc.errors()
        fields = sorted({".".join(str(p) for p in e["loc"]) or "body" for e in errors})
        raise BadRequest(422, "validation_error", describe_errors(errors), {"fields": fields}) from None


class MeloClient:
    """One user's connection to one Melo server.

    ``async with MeloClient(url, store=CredentialStore(home, profile)) as client: await client.whoami()``.
    Without ``server_url`` the store's server is used. Credentials for a different server than
    ``server_url`` are not used (a token is never sent to a server that did not issue it).
    """

    def __init__(
        self,
        server_url: str | None = None,
        *,
        store: CredentialStore | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        transport: httpx.AsyncBaseTransport | None = None,
        user_agent: str | None = None,
        rate_limit_wait: float = DEFAULT_RATE_LIMIT_WAIT_S,
        on_rate_limited: Callable[[float], None] | None = None,
    ) -> None:
        self.store = store
        self.rate_limit_wait = rate_limit_wait  # the longest Retry-After waited out; 0: never wait
        self.on_rate_limited = on_rate_limited  # told the seconds before each such wait
        stored = store.load() if store is not None else None
        url = server_url or (stored.server_url if stored else None)
        if not url:
            raise NotLoggedIn("no server given and no stored login")
        self.server_url = normalize_server_url(url)
        self._creds = (
            stored if stored and normalize_server_url(stored.server_url) == self.server_url else None
        )
        self._other_server = stored.server_url if stored and self._creds is None else None
        self._refresh_lock = asyncio.Lock()
        self._http = httpx.AsyncClient(
            base_url=self.server_url,
            timeout=timeout,
            transport=transport,
            headers={"User-Agent": user_agent or f"melo-sdk/{__version__}"},
            follow_redirects=False,
        )

    async def __aenter__(self) -> "MeloClient":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- state ---------------------------------------------------------------------------------

    @property
    def credentials(self) -> Credentials | None:
        return self._creds

    @property
    def logged_in(self) -> bool:
        return self._creds is not None

    def _require_creds(self) -> Credentials:
        if self._creds is None:
            if self._other_server:
                raise NotLoggedIn(f"this profile is logged in to {self._other_server}, not {self.server_url}")
            raise NotLoggedIn("not logged in")
        return self._creds

    def _adopt(self, tokens: TokenResponse, username: str | None = None) -> Credentials:
        creds = Credentials(
            server_url=self.server_url,
            username=tokens.user.username if tokens.user else (username or ""),
            user_id=tokens.user.id if tokens.user else None,
            session_id=tokens.session_id,
            device_id=tokens.device_id,
            refresh_token=tokens.refresh_token,
            access_token=tokens.access_token,
            access_expires_at=time.time() + tokens.expires_in,
        )
        self._creds = creds
        self._other_server = None
        if self.store is not None:
            self.store.save(creds)
        return creds

    def _forget(self) -> None:
        self._creds = None
        if self.store is not None:
            self.store.clear()

    # -- transport -------------------------------------------------------------------------------

    async def _send(self, req: ApiRequest, access_token: str | None) -> httpx.Response:
        headers: dict[str, str] = {}
        if access_token is not None:
            headers["Authorization"] = f"Bearer {access_token}"
        if req.content_type is not None:
            headers["Content-Type"] = req.content_type
        try:
            return await self._http.request(
                req.method, req.path, json=req.json, params=req.params, content=req.content, headers=headers
            )
        except httpx.TimeoutException as exc:
            raise ServerUnreachable(
                f"{self.server_url} did not answer in time ({type(exc).__name__})"
            ) from None
        except httpx.TransportError as exc:
            raise ServerUnreachable(f"cannot reach {self.server_url} ({type(exc).__name__})") from None

    async def _send_patiently(self, req: ApiRequest, access_token: str | None) -> httpx.Response:
        """``_send``, waiting out short rate limits (the server refused the request: resending is safe)."""
        for _ in range(RATE_LIMIT_RETRIES):
            resp = await self._send(req, access_token)
            if resp.status_code != 429:
                return resp
            err = error_from_response(resp.status_code, resp.content, resp.headers)
            wait = err.retry_after if isinstance(err, RateLimited) else None
            if wait is None or wait < 0 or wait > self.rate_limit_wait:
                return resp
            log.info("rate limited on %s %s; retrying in %g s", req.method, req.path, wait)
            if self.on_rate_limited is not None:
                self.on_rate_limited(wait)
            await asyncio.sleep(wait)
        return await self._send(req, access_token)

    @staticmethod
    def _check(resp: httpx.Response) -> httpx.Response:
        if resp.status_code >= 400:
            raise error_from_response(resp.status_code, resp.content, resp.headers)
        if resp.status_code >= 300:
            raise ServerUnreachable(
                f"unexpected redirect ({resp.status_code}) from the server", status=resp.status_code
            )
        return resp

    async def _request(self, req: ApiRequest) -> httpx.Response:
        if not req.auth:
            return self._check(await self._send_patiently(req, None))
        creds = self._require_creds()
        if creds.access_expires_at - time.time() < REFRESH_MARGIN_S:
            await self._refresh_if_stale(creds.access_token)
        creds = self._require_creds()
        sent_with = creds.access_token
        resp = await self._send_patiently(req, sent_with)
        if resp.status_code == 401:
            err = error_from_response(resp.status_code, resp.content, resp.headers)
            if isinstance(err, NotAuthenticated) and err.code in REFRESHABLE_CODES:
                await self._refresh_if_stale(sent_with)
                resp = await self._send_patiently(req, self._require_creds().access_token)
            if resp.status_code == 401:
                self._maybe_forget(error_from_response(resp.status_code, resp.content, resp.headers))
        return self._check(resp)

    def _maybe_forget(self, err: MeloError) -> None:
        """A session the server has ended is useless: drop it so the next command says 'not logged in'."""
        if isinstance(err, SessionRevoked):
            self._forget()

    async def _json(self, req: ApiRequest, model: type[M]) -> M:
        resp = await self._request(req)
        try:
            return model.model_validate_json(resp.content)
        except ValidationError:
            raise ServerUnreachable(
                f"the server sent an unexpected reply to {req.method} {req.path}"
            ) from None

    # -- refresh -------------------------------------------------------------------------------

    async def _refresh_if_stale(self, stale_access_token: str) -> None:
        """Refresh unless someone else (this process or another) already replaced that access token."""
        async with self._refresh_lock:
            creds = self._require_creds()
            if (
                creds.access_token != stale_access_token
                and creds.access_expires_at - time.time() >= REFRESH_MARGIN_S
            ):
                return
            await self._refresh_locked(stale_access_token)

    async def refresh(self) -> Credentials:
        """Spend the refresh token for a new access token (and a new refresh token); save both."""
        async with self._refresh_lock:
            return await self._refresh_locked(None)

    async def _refresh_locked(self, stale_access_token: str | None) -> Credentials:
        if self.store is None:
            return await self._do_refresh(self._require_creds())
        async with self.store.refresh_lock():
            # Another process on this profile may have rotated the tokens while we waited.
            stored = self.store.load()
            if stored is not None and normalize_server_url(stored.server_url) == self.server_url:
                if self._creds is None or stored.refresh_token != self._creds.refresh_token:
                    self._creds = stored
                    if (
                        stale_access_token is not None
                        and stored.access_token != stale_access_token
                        and stored.access_expires_at - time.time() >= REFRESH_MARGIN_S
                    ):
                        return stored
            return await self._do_refresh(self._require_creds())

    async def _do_refresh(self, creds: Credentials) -> Credentials:
        resp = await self._send(api.refresh(creds.refresh_token), None)
        if resp.status_code >= 400:
            err = error_from_response(resp.status_code, resp.content, resp.headers)
            if (
                isinstance(err, ApiError)
                and err.code in SESSION_OVER_CODES
                and not isinstance(err, SessionRevoked)
            ):
                err = SessionRevoked(err.status, err.code, err.message, err.details)
            if isinstance(err, SessionRevoked | NotAuthenticated):
                # The refresh token is spent, unknown or its session is over: nothing left to retry with.
                self._forget()
                if isinstance(err, NotAuthenticated):
                    err = SessionRevoked(
                        err.status, err.code, "the stored session is no longer valid", err.details
                    )
            raise err
        self._check(resp)
        tokens = TokenResponse.model_validate_json(resp.content)
        return self._adopt(tokens, creds.username)

    # -- auth ----------------------------------------------------------------------------------

    async def register(
        self,
        username: str,
        password: str,
        registration_token: str | None = None,
        device_name: str | None = None,
    ) -> TokenResponse:
        """Create an account and log in as it (credentials are stored)."""
        tokens = await self._json(
            _build(api.register, username, password, registration_token, device_name), TokenResponse
        )
        self._adopt(tokens)
        return tokens

    async def login(self, username: str, password: str, device_name: str | None = None) -> TokenResponse:
        tokens = await self._json(_build(api.login, username, password, device_name), TokenResponse)
        self._adopt(tokens)
        return tokens

    async def logout(self) -> None:
        """End this session on the server and forget it locally (also when the server already ended it)."""
        try:
            await self._request(api.logout())
        except (SessionRevoked, NotAuthenticated):
            pass
        self._forget()

    async def whoami(self) -> AccountOut:
        return await self._json(api.whoami(), AccountOut)

    async def list_sessions(self) -> list[SessionOut]:
        return (await self._json(api.list_sessions(), SessionList)).sessions

    async def revoke_session(self, session_id: str) -> None:
        await self._request(_build(api.revoke_session, session_id))
        if self._creds is not None and session_id == self._creds.session_id:
            self._forget()

    async def revoke_other_sessions(self) -> int:
        return int((await self._request(api.revoke_other_sessions())).json()["revoked"])

    async def revoke_all_sessions(self) -> int:
        """Revoke every session including this one; local credentials are forgotten."""
        n = int((await self._request(api.revoke_all_sessions())).json()["revoked"])
        self._forget()
        return n

    # -- accounts --------------------------------------------------------------------------------

    async def get_user(self, username: str) -> UserPublic:
        return await self._json(_build(api.get_user, username), UserPublic)

    async def update_profile(self, display_name: str | None = None, bio: str | None = None) -> UserPublic:
        return await self._json(_build(api.update_profile, display_name, bio), UserPublic)

    async def set_avatar(self, data: bytes, content_type: str) -> UserPublic:
        return await self._json(_build(api.set_avatar, data, content_type), UserPublic)

    async def remove_avatar(self) -> UserPublic:
        return await self._json(api.remove_avatar(), UserPublic)

    async def change_password(self, current_password: str, new_password: str) -> int:
        """Returns how many other sessions the server revoked."""
        resp = await self._request(_build(api.change_password, current_password, new_password))
        return int(resp.json()["sessions_revoked"])

    # -- admin -----------------------------------------------------------------------------------

    async def admin_list_users(
        self, search: str | None = None, limit: int = 100, offset: int = 0
    ) -> AdminUserList:
        return await self._json(api.admin_list_users(search, limit, offset), AdminUserList)

    async def admin_show_user(self, username: str) -> AdminUserDetail:
        return await self._json(api.admin_show_user(username), AdminUserDetail)

    async def admin_ban(self, username: str, reason: str | None = None) -> AdminUserSummary:
        return await self._json(_build(api.admin_ban, username, reason), AdminUserSummary)

    async def admin_unban(self, username: str) -> AdminUserSummary:
        return await self._json(api.admin_user_action(username, "unban"), AdminUserSummary)

    async def admin_deactivate(self, username: str) -> AdminUserSummary:
        return await self._json(api.admin_user_action(username, "deactivate"), AdminUserSummary)

    async def admin_promote(self, username: str) -> AdminUserSummary:
        return await self._json(api.admin_user_action(username, "promote"), AdminUserSummary)

    async def admin_demote(self, username: str) -> AdminUserSummary:
        return await self._json(api.admin_user_action(username, "demote"), AdminUserSummary)

    async def admin_reset_password(
        self, username: str, new_password: str | None = None
    ) -> AdminPasswordResetOut:
        return await self._json(
            _build(api.admin_reset_password, username, new_password), AdminPasswordResetOut
        )

    async def admin_revoke_user_sessions(self, username: str) -> int:
        return int((await self._request(api.admin_revoke_user_sessions(username))).json()["revoked"])

    async def admin_get_registration(self) -> RegistrationMode:
        return (await self._json(api.admin_get_registration(), RegistrationModeBody)).mode

    async def admin_set_registration(self, mode: RegistrationMode | str) -> RegistrationMode:
        try:
            req = _build(api.admin_set_registration, mode)
        except ValueError:
            raise BadRequest(422, "validation_error", f"unknown registration mode {mode!r}") from None
        return (await self._json(req, RegistrationModeBody)).mode

    async def admin_create_token(
        self, expires_in_seconds: int | None = None, max_uses: int | None = None
    ) -> RegistrationTokenOut:
        return await self._json(
            _build(api.admin_create_token, expires_in_seconds, max_uses), RegistrationTokenOut
        )

    async def admin_list_tokens(self) -> list[RegistrationTokenOut]:
        return (await self._json(api.admin_list_tokens(), RegistrationTokenList)).tokens

    async def admin_revoke_token(self, token: str) -> RegistrationTokenOut:
        return await self._json(api.admin_revoke_token(token), RegistrationTokenOut)

    async def admin_stats(self) -> StatsOut:
        return await self._json(api.admin_stats(), StatsOut)

    async def admin_audit(self, limit: int = 50, action: str | None = None) -> AuditList:
        return await self._json(api.admin_audit(limit, action), AuditList)

    async def admin_list_keys(self) -> AdminKeyList:
        return await self._json(api.admin_list_keys(), AdminKeyList)

    async def admin_rotate_keys(self, jwt: bool = True, data: bool = False) -> KeyRotateResult:
        return await self._json(api.admin_rotate_keys(jwt, data), KeyRotateResult)

    # -- chats -----------------------------------------------------------------------------------

    async def create_direct(self, username: str) -> ChatOut:
        return await self._json(_build(api.create_direct, username), ChatOut)

    async def create_chat(self, kind: str, title: str, members: list[str] | None = None,
                          description: str | None = None) -> ChatOut:
        return await self._json(_build(api.create_chat, kind, title, members, description), ChatOut)

    async def list_chats(self) -> list[ChatOut]:
        return (await self._json(api.list_chats(), ChatList)).chats

    async def get_chat(self, chat_id: int) -> ChatOut:
        return await self._json(api.get_chat(chat_id), ChatOut)

    async def update_chat(self, chat_id: int, title: str | None = None, description: str | None = None,
                          slow_mode_seconds: int | None = None) -> ChatOut:
        return await self._json(_build(api.update_chat, chat_id, title, description, slow_mode_seconds), ChatOut)

    async def list_members(self, chat_id: int) -> list[MemberOut]:
        return (await self._json(api.list_members(chat_id), MemberList)).members

    async def add_member(self, chat_id: int, username: str) -> MemberOut:
        return await self._json(_build(api.add_member, chat_id, username), MemberOut)

    async def remove_member(self, chat_id: int, username: str) -> None:
        await self._request(api.remove_member(chat_id, username))

    async def change_role(self, chat_id: int, username: str, role: str) -> MemberOut:
        return await self._json(_build(api.change_role, chat_id, username, role), MemberOut)

    async def leave_chat(self, chat_id: int) -> None:
        await self._request(api.leave_chat(chat_id))

    async def transfer_chat(self, chat_id: int, username: str) -> None:
        await self._request(_build(api.transfer_chat, chat_id, username))

    async def create_invite(self, chat_id: int, expires_in_seconds: int | None = None,
                            max_uses: int | None = None) -> InviteOut:
        return await self._json(_build(api.create_invite, chat_id, expires_in_seconds, max_uses), InviteOut)

    async def list_invites(self, chat_id: int) -> list[InviteOut]:
        return (await self._json(api.list_invites(chat_id), InviteList)).invites

    async def revoke_invite(self, code: str) -> InviteOut:
        return await self._json(api.revoke_invite(code), InviteOut)

    async def join_invite(self, code: str) -> ChatOut:
        return await self._json(api.join_invite(code), ChatOut)

    # -- messages (raw: E2E chats need the encrypting layer on top) -----------------------------

    async def send_raw(self, chat_id: int, txn_id: str, text: str | None = None,
                       e2e: dict[str, Any] | None = None, reply_to: int | None = None,
                       recipient_devices: str | None = None) -> MessageOut:
        """``recipient_devices``: the digest of the devices ``e2e`` was encrypted for (checked by the server)."""
        return await self._json(_build(api.send_message, chat_id, txn_id, text, e2e, reply_to, recipient_devices),
                                MessageOut)

    async def history_raw(self, chat_id: int, before: int | None = None, after: int | None = None,
                          limit: int = 50) -> MessagePage:
        return await self._json(_build(api.history, chat_id, before, after, limit), MessagePage)

    async def edit_raw(self, chat_id: int, message_id: int, text: str | None = None,
                       e2e: dict[str, Any] | None = None, recipient_devices: str | None = None) -> MessageOut:
        return await self._json(_build(api.edit_message, chat_id, message_id, text, e2e, recipient_devices),
                                MessageOut)

    async def delete_message(self, chat_id: int, message_id: int) -> None:
        await self._request(api.delete_message(chat_id, message_id))

    async def react(self, chat_id: int, message_id: int, emoji: str, remove: bool = False) -> None:
        await self._request(_build(api.react, chat_id, message_id, emoji=emoji, remove=remove))

    async def list_pins(self, chat_id: int) -> list[MessageOut]:
        return (await self._json(api.list_pins(chat_id), MessagePage)).messages

    async def pin(self, chat_id: int, message_id: int, unpin: bool = False) -> None:
        await self._request(api.pin(chat_id, message_id, unpin))

    async def mark_read(self, chat_id: int, seq: int) -> None:
        await self._request(_build(api.mark_read, chat_id, seq))

    # -- scheduled messages, timers, retention (raw: E2E chats encrypt with the Messenger) ------------

    async def schedule_raw(self, chat_id: int, txn_id: str, send_at: datetime, text: str | None = None,
                           e2e: dict[str, Any] | None = None, reply_to: int | None = None) -> ScheduledOut:
        """Have the server send this at ``send_at`` (a zoned datetime); E2E chats give an envelope made now."""
        return await self._json(_build(api.schedule_message, chat_id, txn_id, send_at, text, e2e, reply_to),
                                ScheduledOut)

    async def list_scheduled(self) -> list[ScheduledOut]:
        return (await self._json(api.list_scheduled(), ScheduledList)).scheduled

    async def cancel_scheduled(self, scheduled_id: int) -> None:
        await self._request(api.cancel_scheduled(scheduled_id))

    async def set_timer(self, chat_id: int, seconds: int | None) -> TimerOut:
        return await self._json(_build(api.set_timer, chat_id, seconds), TimerOut)

    async def admin_set_retention(self, chat_id: int, days: int | None) -> RetentionOut:
        return await self._json(_build(api.admin_set_retention, chat_id, days), RetentionOut)

    async def admin_run_retention(self) -> RetentionRun:
        return await self._json(api.admin_run_retention(), RetentionRun)

    # -- web push ----------------------------------------------------------------------------------

    async def push_vapid(self) -> VapidKeyOut:
        return await self._json(api.push_vapid(), VapidKeyOut)

    async def push_subscribe(self, endpoint: str, p256dh: str, auth: str,
                             include_sender: bool = False) -> PushSubscriptionOut:
        """Subscribe this device (a second call with the same endpoint updates it)."""
        return await self._json(_build(api.push_subscribe, endpoint, p256dh, auth, include_sender),
                                PushSubscriptionOut)

    async def push_list(self) -> list[PushSubscriptionOut]:
        return (await self._json(api.push_list(), PushSubscriptionList)).subscriptions

    async def push_unsubscribe(self, subscription_id: int) -> None:
        await self._request(api.push_unsubscribe(subscription_id))

    # -- calls ---------------------------------------------------------------------------------------
    async def ice_servers(self) -> IceServers:
        """STUN and TURN servers for calls; TURN credentials expire after ``ttl_seconds``."""
        return await self._json(api.ice_servers(), IceServers)

    async def record_missed_call(self, chat_id: int, call_id: str, at: datetime | None = None) -> MissedCallOut:
        """A ``call.missed`` event in the chat (metadata only); ``at`` defaults to the server's clock."""
        return await self._json(_build(api.record_missed_call, chat_id, call_id, at), MissedCallOut)

    # -- keys and to-device ------------------------------------------------------------------------

    async def keys_upload(self, device_keys: dict[str, Any] | None = None,
                          one_time_keys: dict[str, Any] | None = None,
                          fallback_key: dict[str, Any] | None = None) -> KeyCounts:
        return await self._json(_build(api.keys_upload, device_keys, one_time_keys, fallback_key), KeyCounts)

    async def keys_count(self) -> KeyCounts:
        return await self._json(api.keys_count(), KeyCounts)

    async def keys_query(self, users: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
        return (await self._json(_build(api.keys_query, users), KeysQueryResult)).devices

    async def keys_claim(self, devices: dict[str, list[str]]) -> KeysClaimResult:
        return await self._json(_build(api.keys_claim, devices), KeysClaimResult)

    async def send_to_device(self, type_: str, messages: dict[str, dict[str, dict[str, Any]]]) -> int:
        return int((await self._request(_build(api.send_to_device, type_, messages))).json()["queued"])

    async def list_to_device(self, after: int = 0, limit: int = 100) -> list[ToDeviceOut]:
        return (await self._json(api.list_to_device(after, limit), ToDeviceList)).messages

    async def ack_to_device(self, ids: list[int]) -> int:
        """Forget exactly these processed to-device messages (a lower id that arrived late stays queued)."""
        return int((await self._request(_build(api.ack_to_device, ids))).json()["removed"])

    # -- the live stream -----------------------------------------------------------------------------

    async def access_token(self) -> str:
        """A fresh access token (refreshed when it expires soon), for the WebSocket's auth frame."""
        creds = self._require_creds()
        if creds.access_expires_at - time.time() < REFRESH_MARGIN_S:
            await self._refresh_if_stale(creds.access_token)
        return self._require_creds().access_token

    async def force_refresh(self, stale_access_token: str) -> None:
        await self._refresh_if_stale(stale_access_token)

    @property
    def ws_url(self) -> str:
        base = self.server_url
        return ("wss://" + base[len("https://"):] if base.startswith("https://")
                else "ws://" + base[len("http://"):]) + "/v1/ws"


__all__ = ["DEFAULT_RATE_LIMIT_WAIT_S", "REFRESH_MARGIN_S", "MeloClient"]
