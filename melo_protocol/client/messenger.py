"""``Messenger``: the high-level SDK that melo_cli and melo_tui drive.

It joins the REST client, the live stream and the E2E crypto machine: messages to direct chats and
groups are Megolm-encrypted before they leave (room keys go to every member device over Olm), events
from the stream are decrypted and come out as the typed events of ``events.py``. No UI code here.

    async with Messenger.open(client, store) as m:
        await m.send_text(chat_id, "hello")
        async for event in m.events():
            ...
"""

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from melo_protocol.client import events as ev
from melo_protocol.client.cache import MessageCache
from melo_protocol.client.errors import BadRequest, Conflict, MeloError, NotFound
from melo_protocol.client.keystore import load_or_create_store_key
from melo_protocol.client.rest import MeloClient
from melo_protocol.client.tokens import CredentialStore
from melo_protocol.crypto import (
    CryptoMachine,
    CryptoStore,
    DecryptionError,
    DeviceRecord,
    IdentityChanged,
    MissingSessionKey,
    PartyIdentity,
    RoomKeyReceived,
    SasState,
    SasVerification,
    StoreKeyError,
    StoreLocked,
    TrustState,
    safety_number,
    safety_qr,
)
from melo_protocol.crypto.errors import CryptoError
from melo_protocol.wire import ErrorCode
from melo_protocol.wire.chats import HISTORY_MAX_LIMIT, ChatOut, MessageOut, check_text_size
from melo_protocol.wire.jobs import ScheduledOut
from melo_protocol.wire.keys import recipient_devices_digest

if TYPE_CHECKING:  # the stream (websockets) is imported by start(live=True): a one-shot send needs none of it
    from melo_protocol.client.stream import LiveStream

log = logging.getLogger("melo.sdk")

TEXT = "m.text"
EMOTE = "m.emote"
KEY_REQUEST = "m.room_key_request"
SAS_TYPES = ("m.key.verification.")
CALL_PREFIX = "m.call."
ONE_TIME_KEYS_TARGET = 50
DEVICE_LIST_TTL_S = 60.0
# how often a start asks the server how many one-time keys are left; live clients also hear `keys.low`,
# and the fallback key covers a device that runs out in between
KEY_COUNT_CHECK_S = 300.0
SEND_ATTEMPTS = 3  # an E2E send refused with recipients_changed is re-encrypted for the devices of now
T = TypeVar("T")


class E2EError(MeloError):
    """An end-to-end encryption problem the user must look at (trust, keys, local store)."""


class ProfileInUse(MeloError):
    """Another process has this profile's device open (its crypto store is locked to one process)."""


def _check_text(text: str) -> None:
    """The text limit of a channel, for every chat: an E2E text is checked here, before it is encrypted
    (the server sees only the ciphertext), so it is refused in the same words as in a channel."""
    try:
        check_text_size(text)
    except ValueError as exc:
        raise BadRequest(422, "validation_error", str(exc), {"fields": ["text"]}) from None


