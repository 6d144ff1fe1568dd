"""``Messenger``: the high-level SDK that melo_cli and melo_tui drive.

It joins the REST client, the live stream and the E2E crypto machine: messages to direct chats and
groups are Megolm-encrypted before they leave (room keys go to every member device over Olm), events
from the stream are decrypted and come out as the typed events of ``events.py``. No UI code here.

    async with Messenger.open(client, store) as m:
        await m.send_text(chat_id, "hello")
        async for event in m.events():
            ...

A facade: whom to encrypt for and how to reach their devices is ``devices.py``, verifying a contact's
device ``verification.py``, encrypting and posting ``sending.py``, decrypting what arrives ``reading.py``,
and turning frames into typed events the pure ``translate.py``.
"""

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from melo_protocol.client import events as ev
from melo_protocol.client import translate as tr
from melo_protocol.client.cache import MessageCache
from melo_protocol.client.devices import DeviceDirectory, Identity
from melo_protocol.client.errors import E2EError, MeloError, NotFound, ProfileInUse
from melo_protocol.client.keystore import load_or_create_store_key
from melo_protocol.client.reading import MessageReader
from melo_protocol.client.rest import MeloClient
from melo_protocol.client.sending import ChatEncryptor, check_text
from melo_protocol.client.tokens import CredentialStore
from melo_protocol.client.verification import Verifications
from melo_protocol.crypto import (
    CryptoMachine,
    MissingSessionKey,
    SasVerification,
    SqliteCryptoStore,
    StoreKeyError,
    StoreLocked,
)
from melo_protocol.wire import ErrorCode
from melo_protocol.wire.chats import HISTORY_MAX_LIMIT, ChatOut, MessageOut
from melo_protocol.wire.jobs import ScheduledOut

if TYPE_CHECKING:  # the stream (websockets) is imported by start(live=True): a one-shot send needs none of it
    from melo_protocol.client.stream import LiveStream

KEY_REQUESTS_FLUSH_S = 3.0  # how long close() waits for key requests still going out


