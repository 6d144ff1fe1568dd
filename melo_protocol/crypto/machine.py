"""`CryptoMachine`: the OlmMachine-style core the SDK drives. No I/O, no clock of its own, no threads.

Push in what arrived (key counts, to-device events, member device lists, claimed one-time keys, chat
envelopes); pull out what to send (key uploads, key claims, to-device messages, chat envelopes) and
events to show (identity changes, room keys received, undecryptable to-device messages).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .account import DeviceAccount
from .errors import CryptoError, DecryptionError, MissingSessionKey, OlmSessionError, ReplayedMessage, StoreError
from .megolm import ROOM_KEY_TYPE, InboundGroupSession, OutboundGroupSession, RotationPolicy
from .olm import ENCRYPTED_TYPE, OlmPayload, OlmSessions, PeerDevice
from .signing import MEGOLM_ALGORITHM, verify_device_keys
from .store import CryptoStore, DeviceRecord, TrustState

DeviceKeysByUser = Mapping[int | str, Sequence[Mapping[str, Any]]]


# events ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class IdentityChanged:
    """A known device now presents different identity keys: nothing is shared with it until accepted."""

    user_id: int
    device_id: str
    old_curve25519: str
    old_ed25519: str
    new_curve25519: str
    new_ed25519: str


@dataclass(frozen=True)
class InvalidDeviceKeys:
    """A device-keys object that is not correctly self-signed or names another user/device; ignored."""

    user_id: int
    device_id: str


@dataclass(frozen=True)
class RoomKeyReceived:
    """A Megolm session arrived: messages that raised MissingSessionKey for it can be retried."""

    chat_id: int
    sender_key: str
    session_id: str
    first_known_index: int


@dataclass(frozen=True)
class UndecryptableToDevice:
    sender_user_id: int | None
    error: str


CryptoEvent = IdentityChanged | InvalidDeviceKeys | RoomKeyReceived | UndecryptableToDevice


# results --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ToDeviceMessage:
    """One Olm-encrypted to-device message for the SDK to send (ToDeviceSend: type + user → device → content)."""

    user_id: int
    device_id: str
    content: dict[str, Any]
    type: str = ENCRYPTED_TYPE


@dataclass(frozen=True)
class DecryptedChatMessage:
    content: dict[str, Any]
    sender_user_id: int
    sender_device_id: str
    message_index: int
    session_id: str
    trust: TrustState | None  # None: the sending device is not (yet) in our device list


class CryptoMachine:
    """One device's E2E state machine over a `CryptoStore`."""

    def __init__(self, store: CryptoStore, *, clock: Callable[[], float] = time.time,
                 rotation: RotationPolicy | None = None) -> None:
        self.store = store
        self.clock = clock
        self.rotation = rotation or RotationPolicy()
        self.olm = OlmSessions(store)
        self._events: list[CryptoEvent] = []
        # (user, device, curve25519, ed25519, signature) of device keys whose signature already verified:
        # every field we use is in the key, so a hit needs no second Ed25519 verification per message.
        self._verified_keys: set[tuple[int, str, str, str, str]] = set()

    @classmethod
    def open(cls, store: CryptoStore, user_id: int, device_id: str, *, clock: Callable[[], float] = time.time,
             rotation: RotationPolicy | None = None) -> CryptoMachine:
        """Load the store's account, or create one for (user, device) on first use."""
        account = store.load_account()
        if account is None:
            store.save_account(DeviceAccount(user_id, device_id))
        elif (account.user_id, account.device_id) != (user_id, device_id):
            raise StoreError(f"this crypto store belongs to {account.user_id}/{account.device_id}")
        return cls(store, clock=clock, rotation=rotation)

    def flush(self) -> None:
        """Persist what is batched in memory (seen indices, outbound ratchets); call after each page of work."""
        self.store.flush()

    def close(self) -> None:
        self.store.close()

    # identity ---------------------------------------------------------------------------------------
    @property
    def account(self) -> DeviceAccount:
        return self.olm.account

    @property
    def user_id(self) -> int:
        return self.account.user_id

    @property
    def device_id(self) -> str:
        return self.account.device_id

    @property
    def identity_keys(self) -> dict[str, str]:
        account = self.account
        return {"curve25519": account.curve25519, "ed25519": account.ed25519}

    def pop_events(self) -> list[CryptoEvent]:
        events, self._events = self._events, []
        return events

    # key upload -------------------------------------------------------------------------------------
    def keys_for_upload(self, one_time_key_count: int = 0, *, fallback_unused: bool = False,
                        target: int | None = None) -> dict[str, Any] | None:
        """A KeysUpload body (device_keys / one_time_keys / fallback_key), or None if nothing is due.

        `one_time_key_count` and `fallback_unused` are the server's KeyCounts. The account is saved
        before returning, so every key handed out has its private half on disk.
        """
        account = self.account
        target = account.max_one_time_keys // 2 if target is None else min(target, account.max_one_time_keys)
        body: dict[str, Any] = {}
        if not self.store.device_keys_published():
            body["device_keys"] = account.device_keys()
        missing = target - one_time_key_count - len(account.inner.one_time_keys)
        one_time_keys = account.generate_one_time_keys(max(0, missing))
        if one_time_keys:
            body["one_time_keys"] = one_time_keys
        if not fallback_unused and not account.fallback_key():
            account.generate_fallback_key()
        fallback = account.fallback_key()
        if fallback:
            body["fallback_key"] = fallback
        if not body:
            return None
        self.store.save_account(account)
        return body

    def mark_keys_uploaded(self) -> None:
        account = self.account
        account.mark_published()
        with self.store.transaction():
            self.store.save_account(account)
            self.store.set_device_keys_published()

    # devices ----------------------------------------------------------------------------------------
    def track_devices(self, member_devices: DeviceKeysByUser) -> list[DeviceRecord]:
        """Check and remember the devices in a KeysQuery result; return those we may share keys with.

        New devices are trusted on first use (unverified); a known device with different keys raises an
        `IdentityChanged` event and is left out until `accept_identity_change`; blocked devices are left out.
        This device itself is left out; the user's other devices are included.
        """
        shareable: list[DeviceRecord] = []
        own = (self.user_id, self.device_id)
        for raw_user_id, devices in member_devices.items():
            user_id = int(raw_user_id)
            for device_keys in devices:
                checked = self._checked_device_keys(user_id, device_keys)
                if checked is None:
                    self._events.append(InvalidDeviceKeys(user_id, str(device_keys.get("device_id"))))
                    continue
                device_id, curve25519, ed25519 = checked
                if (user_id, device_id) == own:
                    continue
                record = self._remember_device(user_id, device_id, curve25519, ed25519)
                if record is not None and record.trust is not TrustState.BLOCKED and not record.identity_changed:
                    shareable.append(record)
        return shareable

    def _checked_device_keys(self, user_id: int, device_keys: Mapping[str, Any]) -> tuple[str, str, str] | None:
        """(device id, curve25519, ed25519) of a correctly self-signed device-keys object, else None."""
        try:
            device_id = device_keys["device_id"]
            keys = device_keys["keys"]
            curve25519, ed25519 = keys[f"curve25519:{device_id}"], keys[f"ed25519:{device_id}"]
            cache_key = (user_id, device_id, curve25519, ed25519,
                         device_keys["signatures"][str(user_id)][f"ed25519:{device_id}"])
        except (KeyError, TypeError):
            return None
        if cache_key not in self._verified_keys:
            if not (isinstance(curve25519, str) and isinstance(ed25519, str)
                    and verify_device_keys(device_keys, user_id, device_id)):
                return None
            self._verified_keys.add(cache_key)
        return device_id, curve25519, ed25519

    def _remember_device(self, user_id: int, device_id: str, curve25519: str, ed25519: str) -> DeviceRecord | None:
        record = self.store.device(user_id, device_id)
        if record is None:
            record = DeviceRecord(user_id, device_id, curve25519, ed25519)
            self.store.save_device(record)
            return record
        if (record.curve25519, record.ed25519) == (curve25519, ed25519):
            return record
        if (record.pending_curve25519, record.pending_ed25519) != (curve25519, ed25519):
            record.pending_curve25519, record.pending_ed25519 = curve25519, ed25519
            self.store.save_device(record)
            self._events.append(IdentityChanged(user_id, device_id, record.curve25519, record.ed25519,
                                                curve25519, ed25519))
        return record

    def accept_identity_change(self, user_id: int, device_id: str) -> None:
        """The user accepted a changed key: it becomes the device's key, unverified."""
        record = self._device(user_id, device_id)
        if record.pending_curve25519 is None or record.pending_ed25519 is None:
            return
        record.curve25519, record.ed25519 = record.pending_curve25519, record.pending_ed25519
        record.pending_curve25519 = record.pending_ed25519 = None
        record.trust = TrustState.UNVERIFIED
        self.store.save_device(record)

    def set_trust(self, user_id: int, device_id: str, trust: TrustState) -> None:
        record = self._device(user_id, device_id)
        record.trust = trust
        self.store.save_device(record)

    def device(self, user_id: int, device_id: str) -> DeviceRecord | None:
        return self.store.device(user_id, device_id)

    def _device(self, user_id: int, device_id: str) -> DeviceRecord:
        record = self.store.device(user_id, device_id)
        if record is None:
            raise OlmSessionError(f"unknown device {user_id}/{device_id}")
        return record

    @staticmethod
    def _peer(record: DeviceRecord) -> PeerDevice:
        return PeerDevice(record.user_id, record.device_id, record.curve25519, record.ed25519)

    # Olm session set-up -----------------------------------------------------------------------------
    def devices_needing_olm_sessions(self, member_devices: DeviceKeysByUser) -> dict[int, list[str]]:
        """user id → device ids to claim a one-time key for (a KeysClaim body, once ids are usernames)."""
        needed: dict[int, list[str]] = {}
        for record in self.track_devices(member_devices):
            if not self.olm.has_session(record.curve25519):
                needed.setdefault(record.user_id, []).append(record.device_id)
        return needed

    def add_claimed_keys(self, claimed: Mapping[int | str, Mapping[str, Mapping[str, Mapping[str, Any]]]]
                         ) -> list[tuple[int, str, str]]:
        """Create Olm sessions from a KeysClaim result (user → device → {key id: signed key}).

        Returns the (user, device, reason) entries that failed (unknown device, bad signature, …).
        """
        failed: list[tuple[int, str, str]] = []
        for raw_user_id, devices in claimed.items():
            user_id = int(raw_user_id)
            for device_id, keys in devices.items():
                record = self.store.device(user_id, device_id)
                try:
                    if record is None or record.identity_changed:
                        raise OlmSessionError("device is not known with settled keys")
                    self.olm.create_outbound_session(self._peer(record), keys)
                except CryptoError as exc:
                    failed.append((user_id, device_id, str(exc)))
        return failed

    def encrypt_to_device(self, user_id: int, device_id: str, event_type: str,
                          content: dict[str, Any]) -> ToDeviceMessage:
        """Olm-encrypt any payload (SAS, call signalling) for one known device with an Olm session."""
        record = self._device(user_id, device_id)
        if record.identity_changed or record.trust is TrustState.BLOCKED:
            raise OlmSessionError(f"device {user_id}/{device_id} is blocked or has an unaccepted key change")
        return ToDeviceMessage(user_id, device_id, self.olm.encrypt(self._peer(record), event_type, content))

    # to-device in -----------------------------------------------------------------------------------
    def receive_to_device(self, events: Sequence[Mapping[str, Any]]) -> list[OlmPayload]:
        """Decrypt to-device events ({sender_id, content, …} as the server delivers them).

        Room keys are stored as inbound group sessions (a `RoomKeyReceived` event each); every other
        payload is returned in order. A bad event becomes an `UndecryptableToDevice` event, never an
        exception, so one forged message cannot block the queue.
        """
        payloads: list[OlmPayload] = []
        for event in events:
            sender = event.get("sender_id")
            try:
                content = event["content"]
                payload = self.olm.decrypt(content)
                if sender is not None and sender != payload.sender_user_id:
                    raise DecryptionError("the server-named sender differs from the encrypted sender")
                if payload.type == ROOM_KEY_TYPE:
                    self._receive_room_key(payload)
                else:
                    payloads.append(payload)
            except (CryptoError, KeyError, TypeError) as exc:
                self._events.append(UndecryptableToDevice(sender if isinstance(sender, int) else None, str(exc)))
        return payloads

    def _receive_room_key(self, payload: OlmPayload) -> None:
        session = InboundGroupSession.from_room_key(
            payload.content, sender_key=payload.sender_key, sender_user_id=payload.sender_user_id,
            sender_device_id=payload.sender_device_id, sender_ed25519=payload.sender_ed25519)
        existing = self.store.inbound_group_session(session.sender_key, session.session_id)
        if existing is not None:
            if existing.chat_id != session.chat_id:
                raise DecryptionError("a room key for a known session names another chat")
            if existing.first_known_index <= session.first_known_index:
                return  # keep the copy that decrypts more
        self.store.save_inbound_group_session(session)
        self._events.append(RoomKeyReceived(session.chat_id, session.sender_key, session.session_id,
                                            session.first_known_index))

    # Megolm -----------------------------------------------------------------------------------------
    def on_membership_changed(self, chat_id: int) -> None:
        """Someone left or was removed (or joined): the next message starts a new session."""
        self.store.discard_outbound_group_session(chat_id)

    def needs_key_sharing(self, chat_id: int, member_devices: DeviceKeysByUser) -> bool:
        """Whether `encrypt_for_chat` with these devices would share a room key or start a session.

        False only in the steady state: the chat's session is within its rotation budget and was shared
        with exactly the shareable devices among these.
        """
        session = self.store.outbound_group_session(chat_id)
        if session is None or session.needs_rotation(self.clock(), self.rotation):
            return True
        members = {(r.user_id, r.device_id, r.curve25519) for r in self.track_devices(member_devices)}
        return session.shared_with != members

    def encrypt_for_chat(self, chat_id: int, plaintext: dict[str, Any], member_devices: DeviceKeysByUser
                         ) -> tuple[dict[str, Any], list[ToDeviceMessage]]:
        """Encrypt a chat message; return (E2EEnvelope dict, to-device room-key messages to send FIRST).

        The session key is shared with every current member device (the sender's other devices too)
        that lacks it and has an Olm session; call `devices_needing_olm_sessions` + `add_claimed_keys`
        before, or devices without a session only get the key with a later message. A device that was
        shared with but is no longer a member, or a rotation budget spent, starts a new session.
        """
        account = self.account
        shareable = self.track_devices(member_devices)
        members = {(r.user_id, r.device_id, r.curve25519) for r in shareable}
        now = self.clock()
        session = self.store.outbound_group_session(chat_id)
        if session is not None and (session.needs_rotation(now, self.rotation) or session.shared_with - members):
            session = None
        pending = [] if session is None else [
            r for r in shareable
            if (r.user_id, r.device_id, r.curve25519) not in session.shared_with and self.olm.has_session(r.curve25519)]
        to_device: list[ToDeviceMessage] = []
        if session is not None and not pending and self.store.holds_lease(chat_id):
            # the steady state: nothing to share, nothing to write
            envelope = session.encrypt(plaintext, sender_user_id=account.user_id,
                                       sender_device_id=account.device_id, sender_key=account.curve25519)
            return envelope, to_device
        with self.store.transaction():
            if session is None:
                session = OutboundGroupSession.new(chat_id, now)
                own_copy = InboundGroupSession.from_room_key(
                    session.room_key(), sender_key=account.curve25519, sender_user_id=account.user_id,
                    sender_device_id=account.device_id, sender_ed25519=account.ed25519)
                self.store.save_inbound_group_session(own_copy)
                pending = [r for r in shareable if self.olm.has_session(r.curve25519)]
            if pending:
                room_key = session.room_key()  # at the current index: no earlier messages
                for record in pending:
                    content = self.olm.encrypt(self._peer(record), ROOM_KEY_TYPE, room_key)
                    to_device.append(ToDeviceMessage(record.user_id, record.device_id, content))
                    session.shared_with.add((record.user_id, record.device_id, record.curve25519))
            # leased before the first encryption: a crash or another process never continues it (store.py)
            self.store.save_outbound_group_session(session)
            envelope = session.encrypt(plaintext, sender_user_id=account.user_id,
                                       sender_device_id=account.device_id, sender_key=account.curve25519)
        return envelope, to_device

    def decrypt_chat_message(self, chat_id: int, envelope: Mapping[str, Any], message_id: str | int
                             ) -> DecryptedChatMessage:
        """Decrypt a stored chat message. Raises MissingSessionKey, ReplayedMessage or DecryptionError."""
        try:
            algorithm, sender_key, session_id = envelope["algorithm"], envelope["sender_key"], envelope["session_id"]
        except (KeyError, TypeError) as exc:
            raise DecryptionError(f"malformed envelope: {exc}") from exc
        if algorithm != MEGOLM_ALGORITHM:
            raise DecryptionError(f"unsupported algorithm {algorithm!r}")
        session = self.store.inbound_group_session(sender_key, session_id)
        if session is None:
            raise MissingSessionKey(session_id, sender_key)
        message = session.decrypt(dict(envelope), chat_id)
        device = self.store.device_by_curve25519(sender_key)
        if device is not None and (device.user_id, device.device_id) != (message.sender_user_id,
                                                                       message.sender_device_id):
            raise DecryptionError("the session's sender key belongs to another device")
        first = self.store.record_megolm_index(sender_key, session_id, message.message_index, str(message_id))
        if first != str(message_id):
            raise ReplayedMessage(session_id, message.message_index, first)
        own = sender_key == self.account.curve25519
        trust = TrustState.VERIFIED if own else (device.trust if device is not None else None)
        return DecryptedChatMessage(message.content, message.sender_user_id, message.sender_device_id,
                                    message.message_index, session_id, trust)

    def reshare_room_key(self, session_id: str, user_id: int, device_id: str, from_index: int) -> ToDeviceMessage:
        """Re-send one of OUR sessions to a member device from `from_index` on (e.g. it missed the key).

        Uses our own inbound copy's `export_at`, so it can never reveal messages before `from_index`.
        """
        own = self.store.inbound_group_session(self.account.curve25519, session_id)
        if own is None:
            raise MissingSessionKey(session_id, self.account.curve25519)
        exported = own.export_at(max(from_index, own.first_known_index))
        if exported is None:
            raise DecryptionError(f"session {session_id} is not known from index {from_index}")
        content = {"algorithm": MEGOLM_ALGORITHM, "chat_id": own.chat_id, "session_id": session_id,
                   "session_key": exported, "exported": True}
        return self.encrypt_to_device(user_id, device_id, ROOM_KEY_TYPE, content)
