"""SQLAlchemy 2 models. The database is the source of truth; Redis only caches and wakes."""

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
)
from sqlalchemy.dialects.mysql import LONGTEXT, VARCHAR
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from server.db.types import UTCDateTime, utcnow

# BigInteger ids that autoincrement on SQLite too (SQLite only does it for INTEGER PRIMARY KEY).
BigIntId = BigInteger().with_variant(Integer(), "sqlite")

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


# Ids of these tables are positions or are referred to after deletion: SQLite must never reuse one
# (without AUTOINCREMENT it hands out max(id)+1 again once the newest rows are deleted).
NO_REUSE = {"sqlite_autoincrement": True}


class User(Base):
    __tablename__ = "users"
    __table_args__ = NO_REUSE

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    # Always the canonical lower-case ASCII form, so uniqueness is case-insensitive on every backend.
    username: Mapped[str] = mapped_column(String(32), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    display_name: Mapped[str | None] = mapped_column(String(64))
    bio: Mapped[str | None] = mapped_column(String(280))
    avatar_etag: Mapped[str | None] = mapped_column(String(64))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    banned_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ban_reason: Mapped[str | None] = mapped_column(String(500))
    deactivated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Avatar(Base):
    __tablename__ = "avatars"

    user_id: Mapped[int] = mapped_column(
        BigIntId, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    content_type: Mapped[str] = mapped_column(String(32))
    etag: Mapped[str] = mapped_column(String(64))
    data: Mapped[bytes] = mapped_column(LargeBinary(length=16 * 1024 * 1024))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class DeviceSession(Base):
    """One login = one device session; its refresh token is the device token."""

    __tablename__ = "sessions"
    __table_args__ = (Index("ix_sessions_user_revoked", "user_id", "revoked_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(BigIntId, ForeignKey("users.id", ondelete="CASCADE"))
    device_id: Mapped[str] = mapped_column(String(32), unique=True)
    device_name: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(256))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoke_reason: Mapped[str | None] = mapped_column(String(64))


class RefreshToken(Base):
    """Every refresh token ever issued, by SHA-256; a spent one presented again revokes the session."""

    __tablename__ = "refresh_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    session_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("sessions.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    spent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class SigningKey(Base):
    """JWT signing keys and at-rest data keys. Private halves are sealed with the server secret.

    ``activates_at``: from when the key is used (signs or seals). A new JWT key is published first, with
    no activation time, and gets one only once it is in the database, so that every worker serves it in
    its JWKS before any worker signs with it (server/core/jwt_keys.py).
    """

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), default="jwt")
    algorithm: Mapped[str] = mapped_column(String(16))
    private_sealed: Mapped[str] = mapped_column(Text)
    public_jwk: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    activates_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ServerState(Base):
    """Small runtime settings shared by every worker (registration mode, active key ids)."""

    __tablename__ = "server_state"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class RegistrationToken(Base):
    __tablename__ = "registration_tokens"

    token: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_by: Mapped[int | None] = mapped_column(BigIntId, ForeignKey("users.id", ondelete="SET NULL"))
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    max_uses: Mapped[int | None] = mapped_column(Integer)
    uses: Mapped[int] = mapped_column(Integer, default=0)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class AuditLog(Base):
    __tablename__ = "audit_log"
    __table_args__ = NO_REUSE

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    actor_id: Mapped[int | None] = mapped_column(BigInteger)
    actor_username: Mapped[str | None] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str | None] = mapped_column(String(128))
    outcome: Mapped[str] = mapped_column(String(32))
    details: Mapped[str] = mapped_column(Text, default="{}")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


