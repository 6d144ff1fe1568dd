"""Verifying a contact's device: interactive SAS (emoji over encrypted to-device messages) and the
safety number compared in person.

The SAS state machine is ``melo_protocol.crypto.sas``; this drives it over the network and keeps the
open verifications by transaction id. What the user starts here (start, accept, confirm, cancel) fails
with ``E2EError`` only: a crypto error never leaves the SDK raw. One that arrives from the other side
and fails is logged and shows in its state, so one bad message cannot stop the live stream.
"""

import contextlib
import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from melo_protocol.client import events as ev
from melo_protocol.client.devices import DeviceDirectory, Identity
from melo_protocol.client.errors import E2EError, MeloError
from melo_protocol.crypto import (
    CryptoMachine,
    DeviceRecord,
    OlmPayload,
    PartyIdentity,
    SasState,
    SasVerification,
    TrustState,
    safety_number,
    safety_qr,
)
from melo_protocol.crypto.errors import CryptoError

log = logging.getLogger("melo.sdk")


@contextlib.contextmanager
def _as_e2e_error() -> Iterator[None]:
    """A crypto error (a bad key, a message out of turn, no Olm session) as the SDK's ``E2EError``,
    in the crypto error's words."""
    try:
        yield
    except CryptoError as exc:
        raise E2EError(str(exc)) from exc


class Verifications:
    def __init__(self, directory: DeviceDirectory, me: Identity, *, crypto: Callable[[], CryptoMachine]) -> None:
        self.directory = directory
        self.me = me
        self._crypto = crypto
        self._open: dict[str, SasVerification] = {}  # transaction id → verification

    @property
    def crypto(self) -> CryptoMachine:
        return self._crypto()

    def mark_verified(self, user_id: int, device_id: str) -> None:
        self.crypto.set_trust(user_id, device_id, TrustState.VERIFIED)

    # -- safety numbers ----------------------------------------------------------------------------------------
    async def safety_number(self, username: str) -> tuple[str, str]:
        """(digit groups, terminal QR) for us and ``username``: compare them in person."""
        theirs = await self.directory.device_keys([username])
        their_id = next(iter(theirs), None)
        if their_id is None:
            raise E2EError(f"{username} has no devices with keys")
        mine = await self.directory.device_keys([self.me.username])
        mine_ed25519 = [k["keys"][f"ed25519:{k['device_id']}"] for k in mine.get(self.me.user_id, [])]
        me = PartyIdentity.of(self.me.user_id, mine_ed25519 or [self.crypto.identity_keys["ed25519"]])
        them = PartyIdentity.of(their_id, [k["keys"][f"ed25519:{k['device_id']}"] for k in theirs[their_id]])
        return safety_number(me, them), safety_qr(me, them)

    # -- SAS: what the user does --------------------------------------------------------------------------------
    async def start(self, username: str, device_id: str) -> SasVerification:
        devices = await self.directory.device_keys([username])
        for uid, keys_list in devices.items():
            for keys in keys_list:
                if keys["device_id"] == device_id:
                    with _as_e2e_error():
                        await self.directory.ensure_olm_sessions({uid: [keys]})
                        sas, msg = SasVerification.start(
                            transaction_id=uuid.uuid4().hex,
                            own_user_id=self.me.user_id,
                            own_device_id=self.me.device_id,
                            own_ed25519=self.crypto.identity_keys["ed25519"],
                            their_user_id=uid,
                            their_device_id=device_id,
                            their_ed25519=keys["keys"][f"ed25519:{device_id}"],
                        )
                        self._open[sas.transaction_id] = sas
                        await self._send(sas, [msg])
                    return sas
        raise E2EError(f"{username} has no device {device_id}")

    async def accept(self, transaction_id: str) -> SasVerification:
        """Accept a contact's request (``KeyError`` for a transaction this device never heard of)."""
        sas = self._open[transaction_id]
        with _as_e2e_error():
            await self._send(sas, [sas.accept()])
        return sas

    async def confirm(self, transaction_id: str, *, match: bool) -> SasVerification:
        sas = self._open[transaction_id]
        with _as_e2e_error():
            await self._send(sas, [sas.confirm() if match else sas.mismatch()])
            if sas.state is SasState.VERIFIED:
                self.mark_verified(sas.their[0], sas.their[1])
        return sas

    async def cancel(self, transaction_id: str) -> SasVerification:
        """The user gave up (or declined a request): tell the other device; nothing once it has ended."""
        sas = self._open[transaction_id]
        if sas.state not in (SasState.VERIFIED, SasState.CANCELLED):
            with _as_e2e_error():
                await self._send(sas, [sas.cancel("m.user", "the user cancelled")])
        return sas

    async def _send(self, sas: SasVerification, messages: list[dict[str, Any]]) -> None:
        uid, device_id, _ = sas.their
        encrypted = [self.crypto.encrypt_to_device(uid, device_id, m["type"], m) for m in messages]
        await self.directory.send_to_device(encrypted)

    # -- SAS: what the other device says ----------------------------------------------------------------------
    async def receive(self, payload: OlmPayload) -> list[ev.Event]:
        content = dict(payload.content)
        txn = str(content.get("transaction_id", ""))
        sas = self._open.get(txn)
        try:
            if sas is None:
                if not content.get("type", "").endswith(".start"):
                    return []
                record = await self._sender_device(payload.sender_user_id, payload.sender_device_id)
                if record is None:
                    return []
                sas = SasVerification.from_start(
                    content,
                    own_user_id=self.me.user_id,
                    own_device_id=self.me.device_id,
                    own_ed25519=self.crypto.identity_keys["ed25519"],
                    their_ed25519=record.ed25519,
                )
                self._open[txn] = sas
            else:
                replies = sas.receive(content)
                if replies:
                    await self._send(sas, replies)
        except CryptoError as exc:
            log.info("verification %s failed: %s", txn, exc)
        if sas is None:  # a start that did not parse: nothing to show
            return []
        if sas.state is SasState.VERIFIED:
            self.mark_verified(sas.their[0], sas.their[1])
        update = ev.VerificationUpdate(
            user=self.directory.usernames.get(sas.their[0], ""),
            device_id=sas.their[1],
            state=sas.state.value,
            data={"transaction_id": txn},
        )
        return [update]

    async def _sender_device(self, user_id: int, device_id: str) -> DeviceRecord | None:
        """Our record of a device that wrote to us; looked up (trust on first use) when we have none yet.

        A contact may start a verification before we ever fetched their devices: without this look-up
        their request would be dropped and they would wait in vain.
        """
        record = self.crypto.device(user_id, device_id)
        username = self.directory.usernames.get(user_id)
        if record is None and username:
            with contextlib.suppress(MeloError):
                await self.directory.list_devices(username)
            record = self.crypto.device(user_id, device_id)
        return record
