"""Live-stream frames in, typed events out: the pure half of the Messenger's reading.

No network, no clock, no crypto store: the one thing that needs crypto (decrypting a message) is
injected as a callable, and whatever must happen elsewhere (forget a cached copy, send a delivered
receipt, look up a user's changed devices, decrypt a to-device message) comes back as an *effect*
for the Messenger to carry out, in order, before it yields the events (h11's events in, actions out).
Tests feed frames as dicts and read the events and effects.
"""

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from melo_protocol.client import events as ev
from melo_protocol.crypto import (
    CryptoEvent,
    DecryptedChatMessage,
    IdentityChanged,
    OlmPayload,
    RoomKeyReceived,
    TrustState,
)
from melo_protocol.wire.chats import MessageOut

TEXT = "m.text"
EMOTE = "m.emote"
KEY_REQUEST = "m.room_key_request"
SAS_PREFIX = "m.key.verification."
CALL_PREFIX = "m.call."


# -- effects: what the Messenger does for a frame before it yields the frame's events --------------------------
@dataclass(frozen=True)
class ForgetMessage:
    """A message was deleted (or expired by the chat's timer): the device forgets its plaintext copy too."""

    chat_id: int
    message_id: int


@dataclass(frozen=True)
class SendDelivered:
    """Someone else's message arrived: tell its sender this device has it (coalesced, best effort)."""

    chat_id: int
    seq: int


@dataclass(frozen=True)
class MembersChanged:
    """Whom the chat's messages are for changed; ``left``: a member left or was removed (no later keys)."""

    chat_id: int
    left: bool


@dataclass(frozen=True)
class ChatChanged:
    """The chat's settings changed: read it again when next needed."""

    chat_id: int


@dataclass(frozen=True)
class DevicesChanged:
    """A user's devices changed: look again (a new device of a contact is flagged at once)."""

    user: str


@dataclass(frozen=True)
class KeysLow:
    """The server is running out of this device's one-time keys: upload more."""


@dataclass(frozen=True)
class ToDevice:
    """An Olm-encrypted message for this device: decrypt it, act on it, acknowledge it."""

    frame: Mapping[str, Any]


Effect = ForgetMessage | SendDelivered | MembersChanged | ChatChanged | DevicesChanged | KeysLow | ToDevice


@dataclass
class Translated:
    events: list[ev.Event] = field(default_factory=list)
    effects: list[Effect] = field(default_factory=list)


# -- messages as a person sees them ------------------------------------------------------------------------------
def message_view(
    out: MessageOut,
    text: str | None,
    status: ev.MessageStatus,
    *,
    own_user_id: int,
    kind: str = TEXT,
    verified: bool = False,
) -> ev.Message:
    """The typed message for a server's message: a deleted one says so whatever was asked; our own
    messages count as verified (we sent them)."""
    return ev.Message(
        id=out.id,
        chat_id=out.chat_id,
        seq=out.seq,
        sender=out.sender,
        sender_device=out.sender_device,
        text=text,
        status="deleted" if out.deleted else status,
        created_at=out.created_at,
        reply_to=out.reply_to,
        edited_at=out.edited_at,
        reactions=dict(out.reactions),
        pinned=out.pinned,
        verified=verified or out.sender_id == own_user_id,
        kind="emote" if kind == EMOTE else "text",
    )


def decrypted_view(out: MessageOut, plain: DecryptedChatMessage, *, own_user_id: int) -> ev.Message:
    """The message for what the crypto machine decrypted out of ``out``."""
    if plain.sender_user_id != out.sender_id:  # the server must not re-attribute a message
        return message_view(out, None, "undecryptable", own_user_id=own_user_id)
    body = plain.content.get("body")
    kind = str(plain.content.get("type", TEXT))
    return message_view(
        out,
        body if isinstance(body, str) else None,
        "ok",
        own_user_id=own_user_id,
        kind=kind,
        verified=plain.trust is TrustState.VERIFIED,
    )


# -- to-device payloads -------------------------------------------------------------------------------------------
def is_verification(payload: OlmPayload) -> bool:
    return payload.type.startswith(SAS_PREFIX)


def is_key_request(payload: OlmPayload) -> bool:
    return payload.type == KEY_REQUEST


def call_signal(payload: OlmPayload, sender: str) -> ev.CallSignal | None:
    """A call's signal (invite, answer, hangup…) from ``sender``; None for any other payload."""
    if not payload.type.startswith(CALL_PREFIX):
        return None
    content = dict(payload.content)
    return ev.CallSignal(
        user=sender,
        device_id=payload.sender_device_id,
        call_id=str(content.get("call_id", "")),
        action=payload.type[len(CALL_PREFIX) :],
        data=content,
    )


