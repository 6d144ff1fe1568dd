"""Web Push (RFC 8030, 8291, 8292): VAPID keys, per-device subscriptions, pushes to offline members.

The VAPID key pair (ES256, P-256) is made at first start and kept in ``signing_keys`` (kind "vapid"),
its private half sealed with the server secret, so every worker signs with the same key.

After a message commits, the send path hands ``message_sent`` a small job; each worker drains its own
queue off the request path. A push carries no message content: the chat id, the recipient's unread
count, and the sender's name only when that subscription opted in. Bodies are aes128gcm (RFC 8291).
404 and 410 from the push service remove the subscription; 429, 5xx and network failures are retried
with exponential backoff (honouring Retry-After) up to ``push_max_attempts`` attempts.
"""

import asyncio
import base64
import hashlib
import json
import logging
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02
from pywebpush import WebPushException, webpush_async
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from melo_protocol.wire import ErrorCode
from melo_protocol.wire.chats import MessageOut
from server.config import Settings, is_loopback
from server.core.background import finish
from server.core.errors import ApiError
from server.core.secrets import SecretBox
from server.db.models import ChatMember, DeviceSession, Message, PushSubscription, ServerState, SigningKey
from server.db.types import utcnow
from server.realtime.presence import MemoryPresence, RedisPresence

log = logging.getLogger("melo.push")

VAPID_STATE = "vapid.kid"
VAPID_ALGORITHM = "ES256"
MAX_SUBSCRIPTIONS_PER_SESSION = 10
MAX_RETRY_DELAY_S = 300.0


def b64u(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def b64u_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class VapidKey:
    kid: str
    private: ec.EllipticCurvePrivateKey

    @property
    def public_raw(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )

    @property
    def application_server_key(self) -> str:
        """The public key as browsers and UnifiedPush distributors take it: base64url, uncompressed point."""
        return b64u(self.public_raw)


def _new_vapid_row(box: SecretBox) -> SigningKey:
    private = ec.generate_private_key(ec.SECP256R1())
    kid = "vapid-" + utcnow().strftime("%Y%m%d") + "-" + secrets.token_hex(4)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    raw = private.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    jwk = {
        "kty": "EC",
        "crv": "P-256",
        "x": b64u(raw[1:33]),
        "y": b64u(raw[33:]),
        "kid": kid,
        "alg": VAPID_ALGORITHM,
        "use": "sig",
    }
    return SigningKey(
        kid=kid,
        kind="vapid",
        algorithm=VAPID_ALGORITHM,
        activates_at=utcnow(),
        private_sealed=box.seal(pem, context=kid.encode()),
        public_jwk=json.dumps(jwk),
    )


async def ensure_vapid(sessions: async_sessionmaker[AsyncSession], box: SecretBox) -> VapidKey:
    """Make the VAPID key on first start (race-safe across workers) and load it."""
    async with sessions() as db:
        if await db.get(ServerState, VAPID_STATE) is None:
            row = _new_vapid_row(box)
            db.add(row)
            db.add(ServerState(key=VAPID_STATE, value=row.kid))
            try:
                await db.commit()
            except IntegrityError:
                await db.rollback()  # another worker made it first: use that one
    async with sessions() as db:
        state = await db.get(ServerState, VAPID_STATE)
        assert state is not None
        row = await db.get(SigningKey, state.value)
        assert row is not None
    pem = box.open(row.private_sealed, context=row.kid.encode())
    private = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    return VapidKey(row.kid, private)


# ---- subscriptions (the REST side) ------------------------------------------------------------------
def endpoint_hash(endpoint: str) -> str:
    return hashlib.sha256(endpoint.encode()).hexdigest()


def check_subscription(endpoint: str, p256dh: str, auth: str, *, server_host: str) -> None:
    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    if parts.scheme == "http":
        # plain http only to a push service on this machine, and only while the server itself is local
        if not (is_loopback(host) and is_loopback(server_host)):
            raise ApiError(
                ErrorCode.VALIDATION_ERROR, "a push endpoint must be an https:// URL", {"field": "endpoint"}, status=400
            )
    elif parts.scheme != "https" or not host:
        raise ApiError(
            ErrorCode.VALIDATION_ERROR, "a push endpoint must be an https:// URL", {"field": "endpoint"}, status=400
        )
    try:
        public = b64u_decode(p256dh)
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public)
        if len(public) != 65:
            raise ValueError("not an uncompressed point")
    except ValueError:
        raise ApiError(
            ErrorCode.VALIDATION_ERROR,
            "p256dh must be the subscription's P-256 public key (base64url, uncompressed point)",
            {"field": "p256dh"},
            status=400,
        ) from None
    try:
        secret = b64u_decode(auth)
    except ValueError:
        secret = b""
    if len(secret) != 16:
        raise ApiError(
            ErrorCode.VALIDATION_ERROR,
            "auth must be the 16-byte auth secret (base64url)",
            {"field": "auth"},
            status=400,
        )


