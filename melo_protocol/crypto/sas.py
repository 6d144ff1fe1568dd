"""Interactive SAS verification of another device, as a pure state machine on vodozemac.Sas.

Messages in and out are plain dicts (each with "type" and "transaction_id"); the SDK carries them as
Olm to-device payloads (`CryptoMachine.encrypt_to_device(user, device, msg["type"], msg)`).

    initiator                          responder
    start()            ── start ──▶    SasVerification.from_start(...)
                       ◀── accept ──   accept()          (commitment = SHA-256(responder key ‖ start))
    receive(accept)    ── key ────▶    receive(key)      → codes
    receive(key)       ◀── key ────    (commitment checked by the initiator) → codes
    both users compare 7 emoji / 3 numbers, then confirm() on each side
                       ── mac ────▶ / ◀── mac ──         MAC of the device's ed25519 key we hold on record
    state == VERIFIED on both sides, or CANCELLED (mismatched codes, keys or commitment)

A relay that swaps the SAS public keys gets different shared secrets on each side, so the codes differ
and the users cancel. After VERIFIED the SDK marks the device verified (`CryptoMachine.set_trust`).
"""

from __future__ import annotations

import base64
import enum
import hashlib
from typing import Any

import vodozemac

from .errors import VerificationError
from .signing import canonical_json

START = "m.key.verification.start"
ACCEPT = "m.key.verification.accept"
KEY = "m.key.verification.key"
MAC = "m.key.verification.mac"
CANCEL = "m.key.verification.cancel"
METHOD = "m.sas.v1"

# The 64 SAS emoji of the Matrix specification, by index.
EMOJI: tuple[tuple[str, str], ...] = (
    ("🐶", "Dog"), ("🐱", "Cat"), ("🦁", "Lion"), ("🐎", "Horse"), ("🦄", "Unicorn"), ("🐷", "Pig"),
    ("🐘", "Elephant"), ("🐰", "Rabbit"), ("🐼", "Panda"), ("🐓", "Rooster"), ("🐧", "Penguin"),
    ("🐢", "Turtle"), ("🐟", "Fish"), ("🐙", "Octopus"), ("🦋", "Butterfly"), ("🌷", "Flower"), ("🌳", "Tree"),
    ("🌵", "Cactus"), ("🍄", "Mushroom"), ("🌏", "Globe"), ("🌙", "Moon"), ("☁️", "Cloud"), ("🔥", "Fire"),
    ("🍌", "Banana"), ("🍎", "Apple"), ("🍓", "Strawberry"), ("🌽", "Corn"), ("🍕", "Pizza"), ("🎂", "Cake"),
    ("❤️", "Heart"), ("😀", "Smiley"), ("🤖", "Robot"), ("🎩", "Hat"), ("👓", "Glasses"), ("🔧", "Spanner"),
    ("🎅", "Santa"), ("👍", "Thumbs Up"), ("☂️", "Umbrella"), ("⌛", "Hourglass"), ("⏰", "Clock"), ("🎁", "Gift"),
    ("💡", "Light Bulb"), ("📕", "Book"), ("✏️", "Pencil"), ("📎", "Paperclip"), ("✂️", "Scissors"),
    ("🔒", "Lock"), ("🔑", "Key"), ("🔨", "Hammer"), ("☎️", "Telephone"), ("🏁", "Flag"), ("🚂", "Train"),
    ("🚲", "Bicycle"), ("✈️", "Aeroplane"), ("🚀", "Rocket"), ("🏆", "Trophy"), ("⚽", "Ball"), ("🎸", "Guitar"),
    ("🎺", "Trumpet"), ("🔔", "Bell"), ("⚓", "Anchor"), ("🎧", "Headphones"), ("📁", "Folder"), ("📌", "Pin"),
)


class SasState(enum.StrEnum):
    CREATED = "created"              # responder: start received, not accepted yet
    STARTED = "started"              # initiator: start sent
    ACCEPTED = "accepted"            # accept sent/received, waiting for keys
    KEYS_EXCHANGED = "keys_exchanged"  # codes can be shown
    CONFIRMED = "confirmed"          # we confirmed and sent our MAC; waiting for theirs
    VERIFIED = "verified"
    CANCELLED = "cancelled"


