"""SAS against a man in the middle who owns the server: the two humans see different codes.

Attack model. Mallory controls the Melo server, so she controls everything the server vouches for:

* the key directory: each victim's REST traffic passes through an in-test relay (an httpx transport given
  to `MeloClient(transport=...)`) that rewrites the answers of `POST /v1/keys/query` and `POST /v1/keys/claim`.
  Alice is shown "Bob's device" (Bob's real user id and device id) carrying the keys of Mallory-B, a
  `DeviceAccount` made for Bob's ids and correctly self-signed; Bob is shown "Alice's device" with the keys
  of Mallory-A. Claims for the impersonated device return Mallory's own signed one-time keys, which are
  never uploaded: only the victims ever see them.
* the to-device relay: the server's bus is wrapped so that to-device rows between Alice's and Bob's
  devices are never delivered. Mallory reads those rows from the server database, deletes them, decrypts
  them with the impersonating `CryptoMachine`, and injects her answers as new `to_device` rows with a
  forged `sender_user_id`/`sender_device`, published on the bus the way `server.keys.service.send_to_device`
  does, so that the victims receive them live.

The chat between Alice and Bob is real; only the keys and the to-device traffic are Mallory's. Mallory
plays the strongest honest-looking part she can: Mallory-B answers Alice's verification as Bob, Mallory-A
starts one with Bob as Alice (same transaction id), and each sends its key MAC as soon as the keys are
exchanged. Olm, the SAS commitment and the MACs all check out against the poisoned directory, so the only
thing that can reveal the attack is the humans comparing codes: Alice's codes (equal to Mallory-B's) differ
from Bob's (equal to Mallory-A's). When both report the mismatch, neither device becomes verified.

A control test runs the same relay without rewriting: the codes are then equal and both devices verify.
"""

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, select

from melo_protocol.client import CredentialStore, MeloClient
from melo_protocol.client import events as ev
from melo_protocol.client.messenger import Messenger
from melo_protocol.crypto import CryptoMachine, SasState, SasVerification, SqliteCryptoStore, TrustState
from melo_protocol.crypto.machine import UndecryptableToDevice
from melo_protocol.crypto.sas import ACCEPT, CANCEL, KEY, MAC, START
from melo_protocol.wire.keys import TO_DEVICE_TTL_DAYS
from server.db.models import DeviceKeys, OneTimeKey, ToDeviceMessage
from server.db.types import utcnow
from server.keys.service import to_device_frame
from server.realtime.bus import BusEvent
from tests.kit.e2ekit import PASSWORD, close_all, next_of
from tests.kit.livekit import Live

QUERY_PATH = "/v1/keys/query"
CLAIM_PATH = "/v1/keys/claim"
STEP_TIMEOUT_S = 10.0


# the REST relay -------------------------------------------------------------------------------------
@dataclass
class FakeDevice:
    """What the relay shows a victim instead of the real device of `username`."""

    username: str
    device_id: str
    device_keys: dict[str, Any]
    one_time_keys: list[tuple[str, dict[str, Any]]]


class DirectoryRelay(httpx.AsyncBaseTransport):
    """Forwards a victim's REST calls to the real server; rewrites key-directory answers for `fakes`.

    Without fakes it is an honest relay (every answer passes unchanged).
    """

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.fakes: dict[str, FakeDevice] = {}
        self.rewritten: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        if (not self.fakes or request.method != "POST" or request.url.path not in (QUERY_PATH, CLAIM_PATH)
                or response.status_code != 200):
            return response
        try:
            body = json.loads(await response.aread())
        finally:
            await response.aclose()
        if request.url.path == QUERY_PATH:
            self._rewrite_query(body)
        else:
            self._rewrite_claim(json.loads(request.content), body)
        return httpx.Response(200, json=body, request=request)

    async def aclose(self) -> None:
        await self._inner.aclose()

    def _rewrite_query(self, body: dict[str, Any]) -> None:
        for name, fake in self.fakes.items():
            if name in body["devices"]:
                body["devices"][name] = {fake.device_id: fake.device_keys}
                self.rewritten.append(f"query:{name}")

    def _rewrite_claim(self, asked: dict[str, Any], body: dict[str, Any]) -> None:
        for name, device_ids in asked["devices"].items():
            fake = self.fakes.get(name.removeprefix("@").lower())
            if fake is None or fake.device_id not in device_ids:
                continue
            key_id, key = fake.one_time_keys.pop()
            body["one_time_keys"].setdefault(fake.username, {})[fake.device_id] = {key_id: key}
            body["fallback_used"] = [e for e in body.get("fallback_used", []) if not e.startswith(f"{name}/")]
            self.rewritten.append(f"claim:{name}")