async def subscribe(
    db: AsyncSession,
    user_id: int,
    session_id: str,
    endpoint: str,
    p256dh: str,
    auth: str,
    include_sender: bool,
    *,
    server_host: str,
) -> tuple[PushSubscription, bool]:
    """Add (or update) this device's subscription; (row, created). ``server_host``: this server's listen
    host (a plain-http endpoint is allowed only while both are on loopback)."""
    check_subscription(endpoint, p256dh, auth, server_host=server_host)
    digest = endpoint_hash(endpoint)
    row = await db.scalar(
        select(PushSubscription).where(
            PushSubscription.session_id == session_id, PushSubscription.endpoint_hash == digest
        )
    )
    created = row is None
    if row is None:
        count = await db.scalar(
            select(func.count(PushSubscription.id)).where(PushSubscription.session_id == session_id)
        )
        if int(count or 0) >= MAX_SUBSCRIPTIONS_PER_SESSION:
            raise ApiError(
                ErrorCode.VALIDATION_ERROR,
                f"a device holds at most {MAX_SUBSCRIPTIONS_PER_SESSION} push subscriptions",
                status=409,
            )
        row = PushSubscription(
            user_id=user_id, session_id=session_id, endpoint=endpoint, endpoint_hash=digest, created_at=utcnow()
        )
        db.add(row)
    row.p256dh, row.auth, row.include_sender = p256dh, auth, include_sender
    try:
        await db.commit()
    except IntegrityError:  # the same device subscribed the same endpoint concurrently
        await db.rollback()
        row = await db.scalar(
            select(PushSubscription).where(
                PushSubscription.session_id == session_id, PushSubscription.endpoint_hash == digest
            )
        )
        if row is None:
            raise
        created = False
    return row, created


async def list_subscriptions(db: AsyncSession, user_id: int) -> list[tuple[PushSubscription, str]]:
    rows = await db.execute(
        select(PushSubscription, DeviceSession.device_id)
        .join(DeviceSession, DeviceSession.id == PushSubscription.session_id)
        .where(PushSubscription.user_id == user_id)
        .order_by(PushSubscription.id)
    )
    return [(r[0], r[1]) for r in rows.all()]


async def unsubscribe(db: AsyncSession, user_id: int, subscription_id: int) -> None:
    gone = await db.execute(
        delete(PushSubscription).where(PushSubscription.id == subscription_id, PushSubscription.user_id == user_id)
    )
    await db.commit()
    if gone.rowcount == 0:  # type: ignore[attr-defined]
        raise ApiError(ErrorCode.NOT_FOUND, "no such push subscription of yours", {"subscription_id": subscription_id})


# ---- delivery (per worker, off the request path) ----------------------------------------------------
@dataclass(frozen=True)
class PushJob:
    chat_id: int
    seq: int
    sender_id: int
    sender: str


@dataclass(frozen=True)
class _Target:
    subscription_id: int
    endpoint: str
    p256dh: str
    auth: str
    payload: bytes


