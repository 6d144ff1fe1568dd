"""The encrypted crypto store: restart keeps everything, wrong keys fail cleanly, transactions are atomic."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from melo_protocol.crypto import (
    CryptoMachine,
    CryptoStore,
    DeviceAccount,
    ReplayedMessage,
    StoreKeyError,
    StoreLocked,
    TrustState,
)
from melo_protocol.crypto.megolm import OutboundGroupSession
from melo_protocol.crypto.store import STORE_FILE, DeviceRecord

KEY = b"K" * 32


def test_restart_keeps_account_sessions_devices_and_seen_indices(tmp_path: Path) -> None:
    store = CryptoStore(tmp_path, KEY)
    machine = CryptoMachine.open(store, 1, "A")
    identity = machine.identity_keys
    own_devices = {1: [machine.account.device_keys()]}
    envelope, _ = machine.encrypt_for_chat(3, {"body": "kept"}, own_devices)
    assert machine.decrypt_chat_message(3, envelope, "m1").content == {"body": "kept"}
    store.save_device(DeviceRecord(2, "B", "curveB", "edB", TrustState.VERIFIED))
    outbound = store.outbound_group_session(3)
    assert outbound is not None
    store.close()

    reopened = CryptoStore(tmp_path, KEY)
    again = CryptoMachine.open(reopened, 1, "A")
    assert again.identity_keys == identity
    assert again.decrypt_chat_message(3, envelope, "m1").content == {"body": "kept"}
    with pytest.raises(Exception, match="already used"):
        again.decrypt_chat_message(3, envelope, "m2")  # seen indices survived the restart
    kept = reopened.outbound_group_session(3)
    assert kept is not None and kept.session_id == outbound.session_id and kept.message_index == 1
    assert reopened.device(2, "B") == DeviceRecord(2, "B", "curveB", "edB", TrustState.VERIFIED)
    assert reopened.device_by_curve25519("curveB") == reopened.device(2, "B")
    second, _ = again.encrypt_for_chat(3, {"body": "next"}, own_devices)
    assert second["session_id"] == envelope["session_id"]  # the same session goes on, at index 1
    again.close()


def test_wrong_key_fails_with_store_key_error(tmp_path: Path) -> None:
    CryptoStore(tmp_path, KEY).close()
    with pytest.raises(StoreKeyError, match="wrong key"):
        CryptoStore(tmp_path, b"X" * 32)
    with pytest.raises(StoreKeyError, match="32 bytes"):
        CryptoStore(tmp_path, b"short")
    CryptoStore(tmp_path, KEY).close()  # the right key still opens it


def test_not_a_database_is_a_store_key_error(tmp_path: Path) -> None:
    (tmp_path / STORE_FILE).write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreKeyError, match="not a Melo crypto store"):
        CryptoStore(tmp_path, KEY)


def test_secrets_are_not_stored_in_clear(tmp_path: Path) -> None:
    store = CryptoStore(tmp_path, KEY)
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


def test_transaction_is_atomic_and_rolls_back_caches(tmp_path: Path) -> None:
    store = CryptoStore(tmp_path, KEY)
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
    with CryptoStore(tmp_path, KEY) as reopened:
        assert reopened.device(2, "B") is not None


def test_machine_refuses_a_store_of_another_device(tmp_path: Path) -> None:
    CryptoMachine.open(CryptoStore(tmp_path, KEY), 1, "A").close()
    with CryptoStore(tmp_path, KEY) as store, pytest.raises(Exception, match="belongs to 1/A"):
        CryptoMachine.open(store, 1, "B")


def _pair(tmp_path: Path) -> tuple[CryptoMachine, CryptoMachine, dict[int, list[dict[str, object]]]]:
    alice = CryptoMachine.open(CryptoStore(tmp_path / "alice", KEY), 1, "A")
    bob = CryptoMachine.open(CryptoStore(tmp_path / "bob", KEY), 2, "B")
    members: dict[int, list[dict[str, object]]] = {1: [alice.account.device_keys()], 2: [bob.account.device_keys()]}
    upload = bob.keys_for_upload(0)
    assert upload is not None
    bob.mark_keys_uploaded()
    alice.devices_needing_olm_sessions(members)
    key_id = sorted(upload["one_time_keys"])[0]
    assert alice.add_claimed_keys({2: {"B": {key_id: upload["one_time_keys"][key_id]}}}) == []
    return alice, bob, members


CRASHING_SENDER = """
import json, os, sys
from pathlib import Path
from melo_protocol.crypto import CryptoMachine, CryptoStore
members = {int(k): v for k, v in json.loads(sys.stdin.read()).items()}
machine = CryptoMachine.open(CryptoStore(Path(sys.argv[1]), b"K" * 32), 1, "A")
envelope, to_device = machine.encrypt_for_chat(1, {"n": 2}, members)
print(json.dumps({"envelope": envelope, "to_device": [m.content for m in to_device]}), flush=True)
os._exit(1)  # a crash: no close(), no flush()
"""


def test_a_second_open_is_refused(tmp_path: Path) -> None:
    store = CryptoStore(tmp_path, KEY)
    with pytest.raises(StoreLocked):
        CryptoStore(tmp_path, KEY)
    store.close()
    CryptoStore(tmp_path, KEY).close()


def test_an_outbound_session_is_not_continued_after_a_crash(tmp_path: Path) -> None:
    alice, bob, members = _pair(tmp_path)
    first, to_device = alice.encrypt_for_chat(1, {"n": 0}, members)
    second, none_shared = alice.encrypt_for_chat(1, {"n": 1}, members)
    assert len(to_device) == 1 and none_shared == []
    alice.close()  # a clean close hands the session back: the next open continues it
    child = subprocess.run([sys.executable, "-c", CRASHING_SENDER, str(tmp_path / "alice")], input=json.dumps(members),
                           capture_output=True, text=True, timeout=60, check=False)
    assert child.returncode == 1, child.stderr
    crashed = json.loads(child.stdout)
    third = crashed["envelope"]
    assert third["session_id"] == first["session_id"]
    # the crashed process leased the session and never handed it back: it must not be continued
    again = CryptoMachine.open(CryptoStore(tmp_path / "alice", KEY), 1, "A")
    fourth, reshared = again.encrypt_for_chat(1, {"n": 3}, members)
    assert fourth["session_id"] != first["session_id"] and len(reshared) == 1
    bob.receive_to_device([{"sender_id": 1, "content": m.content} for m in to_device + reshared])
    got = [bob.decrypt_chat_message(1, e, f"m{i}") for i, e in enumerate((first, second, third, fourth))]
    assert [g.content["n"] for g in got] == [0, 1, 2, 3]
    assert [g.message_index for g in got] == [0, 1, 2, 0]
    again.close()
    bob.close()


def test_seen_indices_are_durable_after_flush(tmp_path: Path) -> None:
    alice, bob, members = _pair(tmp_path)
    envelope, to_device = alice.encrypt_for_chat(1, {"n": 0}, members)
    bob.receive_to_device([{"sender_id": 1, "content": m.content} for m in to_device])
    bob.decrypt_chat_message(1, envelope, "m1")
    bob.flush()
    bob.store._db.close()  # a crash after the flush: nothing more is written
    bob.store._lock.close()
    reopened = CryptoMachine.open(CryptoStore(tmp_path / "bob", KEY), 2, "B")
    with pytest.raises(ReplayedMessage):
        reopened.decrypt_chat_message(1, envelope, "m2")
    reopened.close()
    alice.close()