# ---- conversations ---------------------------------------------------------------------------------
class Chat(Base):
    __tablename__ = "chats"
    __table_args__ = NO_REUSE

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    title: Mapped[str | None] = mapped_column(String(128))
    description: Mapped[str | None] = mapped_column(String(1000))
    e2e: Mapped[bool] = mapped_column(Boolean, default=True)
    # "<low user id>:<high user id>" for DMs: one chat per pair, enforced by the unique index
    direct_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    slow_mode_seconds: Mapped[int] = mapped_column(Integer, default=0)
    # Per-chat event counter, bumped under the row lock of the transaction that adds an event, so
    # events of one chat commit in seq order and a resume by (chat, seq) never skips one.
    last_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    # events at or below this seq were removed by retention: an older cursor needs a resync
    purged_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    # retention: messages older than this many days are deleted (None: the server default)
    retention_days: Mapped[int | None] = mapped_column(Integer)
    # disappearing messages: messages sent since message_ttl_since vanish this many seconds after sending
    message_ttl_seconds: Mapped[int | None] = mapped_column(Integer)
    message_ttl_since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_by: Mapped[int | None] = mapped_column(BigIntId, ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ChatMember(Base):
    """Membership, kept after leaving (left_seq) so a removed member still receives its removal."""

    __tablename__ = "chat_members"
    __table_args__ = (Index("ix_chat_members_user", "user_id", "left_seq"),)

    chat_id: Mapped[int] = mapped_column(BigIntId, ForeignKey("chats.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(BigIntId, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    role: Mapped[str] = mapped_column(String(16), default="member")
    joined_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    joined_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    left_seq: Mapped[int | None] = mapped_column(BigInteger)
    read_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    delivered_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    last_post_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (Index("ix_messages_chat_seq", "chat_id", "seq", unique=True), NO_REUSE)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    chat_id: Mapped[int] = mapped_column(BigIntId, ForeignKey("chats.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(BigInteger)
    sender_id: Mapped[int] = mapped_column(BigIntId, ForeignKey("users.id", ondelete="CASCADE"))
    sender_device: Mapped[str | None] = mapped_column(String(32))
    # "text" (stored sealed under a data key for channels), "e2e" (the client's envelope, as JSON)
    kind: Mapped[str] = mapped_column(String(8))
    body: Mapped[str | None] = mapped_column(Text().with_variant(LONGTEXT(), "mysql"))
    key_id: Mapped[str | None] = mapped_column(String(64), index=True)
    reply_to: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    edited_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    pinned_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class MessageTxn(Base):
    """Idempotency: (session, client transaction id) → the message it created. Written in the
    message's own transaction, so a failed attempt leaves nothing behind."""

    __tablename__ = "message_txns"

    session_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    txn_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    message_id: Mapped[int] = mapped_column(BigIntId, ForeignKey("messages.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


class Reaction(Base):
    __tablename__ = "reactions"

    message_id: Mapped[int] = mapped_column(
        BigIntId, ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(BigIntId, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    # binary collation: MySQL's *_ci collations treat distinct emoji as equal
    emoji: Mapped[str] = mapped_column(
        String(32).with_variant(VARCHAR(32, charset="utf8mb4", collation="utf8mb4_bin"), "mysql"),
        primary_key=True,
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ChatEvent(Base):
    """The resumable stream: one row per chat event, keyed by (chat, seq). Message content is not
    copied here; message events are filled from the messages table when replayed."""

    __tablename__ = "chat_events"

    chat_id: Mapped[int] = mapped_column(BigIntId, ForeignKey("chats.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    type: Mapped[str] = mapped_column(String(32))
    message_id: Mapped[int | None] = mapped_column(BigInteger)
    payload: Mapped[str] = mapped_column(Text, default="{}")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Invite(Base):
    __tablename__ = "invites"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    chat_id: Mapped[int] = mapped_column(BigIntId, ForeignKey("chats.id", ondelete="CASCADE"), index=True)
    created_by: Mapped[int | None] = mapped_column(BigIntId, ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    max_uses: Mapped[int | None] = mapped_column(Integer)
    uses: Mapped[int] = mapped_column(Integer, default=0)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


# ---- end-to-end key directory ----------------------------------------------------------------------
class DeviceKeys(Base):
    """A device's signed identity keys (public only). Removed when its session ends."""

    __tablename__ = "device_keys"

    device_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(BigIntId, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    curve25519: Mapped[str] = mapped_column(String(64))
    ed25519: Mapped[str] = mapped_column(String(64))
    keys_json: Mapped[str] = mapped_column(Text)
    uploaded_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class OneTimeKey(Base):
    """Signed one-time keys; each is handed out exactly once (deleted by the claim that wins it)."""

    __tablename__ = "one_time_keys"

    device_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class FallbackKey(Base):
    """Handed out when a device has no one-time key left; reusable until replaced."""

    __tablename__ = "fallback_keys"

    device_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(64))
    key_json: Mapped[str] = mapped_column(Text)
    used: Mapped[bool] = mapped_column(Boolean, default=False)


class ToDeviceMessage(Base):
    """Queued per recipient device until it acknowledges them (or they expire)."""

    __tablename__ = "to_device"
    __table_args__ = (Index("ix_to_device_recipient", "recipient_device", "id"), NO_REUSE)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    recipient_device: Mapped[str] = mapped_column(String(32))
    sender_user_id: Mapped[int] = mapped_column(BigInteger)
    sender_device: Mapped[str] = mapped_column(String(32))
    type: Mapped[str] = mapped_column(String(64))
    content: Mapped[str] = mapped_column(Text().with_variant(LONGTEXT(), "mysql"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


# ---- background duties: web push and scheduled messages ---------------------------------------------
class PushSubscription(Base):
    """A device's Web Push subscription (RFC 8030): where to POST, and its RFC 8291 keys (public)."""

    __tablename__ = "push_subscriptions"
    __table_args__ = (Index("ix_push_subscriptions_session_endpoint", "session_id", "endpoint_hash", unique=True),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(BigIntId, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    session_id: Mapped[str] = mapped_column(String(32), ForeignKey("sessions.id", ondelete="CASCADE"))
    endpoint: Mapped[str] = mapped_column(Text)
    endpoint_hash: Mapped[str] = mapped_column(String(64))
    p256dh: Mapped[str] = mapped_column(String(128))
    auth: Mapped[str] = mapped_column(String(64))
    include_sender: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ScheduledMessage(Base):
    """A message to send later through the normal send path; the request is kept sealed at rest."""

    __tablename__ = "scheduled_messages"
    __table_args__ = (
        Index("ix_scheduled_messages_due", "sent_at", "send_at"),
        Index("ix_scheduled_messages_session_txn", "session_id", "txn_id", unique=True),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    chat_id: Mapped[int] = mapped_column(BigIntId, ForeignKey("chats.id", ondelete="CASCADE"), index=True)
    sender_id: Mapped[int] = mapped_column(BigIntId, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    session_id: Mapped[str] = mapped_column(String(32), ForeignKey("sessions.id", ondelete="CASCADE"))
    device_id: Mapped[str] = mapped_column(String(32))
    txn_id: Mapped[str] = mapped_column(String(64))
    payload_sealed: Mapped[str] = mapped_column(Text().with_variant(LONGTEXT(), "mysql"))
    send_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    message_id: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[str | None] = mapped_column(String(64))
