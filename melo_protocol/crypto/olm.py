"""Olm 1:1 sessions between devices: the authenticated, encrypted channel for to-device payloads.

Room keys, SAS verification messages and call signalling travel this way. Every plaintext binds the
sender (user, device, ed25519) and the recipient (user, curve25519, ed25519), like Matrix's
`keys`/`recipient_keys`, and decrypt rejects any mismatch. Creating an inbound session spends a one-time
key, so the account and the new session are committed in one store transaction.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import vodozemac

from .account import DeviceAccount
from .errors import DecryptionError, OlmSessionError, SignatureError, StoreError
from .signing import OLM_ALGORITHM, verify_signed
from .store import CryptoStore

PRE_KEY_MESSAGE = 0
NORMAL_MESSAGE = 1
ENCRYPTED_TYPE = "m.room.encrypted"  # outer to-device type of every Olm envelope


def b64encode(data: bytes) -> str:
    """Unpadded standard base64, as vodozemac and Matrix write it."""
    return base64.b64encode(data).decode("ascii").rstrip("=")


def b64decode(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


@dataclass(frozen=True)
class PeerDevice:
    """Another device's public identity, as taken from its verified device keys."""

    user_id: int
    device_id: str
    curve25519: str
    ed25519: str


@dataclass(frozen=True)
class OlmPayload:
    """A decrypted to-device payload and who (authenticated by Olm) sent it."""

    type: str
    content: dict[str, Any]
    sender_user_id: int
    sender_device_id: str
    sender_key: str
    sender_ed25519: str
    sender_device_known: bool


