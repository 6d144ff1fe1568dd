"""The crypto store contract, run against both stores (SQLite on disk, and in memory): restart keeps
everything, transactions are atomic, a leased outbound session is never continued after a crash.
Then what only the SQLite store does: wrong keys fail cleanly, secrets are not in clear, one process."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import vodozemac

from melo_protocol.crypto import (
    CryptoMachine,
    CryptoStore,
    DeviceAccount,
    MemoryCryptoStore,
    MemoryRows,
    ReplayedMessage,
    SqliteCryptoStore,
    StoreKeyError,
    StoreLocked,
    TrustState,
)
from melo_protocol.crypto.megolm import InboundGroupSession, OutboundGroupSession
from melo_protocol.crypto.sqlite_store import STORE_FILE
from melo_protocol.crypto.store import DeviceRecord

KEY = b"K" * 32


class Device:
    """One device's store, of one kind, that a test can open, reopen after a close, or crash (dropped
    with no close and no flush) and then reopen."""

    def __init__(self, kind: str, directory: Path) -> None:
        self.kind, self.directory = kind, directory
        self.rows = MemoryRows()

    def open(self) -> CryptoStore:
        if self.kind == "sqlite":
            return SqliteCryptoStore(self.directory, KEY)
        return MemoryCryptoStore(self.rows)

    def crash(self, store: CryptoStore) -> None:
        if isinstance(store, SqliteCryptoStore):  # what the process's end would do: the file stays as written
            store._db.close()
            store._lock.close()


Devices = Callable[[str], Device]


@pytest.fixture(params=["sqlite", "memory"])
def devices(request: pytest.FixtureRequest, tmp_path: Path) -> Devices:
    return lambda name: Device(request.param, tmp_path / name)


def test_both_stores_have_every_method_of_the_protocol() -> None:
    wanted = {name for name in vars(CryptoStore) if not name.startswith("_")}
    assert len(wanted) == 19
    for store in (SqliteCryptoStore, MemoryCryptoStore):
        assert {name for name in wanted if callable(getattr(store, name, None))} == wanted, store


# -- the contract, both stores --------------------------------------------------------------------------------
def test_restart_keeps_account_sessions_devices_and_seen_indices(devices: Devices) -> None:
    device = devices("a")
    store = device.open()
    machine = CryptoMachine.open(store, 1, "A")
    identity = machine.identity_keys
    own_devices = {1: [machine.account.device_keys()]}
    envelope, _ = machine.encrypt_for_chat(3, {"body": "kept"}, own_devices)
    assert machine.decrypt_chat_message(3, envelope, "m1").content == {"body": "kept"}
    store.save_device(DeviceRecord(2, "B", "curveB", "edB", TrustState.VERIFIED))
    outbound = store.outbound_group_session(3)
    assert outbound is not None
    store.close()

    reopened = device.open()
    again = CryptoMachine.open(reopened, 1, "A")
    assert again.identity_keys == identity
    assert again.decrypt_chat_message(3, envelope, "m1").content == {"body": "kept"}
    with pytest.raises(Exception, match="already used"):
        again.decrypt_chat_message(3, envelope, "m2")  # seen indices survived the restart
    kept = reopened.outbound_group_session(3)
    assert kept is not None and kept.session_id == outbound.session_id and kept.message_index == 1
    assert reopened.device(2, "B") == DeviceRecord(2, "B", "curveB", "edB", TrustState.VERIFIED)
    assert reopened.device_by_curve25519("curveB") == reopened.device(2, "B")
    assert reopened.device_by_curve25519("curveX") is None
    second, _ = again.encrypt_for_chat(3, {"body": "next"}, own_devices)
    assert second["session_id"] == envelope["session_id"]  # the same session goes on, at index 1
    again.close()


def test_transaction_is_atomic_and_rolls_back_caches(devices: Devices) -> None:
    device = devices("a")
    store = device.open()
    account = DeviceAccount(1, "A")
    account.generate_one_time_keys(2)
    store.save_account(account)
    with pytest.raises(RuntimeError):
        with store.transaction():
            loaded = store.load_account()
            assert loaded is not None
            loaded.mark_published()
            store.save_account(loaded)
            store.save_device(DeviceRecord(2, "B", "c", "e"))
            raise RuntimeError("crash between the two writes")
    reloaded = store.load_account()
    assert reloaded is not None and len(reloaded.one_time_keys()) == 2
    assert store.device(2, "B") is None
    with store.transaction():
        with store.transaction():  # nested: joins the outer one
            store.save_device(DeviceRecord(2, "B", "c", "e"))
    store.close()
    reopened = device.open()
    assert reopened.device(2, "B") is not None
    reopened.close()


def test_loaded_objects_are_cached_and_changed_in_place(devices: Devices) -> None:
    store = devices("a").open()
    assert store.load_account() is None and not store.device_keys_published()
    store.set_device_keys_published()
    assert not store.device_keys_published()  # no account to publish yet
    store.save_account(DeviceAccount(1, "A"))
    assert store.load_account() is store.load_account()
    store.set_device_keys_published()
    assert store.device_keys_published()
    store.save_device(DeviceRecord(2, "B", "c", "e"))
    record = store.device(2, "B")
    assert record is not None and record is store.device(2, "B")
    record.trust = TrustState.BLOCKED
    store.save_device(record)
    assert store.device_by_curve25519("c") is record
    assert store.device(2, "C") is None
    store.close()


def test_olm_sessions_come_most_recently_used_first(devices: Devices) -> None:
    device = devices("a")
    store = device.open()
    alice, bob = vodozemac.Account(), vodozemac.Account()
    bob.generate_one_time_keys(2)
    one_time = list(bob.one_time_keys.values())
    first = alice.create_outbound_session(bob.curve25519_key, one_time[0])
    second = alice.create_outbound_session(bob.curve25519_key, one_time[1])
    store.save_olm_session("peer", first)
    store.save_olm_session("peer", second)
    assert [e.session_id for e in store.olm_sessions("peer")] == [second.session_id, first.session_id]
    used = store.save_olm_session("peer", first)  # an update of a known session
    assert used.inner is first
    assert [e.session_id for e in store.olm_sessions("peer")] == [first.session_id, second.session_id]
    assert store.olm_sessions("other") == []
    store.close()
    reopened = device.open()
    assert [e.session_id for e in reopened.olm_sessions("peer")] == [first.session_id, second.session_id]
    reopened.close()


def test_megolm_sessions_leases_and_seen_indices(devices: Devices) -> None:
    device = devices("a")
    store = device.open()
    session = OutboundGroupSession.new(9, now=5.0)
    inbound = InboundGroupSession.from_room_key(
        session.room_key(), sender_key="k", sender_user_id=1, sender_device_id="A", sender_ed25519="ed"
    )
    store.save_inbound_group_session(inbound)
    assert store.inbound_group_session("k", inbound.session_id) is inbound
    assert store.inbound_group_session("k", "unknown") is None
    assert store.record_megolm_index("k", inbound.session_id, 0, "m1") == "m1"
    assert store.record_megolm_index("k", inbound.session_id, 0, "m2") == "m1"  # a replay names the first
    with pytest.raises(RuntimeError), store.transaction():
        assert store.record_megolm_index("k", inbound.session_id, 1, "m3") == "m3"
        raise RuntimeError("rolled back")
    assert store.record_megolm_index("k", inbound.session_id, 1, "m4") == "m3"  # seen indices stay seen

    session.shared_with.add((2, "B", "curveB"))
    assert store.outbound_group_session(9) is None and not store.holds_lease(9)
    store.save_outbound_group_session(session)
    assert store.holds_lease(9) and store.outbound_group_session(9) is session
    store.flush()
    assert not store.holds_lease(9)
    store.close()

    reopened = device.open()
    kept = reopened.outbound_group_session(9)
    assert kept is not None and kept.session_id == session.session_id
    assert (kept.created_at, kept.shared_with) == (5.0, {(2, "B", "curveB")})
    again = reopened.inbound_group_session("k", inbound.session_id)
    assert again is not None and (again.chat_id, again.sender_user_id, again.sender_device_id) == (9, 1, "A")
    assert reopened.record_megolm_index("k", inbound.session_id, 1, "m5") == "m3"
    reopened.discard_outbound_group_session(9)
    assert reopened.outbound_group_session(9) is None and not reopened.holds_lease(9)
    reopened.close()
    assert device.open().outbound_group_session(9) is None


def test_a_rollback_forgets_the_leases_so_their_sessions_are_not_continued(devices: Devices) -> None:
    device = devices("a")
    store = device.open()
    store.save_outbound_group_session(OutboundGroupSession.new(9, now=0.0))
    with pytest.raises(RuntimeError), store.transaction():
        store.save_device(DeviceRecord(2, "B", "c", "e"))
        raise RuntimeError("rolled back")
    assert not store.holds_lease(9) and store.outbound_group_session(9) is None
    store.close()
    assert device.open().outbound_group_session(9) is None


def test_machine_refuses_a_store_of_another_device(devices: Devices) -> None:
    device = devices("a")
    CryptoMachine.open(device.open(), 1, "A").close()
    store = device.open()
    with pytest.raises(Exception, match="belongs to 1/A"):
        CryptoMachine.open(store, 1, "B")
    store.close()


def _pair(alice_store: CryptoStore, bob_store: CryptoStore) -> tuple[CryptoMachine, CryptoMachine, Members]:
    alice = CryptoMachine.open(alice_store, 1, "A")
    bob = CryptoMachine.open(bob_store, 2, "B")
    members: Members = {1: [alice.account.device_keys()], 2: [bob.account.device_keys()]}
    upload = bob.keys_for_upload(0)
    assert upload is not None
    bob.mark_keys_uploaded()
    alice.devices_needing_olm_sessions(members)
    key_id = sorted(upload["one_time_keys"])[0]
    assert alice.add_claimed_keys({2: {"B": {key_id: upload["one_time_keys"][key_id]}}}) == []
    return alice, bob, members


Members = dict[int, list[dict[str, object]]]


def test_a_leased_outbound_session_is_not_continued_after_a_crash(devices: Devices) -> None:
    a, b = devices("alice"), devices("bob")
    alice, bob, members = _pair(a.open(), b.open())
    first, to_device = alice.encrypt_for_chat(1, {"n": 0}, members)
    alice.close()  # a clean close hands the session back: the next open continues it
    again = CryptoMachine.open(a.open(), 1, "A")
    second, none_shared = again.encrypt_for_chat(1, {"n": 1}, members)
    assert second["session_id"] == first["session_id"] and none_shared == []
    a.crash(again.store)  # it leased the session and never handed it back: it must not be continued
    after = CryptoMachine.open(a.open(), 1, "A")
    third, reshared = after.encrypt_for_chat(1, {"n": 2}, members)
    assert third["session_id"] != first["session_id"] and len(reshared) == 1
    bob.receive_to_device([{"sender_id": 1, "content": m.content} for m in to_device + reshared])
    got = [bob.decrypt_chat_message(1, e, f"m{i}") for i, e in enumerate((first, second, third))]
    assert [g.content["n"] for g in got] == [0, 1, 2]
    assert [g.message_index for g in got] == [0, 1, 0]
    after.close()
    bob.close()


def test_seen_indices_are_durable_after_flush(devices: Devices) -> None:
    a, b = devices("alice"), devices("bob")
    alice, bob, members = _pair(a.open(), b.open())
    envelope, to_device = alice.encrypt_for_chat(1, {"n": 0}, members)
    bob.receive_to_device([{"sender_id": 1, "content": m.content} for m in to_device])
    bob.decrypt_chat_message(1, envelope, "m1")
    bob.flush()
    b.crash(bob.store)  # a crash after the flush: nothing more is written
    reopened = CryptoMachine.open(b.open(), 2, "B")
    with pytest.raises(ReplayedMessage):
        reopened.decrypt_chat_message(1, envelope, "m2")
    reopened.close()
    alice.close()


# -- the SQLite store only -----------------------------------------------------------------------------------
def test_wrong_key_fails_with_store_key_error(tmp_path: Path) -> None:
    SqliteCryptoStore(tmp_path, KEY).close()
    with pytest.raises(StoreKeyError, match="wrong key"):
        SqliteCryptoStore(tmp_path, b"X" * 32)
    with pytest.raises(StoreKeyError, match="32 bytes"):
        SqliteCryptoStore(tmp_path, b"short")
    SqliteCryptoStore(tmp_path, KEY).close()  # the right key still opens it


def test_not_a_database_is_a_store_key_error(tmp_path: Path) -> None:
    (tmp_path / STORE_FILE).write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreKeyError, match="not a Melo crypto store"):
        SqliteCryptoStore(tmp_path, KEY)


def test_secrets_are_not_stored_in_clear(tmp_path: Path) -> None:
    store = SqliteCryptoStore(tmp_path, KEY)
    account = DeviceAccount(1, "A")
    store.save_account(account)
    session = OutboundGroupSession.new(9, now=0.0)
    store.save_outbound_group_session(session)
    store.close()
    raw = (tmp_path / STORE_FILE).read_bytes()
    assert session.inner.session_key.to_base64().encode() not in raw
    with sqlite3.connect(tmp_path / STORE_FILE) as db:
        (pickle,) = db.execute("SELECT pickle FROM account").fetchone()
    # vodozemac's own pickle key is derived from ours, not ours itself
    with pytest.raises(StoreKeyError):
        DeviceAccount.from_pickle(pickle, KEY, 1, "A")


def test_a_second_open_is_refused(tmp_path: Path) -> None:
    with SqliteCryptoStore(tmp_path, KEY):
        with pytest.raises(StoreLocked):
            SqliteCryptoStore(tmp_path, KEY)
    SqliteCryptoStore(tmp_path, KEY).close()


CRASHING_SENDER = """
import json, os, sys
from pathlib import Path
from melo_protocol.crypto import CryptoMachine, SqliteCryptoStore
members = {int(k): v for k, v in json.loads(sys.stdin.read()).items()}
machine = CryptoMachine.open(SqliteCryptoStore(Path(sys.argv[1]), b"K" * 32), 1, "A")
envelope, to_device = machine.encrypt_for_chat(1, {"n": 2}, members)
print(json.dumps({"envelope": envelope, "to_device": [m.content for m in to_device]}), flush=True)
os._exit(1)  # a crash: no close(), no flush()
"""


def test_an_outbound_session_is_not_continued_after_a_process_crash(tmp_path: Path) -> None:
    alice, bob, members = _pair(SqliteCryptoStore(tmp_path / "alice", KEY), SqliteCryptoStore(tmp_path / "bob", KEY))
    first, to_device = alice.encrypt_for_chat(1, {"n": 0}, members)
    second, none_shared = alice.encrypt_for_chat(1, {"n": 1}, members)
    assert len(to_device) == 1 and none_shared == []
    alice.close()  # a clean close hands the session back: the next open continues it
    child = subprocess.run(
        [sys.executable, "-c", CRASHING_SENDER, str(tmp_path / "alice")],
        input=json.dumps(members),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert child.returncode == 1, child.stderr
    crashed = json.loads(child.stdout)
    third = crashed["envelope"]
    assert third["session_id"] == first["session_id"]
    # the crashed process leased the session and never handed it back: it must not be continued
    again = CryptoMachine.open(SqliteCryptoStore(tmp_path / "alice", KEY), 1, "A")
    fourth, reshared = again.encrypt_for_chat(1, {"n": 3}, members)
    assert fourth["session_id"] != first["session_id"] and len(reshared) == 1
    bob.receive_to_device([{"sender_id": 1, "content": m.content} for m in to_device + reshared])
    got = [bob.decrypt_chat_message(1, e, f"m{i}") for i, e in enumerate((first, second, third, fourth))]
    assert [g.content["n"] for g in got] == [0, 1, 2, 3]
    assert [g.message_index for g in got] == [0, 1, 2, 0]
    again.close()
    bob.close()