class PushService:
    def __init__(
        self,
        *,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        presence: MemoryPresence | RedisPresence,
        vapid: VapidKey,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.presence = presence
        self.vapid = vapid
        self._signer = Vapid02(private_key=vapid.private)
        self._queue: asyncio.Queue[PushJob] = asyncio.Queue(maxsize=settings.push_queue_size)
        self._task: asyncio.Task[None] | None = None
        self._deliveries: set[asyncio.Task[None]] = set()
        self._http: aiohttp.ClientSession | None = None
        self.stats = {"sent": 0, "removed": 0, "retried": 0, "failed": 0, "dropped": 0}

    async def start(self) -> None:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.settings.push_timeout_s))
        self._task = asyncio.create_task(self._run(), name="melo-push")

    async def stop(self) -> None:
        # bounded: a task cancelled inside a database call may take long to unwind (asyncmy)
        await finish([self._task, *self._deliveries], what="push")
        if self._http is not None:
            await self._http.close()

    def message_sent(self, message: MessageOut) -> None:
        """Called after a message commits: queue its pushes; never blocks or fails the send."""
        job = PushJob(message.chat_id, message.seq, message.sender_id, message.sender)
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            self.stats["dropped"] += 1
            log.warning("push queue full: pushes for chat %s seq %s dropped", job.chat_id, job.seq)

    async def _run(self) -> None:
        while True:
            job = await self._queue.get()
            try:
                for target in await self.targets(job):
                    task = asyncio.create_task(self._deliver(target), name="melo-push-deliver")
                    self._deliveries.add(task)
                    task.add_done_callback(self._deliveries.discard)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("push fan-out failed for chat %s seq %s", job.chat_id, job.seq)
            finally:
                self._queue.task_done()

    async def settle(self) -> None:
        """Wait until every queued push has been fanned out and every delivery has finished."""
        await self._queue.join()
        while self._deliveries:
            await asyncio.gather(*list(self._deliveries), return_exceptions=True)

    async def targets(self, job: PushJob) -> list[_Target]:
        """Subscriptions of the chat's members who have no connected device, with their payloads."""
        async with self.sessions() as db:
            members = [
                int(u)
                for u in (
                    await db.scalars(
                        select(ChatMember.user_id).where(
                            ChatMember.chat_id == job.chat_id,
                            ChatMember.left_seq.is_(None),
                            ChatMember.user_id != job.sender_id,
                        )
                    )
                ).all()
            ]
            if not members:
                return []
            online = await self.presence.online(members)
            offline = [u for u in members if u not in online]
            if not offline:
                return []
            subs = (
                await db.scalars(
                    select(PushSubscription)
                    .join(DeviceSession, DeviceSession.id == PushSubscription.session_id)
                    .where(PushSubscription.user_id.in_(offline), DeviceSession.revoked_at.is_(None))
                )
            ).all()
            if not subs:
                return []
            unread_rows = await db.execute(
                select(ChatMember.user_id, func.count(Message.id))
                .join(
                    Message,
                    (Message.chat_id == ChatMember.chat_id)
                    & (Message.seq > ChatMember.read_seq)
                    & (Message.sender_id != ChatMember.user_id)
                    & Message.deleted_at.is_(None),
                )
                .where(ChatMember.chat_id == job.chat_id, ChatMember.user_id.in_({s.user_id for s in subs}))
                .group_by(ChatMember.user_id)
            )
            unread = {int(u): int(n) for u, n in unread_rows.all()}
        out = []
        for s in subs:
            body: dict[str, Any] = {
                "type": "message",
                "chat_id": job.chat_id,
                "seq": job.seq,
                "unread": unread.get(int(s.user_id), 0),
            }
            if s.include_sender:
                body["sender"] = job.sender
            out.append(_Target(s.id, s.endpoint, s.p256dh, s.auth, json.dumps(body, separators=(",", ":")).encode()))
        return out

    async def _deliver(self, target: _Target) -> None:
        settings = self.settings
        for attempt in range(1, settings.push_max_attempts + 1):
            status, retry_after = await self._send_once(target)
            if 200 <= status < 300:
                self.stats["sent"] += 1
                async with self.sessions() as db:
                    await db.execute(
                        update(PushSubscription)
                        .where(PushSubscription.id == target.subscription_id)
                        .values(last_success_at=utcnow())
                    )
                    await db.commit()
                return
            if status in (404, 410):  # the subscription is gone for good
                self.stats["removed"] += 1
                async with self.sessions() as db:
                    await db.execute(delete(PushSubscription).where(PushSubscription.id == target.subscription_id))
                    await db.commit()
                log.info("push subscription %s removed: the push service answered %s", target.subscription_id, status)
                return
            retryable = status == 0 or status == 429 or status >= 500
            if not retryable or attempt == settings.push_max_attempts:
                self.stats["failed"] += 1
                log.warning(
                    "push to subscription %s failed with %s after %d attempt(s)",
                    target.subscription_id,
                    status or "a network error",
                    attempt,
                )
                return
            self.stats["retried"] += 1
            delay = settings.push_backoff_s * 2 ** (attempt - 1)
            if retry_after is not None:
                delay = max(delay, retry_after)
            await asyncio.sleep(min(delay, MAX_RETRY_DELAY_S))

    async def _send_once(self, target: _Target) -> tuple[int, float | None]:
        """One POST to the push service: (HTTP status or 0 for a network failure, Retry-After seconds)."""
        try:
            response = await webpush_async(
                subscription_info={"endpoint": target.endpoint, "keys": {"p256dh": target.p256dh, "auth": target.auth}},
                data=target.payload,
                vapid_private_key=self._signer,
                # aud (the push service's origin) and exp (12 h ahead) are filled in per request
                vapid_claims={"sub": self.settings.push_vapid_subject},
                content_encoding="aes128gcm",
                ttl=self.settings.push_ttl_seconds,
                timeout=self.settings.push_timeout_s,
                aiohttp_session=self._http,
            )
        except WebPushException as exc:
            return int(exc.status_code or 0), _seconds(exc.retry_after)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.info("push to subscription %s: %s", target.subscription_id, type(exc).__name__)
            return 0, None
        return int(response.status), None  # type: ignore[union-attr]


def _seconds(retry_after: str | None) -> float | None:
    if retry_after is None:
        return None
    try:
        return max(0.0, float(retry_after))
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff
