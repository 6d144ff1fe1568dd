"""The Messenger's SAS verification against a live server: a request from a device we never looked up
still arrives, and either side can cancel (the other sees why; cancelling an ended one sends nothing)."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from melo_protocol.client import CredentialStore, MeloClient
from melo_protocol.client import events as ev
from melo_protocol.client.messenger import Messenger
from melo_protocol.crypto import SasState
from tests.kit.e2ekit import close_all, next_of
from tests.live import LiveServer
from tests.protocol.conftest import PASSWORD, new_username


async def _device(server: LiveServer, home: Path, name: str) -> Messenger:
    store = CredentialStore(home, "default", warn=lambda _msg: None)
    client = MeloClient(server.url, store=store)
    await client.register(name, PASSWORD, device_name="sdk")
    m = Messenger.open(client, store)
    await m.start()
    return m


@pytest.fixture
async def pair(live_server: LiveServer, tmp_path: Path) -> AsyncIterator[tuple[Messenger, Messenger]]:
    alice = await _device(live_server, tmp_path / "alice", new_username("alice"))
    bob = await _device(live_server, tmp_path / "bob", new_username("bob"))
    try:
        await alice.client.create_direct(bob.username)
        yield alice, bob
    finally:
        await close_all(alice, bob)


async def test_request_from_a_device_never_looked_up_arrives(pair: tuple[Messenger, Messenger]) -> None:
    alice, bob = pair
    (bob_device,) = await alice.devices(bob.username)
    assert bob.crypto.device(alice.user_id, alice.device_id) is None  # bob never fetched alice's devices
    sas = await alice.start_sas(bob.username, bob_device["device_id"])
    request = await next_of(bob, ev.VerificationUpdate)
    assert (request.user, request.device_id, request.state) == (alice.username, alice.device_id, "created")
    assert request.data["transaction_id"] == sas.transaction_id
    record = bob.crypto.device(alice.user_id, alice.device_id)
    assert record is not None and record.ed25519 == alice.crypto.identity_keys["ed25519"]


async def test_declining_a_request_cancels_it_on_both_sides(pair: tuple[Messenger, Messenger]) -> None:
    alice, bob = pair
    (bob_device,) = await alice.devices(bob.username)
    sas_a = await alice.start_sas(bob.username, bob_device["device_id"])
    request = await next_of(bob, ev.VerificationUpdate, lambda e: e.state == "created")
    sas_b = await bob.cancel_sas(request.data["transaction_id"])
    assert sas_b.state is SasState.CANCELLED and sas_b.cancel_code == "m.user"
    update = await next_of(alice, ev.VerificationUpdate, lambda e: e.data["transaction_id"] == sas_a.transaction_id)
    assert update.state == "cancelled" and sas_a.cancel_code == "m.user"
    assert (await bob.cancel_sas(sas_b.transaction_id)) is sas_b  # already ended: nothing more to say
    assert [d["trust"] for d in await alice.devices(bob.username)] == ["unverified"]