class SasVerification:
    """One verification between this device and one other device; see the module docstring for the flow."""

    def __init__(self, *, transaction_id: str, initiator: bool, own_user_id: int, own_device_id: str,
                 own_ed25519: str, their_user_id: int, their_device_id: str, their_ed25519: str) -> None:
        self.transaction_id = transaction_id
        self.initiator = initiator
        self.own = (own_user_id, own_device_id, own_ed25519)
        self.their = (their_user_id, their_device_id, their_ed25519)
        self.state = SasState.CREATED
        self.cancel_code: str | None = None
        self._sas = vodozemac.Sas()
        self._public_key = self._sas.public_key.to_base64()
        self._their_public_key: str | None = None
        self._established: vodozemac.EstablishedSas | None = None
        self._start_message: dict[str, Any] | None = None
        self._commitment: str | None = None
        self._their_mac_ok = False
        self._confirmed = False

    # construction -----------------------------------------------------------------------------------
    @classmethod
    def start(cls, *, transaction_id: str, own_user_id: int, own_device_id: str, own_ed25519: str,
              their_user_id: int, their_device_id: str, their_ed25519: str
              ) -> tuple[SasVerification, dict[str, Any]]:
        sas = cls(transaction_id=transaction_id, initiator=True, own_user_id=own_user_id,
                  own_device_id=own_device_id, own_ed25519=own_ed25519, their_user_id=their_user_id,
                  their_device_id=their_device_id, their_ed25519=their_ed25519)
        message = {"type": START, "transaction_id": transaction_id, "method": METHOD,
                   "from_user": own_user_id, "from_device": own_device_id}
        sas._start_message = message
        sas.state = SasState.STARTED
        return sas, dict(message)

    @classmethod
    def from_start(cls, message: dict[str, Any], *, own_user_id: int, own_device_id: str, own_ed25519: str,
                   their_ed25519: str) -> SasVerification:
        """The responder's side, from the initiator's start message; `their_ed25519` is the key on record."""
        if message.get("type") != START or message.get("method") != METHOD:
            raise VerificationError("not a SAS start message")
        try:
            sas = cls(transaction_id=message["transaction_id"], initiator=False, own_user_id=own_user_id,
                      own_device_id=own_device_id, own_ed25519=own_ed25519, their_user_id=message["from_user"],
                      their_device_id=message["from_device"], their_ed25519=their_ed25519)
        except KeyError as exc:
            raise VerificationError(f"start message lacks {exc}") from exc
        sas._start_message = dict(message)
        return sas

    def accept(self) -> dict[str, Any]:
        if self.initiator or self.state is not SasState.CREATED or self._start_message is None:
            raise VerificationError(f"cannot accept in state {self.state}")
        self.state = SasState.ACCEPTED
        return self._message(ACCEPT, method=METHOD, commitment=_commitment(self._public_key, self._start_message))

    # messages in ------------------------------------------------------------------------------------
    def receive(self, message: dict[str, Any]) -> list[dict[str, Any]]:
        """Feed a message from the other device; return the messages to send back (possibly a cancel)."""
        if self.state is SasState.CANCELLED:
            return []
        if message.get("transaction_id") != self.transaction_id:
            raise VerificationError("message for another verification")
        kind = message.get("type")
        if kind == CANCEL:
            self.state, self.cancel_code = SasState.CANCELLED, str(message.get("code", "m.user"))
            return []
        try:
            if kind == ACCEPT and self.initiator and self.state is SasState.STARTED:
                self._commitment = str(message["commitment"])
                self.state = SasState.ACCEPTED
                return [self._message(KEY, key=self._public_key)]
            if kind == KEY and self.state is SasState.ACCEPTED:
                their_key = str(message["key"])
                if self.initiator and (self._start_message is None or
                                       _commitment(their_key, self._start_message) != self._commitment):
                    return [self.cancel("m.mismatched_commitment")]
                try:
                    self._establish(their_key)
                except VerificationError as exc:
                    return [self.cancel("m.invalid_message", str(exc))]
                return [] if self.initiator else [self._message(KEY, key=self._public_key)]
            if kind == MAC and self.state in (SasState.KEYS_EXCHANGED, SasState.CONFIRMED):
                return self._receive_mac(message)
        except (KeyError, TypeError) as exc:
            return [self.cancel("m.invalid_message", f"malformed {kind}: {exc}")]
        return [self.cancel("m.unexpected_message", f"{kind} in state {self.state}")]

    def _establish(self, their_key: str) -> None:
        try:
            self._established = self._sas.diffie_hellman(vodozemac.Curve25519PublicKey.from_base64(their_key))
        except ValueError as exc:
            raise VerificationError(f"bad SAS public key: {exc}") from exc
        self._their_public_key = their_key
        self.state = SasState.KEYS_EXCHANGED

    def _receive_mac(self, message: dict[str, Any]) -> list[dict[str, Any]]:
        assert self._established is not None
        _, their_device, their_ed25519 = self.their
        key_id = f"ed25519:{their_device}"
        base = self._mac_info(sender=self.their, receiver=self.own)
        try:
            self._established.verify_mac(their_ed25519, base + key_id, str(message["mac"][key_id]))
            self._established.verify_mac(key_id, base + "KEY_IDS", str(message["keys"]))
        except vodozemac.SasException:
            return [self.cancel("m.key_mismatch", "the other device's key MAC does not match our record")]
        self._their_mac_ok = True
        if self._confirmed:
            self.state = SasState.VERIFIED
        return []

    # user decisions ---------------------------------------------------------------------------------
    def confirm(self) -> dict[str, Any]:
        """The user saw matching codes: send the MAC of our own ed25519 key."""
        if self._established is None or self.state not in (SasState.KEYS_EXCHANGED,):
            raise VerificationError(f"cannot confirm in state {self.state}")
        _, own_device, own_ed25519 = self.own
        key_id = f"ed25519:{own_device}"
        base = self._mac_info(sender=self.own, receiver=self.their)
        message = self._message(MAC, mac={key_id: self._established.calculate_mac(own_ed25519, base + key_id)},
                                keys=self._established.calculate_mac(key_id, base + "KEY_IDS"))
        self._confirmed = True
        self.state = SasState.VERIFIED if self._their_mac_ok else SasState.CONFIRMED
        return message

    def mismatch(self) -> dict[str, Any]:
        """The user saw different codes."""
        return self.cancel("m.mismatched_sas", "the short authentication strings differ")

    def cancel(self, code: str = "m.user", reason: str = "cancelled") -> dict[str, Any]:
        self.state, self.cancel_code = SasState.CANCELLED, code
        return self._message(CANCEL, code=code, reason=reason)

    # codes ------------------------------------------------------------------------------------------
    def emoji(self) -> list[tuple[str, str]]:
        return [EMOJI[i] for i in self._bytes().emoji_indices]

    def decimals(self) -> tuple[int, int, int]:
        first, second, third = self._bytes().decimals
        return (first, second, third)

    def _bytes(self) -> vodozemac.SasBytes:
        if self._established is None or self._their_public_key is None:
            raise VerificationError("no codes before the keys are exchanged")
        own_part = self._party(self.own, self._public_key)
        their_part = self._party(self.their, self._their_public_key)
        first, second = (own_part, their_part) if self.initiator else (their_part, own_part)
        return self._established.bytes(f"MELO_SAS_V1|{first}|{second}|{self.transaction_id}")

    # helpers ----------------------------------------------------------------------------------------
    @staticmethod
    def _party(party: tuple[int, str, str], sas_key: str) -> str:
        return f"{party[0]}|{party[1]}|{sas_key}"

    def _mac_info(self, *, sender: tuple[int, str, str], receiver: tuple[int, str, str]) -> str:
        return f"MELO_SAS_MAC_V1|{sender[0]}|{sender[1]}|{receiver[0]}|{receiver[1]}|{self.transaction_id}|"

    def _message(self, kind: str, **fields: Any) -> dict[str, Any]:
        return {"type": kind, "transaction_id": self.transaction_id, **fields}


def _commitment(public_key: str, start_message: dict[str, Any]) -> str:
    digest = hashlib.sha256(public_key.encode("ascii") + canonical_json(start_message)).digest()
    return base64.b64encode(digest).decode("ascii").rstrip("=")