async def relayed_device(live: Live, home: Path, username: str, relay: DirectoryRelay) -> Messenger:
    """A registered SDK device whose REST traffic goes through `relay` (the WebSocket goes to the server)."""
    store = CredentialStore(home, username)
    client = MeloClient(live.server.url, store=store, transport=relay)
    await client.register(username, PASSWORD, device_name=username)
    m = Messenger.open(client, store)
    await m.start()
    return m


# the server-side attacker ---------------------------------------------------------------------------
@dataclass
class Leg:
    """Mallory's half of one verification: she impersonates `as_name` towards `victim`."""

    machine: CryptoMachine
    as_name: str
    victim: Messenger
    sas: SasVerification | None = None
    mac_sent: bool = False
    received: list[str] = field(default_factory=list)
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)


class Mallory:
    """Owns the directory (via the relays) and the to-device queue (via the bus and the database)."""

    def __init__(self, live: Live, home: Path, alice: Messenger, bob: Messenger) -> None:
        self.state = live.server.state
        self.alice, self.bob = alice, bob
        self.victims = {alice.device_id, bob.device_id}
        # Mallory-A impersonates Alice towards Bob; Mallory-B impersonates Bob towards Alice
        machine_a = CryptoMachine.open(SqliteCryptoStore(home / "mallory-a", bytes(range(32))), alice.user_id,
                                       alice.device_id)
        machine_b = CryptoMachine.open(SqliteCryptoStore(home / "mallory-b", bytes(range(1, 33))), bob.user_id,
                                       bob.device_id)
        self.as_alice = Leg(machine_a, alice.username, bob)
        self.as_bob = Leg(machine_b, bob.username, alice)
        self.by_recipient = {bob.device_id: self.as_bob, alice.device_id: self.as_alice}
        self.intercepted: list[tuple[str, str]] = []  # (recipient device, SAS message type)
        self.errors: list[str] = []
        self._rows: asyncio.Queue[tuple[str, int, dict[str, Any]]] = asyncio.Queue()
        self.rows_read = 0
        self._publish: Callable[[BusEvent], Awaitable[None]] = self.state.bus.publish
        self._task: asyncio.Task[None] | None = None

    def fake_of(self, leg: Leg) -> FakeDevice:
        body = leg.machine.keys_for_upload(0, target=5)
        assert body is not None and body["one_time_keys"]
        return FakeDevice(leg.as_name, leg.machine.device_id, body["device_keys"],
                          sorted(body["one_time_keys"].items()))

    async def prepare(self) -> None:
        """Learn the victims' real devices from the directory; Mallory-A claims one of Bob's real one-time keys."""
        async with self.state.sessions() as db:
            real = {row.device_id: json.loads(row.keys_json) for row in (await db.scalars(
                select(DeviceKeys).where(DeviceKeys.device_id.in_(list(self.victims))))).all()}
            otk = (await db.execute(select(OneTimeKey.key_id, OneTimeKey.key_json)
                                    .where(OneTimeKey.device_id == self.bob.device_id)
                                    .order_by(OneTimeKey.key_id).limit(1))).one()
            await db.execute(delete(OneTimeKey).where(OneTimeKey.device_id == self.bob.device_id,
                                                      OneTimeKey.key_id == otk.key_id))
            await db.commit()
        self.as_bob.machine.track_devices({self.alice.user_id: [real[self.alice.device_id]]})
        self.as_alice.machine.track_devices({self.bob.user_id: [real[self.bob.device_id]]})
        failed = self.as_alice.machine.add_claimed_keys(
            {self.bob.user_id: {self.bob.device_id: {otk.key_id: json.loads(otk.key_json)}}})
        assert failed == []

    async def hooked_publish(self, event: BusEvent) -> None:
        """The server's bus, Mallory's way: to-device rows between the victims are read, deleted, never sent.

        This runs inside the sender's request, right after the row is committed. The row is taken from the
        database; should the recipient's acknowledgement of a later id have deleted it first (an ack
        deletes every id up to the one named), the copy the server serialised for the bus is used.
        """
        if event.kind == "device" and event.seq is not None and event.frame:
            frame = json.loads(event.frame)
            if (frame.get("type") == "to_device" and frame.get("sender_device") in self.victims
                    and set(event.session_ids) <= self.victims and frame["sender_device"] not in event.session_ids):
                (recipient,) = event.session_ids
                sender_id, content = int(frame["sender_id"]), frame["content"]
                async with self.state.sessions() as db:
                    row = await db.get(ToDeviceMessage, event.seq)
                    if row is not None:
                        recipient, sender_id, content = (row.recipient_device, row.sender_user_id,
                                                         json.loads(row.content))
                        self.rows_read += 1
                    await db.execute(delete(ToDeviceMessage).where(ToDeviceMessage.id == event.seq))
                    await db.commit()
                self._rows.put_nowait((recipient, sender_id, content))
                return
        await self._publish(event)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for leg in (self.as_alice, self.as_bob):
            leg.machine.close()

    async def _run(self) -> None:
        while True:
            recipient, sender_id, content = await self._rows.get()
            try:
                await self._handle_row(recipient, sender_id, content)
            except Exception as exc:  # recorded and asserted on: the test must see Mallory's failures
                self.errors.append(f"{type(exc).__name__}: {exc}")

    async def _handle_row(self, recipient: str, sender_id: int, content: dict[str, Any]) -> None:
        leg = self.by_recipient[recipient]
        payloads = leg.machine.receive_to_device([{"sender_id": sender_id, "content": content}])
        for problem in leg.machine.pop_events():
            if isinstance(problem, UndecryptableToDevice):
                self.errors.append(f"{leg.as_name}'s impostor cannot decrypt: {problem.error}")
        for payload in payloads:
            message = dict(payload.content)
            self.intercepted.append((recipient, str(message.get("type"))))
            leg.received.append(str(message.get("type")))
            await self._on_sas(leg, message)

    async def _on_sas(self, leg: Leg, message: dict[str, Any]) -> None:
        if message.get("type") == START and leg is self.as_bob:
            # Alice asked "Bob" to verify: Mallory-B accepts as Bob, Mallory-A asks Bob as Alice
            leg.sas = SasVerification.from_start(
                message, own_user_id=leg.machine.user_id, own_device_id=leg.machine.device_id,
                own_ed25519=leg.machine.identity_keys["ed25519"],
                their_ed25519=self._record(leg, self.alice).ed25519)
            await self._send(leg, [leg.sas.accept()])
            other = self.as_alice
            other.sas, start = SasVerification.start(
                transaction_id=leg.sas.transaction_id, own_user_id=other.machine.user_id,
                own_device_id=other.machine.device_id, own_ed25519=other.machine.identity_keys["ed25519"],
                their_user_id=self.bob.user_id, their_device_id=self.bob.device_id,
                their_ed25519=self._record(other, self.bob).ed25519)
            await self._send(other, [start])
            return
        if leg.sas is None:
            self.errors.append(f"{message.get('type')} before any verification on {leg.as_name}'s leg")
            return
        await self._send(leg, leg.sas.receive(message))
        if leg.sas.state is SasState.KEYS_EXCHANGED and not leg.mac_sent:
            leg.mac_sent = True  # no human on Mallory's side: she "confirms" at once
            await self._send(leg, [leg.sas.confirm()])
        if leg.sas.state is SasState.CANCELLED:
            leg.cancelled.set()

    @staticmethod
    def _record(leg: Leg, victim: Messenger) -> Any:
        record = leg.machine.device(victim.user_id, victim.device_id)
        assert record is not None
        return record

    async def _send(self, leg: Leg, messages: list[dict[str, Any]]) -> None:
        """Inject each message as a to-device row from the impersonated device, delivered live."""
        victim = leg.victim
        for message in messages:
            out = leg.machine.encrypt_to_device(victim.user_id, victim.device_id, message["type"], message)
            now = utcnow()
            async with self.state.sessions() as db:
                row = ToDeviceMessage(recipient_device=victim.device_id, sender_user_id=leg.machine.user_id,
                                      sender_device=leg.machine.device_id, type=out.type,
                                      content=json.dumps(out.content), created_at=now,
                                      expires_at=now + timedelta(days=TO_DEVICE_TTL_DAYS))
                db.add(row)
                await db.commit()
                frame = to_device_frame(row, leg.as_name)
            await self._publish(BusEvent(kind="device", frame=frame, seq=row.id, session_ids=[victim.device_id]))


@pytest.fixture
async def victims(live: Live, tmp_path: Path) -> AsyncIterator[tuple[Messenger, Messenger, DirectoryRelay,
                                                                     DirectoryRelay]]:
    tag = tmp_path.name[-5:].replace("_", "")
    alice_relay, bob_relay = DirectoryRelay(), DirectoryRelay()
    alice = await relayed_device(live, tmp_path, f"alice{tag}", alice_relay)
    bob = await relayed_device(live, tmp_path, f"bob{tag}", bob_relay)
    try:
        yield alice, bob, alice_relay, bob_relay
    finally:
        await close_all(alice, bob)


def codes(sas: SasVerification) -> tuple[list[tuple[str, str]], tuple[int, int, int]]:
    return sas.emoji(), sas.decimals()


def is_state(state: str) -> Callable[[ev.VerificationUpdate], bool]:
    return lambda e: e.state == state


async def test_server_in_the_middle_makes_the_sas_codes_differ(
        live: Live, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        victims: tuple[Messenger, Messenger, DirectoryRelay, DirectoryRelay]) -> None:
    alice, bob, alice_relay, bob_relay = victims
    mallory = Mallory(live, tmp_path, alice, bob)
    alice_relay.fakes[bob.username] = mallory.fake_of(mallory.as_bob)
    bob_relay.fakes[alice.username] = mallory.fake_of(mallory.as_alice)
    await mallory.prepare()
    monkeypatch.setattr(live.server.state.bus, "publish", mallory.hooked_publish)
    mallory.start()
    try:
        await alice.client.create_direct(bob.username)  # the DM itself is real
        # each victim's directory shows the other's real ids with Mallory's keys, signed so they pass
        (bob_seen,) = await alice.devices(bob.username)
        (alice_seen,) = await bob.devices(alice.username)
        assert (bob_seen["device_id"], bob_seen["ed25519"]) == (bob.device_id,
                                                                 mallory.as_bob.machine.identity_keys["ed25519"])
        assert (alice_seen["device_id"], alice_seen["ed25519"]) == (
            alice.device_id, mallory.as_alice.machine.identity_keys["ed25519"])
        assert bob_seen["ed25519"] != bob.crypto.identity_keys["ed25519"]

        sas_a = await alice.start_sas(bob.username, bob.device_id)
        assert f"claim:{bob.username}" in alice_relay.rewritten  # her Olm session is with Mallory-B
        # Bob is asked by "Alice" (Mallory-A), with Alice's transaction id
        start = await next_of(bob, ev.VerificationUpdate, is_state("created"), timeout=STEP_TIMEOUT_S)
        assert start.user == alice.username and start.device_id == alice.device_id
        txn = start.data["transaction_id"]
        assert txn == sas_a.transaction_id
        sas_b = await bob.accept_sas(txn)
        await asyncio.gather(next_of(alice, ev.VerificationUpdate, is_state("keys_exchanged"), STEP_TIMEOUT_S),
                             next_of(bob, ev.VerificationUpdate, is_state("keys_exchanged"), STEP_TIMEOUT_S))
        # Mallory's MACs (sent at once) arrive next: they match the poisoned records, so nothing is
        # cancelled, and nothing is verified either until the human confirms
        await asyncio.gather(next_of(alice, ev.VerificationUpdate, timeout=STEP_TIMEOUT_S),
                             next_of(bob, ev.VerificationUpdate, timeout=STEP_TIMEOUT_S))
        assert sas_a.state is SasState.KEYS_EXCHANGED and sas_b.state is SasState.KEYS_EXCHANGED
        assert mallory.errors == []
        leg_b, leg_a = mallory.as_bob.sas, mallory.as_alice.sas
        assert leg_b is not None and leg_a is not None

        # each leg is a complete, consistent SAS with Mallory ...
        assert codes(sas_a) == codes(leg_b) and codes(sas_b) == codes(leg_a)
        # ... but the two humans, comparing their screens, see different emoji and different numbers
        assert sas_a.emoji() != sas_b.emoji()
        assert sas_a.decimals() != sas_b.decimals()

        await alice.confirm_sas(txn, match=False)
        await bob.confirm_sas(txn, match=False)
        assert sas_a.state is SasState.CANCELLED and sas_b.state is SasState.CANCELLED
        assert sas_a.cancel_code == sas_b.cancel_code == "m.mismatched_sas"
        async with asyncio.timeout(STEP_TIMEOUT_S):  # the cancels went to Mallory, as everything did
            await asyncio.gather(mallory.as_bob.cancelled.wait(), mallory.as_alice.cancelled.wait())
        assert [d["trust"] for d in await alice.devices(bob.username)] == ["unverified"]
        assert [d["trust"] for d in await bob.devices(alice.username)] == ["unverified"]
        bob_record = alice.crypto.device(bob.user_id, bob.device_id)
        alice_record = bob.crypto.device(alice.user_id, alice.device_id)
        assert bob_record is not None and bob_record.trust is TrustState.UNVERIFIED
        assert alice_record is not None and alice_record.trust is TrustState.UNVERIFIED

        # the victims only ever talked to Mallory: every to-device message between them was hers to read
        assert mallory.as_bob.received == [START, KEY, CANCEL]  # from Alice
        assert mallory.as_alice.received == [ACCEPT, KEY, CANCEL]  # from Bob
        assert MAC not in mallory.as_bob.received + mallory.as_alice.received
        assert mallory.rows_read > 0 and mallory.errors == []
    finally:
        await mallory.stop()