class Messenger:
    def __init__(self, client: MeloClient, data_dir: Path, store_key: bytes) -> None:
        self.client = client
        self.data_dir = data_dir
        self._store_key = store_key
        self.machine: CryptoMachine | None = None
        self.stream: LiveStream | None = None
        self.me = Identity()
        self._chats: dict[int, ChatOut] = {}
        self._pending_events: list[ev.Event] = []
        # delivered receipts: this device tells senders it has their messages (coalesced per chat, best effort)
        self.send_delivered = True
        self._delivered: dict[int, int] = {}
        self._delivering: asyncio.Task[None] | None = None
        self._key_requests: set[asyncio.Task[None]] = set()  # in flight; close() lets them finish first
        self.cache: MessageCache | None = None
        self._directory = DeviceDirectory(
            client, self.me, crypto=lambda: self.crypto, cache=lambda: self.cache, events=self._pending_events
        )
        self._verifications = Verifications(self._directory, self.me, crypto=lambda: self.crypto)
        self._encryptor = ChatEncryptor(self._directory, crypto=lambda: self.crypto, after_encrypt=self._crypto_events)
        self._reader = MessageReader(
            self.me, crypto=lambda: self.crypto, cache=lambda: self.cache, missing_key=self._missing_key
        )
        self._translator = tr.Translator(self._reader.decrypt_live)

    @property
    def user_id(self) -> int:
        return self.me.user_id

    @property
    def username(self) -> str:
        return self.me.username

    @property
    def device_id(self) -> str:
        return self.me.device_id

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
            self.me.user_id, self.me.username, self.me.device_id = creds.user_id, creds.username, creds.device_id
        else:
            whoami = await self.client.whoami()
            self.me.user_id, self.me.username, self.me.device_id = whoami.id, whoami.username, whoami.device_id
        self._translator.username = self.username
        self._directory.usernames[self.user_id] = self.username
        try:
            store = SqliteCryptoStore(self.data_dir / "crypto", self._store_key)
        except StoreLocked:
            raise ProfileInUse(
                "this profile is in use by another melo or melo-tui process (its encrypted store "
                "is open there); one process per profile at a time: stop it, or give this one "
                "another profile (--profile NAME, logged in once as its own device)"
            ) from None
        except StoreKeyError as exc:
            raise E2EError(f"cannot open the local encrypted store: {exc}") from None
        self.machine = CryptoMachine.open(store, self.user_id, self.device_id)
        self.cache = MessageCache(self.data_dir / "cache.sqlite3", self._store_key)
        await self._directory.upload_keys()
        if live:
            from melo_protocol.client.stream import CursorFile, LiveStream

            self.stream = LiveStream(
                self.client, cursor_store=CursorFile(self.data_dir / "cursor.json"), on_state=self._on_state
            )
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
        if self._key_requests:  # let the key requests go out (briefly): a short CLI run is when they matter
            pending = set(self._key_requests)
            _, late = await asyncio.wait(pending, timeout=KEY_REQUESTS_FLUSH_S)
            for task in late:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)  # retrieved: no task outlives the client
            self._key_requests.clear()
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

    # -- chats ---------------------------------------------------------------------------------------
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

    async def send_text_to(
        self, username: str, text: str, *, reply_to: int | None = None, txn_id: str | None = None, emote: bool = False
    ) -> ev.Message:
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

    # -- sending ---------------------------------------------------------------------------------------
    async def send_text(
        self, chat_id: int, text: str, *, reply_to: int | None = None, txn_id: str | None = None, emote: bool = False
    ) -> ev.Message:
        check_text(text)
        txn_id = txn_id or uuid.uuid4().hex
        kind = tr.EMOTE if emote else tr.TEXT
        if await self._is_e2e(chat_id):
            out = await self._encryptor.post(
                chat_id,
                {"type": kind, "body": text},
                lambda envelope, digest: self.client.send_raw(
                    chat_id, txn_id, e2e=envelope, reply_to=reply_to, recipient_devices=digest
                ),
            )
        else:
            out = await self.client.send_raw(chat_id, txn_id, text=text, reply_to=reply_to)
        return tr.message_view(out, text, "ok", own_user_id=self.user_id, kind=kind)

    async def schedule_text(
        self, chat_id: int, text: str, send_at: datetime, txn_id: str | None = None, *, reply_to: int | None = None
    ) -> ScheduledOut:
        """Have the server send ``text`` at ``send_at``; E2E chats are encrypted now, for the members of now."""
        check_text(text)
        chat = await self.chat(chat_id)
        txn_id = txn_id or uuid.uuid4().hex
        if chat.e2e:
            envelope, _ = await self._encryptor.encrypt(chat.id, {"type": tr.TEXT, "body": text}, checked=False)
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
        return [
            r if r.text is not None else r.model_copy(update={"text": self.cache.scheduled_text(r.id)}) for r in rows
        ]

    async def edit_text(self, chat_id: int, message_id: int, text: str) -> ev.Message:
        check_text(text)
        if await self._is_e2e(chat_id):
            out = await self._encryptor.post(
                chat_id,
                {"type": tr.TEXT, "body": text},
                lambda envelope, digest: self.client.edit_raw(
                    chat_id, message_id, e2e=envelope, recipient_devices=digest
                ),
            )
        else:
            out = await self.client.edit_raw(chat_id, message_id, text=text)
        return tr.message_view(out, text, "ok", own_user_id=self.user_id)

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
        out = [self._reader.decrypt(m) for m in await self.client.list_pins(chat_id)]
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
    def cached_history(self, chat_id: int, *, before: int | None = None, limit: int = 50) -> list[ev.Message]:
        """What this device has already decrypted, without the network (instant first paint, offline)."""
        return self.cache.history(chat_id, before=before, limit=limit) if self.cache is not None else []

    async def history(self, chat_id: int, *, before: int | None = None, limit: int = 50) -> list[ev.Message]:
        """The ``limit`` messages before ``before`` (latest without it), oldest first; more than the server
        gives in one page (HISTORY_MAX_LIMIT) are fetched page by page."""
        found: list[MessageOut] = []
        while len(found) < limit:
            page = await self.client.history_raw(
                chat_id, before=before, limit=min(limit - len(found), HISTORY_MAX_LIMIT)
            )
            if self.cache is not None and page.purged_seq:
                self.cache.forget_through(chat_id, page.purged_seq)  # the chat's retention removed them
            found[:0] = page.messages
            if not page.has_more or not page.messages:
                break
            before = page.messages[0].seq
        out = [self._reader.decrypt(m) for m in found]
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

    async def _translate(self, frame: object) -> list[ev.Event]:
        """The frame's typed events, once what the frame asks of this device is done (in order)."""
        translated = self._translator.translate(frame)
        events = translated.events
        for effect in translated.effects:
            events += await self._carry_out(effect)
        return events

    async def _carry_out(self, effect: tr.Effect) -> list[ev.Event]:
        match effect:
            case tr.ForgetMessage(chat_id, message_id):
                if self.cache is not None:
                    self.cache.forget(chat_id, message_id)
            case tr.SendDelivered(chat_id, seq):
                self._queue_delivered(chat_id, seq)
            case tr.MembersChanged(chat_id, left):
                self._directory.members_changed(chat_id)
                if left:
                    self.crypto.on_membership_changed(chat_id)  # a leaver gets no later keys
            case tr.ChatChanged(chat_id):
                self._chats.pop(chat_id, None)
            case tr.DevicesChanged(user):
                await self._directory.devices_changed(user)
            case tr.KeysLow():
                await self._directory.upload_keys(force=True)
            case tr.ToDevice(frame):
                return await self._on_to_device(frame)
        return []

    async def _on_to_device(self, frame: Mapping[str, Any]) -> list[ev.Event]:
        out: list[ev.Event] = []
        payloads = self.crypto.receive_to_device([frame])
        sender = frame.get("sender", "")
        self._directory.usernames[int(frame.get("sender_id", 0))] = sender
        for payload in payloads:
            if tr.is_verification(payload):
                out.extend(await self._verifications.receive(payload))
            elif tr.is_key_request(payload):
                await self._directory.on_key_request(payload)
            elif (signal := tr.call_signal(payload, sender)) is not None:
                out.append(signal)
        out.extend(self._crypto_events())
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

    def _crypto_events(self) -> list[ev.Event]:
        """What the crypto machine noticed (a changed identity, a room key that arrived), as typed events."""
        events = self.crypto.pop_events()
        return self._translator.crypto_events(events, self._directory.usernames, self._reader.decrypt)

    def _missing_key(self, out: MessageOut, exc: MissingSessionKey) -> None:
        """``out`` waits for its room key: it is read again when the key arrives, which is asked for now."""
        self._translator.wait_for_key(exc.session_id, out)
        task = asyncio.get_running_loop().create_task(self._directory.request_key(out, exc))
        self._key_requests.add(task)
        task.add_done_callback(self._key_requests.discard)

    # -- devices and verification ------------------------------------------------------------------------
    async def devices(self, username: str) -> list[dict[str, Any]]:
        """Devices of a user with their fingerprints and our trust in them."""
        return await self._directory.list_devices(username)

    async def safety_number(self, username: str) -> tuple[str, str]:
        """(digit groups, terminal QR) for us and ``username``: compare them in person."""
        return await self._verifications.safety_number(username)

    def mark_verified(self, user_id: int, device_id: str) -> None:
        self._verifications.mark_verified(user_id, device_id)

    async def start_sas(self, username: str, device_id: str) -> SasVerification:
        """Start an emoji verification with one of ``username``'s devices (``E2EError`` if it cannot)."""
        return await self._verifications.start(username, device_id)

    async def accept_sas(self, transaction_id: str) -> SasVerification:
        return await self._verifications.accept(transaction_id)

    async def confirm_sas(self, transaction_id: str, *, match: bool) -> SasVerification:
        return await self._verifications.confirm(transaction_id, match=match)

    async def cancel_sas(self, transaction_id: str) -> SasVerification:
        """The user gave up (or declined a request): tell the other device; nothing once it has ended."""
        return await self._verifications.cancel(transaction_id)

    # -- call signalling (end-to-end encrypted to-device messages) ---------------------------------------
    async def send_call_signal(
        self, username: str, action: str, data: dict[str, Any], device_id: str | None = None
    ) -> None:
        messages = await self._directory.encrypt_to_user(username, tr.CALL_PREFIX + action, data, device_id=device_id)
        if not messages:
            raise E2EError(f"no device of {username} can receive an encrypted call signal")
        await self._directory.send_to_device(messages)


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