class OlmSessions:
    """Creates and uses Olm sessions for the store's account; all state lives in the store."""

    def __init__(self, store: CryptoStore) -> None:
        self.store = store

    @property
    def account(self) -> DeviceAccount:
        account = self.store.load_account()
        if account is None:
            raise StoreError("the crypto store has no account yet")
        return account

    def has_session(self, peer_curve25519: str) -> bool:
        return bool(self.store.olm_sessions(peer_curve25519))

    def create_outbound_session(self, peer: PeerDevice, claimed_key: Mapping[str, Mapping[str, Any]]) -> str:
        """Start a session from a claimed one-time (or fallback) key `{key_id: signed key}`; return its id.

        The key's signature must verify against the peer's ed25519 key, or `SignatureError` is raised.
        """
        if len(claimed_key) != 1:
            raise OlmSessionError(f"expected exactly one claimed key for {peer.user_id}/{peer.device_id}")
        ((key_id, signed),) = claimed_key.items()
        if not key_id.startswith("signed_curve25519:") or not isinstance(signed, Mapping):
            raise OlmSessionError(f"unsupported one-time key {key_id!r}")
        if not verify_signed(signed, peer.ed25519, peer.user_id, peer.device_id):
            raise SignatureError(f"one-time key {key_id} of {peer.user_id}/{peer.device_id} has a bad signature")
        try:
            identity = vodozemac.Curve25519PublicKey.from_base64(peer.curve25519)
            one_time = vodozemac.Curve25519PublicKey.from_base64(signed["key"])
        except (KeyError, TypeError, ValueError) as exc:
            raise OlmSessionError(f"malformed key for {peer.user_id}/{peer.device_id}: {exc}") from exc
        session = self.account.inner.create_outbound_session(identity, one_time)
        self.store.save_olm_session(peer.curve25519, session)
        return session.session_id

    def encrypt(self, peer: PeerDevice, event_type: str, content: dict[str, Any]) -> dict[str, Any]:
        """Encrypt a payload for one device with its most recently used session; return the envelope."""
        entries = self.store.olm_sessions(peer.curve25519)
        if not entries:
            raise OlmSessionError(f"no Olm session with {peer.user_id}/{peer.device_id}: claim a one-time key")
        account = self.account
        plaintext = json.dumps({
            "type": event_type,
            "content": content,
            "sender": account.user_id,
            "sender_device": account.device_id,
            "keys": {"ed25519": account.ed25519},
            "recipient": peer.user_id,
            "recipient_keys": {"curve25519": peer.curve25519, "ed25519": peer.ed25519},
        }, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        session = entries[0].inner
        message_type, body = session.encrypt(plaintext).to_parts()
        self.store.save_olm_session(peer.curve25519, session)
        return {
            "algorithm": OLM_ALGORITHM,
            "sender_key": account.curve25519,
            "ciphertext": {peer.curve25519: {"type": message_type, "body": b64encode(body)}},
        }

    def decrypt(self, envelope: Mapping[str, Any]) -> OlmPayload:
        """Decrypt an envelope addressed to this device; any failure is a `DecryptionError`."""
        account = self.account
        try:
            if envelope["algorithm"] != OLM_ALGORITHM:
                raise DecryptionError(f"not an Olm envelope: {envelope['algorithm']!r}")
            sender_key = envelope["sender_key"]
            part = envelope["ciphertext"][account.curve25519]
            message_type, body = part["type"], b64decode(part["body"])
            if message_type not in (PRE_KEY_MESSAGE, NORMAL_MESSAGE) or isinstance(message_type, bool):
                raise DecryptionError(f"unknown Olm message type {message_type!r}")
            message = vodozemac.AnyOlmMessage.from_parts(message_type, body)
            _require_canonical(message_type, body, message)
            sender_curve = vodozemac.Curve25519PublicKey.from_base64(sender_key)
        except KeyError as exc:
            raise DecryptionError(f"Olm envelope lacks {exc} (or is not addressed to this device)") from exc
        except (TypeError, ValueError, binascii.Error) as exc:
            raise DecryptionError(f"malformed Olm envelope: {exc}") from exc

        entries = self.store.olm_sessions(sender_key)
        if message_type == PRE_KEY_MESSAGE:
            pre_key = message.to_pre_key()
            if pre_key is None:
                raise DecryptionError("pre-key message expected")
            for entry in entries:
                if entry.inner.session_matches(pre_key):
                    return self._decrypt_with(entry.inner, message, sender_key)
            with self.store.transaction():  # spends a one-time key: account + session commit together
                try:
                    session, plaintext = account.inner.create_inbound_session(sender_curve, pre_key)
                except ValueError as exc:  # SessionCreationException: unknown/spent one-time key, bad MAC
                    raise DecryptionError(f"cannot create an inbound Olm session: {exc}") from exc
                payload = self._check(plaintext, sender_key)
                self.store.save_account(account)
                self.store.save_olm_session(sender_key, session)
            return payload
        for entry in entries:
            try:
                return self._decrypt_with(entry.inner, message, sender_key)
            except _WrongSession:
                continue
        raise DecryptionError(f"no Olm session with {sender_key} decrypts this message")

    def _decrypt_with(self, session: vodozemac.Session, message: vodozemac.AnyOlmMessage,
                      sender_key: str) -> OlmPayload:
        try:
            plaintext = session.decrypt(message)
        except ValueError as exc:
            raise _WrongSession(str(exc)) from exc
        self.store.save_olm_session(sender_key, session)  # the ratchet moved: persist before using the payload
        return self._check(plaintext, sender_key)

    def _check(self, plaintext: bytes, sender_key: str) -> OlmPayload:
        account = self.account
        try:
            payload = json.loads(plaintext.decode("utf-8"))
            event_type, content = payload["type"], payload["content"]
            sender, sender_device = payload["sender"], payload["sender_device"]
            sender_ed25519 = payload["keys"]["ed25519"]
            recipient, recipient_keys = payload["recipient"], payload["recipient_keys"]
        except (ValueError, KeyError, TypeError) as exc:
            raise DecryptionError(f"Olm plaintext is not a Melo payload: {exc}") from exc
        if not (isinstance(event_type, str) and isinstance(content, dict) and isinstance(sender, int)
                and isinstance(sender_device, str) and isinstance(sender_ed25519, str)):
            raise DecryptionError("Olm plaintext has fields of the wrong type")
        if (recipient != account.user_id or not isinstance(recipient_keys, dict)
                or recipient_keys.get("curve25519") != account.curve25519
                or recipient_keys.get("ed25519") != account.ed25519):
            raise DecryptionError("Olm payload was encrypted for another recipient")
        known = self.store.device_by_curve25519(sender_key)
        if known is not None and (known.user_id, known.device_id, known.ed25519) != (
                sender, sender_device, sender_ed25519):
            raise DecryptionError("Olm payload's sender claims do not match the device that owns its session")
        return OlmPayload(event_type, content, sender, sender_device, sender_key, sender_ed25519, known is not None)


def _require_canonical(message_type: int, body: bytes, message: vodozemac.AnyOlmMessage) -> None:
    """Reject encodings vodozemac tolerates but never produces, so that no bit of a ciphertext is malleable.

    vodozemac accepts (and decrypts to the authentic plaintext) two kinds of altered messages: a protobuf
    tag turned into an unknown field when the real value was the default 0, and the ignored top bit of the
    three X25519 keys of a pre-key message (RFC 7748 masks it). Neither forges anything, but both let a
    relay change bits unnoticed; re-encoding and checking the pre-key layout closes that.
    """
    if message.to_parts()[1] != body:
        raise DecryptionError("non-canonical Olm message encoding")
    if message_type == PRE_KEY_MESSAGE:
        # version 3, then one-time key, base key, identity key (tag, length 32, key), then the inner message
        if (len(body) < 106 or body[0] != 3 or body[1:3] != b"\x0a\x20" or body[35:37] != b"\x12\x20"
                or body[69:71] != b"\x1a\x20" or body[103] != 0x22):
            raise DecryptionError("non-canonical Olm pre-key message layout")
        if body[34] & 0x80 or body[68] & 0x80 or body[102] & 0x80:
            raise DecryptionError("non-canonical Curve25519 key in Olm pre-key message")


class _WrongSession(DecryptionError):
    """This session did not decrypt the message; another session with the same peer may."""
