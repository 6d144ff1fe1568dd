"""SAS verification in the SDK without a server: what the user does fails as ``E2EError`` (never a raw
crypto error), and what another device sends, however malformed, never raises out of the stream."""

from typing import Any, cast

import pytest

from melo_protocol.client import events as ev
from melo_protocol.client.devices import Identity
from melo_protocol.client.errors import E2EError
from melo_protocol.client.verification import Verifications
from melo_protocol.crypto import CryptoError, DeviceRecord, OlmPayload, OlmSessionError, SasState, ToDeviceMessage

BOB_KEYS = {"user_id": 2, "device_id": "BOBPHONE", "keys": {"ed25519:BOBPHONE": "bob-ed25519"}}


class Directory:
    """The device directory as verification uses it: bob's one device, and what was sent."""

    def __init__(self) -> None:
        self.usernames = {1: "alice", 2: "bob"}
        self.sent: list[ToDeviceMessage] = []

    async def device_keys(self, usernames: list[str]) -> dict[int, list[dict[str, Any]]]:
        return {2: [BOB_KEYS]} if usernames == ["bob"] else {}

    async def ensure_olm_sessions(self, devices: dict[int, list[dict[str, Any]]]) -> None:
        return None

    async def send_to_device(self, messages: list[ToDeviceMessage]) -> None:
        self.sent.extend(messages)

    async def list_devices(self, username: str) -> list[dict[str, Any]]:
        raise AssertionError("bob's device is on record")


class Machine:
    """The crypto machine as verification uses it; ``olm_ok`` False: no Olm session with anyone."""

    def __init__(self, *, olm_ok: bool = True) -> None:
        self.olm_ok = olm_ok
        self.identity_keys = {"ed25519": "alice-ed25519", "curve25519": "alice-curve"}
        self.trusted: list[tuple[int, str]] = []

    def encrypt_to_device(self, user_id: int, device_id: str, event_type: str, content: dict[str, Any]) -> Any:
        if not self.olm_ok:
            raise OlmSessionError(f"no Olm session with {user_id}/{device_id}")
        return ToDeviceMessage(user_id, device_id, {"type": event_type, **content})

    def device(self, user_id: int, device_id: str) -> DeviceRecord | None:
        return DeviceRecord(user_id, device_id, "bob-curve", "bob-ed25519") if user_id == 2 else None

    def set_trust(self, user_id: int, device_id: str, trust: Any) -> None:
        self.trusted.append((user_id, device_id))


def verifications(machine: Machine) -> tuple[Verifications, Directory]:
    directory = Directory()
    return Verifications(cast(Any, directory), Identity(1, "alice", "A"), crypto=lambda: cast(Any, machine)), directory


async def test_what_the_user_does_fails_as_e2e_error_only() -> None:
    v, directory = verifications(Machine())
    sas = await v.start("bob", "BOBPHONE")
    assert sas.state is SasState.STARTED and [m.content["type"] for m in directory.sent] == ["m.key.verification.start"]
    with pytest.raises(E2EError, match="cannot accept") as accepting:
        await v.accept(sas.transaction_id)  # we started it: only bob can accept
    assert isinstance(accepting.value.__cause__, CryptoError)
    with pytest.raises(E2EError, match="cannot confirm"):
        await v.confirm(sas.transaction_id, match=True)  # no codes yet
    with pytest.raises(KeyError):
        await v.accept("no-such-transaction")
    with pytest.raises(E2EError, match="has no device"):
        await v.start("bob", "OTHER")


async def test_no_olm_session_is_an_e2e_error() -> None:
    v, directory = verifications(Machine(olm_ok=False))
    with pytest.raises(E2EError, match="no Olm session") as failed:
        await v.start("bob", "BOBPHONE")
    assert isinstance(failed.value.__cause__, OlmSessionError) and directory.sent == []


async def test_cancelling_tells_the_other_device_once() -> None:
    v, directory = verifications(Machine())
    sas = await v.start("bob", "BOBPHONE")
    assert (await v.cancel(sas.transaction_id)) is sas and sas.state is SasState.CANCELLED
    assert (await v.cancel(sas.transaction_id)) is sas  # already ended: nothing more to say
    assert [m.content["type"] for m in directory.sent] == ["m.key.verification.start", "m.key.verification.cancel"]


def start_from_bob(**content: Any) -> OlmPayload:
    return OlmPayload("m.key.verification.start", content, 2, "BOBPHONE", "bob-curve", "bob-ed25519", True)


async def test_a_request_from_a_contact_becomes_an_update() -> None:
    v, _ = verifications(Machine())
    start = start_from_bob(
        type="m.key.verification.start", transaction_id="t1", method="m.sas.v1", from_user=2, from_device="BOBPHONE"
    )
    assert await v.receive(start) == [
        ev.VerificationUpdate(user="bob", device_id="BOBPHONE", state="created", data={"transaction_id": "t1"})
    ]
    sas = await v.accept("t1")
    assert sas.state is SasState.ACCEPTED


async def test_a_malformed_request_is_dropped_without_raising() -> None:
    v, directory = verifications(Machine())
    no_sender = start_from_bob(type="m.key.verification.start", transaction_id="t2", method="m.sas.v1")
    assert await v.receive(no_sender) == []
    not_a_start = start_from_bob(type="m.key.verification.key", transaction_id="t3", key="k")
    assert await v.receive(not_a_start) == []
    with pytest.raises(KeyError):
        await v.accept("t2")  # nothing was opened for it
    assert directory.sent == []