class Messenger:
    def __init__(self, client: MeloClient, data_dir: Path, store_key: bytes) -> None:
        self.client = client
        self.data_dir = data_dir
        self._store_key = store_key
        self.machine: CryptoMachine | None = None
        self.stream: LiveStream | None = None
        self.user_id = 0
        self.username = ""
        self.device_id = ""
        self._chats: dict[int, ChatOut] = {}
        self._members: dict[int, list[str]] = {}  # chat id → usernames
        self._devices: dict[str, dict[str, dict[str, Any]]] = {}  # username → device id → device keys
        self._stale_users: set[str] = set()
        self._usernames: dict[int, str] = {}
        self._devices_fetched_at = 0.0
        # chat id → {"members", "devices" (username → device id → keys), "digest"}: whom the last
        # encryption was for; remembered in the cache so a one-shot send can skip the look-ups
        self._recipients: dict[int, dict[str, Any]] = {}
        self._waiting: dict[str, list[tuple[int, dict[str, Any]]]] = {}  # session id → (chat id, message data)
        self._verifications: dict[str, SasVerification] = {}
        self._pending_events: list[ev.Event] = []
        self._lock = asyncio.Lock()
        # delivered receipts: this device tells senders it has their messages (coalesced per chat, best effort)
        self.send_delivered = True
        self._delivered: dict[int, int] = {}
        self._own_read: dict[int, int] = {}  # chat id → our read position as last announced
        self._delivering: asyncio.Task[None] | None = None
        self.cache: MessageCache | None = None

    # -- opening -------------------------------------------------------------------------------------
    @classmethod
    def open(cls, client: MeloClient, store: CredentialStore) -> "Messenger":
        """A Messenger for the logged-in profile of ``store``; data in <home>/data/<profile>/<device>."""
        creds = client.credentials
        if creds is None:
            from melo_protocol.client.errors import NotLoggedIn

            raise NotLoggedIn("not logged in")
        data_dir = store.home / "data" / store.profile / creds.device_id
        return cls(client, data_dir, load_or_create_store_key(store, creds.device_id))

    async def __aenter__(self) -> "Messenger":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self, *, live: bool = True) -> None:
        creds = self.client.credentials
        if creds is not None and creds.user_id is not None and creds.username and creds.device_id:
            # who we are is in the stored login: a one-shot command spends no request on it
            self.user_id, self.username, self.device_id = creds.user_id, creds.username, creds.device_id
        else:
            me = await self.client.whoami()
            self.user_id, self.username, self.device_id = me.id, me.username, me.device_id
        self._usernames[self.user_id] = self.username
        try:
            store = CryptoStore(self.data_dir / "crypto", self._store_key)
        except StoreLocked:
            raise ProfileInUse("this profile is in use by another melo or melo-tui process (its encrypted store "
                               "is open there); one process per profile at a time: stop it, or give this one "
                               "another profile (--profile NAME, logged in once as its own device)") from None
        except StoreKeyError as exc:
            raise E2EError(f"cannot open the local encrypted store: {exc}") from None
        self.machine = CryptoMachine.open(store, self.user_id, self.device_id)
        self.cache = MessageCache(self.data_dir / "cache.sqlite3", self._store_key)
        await self._upload_keys()
        if live:
            from melo_protocol.client.stream import CursorFile, LiveStream

            self.stream = LiveStream(self.client, cursor_store=CursorFile(self.data_dir / "cursor.json"),
                                     on_state=self._on_state)
            await self.stream.start()

    def open_cache(self) -> bool:
        """Open only the local message cache, when this device has one: no crypto store, no network.

        The cache is SQLite and shared safely between processes, so this works while another process
        (``melo listen``, ``melo-tui``) holds the profile's crypto store. ``close()`` closes it.
        """
        path = self.data_dir / "cache.sqlite3"
        if self.cache is None and path.exists():
            self.cache = MessageCache(path, self._store_key)
        return self.cache is not None

    async def close(self) -> None:
        if self._delivering is not None:
            self._delivering.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._delivering
            self._delivering = None
        if self.stream is not None:
            await self.stream.close()
            self.stream = None
        if self.machine is not None:
            self.machine.close()
            self.machine = None
        if self.cache is not None:
            self.cache.close()
            self.cache = None

    def _on_state(self, state: str) -> None:
        self._pending_events.append(ev.ConnectionState(state=state))

    @property
    def crypto(self) -> CryptoMachine:
        if self.machine is None:
            raise MeloError("the messenger is not started")
        return self.machine

    async def _upload_keys(self, *, force: bool = False) -> None:
        """Top up one-time keys when the server runs low; asked at most every KEY_COUNT_CHECK_S unless forced."""
        now = time.time()
        if not force and self.cache is not None and self.crypto.store.device_keys_published():
            checked = self.cache.state("keys_checked_at")
            if isinstance(checked, int | float) and 0 <= now - checked < KEY_COUNT_CHECK_S:
                return
        counts = await self.client.keys_count()
        body = self.crypto.keys_for_upload(counts.one_time_key_count, fallback_unused=counts.fallback_unused,
                                           target=ONE_TIME_KEYS_TARGET)
        if body:
            await self.client.keys_upload(**body)
            self.crypto.mark_keys_uploaded()
        if self.cache is not None:
            self.cache.put_state("keys_checked_at", now)

    # -- chats and members ---------------------------------------------------------------------------
    async def chat(self, chat_id: int, *, refresh: bool = False) -> ChatOut:
        if refresh or chat_id not in self._chats:
            chat = self._chats[chat_id] = await self.client.get_chat(chat_id)
            if self.cache is not None:
                self.cache.put_state(f"chat:{chat_id}", {"e2e": chat.e2e})  # fixed by the chat's kind
                if chat.purged_seq:
                    self.cache.forget_through(chat_id, chat.purged_seq)
        return self._chats[chat_id]

    async def _is_e2e(self, chat_id: int) -> bool:
        if chat_id not in self._chats and self.cache is not None:
            known = self.cache.state(f"chat:{chat_id}")
            if isinstance(known, dict) and isinstance(known.get("e2e"), bool):
                return bool(known["e2e"])
        return (await self.chat(chat_id)).e2e

    async def direct_chat_id(self, username: str) -> int:
        """Our direct chat with ``username``, started if there is none; remembered on this device."""
        name = username.removeprefix("@").lower()
        known = self.cache.state(f"direct:{name}") if self.cache is not None else None
        if isinstance(known, int):
            return known
        chat = await self.client.create_direct(name)  # the existing one, if any
        self._chats[chat.id] = chat
        if self.cache is not None:
            self.cache.put_state(f"chat:{chat.id}", {"e2e": chat.e2e})
            self.cache.put_state(f"direct:{name}", chat.id)
        return chat.id

    async def send_text_to(self, username: str, text: str, *, reply_to: int | None = None,
                           txn_id: str | None = None, emote: bool = False) -> ev.Message:
        """Send to our direct chat with ``username`` (started if needed); see ``send_text``."""
        name = username.removeprefix("@").lower()
        txn_id = txn_id or uuid.uuid4().hex
        remembered = self.cache is not None and self.cache.state(f"direct:{name}") is not None
        chat_id = await self.direct_chat_id(name)
        try:
            return await self.send_text(chat_id, text, reply_to=reply_to, txn_id=txn_id, emote=emote)
        except NotFound as exc:
            if not remembered or exc.code != ErrorCode.CHAT_NOT_FOUND:
                raise
        # the remembered chat is gone for us: look again (the send was refused, so the txn id is unspent)
        assert self.cache is not None
        self.cache.drop_state(f"direct:{name}")
        chat_id = await self.direct_chat_id(name)
        return await self.send_text(chat_id, text, reply_to=reply_to, txn_id=txn_id, emote=emote)

    async def _member_names(self, chat_id: int, *, fresh: bool = False) -> list[str]:
        if fresh or chat_id not in self._members:
            members = await self.client.list_members(chat_id)
            self._members[chat_id] = [m.user.username for m in members]
            for m in members:
                self._usernames[m.user.id] = m.user.username
        return self._members[chat_id]

    async def _device_keys(self, usernames: list[str]) -> dict[int, list[dict[str, Any]]]:
        """user id → device keys, for these users (fetched when unknown or announced changed)."""
        now = time.monotonic()
        if now - self._devices_fetched_at > DEVICE_LIST_TTL_S:
            # devices.changed events keep the lists fresh while we listen; a client that does not
            # listen (a script) still picks up new devices within this period
            self._stale_users.update(self._devices)
            self._devices_fetched_at = now
        wanted = [u for u in usernames if u not in self._devices or u in self._stale_users]
        if wanted:
            for i in range(0, len(wanted), 500):
                got = await self.client.keys_query(wanted[i:i + 500])
                for name, devices in got.items():
                    known = self._devices.get(name)
                    if known is not None and name != self.username:
                        # a contact gained a device we have never seen: say so, it is unverified
                        for device_id in sorted(set(devices) - set(known)):
                            self._pending_events.append(ev.KeyWarning(user=name, device_id=device_id,
                                                                      reason="new_unverified_device"))
                    self._devices[name] = devices
                    self._stale_users.discard(name)
        return self._by_user_id({name: self._devices.get(name, {}) for name in usernames})

    def _by_user_id(self, devices: dict[str, dict[str, dict[str, Any]]]) -> dict[int, list[dict[str, Any]]]:
        """username → device id → keys, as user id → [keys] (what the crypto machine takes)."""
        out: dict[int, list[dict[str, Any]]] = {}
        for name, per_device in devices.items():
            for keys in per_device.values():
                uid = int(keys.get("user_id", 0))
                self._usernames[uid] = name
                out.setdefault(uid, []).append(keys)
        return out

    # -- whom a chat's messages are encrypted for ------------------------------------------------------
    def _remembered_recipients(self, chat_id: int) -> dict[str, Any] | None:
        doc = self._recipients.get(chat_id)
        if doc is None and self.cache is not None:
            doc = self.cache.state(f"recipients:{chat_id}")
            if not (isinstance(doc, dict) and isinstance(doc.get("devices"), dict)
                    and isinstance(doc.get("digest"), str) and isinstance(doc.get("members"), list)):
                return None
            self._recipients[chat_id] = doc
            for name, devices in doc["devices"].items():
                self._devices.setdefault(name, devices)  # a later look-up then flags devices new since
        return doc

    async def _fetch_recipients(self, chat_id: int, *, fresh: bool) -> dict[str, Any]:
        """The chat's members (read now) and their devices (read now when ``fresh``), remembered."""
        names = await self._member_names(chat_id, fresh=True)
        if fresh:
            self._stale_users.update(names)
        await self._device_keys(names)
        devices = {name: self._devices.get(name, {}) for name in names}
        doc = {"members": names, "devices": devices, "digest": recipient_devices_digest(
            (int(keys.get("user_id", 0)), device_id, str(keys.get("keys", {}).get(f"curve25519:{device_id}", "")))
            for per_device in devices.values() for device_id, keys in per_device.items())}
        self._recipients[chat_id] = doc
        if self.cache is not None:
            self.cache.put_state(f"recipients:{chat_id}", doc)
        return doc

    def _forget_recipients(self, chat_id: int | None = None, *, user: str | None = None) -> None:
        """Drop what we remember of one chat's recipients, or of every chat ``user`` is in."""
        if chat_id is not None:
            self._recipients.pop(chat_id, None)
            if self.cache is not None:
                self.cache.drop_state(f"recipients:{chat_id}")
            return
        for cid in [c for c, doc in self._recipients.items() if user in doc["members"]]:
            del self._recipients[cid]
        if self.cache is not None:
            self.cache.drop_state("recipients:", prefix=True)  # rare: other chats are simply read again

    async def _ensure_olm_sessions(self, devices: dict[int, list[dict[str, Any]]]) -> None:
        needing = self.crypto.devices_needing_olm_sessions(devices)
        if not needing:
            return
        claim = {self._usernames[uid]: ids for uid, ids in needing.items() if uid in self._usernames}
        result = await self.client.keys_claim(claim)
        by_user_id = {uid: result.one_time_keys.get(name, {}) for uid, name in self._usernames.items()
                      if name in result.one_time_keys}
        for user_id, device_id, reason in self.crypto.add_claimed_keys(by_user_id):
            log.info("no Olm session with %s/%s: %s", user_id, device_id, reason)

    async def _send_to_device(self, messages: list[Any]) -> None:
        by_type: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
        for m in messages:
            name = self._usernames.get(m.user_id)
            if name is None:
                continue
            by_type.setdefault(m.type, {}).setdefault(name, {})[m.device_id] = m.content
        for type_, payload in by_type.items():
            await self.client.send_to_device(type_, payload)

    # -- sending ---------------------------------------------------------------------------------------
    async def _encrypt(self, chat_id: int, content: dict[str, Any], *, checked: bool,
                       fresh: bool = False) -> tuple[dict[str, Any], str]:
        """(envelope, digest of the devices it is for).

        ``checked``: the request carrying the envelope also carries the digest, and the server refuses
        it if the chat's member devices differ. Only then may the remembered recipients be used, and
        only when no key goes out with this message: any key sharing is for the members of now (a
        member removed a moment ago must get no new keys, even before this client hears of it).
        """
        async with self._lock:  # one Megolm session per chat: encrypt and share in order
            doc = self._remembered_recipients(chat_id) if checked and not fresh else None
            if doc is not None and self.crypto.needs_key_sharing(chat_id, self._by_user_id(doc["devices"])):
                doc = None
            if doc is None:
                doc = await self._fetch_recipients(chat_id, fresh=fresh)
            devices = self._by_user_id(doc["devices"])
            await self._ensure_olm_sessions(devices)
            envelope, to_device = self.crypto.encrypt_for_chat(chat_id, content, devices)
            self._collect_crypto_events()
            if to_device:
                await self._send_to_device(to_device)  # keys first, so the message can be read at once
            return envelope, str(doc["digest"])

    async def _post_encrypted(self, chat_id: int, content: dict[str, Any],
                              post: Callable[[dict[str, Any], str], Awaitable[T]]) -> T:
        """Encrypt and ``post(envelope, digest)``; re-encrypt for the devices of now on recipients_changed."""
        for attempt in range(SEND_ATTEMPTS):
            envelope, digest = await self._encrypt(chat_id, content, checked=True, fresh=attempt > 0)
            try:
                return await post(envelope, digest)
            except Conflict as exc:
                if exc.code != ErrorCode.RECIPIENTS_CHANGED or attempt == SEND_ATTEMPTS - 1:
                    raise
                log.info("chat %s: members or devices changed; encrypting again", chat_id)
                self._forget_recipients(chat_id)
        raise AssertionError("unreachable")

    async def send_text(self, chat_id: int, text: str, *, reply_to: int | None = None, txn_id: str | None = None,
                        emote: bool = False) -> ev.Message:
        _check_text(text)
        txn_id = txn_id or uuid.uuid4().hex
        kind = EMOTE if emote else TEXT
        if await self._is_e2e(chat_id):
            out = await self._post_encrypted(
                chat_id, {"type": kind, "body": text},
                lambda envelope, digest: self.client.send_raw(chat_id, txn_id, e2e=envelope, reply_to=reply_to,
                                                              recipient_devices=digest))
        else:
            out = await self.client.send_raw(chat_id, txn_id, text=text, reply_to=reply_to)
        return self._view(out, text, "ok", kind)

    async def schedule_text(self, chat_id: int, text: str, send_at: datetime, txn_id: str | None = None, *,
                            reply_to: int | None = None) -> ScheduledOut:
        """Have the server send ``text`` at ``send_at``; E2E chats are encrypted now, for the members of now."""
        _check_text(text)
        chat = await self.chat(chat_id)
        txn_id = txn_id or uuid.uuid4().hex
        if chat.e2e:
            envelope, _ = await self._encrypt(chat.id, {"type": TEXT, "body": text}, checked=False)
            row = await self.client.schedule_raw(chat_id, txn_id, send_at, e2e=envelope, reply_to=reply_to)
            if self.cache is not None:
                self.cache.put_scheduled(row.id, text)  # so this device can still show what it scheduled
            return row  # as the server holds it: the envelope, no text
        return await self.client.schedule_raw(chat_id, txn_id, send_at, text=text, reply_to=reply_to)

    async def list_scheduled(self) -> list[ScheduledOut]:
        """Our pending scheduled messages; E2E ones carry the text this device scheduled (None from others)."""
        rows = await self.client.list_scheduled()
        if self.cache is None:
            return rows
        self.cache.forget_scheduled_except({r.id for r in rows})
        return [r if r.text is not None else r.model_copy(update={"text": self.cache.scheduled_text(r.id)})
                for r in rows]

    async def edit_text(self, chat_id: int, message_id: int, text: str) -> ev.Message:
        _check_text(text)
        if await self._is_e2e(chat_id):
            out = await self._post_encrypted(
                chat_id, {"type": TEXT, "body": text},
                lambda envelope, digest: self.client.edit_raw(chat_id, message_id, e2e=envelope,
                                                              recipient_devices=digest))
        else:
            out = await self.client.edit_raw(chat_id, message_id, text=text)
        return self._view(out, text, "ok", TEXT)

    async def delete(self, chat_id: int, message_id: int) -> None:
        await self.client.delete_message(chat_id, message_id)

    async def react(self, chat_id: int, message_id: int, emoji: str, *, remove: bool = False) -> None:
        await self.client.react(chat_id, message_id, emoji, remove)

    async def pin(self, chat_id: int, message_id: int, *, unpin: bool = False) -> None:
        await self.client.pin(chat_id, message_id, unpin)

    async def mark_read(self, chat_id: int, seq: int) -> None:
        await self.client.mark_read(chat_id, seq)

    async def pins(self, chat_id: int) -> list[ev.Message]:
        """The chat's pinned messages, decrypted, newest pin last as the server lists them."""
        out = [self._decrypt(m) for m in await self.client.list_pins(chat_id)]
        self.crypto.flush()
        return out

    def _queue_delivered(self, chat_id: int, seq: int) -> None:
        if not self.send_delivered or self.stream is None:
            return
        if seq > self._delivered.get(chat_id, 0):
            self._delivered[chat_id] = seq
        if self._delivering is None or self._delivering.done():
            self._delivering = asyncio.get_running_loop().create_task(self._flush_delivered())

    async def _flush_delivered(self) -> None:
        while self._delivered and self.stream is not None:
            chat_id, seq = self._delivered.popitem()
            try:
                await self.stream.command("received", chat_id=chat_id, seq=seq)
            except (MeloError, TimeoutError):
                pass  # best effort: a later message or the read receipt moves the marker on

    async def typing(self, chat_id: int, typing: bool = True) -> None:
        if self.stream is not None:
            await self.stream.command("typing", chat_id=chat_id, typing=typing)

    # -- reading ---------------------------------------------------------------------------------------
    def _view(self, out: MessageOut, text: str | None, status: ev.MessageStatus, kind: str = TEXT,
              verified: bool = False) -> ev.Message:
        return ev.Message(
            id=out.id, chat_id=out.chat_id, seq=out.seq, sender=out.sender, sender_device=out.sender_device,
            text=text, status="deleted" if out.deleted else status, created_at=out.created_at,
            reply_to=out.reply_to, edited_at=out.edited_at, reactions=dict(out.reactions), pinned=out.pinned,
            verified=verified or out.sender_id == self.user_id, kind="emote" if kind == EMOTE else "text")

    def _decrypt(self, out: MessageOut) -> ev.Message:
        message = self._decrypt_uncached(out)
        if self.cache is not None:
            if message.status == "ok" or message.status == "deleted":
                self.cache.put(message)
            elif (cached := self.cache.get(out.chat_id, out.id)) is not None and cached.status == "ok" \
                    and cached.edited_at == message.edited_at:
                return cached  # decrypted here before; its keys may be gone (a rotated-away device, a restore)
        return message

    def _decrypt_uncached(self, out: MessageOut) -> ev.Message:
        if out.deleted:
            return self._view(out, None, "deleted")
        if out.e2e is None:
            return self._view(out, out.text, "ok")
        try:
            plain = self.crypto.decrypt_chat_message(out.chat_id, out.e2e, out.id)
        except MissingSessionKey as exc:
            self._waiting.setdefault(exc.session_id, []).append((out.chat_id, out.model_dump(mode="json")))
            asyncio.get_running_loop().create_task(self._request_key(out, exc))
            return self._view(out, None, "waiting_for_key")
        except (DecryptionError, CryptoError) as exc:
            log.info("undecryptable message %s: %s", out.id, exc)
            return self._view(out, None, "undecryptable")
        if plain.sender_user_id != out.sender_id:  # the server must not re-attribute a message
            return self._view(out, None, "undecryptable")
        body = plain.content.get("body")
        kind = str(plain.content.get("type", TEXT))
        return self._view(out, body if isinstance(body, str) else None, "ok", kind,
                          verified=plain.trust is TrustState.VERIFIED)

    async def _request_key(self, out: MessageOut, exc: MissingSessionKey) -> None:
        """Ask the sender's devices to share the session again (they check we are still a member)."""
        with contextlib.suppress(MeloError, CryptoError):
            devices = await self._device_keys([out.sender])
            await self._ensure_olm_sessions(devices)
            messages = []
            for uid, keys_list in devices.items():
                for keys in keys_list:
                    with contextlib.suppress(CryptoError):
                        messages.append(self.crypto.encrypt_to_device(
                            uid, keys["device_id"], KEY_REQUEST,
                            {"chat_id": out.chat_id, "session_id": exc.session_id, "sender_key": exc.sender_key}))
            await self._send_to_device(messages)

    def cached_history(self, chat_id: int, *, before: int | None = None, limit: int = 50) -> list[ev.Message]:
        """What this device has already decrypted, without the network (instant first paint, offline)."""
        return self.cache.history(chat_id, before=before, limit=limit) if self.cache is not None else []

    async def history(self, chat_id: int, *, before: int | None = None, limit: int = 50) -> list[ev.Message]:
        """The ``limit`` messages before ``before`` (latest without it), oldest first; more than the server
        gives in one page (HISTORY_MAX_LIMIT) are fetched page by page."""
        found: list[MessageOut] = []
        while len(found) < limit:
            page = await self.client.history_raw(chat_id, before=before,
                                                 limit=min(limit - len(found), HISTORY_MAX_LIMIT))
            if self.cache is not None and page.purged_seq:
                self.cache.forget_through(chat_id, page.purged_seq)  # the chat's retention removed them
            found[:0] = page.messages
            if not page.has_more or not page.messages:
                break
            before = page.messages[0].seq
        out = [self._decrypt(m) for m in found]
        self.crypto.flush()
        return out

    # -- the event stream ------------------------------------------------------------------------------
    async def events(self) -> AsyncIterator[ev.Event]:
        if self.stream is None:
            raise MeloError("start the messenger with live=True to receive events")
        async for frame in self.stream.frames():
            while self._pending_events:
                yield self._pending_events.pop(0)
            for event in await self._translate(frame):
                yield event
            while self._pending_events:
                yield self._pending_events.pop(0)

    async def _translate(self, frame: dict[str, Any]) -> list[ev.Event]:
        kind = frame.get("type")
        chat_id, seq = frame.get("chat_id"), frame.get("seq")
        data = frame.get("data") or {}
        if kind in ("message.created", "message.edited"):
            out = MessageOut.model_validate(data)
            message = self._decrypt(out)
            self.crypto.flush()
            cls = ev.MessageReceived if kind == "message.created" else ev.MessageEdited
            if kind == "message.created" and message.sender != self.username and isinstance(chat_id, int):
                self._queue_delivered(chat_id, out.seq)
            return [cls(chat_id=chat_id, seq=seq, message=message)]
        if kind == "message.deleted":
            if self.cache is not None and isinstance(chat_id, int):
                # deleted, or expired by the chat's timer: this device forgets its plaintext copy too
                self.cache.forget(chat_id, int(data.get("message_id", 0)))
            return [ev.MessageDeleted(chat_id=chat_id, seq=seq, message_id=data.get("message_id", 0),
                                      by=data.get("by", ""))]
        if kind in ("reaction.added", "reaction.removed"):
            return [ev.ReactionChanged(chat_id=chat_id, seq=seq, message_id=data.get("message_id", 0),
                                       user=data.get("user", ""), emoji=data.get("emoji", ""),
                                       added=kind == "reaction.added")]
        if kind in ("message.pinned", "message.unpinned"):
            return [ev.PinChanged(chat_id=chat_id, seq=seq, message_id=data.get("message_id", 0),
                                  by=data.get("by", ""), pinned=kind == "message.pinned")]
        if kind == "receipt":
            if data.get("user") == self.username and isinstance(chat_id, int):
                # our own receipt: only a move of our read position matters (other devices' unread counts);
                # the delivered receipts this device sends itself would be noise for every consumer
                read = int(data.get("read_seq", 0))
                if read <= self._own_read.get(chat_id, 0):
                    return []
                self._own_read[chat_id] = read
            return [ev.ReceiptUpdated(chat_id=chat_id, seq=seq, user=data.get("user", ""),
                                      read_seq=data.get("read_seq", 0), delivered_seq=data.get("delivered_seq", 0))]
        if kind == "typing":
            return [ev.Typing(chat_id=chat_id, user=frame.get("user", ""), typing=bool(frame.get("typing")),
                              expires_in=int(frame.get("expires_in", 6)))]
        if kind == "presence":
            last = frame.get("last_seen")
            return [ev.Presence(user=frame.get("user", ""), online=bool(frame.get("online")),
                                last_seen=datetime.fromisoformat(last) if last else None)]
        if kind and kind.startswith("member."):
            assert isinstance(chat_id, int)
            self._members.pop(chat_id, None)
            self._forget_recipients(chat_id)
            change = kind.split(".", 1)[1]
            if change in ("left", "removed"):
                self.crypto.on_membership_changed(chat_id)  # a leaver gets no later keys
            user = (data.get("user") or {}).get("username", "")
            return [ev.MemberChanged(chat_id=chat_id, seq=seq, change=change, user=user,  # type: ignore[arg-type]
                                     role=data.get("role"), by=data.get("by"))]
        if kind in ("chat.created", "chat.updated"):
            if isinstance(chat_id, int):
                self._chats.pop(chat_id, None)
            return [ev.ChatChanged(chat_id=chat_id, seq=seq, change=kind.split(".")[1],  # type: ignore[arg-type]
                                   data=data)]
        if kind == "call.missed":
            return [ev.CallMissed(chat_id=chat_id, seq=seq, call_id=str(data.get("call_id", "")),
                                  caller=str(data.get("caller", "")), at=str(data.get("at", "")))]
        if kind == "to_device":
            return await self._on_to_device(frame)
        if kind == "devices.changed":
            user = str(frame.get("user", ""))
            self._stale_users.add(user)
            self._forget_recipients(user=user)
            if user in self._devices and user != self.username:
                with contextlib.suppress(MeloError):
                    await self._device_keys([user])  # look now: a new device is flagged at once
            return []
        if kind == "keys.low":
            await self._upload_keys(force=True)
            return []
        if kind == "resync_required":
            return [ev.ResyncRequired(chat_ids=list(frame.get("chat_ids", [])))]
        return []

    async def _on_to_device(self, frame: dict[str, Any]) -> list[ev.Event]:
        out: list[ev.Event] = []
        payloads = self.crypto.receive_to_device([frame])
        sender = frame.get("sender", "")
        self._usernames[int(frame.get("sender_id", 0))] = sender
        for payload in payloads:
            if payload.type.startswith(SAS_TYPES):
                out.extend(await self._on_sas(payload))
            elif payload.type == KEY_REQUEST:
                await self._on_key_request(payload)
            elif payload.type.startswith(CALL_PREFIX):
                content = dict(payload.content)
                out.append(ev.CallSignal(user=sender, device_id=payload.sender_device_id,
                                         call_id=str(content.get("call_id", "")),
                                         action=payload.type[len(CALL_PREFIX):], data=content))
        out.extend(self._collect_crypto_events())
        if self.stream is not None:
            with contextlib.suppress(MeloError):
                await self.stream.command("to_device_ack", up_to=int(frame["id"]))
        return out

    async def receive_pending_to_device(self) -> list[ev.Event]:
        """Process this device's queued to-device messages over REST (room keys, SAS) and acknowledge them.

        For clients without a live stream (``melo history`` in a fresh process): the stream does this itself.
        """
        out: list[ev.Event] = []
        after = 0
        while True:
            batch = await self.client.list_to_device(after=after, limit=100)
            if not batch:
                return out
            for item in batch:
                frame = item.model_dump(mode="json")
                frame["message_type"], frame["type"] = frame["type"], "to_device"
                out.extend(await self._on_to_device(frame))
            after = batch[-1].id
            await self.client.ack_to_device([item.id for item in batch])

    def _collect_crypto_events(self) -> list[ev.Event]:
        out: list[ev.Event] = []
        for event in self.crypto.pop_events():
            if isinstance(event, IdentityChanged):
                out.append(ev.KeyWarning(user=self._usernames.get(event.user_id, str(event.user_id)),
                                         device_id=event.device_id, reason="identity_changed"))
            elif isinstance(event, RoomKeyReceived):
                for chat_id, data in self._waiting.pop(event.session_id, []):
                    message = self._decrypt(MessageOut.model_validate(data))
                    out.append(ev.MessageEdited(chat_id=chat_id, seq=data.get("seq"), message=message))
        return out

    async def _on_key_request(self, payload: Any) -> None:
        """Re-share one of our sessions with a device that is still a member of that chat."""
        content = payload.content
        chat_id = int(content.get("chat_id", 0))
        requester = self._usernames.get(payload.sender_user_id)
        with contextlib.suppress(MeloError, CryptoError):
            self._members.pop(chat_id, None)
            if requester is None or requester not in await self._member_names(chat_id):
                return
            message = self.crypto.reshare_room_key(str(content.get("session_id")), payload.sender_user_id,
                                                   payload.sender_device_id, 0)
            await self._send_to_device([message])

    # -- verification ----------------------------------------------------------------------------------
    async def devices(self, username: str) -> list[dict[str, Any]]:
        """Devices of a user with their fingerprints and our trust in them."""
        self._stale_users.add(username)
        by_user = await self._device_keys([username])
        self.crypto.track_devices(by_user)
        out = []
        for uid, keys_list in by_user.items():
            for keys in keys_list:
                record = self.crypto.device(uid, keys["device_id"])
                out.append({"user": username, "device_id": keys["device_id"],
                            "ed25519": keys["keys"].get(f"ed25519:{keys['device_id']}"),
                            "trust": record.trust.value if record else "unverified",
                            "current": uid == self.user_id and keys["device_id"] == self.device_id})
        return out

    async def safety_number(self, username: str) -> tuple[str, str]:
        """(digit groups, terminal QR) for us and ``username``: compare them in person."""
        theirs = await self._device_keys([username])
        their_id = next(iter(theirs), None)
        if their_id is None:
            raise E2EError(f"{username} has no devices with keys")
        mine = await self._device_keys([self.username])
        me = PartyIdentity.of(self.user_id, [k["keys"][f"ed25519:{k['device_id']}"] for k in mine.get(self.user_id, [])]
                              or [self.crypto.identity_keys["ed25519"]])
        them = PartyIdentity.of(their_id, [k["keys"][f"ed25519:{k['device_id']}"] for k in theirs[their_id]])
        return safety_number(me, them), safety_qr(me, them)

    def mark_verified(self, user_id: int, device_id: str) -> None:
        self.crypto.set_trust(user_id, device_id, TrustState.VERIFIED)

    async def start_sas(self, username: str, device_id: str) -> SasVerification:
        devices = await self._device_keys([username])
        for uid, keys_list in devices.items():
            for keys in keys_list:
                if keys["device_id"] == device_id:
                    await self._ensure_olm_sessions({uid: [keys]})
                    sas, msg = SasVerification.start(
                        transaction_id=uuid.uuid4().hex, own_user_id=self.user_id, own_device_id=self.device_id,
                        own_ed25519=self.crypto.identity_keys["ed25519"], their_user_id=uid,
                        their_device_id=device_id, their_ed25519=keys["keys"][f"ed25519:{device_id}"])
                    self._verifications[sas.transaction_id] = sas
                    await self._send_sas(sas, [msg])
                    return sas
        raise E2EError(f"{username} has no device {device_id}")

    async def _send_sas(self, sas: SasVerification, messages: list[dict[str, Any]]) -> None:
        uid, device_id, _ = sas.their
        await self._send_to_device([self.crypto.encrypt_to_device(uid, device_id, m["type"], m) for m in messages])

    async def _on_sas(self, payload: Any) -> list[ev.Event]:
        content = dict(payload.content)
        txn = str(content.get("transaction_id", ""))
        sas = self._verifications.get(txn)
        try:
            if sas is None:
                if not content.get("type", "").endswith(".start"):
                    return []
                record = await self._sender_device(payload.sender_user_id, payload.sender_device_id)
                if record is None:
                    return []
                sas = SasVerification.from_start(content, own_user_id=self.user_id, own_device_id=self.device_id,
                                                 own_ed25519=self.crypto.identity_keys["ed25519"],
                                                 their_ed25519=record.ed25519)
                self._verifications[txn] = sas
            else:
                replies = sas.receive(content)
                if replies:
                    await self._send_sas(sas, replies)
        except CryptoError as exc:
            log.info("verification %s failed: %s", txn, exc)
        if sas.state is SasState.VERIFIED:
            self.mark_verified(sas.their[0], sas.their[1])
        return [ev.VerificationUpdate(user=self._usernames.get(sas.their[0], ""), device_id=sas.their[1],
                                      state=sas.state.value, data={"transaction_id": txn})]

    async def _sender_device(self, user_id: int, device_id: str) -> DeviceRecord | None:
        """Our record of a device that wrote to us; looked up (trust on first use) when we have none yet.

        A contact may start a verification before we ever fetched their devices: without this look-up
        their request would be dropped and they would wait in vain.
        """
        record = self.crypto.device(user_id, device_id)
        username = self._usernames.get(user_id)
        if record is None and username:
            with contextlib.suppress(MeloError):
                await self.devices(username)
            record = self.crypto.device(user_id, device_id)
        return record

    async def accept_sas(self, transaction_id: str) -> SasVerification:
        sas = self._verifications[transaction_id]
        await self._send_sas(sas, [sas.accept()])
        return sas

    async def confirm_sas(self, transaction_id: str, *, match: bool) -> SasVerification:
        sas = self._verifications[transaction_id]
        await self._send_sas(sas, [sas.confirm() if match else sas.mismatch()])
        if sas.state is SasState.VERIFIED:
            self.mark_verified(sas.their[0], sas.their[1])
        return sas

    async def cancel_sas(self, transaction_id: str) -> SasVerification:
        """The user gave up (or declined a request): tell the other device; nothing once it has ended."""
        sas = self._verifications[transaction_id]
        if sas.state not in (SasState.VERIFIED, SasState.CANCELLED):
            await self._send_sas(sas, [sas.cancel("m.user", "the user cancelled")])
        return sas

    # -- call signalling (end-to-end encrypted to-device messages) ---------------------------------------
    async def send_call_signal(self, username: str, action: str, data: dict[str, Any],
                               device_id: str | None = None) -> None:
        devices = await self._device_keys([username])
        await self._ensure_olm_sessions(devices)
        messages = []
        for uid, keys_list in devices.items():
            for keys in keys_list:
                if device_id is None or keys["device_id"] == device_id:
                    with contextlib.suppress(CryptoError):
                        messages.append(self.crypto.encrypt_to_device(uid, keys["device_id"], CALL_PREFIX + action,
                                                                      data))
        if not messages:
            raise E2EError(f"no device of {username} can receive an encrypted call signal")
        await self._send_to_device(messages)


def dumps_event(event: ev.Event) -> str:
    """One line of JSON for scripts (``melo listen --json``)."""
    out: dict[str, Any] = {"type": type(event).__name__}
    for key, value in vars(event).items():
        if isinstance(value, ev.Message):
            value = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in vars(value).items()}
        elif isinstance(value, datetime):
            value = value.isoformat()
        out[key] = value
    return json.dumps(out, ensure_ascii=False, default=str)
