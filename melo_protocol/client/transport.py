"""The REST transport under ``MeloClient``: all of the clients' HTTP I/O happens here.

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
from typing import ParamSpec, Self, TypeVar

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
from melo_protocol.wire import TokenResponse

REFRESH_MARGIN_S = 30.0
DEFAULT_TIMEOUT_S = 15.0
DEFAULT_RATE_LIMIT_WAIT_S = 30.0
RATE_LIMIT_RETRIES = 3  # waits per request before its 429 is raised
log = logging.getLogger("melo.sdk")
P = ParamSpec("P")
M = TypeVar("M", bound=BaseModel)


def build_request(builder: Callable[P, ApiRequest], *args: P.args, **kwargs: P.kwargs) -> ApiRequest:
    """Build a request; a value the wire model refuses becomes BadRequest, said in the user's words with
    the limit ("timer too long: 1,000 days, at most 366 days"); details name the fields, never values."""
    try:
        return builder(*args, **kwargs)
    except ValidationError as exc:
        errors = exc.errors()
        fields = sorted({".".join(str(p) for p in e["loc"]) or "body" for e in errors})
        raise BadRequest(422, "validation_error", describe_errors(errors), {"fields": fields}) from None


class RestTransport:
    """The HTTP half of ``MeloClient``: its credentials, authorised requests and token refreshes.

    Without ``server_url`` the store's server is used. Credentials for a different server than
    ``server_url`` are not used (a token is never sent to a server that did not issue it). The resource
    groups (``rest_accounts``, ``rest_chats``, ``rest_admin``, ``rest_devices``) build on ``_request``
    and ``_json``.
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
        self._creds = stored if stored and normalize_server_url(stored.server_url) == self.server_url else None
        self._other_server = stored.server_url if stored and self._creds is None else None
        self._refresh_lock = asyncio.Lock()
        self._http = httpx.AsyncClient(
            base_url=self.server_url,
            timeout=timeout,
            transport=transport,
            headers={"User-Agent": user_agent or f"melo-sdk/{__version__}"},
            follow_redirects=False,
        )

    async def __aenter__(self) -> Self:
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
            raise ServerUnreachable(f"{self.server_url} did not answer in time ({type(exc).__name__})") from None
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
            raise ServerUnreachable(f"the server sent an unexpected reply to {req.method} {req.path}") from None

    # -- refresh -------------------------------------------------------------------------------

    async def _refresh_if_stale(self, stale_access_token: str) -> None:
        """Refresh unless someone else (this process or another) already replaced that access token."""
        async with self._refresh_lock:
            creds = self._require_creds()
            if creds.access_token != stale_access_token and creds.access_expires_at - time.time() >= REFRESH_MARGIN_S:
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
            if isinstance(err, ApiError) and err.code in SESSION_OVER_CODES and not isinstance(err, SessionRevoked):
                err = SessionRevoked(err.status, err.code, err.message, err.details)
            if isinstance(err, SessionRevoked | NotAuthenticated):
                # The refresh token is spent, unknown or its session is over: nothing left to retry with.
                self._forget()
                if isinstance(err, NotAuthenticated):
                    err = SessionRevoked(err.status, err.code, "the stored session is no longer valid", err.details)
            raise err
        self._check(resp)
        tokens = TokenResponse.model_validate_json(resp.content)
        return self._adopt(tokens, creds.username)

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
        return (
            "wss://" + base[len("https://") :] if base.startswith("https://") else "ws://" + base[len("http://") :]
        ) + "/v1/ws"


__all__ = ["DEFAULT_RATE_LIMIT_WAIT_S", "REFRESH_MARGIN_S", "RestTransport", "build_request"]