class Translator:
    """Frames of the live stream (and the crypto machine's events) to typed events; holds no I/O.

    ``decrypt`` turns a live server message into the typed one (the Messenger decrypts, caches and
    persists the crypto state it moved).
    State kept here: our own read position per chat (a receipt that does not move it is noise), and
    which messages wait for a room key (retried when the key arrives).
    """

    def __init__(self, decrypt: Callable[[MessageOut], ev.Message]) -> None:
        self.decrypt = decrypt
        self.username = ""
        self._own_read: dict[int, int] = {}  # chat id → our read position as last announced
        self._waiting: dict[str, list[tuple[int, dict[str, Any]]]] = {}  # session id → (chat id, message data)

    def wait_for_key(self, session_id: str, out: MessageOut) -> None:
        """``out`` could not be decrypted yet: its session's key is asked for and may come later."""
        self._waiting.setdefault(session_id, []).append((out.chat_id, out.model_dump(mode="json")))

    def translate(self, frame: Mapping[str, Any]) -> Translated:
        kind = frame.get("type")
        chat_id, seq = frame.get("chat_id"), frame.get("seq")
        data = frame.get("data") or {}
        if kind in ("message.created", "message.edited"):
            return self._message(kind, chat_id, seq, data)
        if kind == "message.deleted":
            effects: list[Effect] = []
            if isinstance(chat_id, int):
                effects.append(ForgetMessage(chat_id, int(data.get("message_id", 0))))
            deleted = ev.MessageDeleted(
                chat_id=chat_id, seq=seq, message_id=data.get("message_id", 0), by=data.get("by", "")
            )
            return Translated([deleted], effects)
        if kind in ("reaction.added", "reaction.removed"):
            reaction = ev.ReactionChanged(
                chat_id=chat_id,
                seq=seq,
                message_id=data.get("message_id", 0),
                user=data.get("user", ""),
                emoji=data.get("emoji", ""),
                added=kind == "reaction.added",
            )
            return Translated([reaction])
        if kind in ("message.pinned", "message.unpinned"):
            pin = ev.PinChanged(
                chat_id=chat_id,
                seq=seq,
                message_id=data.get("message_id", 0),
                by=data.get("by", ""),
                pinned=kind == "message.pinned",
            )
            return Translated([pin])
        if kind == "receipt":
            return self._receipt(chat_id, seq, data)
        if kind == "typing":
            typing = ev.Typing(
                chat_id=chat_id,
                user=frame.get("user", ""),
                typing=bool(frame.get("typing")),
                expires_in=int(frame.get("expires_in", 6)),
            )
            return Translated([typing])
        if kind == "presence":
            last = frame.get("last_seen")
            presence = ev.Presence(
                user=frame.get("user", ""),
                online=bool(frame.get("online")),
                last_seen=datetime.fromisoformat(last) if last else None,
            )
            return Translated([presence])
        if kind and kind.startswith("member."):
            assert isinstance(chat_id, int)
            change = kind.split(".", 1)[1]
            user = (data.get("user") or {}).get("username", "")
            member = ev.MemberChanged(
                chat_id=chat_id,
                seq=seq,
                change=change,  # type: ignore[arg-type]
                user=user,
                role=data.get("role"),
                by=data.get("by"),
            )
            return Translated([member], [MembersChanged(chat_id, left=change in ("left", "removed"))])
        if kind in ("chat.created", "chat.updated"):
            changed = ev.ChatChanged(chat_id=chat_id, seq=seq, change=kind.split(".")[1], data=data)  # type: ignore[arg-type]
            return Translated([changed], [ChatChanged(chat_id)] if isinstance(chat_id, int) else [])
        if kind == "call.missed":
            missed = ev.CallMissed(
                chat_id=chat_id,
                seq=seq,
                call_id=str(data.get("call_id", "")),
                caller=str(data.get("caller", "")),
                at=str(data.get("at", "")),
            )
            return Translated([missed])
        if kind == "to_device":
            return Translated([], [ToDevice(frame)])
        if kind == "devices.changed":
            return Translated([], [DevicesChanged(str(frame.get("user", "")))])
        if kind == "keys.low":
            return Translated([], [KeysLow()])
        if kind == "resync_required":
            return Translated([ev.ResyncRequired(chat_ids=list(frame.get("chat_ids", [])))])
        return Translated()

    def _message(self, kind: str, chat_id: Any, seq: Any, data: Mapping[str, Any]) -> Translated:
        out = MessageOut.model_validate(data)
        message = self.decrypt(out)
        if kind == "message.edited":
            return Translated([ev.MessageEdited(chat_id=chat_id, seq=seq, message=message)])
        effects: list[Effect] = []
        if message.sender != self.username and isinstance(chat_id, int):
            effects.append(SendDelivered(chat_id, out.seq))
        return Translated([ev.MessageReceived(chat_id=chat_id, seq=seq, message=message)], effects)

    def _receipt(self, chat_id: Any, seq: Any, data: Mapping[str, Any]) -> Translated:
        if data.get("user") == self.username and isinstance(chat_id, int):
            # our own receipt: only a move of our read position matters (other devices' unread counts);
            # the delivered receipts this device sends itself would be noise for every consumer
            read = int(data.get("read_seq", 0))
            if read <= self._own_read.get(chat_id, 0):
                return Translated()
            self._own_read[chat_id] = read
        receipt = ev.ReceiptUpdated(
            chat_id=chat_id,
            seq=seq,
            user=data.get("user", ""),
            read_seq=data.get("read_seq", 0),
            delivered_seq=data.get("delivered_seq", 0),
        )
        return Translated([receipt])

    def crypto_events(
        self,
        events: Iterable[CryptoEvent],
        usernames: Mapping[int, str],
        decrypt: Callable[[MessageOut], ev.Message],
    ) -> list[ev.Event]:
        """What the crypto machine noticed, for the user: a changed identity key is a loud warning; a room
        key that arrived makes the messages that waited for it readable (each an edit of the message).

        ``decrypt`` here, not the live one: this may run in the middle of a send, where the crypto store
        must not be flushed."""
        out: list[ev.Event] = []
        for event in events:
            if isinstance(event, IdentityChanged):
                user = usernames.get(event.user_id, str(event.user_id))
                out.append(ev.KeyWarning(user=user, device_id=event.device_id, reason="identity_changed"))
            elif isinstance(event, RoomKeyReceived):
                for chat_id, data in self._waiting.pop(event.session_id, []):
                    message = decrypt(MessageOut.model_validate(data))
                    out.append(ev.MessageEdited(chat_id=chat_id, seq=data.get("seq"), message=message))
        return out