async def test_honest_relay_codes_match_and_devices_verify(
        victims: tuple[Messenger, Messenger, DirectoryRelay, DirectoryRelay]) -> None:
    """The control: the same relays without rewriting change nothing."""
    alice, bob, alice_relay, bob_relay = victims
    await alice.client.create_direct(bob.username)
    (bob_seen,) = await alice.devices(bob.username)
    (alice_seen,) = await bob.devices(alice.username)
    assert bob_seen["ed25519"] == bob.crypto.identity_keys["ed25519"]
    assert alice_seen["ed25519"] == alice.crypto.identity_keys["ed25519"]
    sas_a = await alice.start_sas(bob.username, bob.device_id)
    start = await next_of(bob, ev.VerificationUpdate, is_state("created"), timeout=STEP_TIMEOUT_S)
    txn = start.data["transaction_id"]
    sas_b = await bob.accept_sas(txn)
    await asyncio.gather(next_of(alice, ev.VerificationUpdate, is_state("keys_exchanged"), STEP_TIMEOUT_S),
                         next_of(bob, ev.VerificationUpdate, is_state("keys_exchanged"), STEP_TIMEOUT_S))
    assert codes(sas_a) == codes(sas_b)
    await alice.confirm_sas(txn, match=True)
    await bob.confirm_sas(txn, match=True)
    await asyncio.gather(next_of(alice, ev.VerificationUpdate, is_state("verified"), STEP_TIMEOUT_S),
                         next_of(bob, ev.VerificationUpdate, is_state("verified"), STEP_TIMEOUT_S))
    assert [d["trust"] for d in await alice.devices(bob.username)] == ["verified"]
    assert [d["trust"] for d in await bob.devices(alice.username)] == ["verified"]
    assert alice_relay.rewritten == bob_relay.rewritten == []
