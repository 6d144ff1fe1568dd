"""``melo send --at``, ``melo schedule``, ``melo timer``, ``melo admin retention``, ``melo push`` against a
live server of this module's own, whose scheduler ticks every 0.5 s (MELO_JOBS_TICK_S).
"""

import base64
import json
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from melo_cli.options import parse_when
from tests.cli.conftest import PASSWORD, Melo, melo_command, new_username
from tests.live import LiveServer, create_admin, running_server

DELIVERY_DEADLINE_S = 30.0


@pytest.fixture(scope="module")
def fast_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with running_server(tmp_path_factory.mktemp("schedule-live"), {"MELO_JOBS_TICK_S": "0.5"}) as server:
        yield server


@pytest.fixture(scope="module")
def users(fast_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Melo, str, Melo]:
    home = tmp_path_factory.mktemp("schedule")
    a, b = new_username("sca"), new_username("scb")
    ma, mb = Melo(home / a, fast_server.url), Melo(home / b, fast_server.url)
    ma.register(a)
    mb.register(b)
    return a, ma, b, mb


def _ok(melo: Melo, *args: str) -> Any:
    result = melo("--json", *args)
    assert result.returncode == 0, (args, result.stderr)
    return json.loads(result.stdout)


def _poll(check: Callable[[], Any], what: str) -> Any:
    """Run ``check`` until it returns something truthy; the deadline is the only wait."""
    deadline = time.monotonic() + DELIVERY_DEADLINE_S
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {DELIVERY_DEADLINE_S:.0f} s")
        time.sleep(0.2)  # poll interval with a deadline, not synchronisation


def _codes(*calls: tuple[Melo, tuple[str, ...]]) -> list[int]:
    """Exit codes of independent ``melo`` runs, run side by side (each is its own process)."""
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(lambda call: call[0](*call[1]).returncode, calls))


def _scheduled_ids(melo: Melo) -> list[int]:
    return [s["scheduled_id"] for s in _ok(melo, "schedule", "list")["scheduled"]]


def test_parse_when_forms() -> None:
    now = datetime(2030, 1, 2, 10, 0, tzinfo=UTC)
    assert parse_when("+10m", now) == now + timedelta(minutes=10)
    assert parse_when("in 1h30m", now) == now + timedelta(hours=1, minutes=30)
    assert parse_when("2030-01-03T09:00:00Z", now) == datetime(2030, 1, 3, 9, tzinfo=UTC)
    zoned = parse_when("2030-01-03 09:00+02:00", now)
    assert zoned.utcoffset() == timedelta(hours=2) and zoned.astimezone(UTC).hour == 7
    assert parse_when("2030-01-03T09:00", now).tzinfo is not None  # naive: local time, zoned
    local = now.astimezone()
    tomorrow = parse_when("tomorrow 09:00", now)
    assert (tomorrow.date(), tomorrow.hour, tomorrow.minute) == (local.date() + timedelta(days=1), 9, 0)
    next_clock = parse_when(f"{(local.hour - 1) % 24:02d}:00", now)  # already past today: tomorrow
    assert now < next_clock <= now + timedelta(days=1)
    for bad in ("soon", "25:00", "+x", ""):
        with pytest.raises(ValueError):
            parse_when(bad, now)
    assert parse_when("today 09:00", datetime(2030, 1, 2, 10, tzinfo=timezone(timedelta(0)))) < now


def test_scheduled_e2e_message_is_delivered_and_decrypted(users: tuple[str, Melo, str, Melo]) -> None:
    a, ma, b, mb = users
    sent = _ok(ma, "send", f"@{b}", "secret [b]later[/b]", "--at", "+3s")  # @b: starts the E2E DM
    assert sent["e2e"] is True and sent["text"] is None  # the server holds only the envelope
    # (that it is listed while pending is test_schedule_list_and_cancel_in_channel_and_dm's: checked here,
    # a loaded machine could pass the send time first)

    def delivered() -> list[dict[str, Any]]:
        msgs = _ok(mb, "history", f"@{a}")["messages"]
        return [m for m in msgs if m["text"] == "secret [b]later[/b]"]

    [message] = _poll(delivered, "delivery of the scheduled E2E message")
    assert (message["sender"], message["status"], message["chat_id"]) == (a, "ok", sent["chat_id"])
    # sent by the server at its time, not before
    assert datetime.fromisoformat(message["created_at"]) >= datetime.fromisoformat(sent["send_at"])
    assert sent["scheduled_id"] not in _scheduled_ids(ma)  # sent: no longer pending


def test_schedule_list_and_cancel_in_channel_and_dm(users: tuple[str, Melo, str, Melo]) -> None:
    a, ma, b, _ = users
    title = f"news-{a}"
    assert ma("chats", "create-channel", title).returncode == 0
    later = (datetime.now(UTC) + timedelta(hours=2)).isoformat(timespec="seconds")
    chan = _ok(ma, "send", title, "channel news", "--at", later)
    assert chan["text"] == "channel news" and chan["e2e"] is False
    assert datetime.fromisoformat(chan["send_at"]) == datetime.fromisoformat(later)
    dm = _ok(ma, "send", f"@{b}", "see you tomorrow", "--at", "tomorrow 09:00")

    listed = {s["scheduled_id"]: s for s in _ok(ma, "schedule", "list")["scheduled"]}
    assert listed[chan["scheduled_id"]] == chan and listed[dm["scheduled_id"]]["e2e"] is True
    assert listed[dm["scheduled_id"]]["text"] == "see you tomorrow"  # this device scheduled it: its cache
    assert dm["text"] is None  # what the server holds is the envelope
    # while `melo listen` holds the profile's crypto store, the list still works and still has the text
    listen = subprocess.Popen([*melo_command(), "listen", "--json"], env=ma.env(), stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert listen.stderr is not None
        assert any("listening" in line for line in listen.stderr)  # ready: its own output, no sleeping
        human = ma("schedule", "list")
        assert human.returncode == 0, human.stderr
        assert "channel news" in human.stdout and "see you tomorrow" in human.stdout
    finally:
        listen.terminate()
        listen.communicate(timeout=30)
    # another device of the same account sees only the envelope
    other = Melo(ma.home.with_name(ma.home.name + "-laptop"), ma.server)
    assert other.login(a).returncode == 0
    elsewhere = {s["scheduled_id"]: s for s in _ok(other, "schedule", "list")["scheduled"]}
    assert elsewhere[dm["scheduled_id"]]["text"] is None
    assert "(end-to-end encrypted)" in other("schedule", "list").stdout

    assert _ok(ma, "schedule", "cancel", str(chan["scheduled_id"])) == {"scheduled_id": chan["scheduled_id"],
                                                                        "cancelled": True}
    assert ma("schedule", "cancel", str(dm["scheduled_id"])).stdout.startswith("Cancelled scheduled message")
    remaining = _scheduled_ids(ma)
    assert chan["scheduled_id"] not in remaining and dm["scheduled_id"] not in remaining
    again = ma("--json", "schedule", "cancel", str(chan["scheduled_id"]))
    assert again.returncode == 1 and json.loads(again.stderr)["error"]["code"] == "not_found"
    assert "No scheduled messages." in ma("schedule", "list").stdout or remaining


def test_timer_set_off_and_disappearing(users: tuple[str, Melo, str, Melo]) -> None:
    a, ma, b, mb = users
    assert ma("send", f"@{b}", "before the timer").returncode == 0
    listen = subprocess.Popen([*melo_command(), "listen", "--json", "--count", "2", "--chat", f"@{a}"],
                              env=mb.env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    assert listen.stderr is not None
    assert any("listening" in line for line in listen.stderr)  # ready: its own output, no sleeping
    assert _ok(ma, "timer", f"@{b}", "1h30m")["seconds"] == 5400
    off = ma("timer", f"@{b}", "off")
    assert off.returncode == 0 and "off" in off.stdout
    out, _ = listen.communicate(timeout=30)
    events = [json.loads(line) for line in out.splitlines()]
    assert [(e["type"], e["data"]["message_ttl_seconds"], e["data"]["by"]) for e in events] == [
        ("chat.updated", 5400, a), ("chat.updated", None, a)]

    # a short timer: a message sent now is deleted by the server a few seconds later
    assert "disappear 5s after sending" in ma("timer", f"@{b}", "5s").stdout
    gone = _ok(ma, "send", f"@{b}", "self-destructing")

    def deleted() -> bool:
        msgs = {m["message_id"]: m for m in _ok(mb, "history", f"@{a}", "--limit", "50")["messages"]}
        return gone["message_id"] not in msgs or msgs[gone["message_id"]]["status"] == "deleted"

    assert _poll(deleted, "expiry of the disappearing message")
    assert _ok(ma, "timer", f"@{b}", "off")["seconds"] is None
    # bad values: below the 5 s minimum is refused by the server (1); unreadable text is usage (2)
    assert _codes((ma, ("timer", f"@{b}", "3s")), (ma, ("timer", f"@{b}", "soon"))) == [1, 2]


def test_admin_retention_set_run_and_audit(fast_server: LiveServer, users: tuple[str, Melo, str, Melo],
                                           tmp_path: Path) -> None:
    _, ma, b, _ = users
    chat_id = _ok(ma, "send", f"@{b}", "kept a while")["chat_id"]
    name = new_username("scadm")
    create_admin(fast_server, name, PASSWORD)
    admin = Melo(tmp_path / name, fast_server.url)
    assert admin.login(name).returncode == 0

    refused = admin("admin", "retention", "set", str(chat_id), "30")  # no terminal, no --yes
    assert refused.returncode == 2 and "--yes" in refused.stderr
    dry = _ok(admin, "admin", "retention", "set", str(chat_id), "30", "--dry-run")
    assert dry["dry_run"] is True and dry["action"] == "retention.set" and dry["chat_id"] == chat_id
    assert _ok(admin, "admin", "retention", "set", str(chat_id), "30", "--yes") == {
        "chat_id": chat_id, "days": 30, "effective_days": 30}
    assert _ok(admin, "admin", "retention", "set", str(chat_id), "default", "--yes") == {
        "chat_id": chat_id, "days": None, "effective_days": None}  # server default 0: kept forever
    assert _codes(
        (admin, ("admin", "retention", "set", str(chat_id), "0", "--yes")),  # below 1 day: bad value
        (admin, ("admin", "retention", "set", str(chat_id), "many", "--yes")),  # not a number: usage
        (admin, ("admin", "retention", "set", "999999999", "30", "--yes")),  # no such chat
        (ma, ("admin", "retention", "set", str(chat_id), "30", "--yes")),  # not an admin
        (admin, ("admin", "retention", "run")),  # no terminal, no --yes
    ) == [1, 2, 1, 1, 2]
    assert _ok(admin, "admin", "retention", "run", "--dry-run")["dry_run"] is True
    ran = _ok(admin, "admin", "retention", "run", "--yes")
    assert isinstance(ran["purged"], dict) and ran["total"] == sum(ran["purged"].values())
    assert any(m["text"] == "kept a while" for m in _ok(ma, "history", f"@{b}")["messages"])

    sets = _ok(admin, "admin", "audit", "--action", "retention.set")["entries"]
    mine = [(e["target"], e["outcome"], e["details"].get("days")) for e in sets if e["actor"] == name]
    # newest first; the unknown chat is audited as a failure, the refused and dry runs sent nothing
    assert mine == [("chat:999999999", "chat_not_found", 30), (f"chat:{chat_id}", "ok", None),
                    (f"chat:{chat_id}", "ok", 30)]
    runs = _ok(admin, "admin", "audit", "--action", "retention.run")["entries"]
    assert len(runs) == 1 and runs[0]["actor"] == name  # the dry run and the refusal sent nothing


def _subscription_keys() -> tuple[str, str]:
    raw = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    b64 = lambda data: base64.urlsafe_b64encode(data).rstrip(b"=").decode()  # noqa: E731
    return b64(raw), b64(bytes(range(16)))


def test_push_subscribe_list_remove(fast_server: LiveServer, users: tuple[str, Melo, str, Melo]) -> None:
    _, _, _, mb = users
    p256dh, auth = _subscription_keys()
    assert len(_ok(mb, "push", "vapid")["public_key"]) == 87  # base64url of a 65-byte P-256 point
    ntfy = _ok(mb, "push", "subscribe", "https://ntfy.example.org/upAbC123?up=1", "--p256dh", p256dh,
               "--auth", auth, "--include-sender")
    assert ntfy["include_sender"] is True and ntfy["current_device"] is True
    # plain http is accepted for a loopback push service while the server itself is on loopback
    local = _ok(mb, "push", "subscribe", f"http://127.0.0.1:{fast_server.port + 1}/push/x", "--p256dh", p256dh,
                "--auth", auth)
    again = _ok(mb, "push", "subscribe", ntfy["endpoint"], "--p256dh", p256dh, "--auth", auth)
    assert again["subscription_id"] == ntfy["subscription_id"] and again["include_sender"] is False

    listed = {s["subscription_id"]: s for s in _ok(mb, "push", "list")["subscriptions"]}
    assert set(listed) == {ntfy["subscription_id"], local["subscription_id"]}
    assert "ntfy.example.org" in mb("push", "list").stdout
    assert _ok(mb, "push", "remove", str(local["subscription_id"]))["removed"] is True
    assert [s["subscription_id"] for s in _ok(mb, "push", "list")["subscriptions"]] == [ntfy["subscription_id"]]
    assert mb("push", "remove", str(local["subscription_id"])).returncode == 1

    for endpoint, key in (("http://push.example.org/x", p256dh), ("https://push.example.org/x", "A" * 87)):
        bad = mb("--json", "push", "subscribe", endpoint, "--p256dh", key, "--auth", auth)
        assert bad.returncode == 1 and json.loads(bad.stderr)["error"]["code"] == "validation_error"
    assert mb("push", "subscribe", "https://push.example.org/x", "--auth", auth).returncode == 2  # no --p256dh


def test_exit_codes(users: tuple[str, Melo, str, Melo], fast_server: LiveServer, tmp_path: Path) -> None:
    a, ma, b, _ = users
    assert _codes(
        (ma, ("send", f"@{b}", "x", "--at", "whenever")),
        (ma, ("schedule", "cancel", "not-a-number")),
        (ma, ("timer", "@nobody-here", "1h")),
        (ma, ("push",)),  # no subcommand: usage
    ) == [2, 2, 1, 2]
    past = ma("--json", "send", f"@{b}", "x", "--at", "2001-01-01T00:00:00Z")
    assert past.returncode == 1 and json.loads(past.stderr)["error"]["code"] == "validation_error"
    outsider = Melo(tmp_path / "nobody", fast_server.url)
    assert _codes(*((outsider, args) for args in (
        ("schedule", "list"), ("send", f"@{a}", "x", "--at", "+1h"), ("timer", f"@{a}", "off"),
        ("push", "list")))) == [4] * 4  # not logged in


def test_send_time_outside_the_window_names_the_window(users: tuple[str, Melo, str, Melo]) -> None:
    _, ma, b, _ = users
    for when, problem in (("2001-01-01T00:00:00Z", "is in the past"),
                          (f"{datetime.now(UTC).year + 3}-01-02T09:00:00Z", "is more than 366 days ahead")):
        refused = ma("--json", "send", f"@{b}", "x", "--at", when)
        assert refused.returncode == 1, refused.stderr
        error = json.loads(refused.stderr)["error"]
        assert error["code"] == "validation_error" and problem in error["message"], error
        found = re.search(r"pick a time after now and before (\d{4}-\d\d-\d\d \d\d:\d\d) UTC$", error["message"])
        assert found, error["message"]
        latest = datetime.strptime(found[1], "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
        assert timedelta(days=365) < latest - datetime.now(UTC) <= timedelta(days=366)
        assert "send_at" not in error["message"]


def test_readme_at_examples_are_inside_the_window() -> None:
    """Every `--at` value in the README's shell examples, as bash expands it, is a time the server takes."""
    import shlex

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```sh\n(.*?)```", readme, flags=re.S)
    values = [m for block in blocks for m in re.findall(r"--at (\"[^\"]*\"|'[^']*'|\S+)", block)]
    assert len(values) >= 3, values
    now = datetime.now(UTC)
    for value in values:
        expanded = subprocess.run(["bash", "-c", f"printf %s {value}"], capture_output=True, text=True,
                                  timeout=30, check=True).stdout
        at = parse_when(expanded)
        assert now < at <= now + timedelta(days=366), (value, expanded)
        assert shlex.split(value)  # one shell word


def test_timer_zero_turns_it_off(users: tuple[str, Melo, str, Melo]) -> None:
    _, ma, b, _ = users
    assert _ok(ma, "timer", f"@{b}", "1h")["seconds"] == 3600
    for off in ("0", "0s"):  # the server's answer: the chat's timer is now off
        assert _ok(ma, "timer", f"@{b}", off)["seconds"] is None
        assert _ok(ma, "timer", f"@{b}", "1h")["seconds"] == 3600
    assert "Disappearing messages are off" in ma("timer", f"@{b}", "0").stdout
    short = ma("timer", f"@{b}", "2s")
    assert short.returncode == 1 and "timer too short: 2 seconds, at least 5 seconds" in short.stderr


def test_schedule_list_names_the_chats(users: tuple[str, Melo, str, Melo]) -> None:
    a, ma, b, _ = users
    title = f"named-{a}"
    assert ma("chats", "create-group", title, "--member", b).returncode == 0
    in_group = _ok(ma, "send", title, "group later", "--at", "+2h")
    in_dm = _ok(ma, "send", f"@{b}", "dm later", "--at", "+3h")
    try:
        rows = {line.split("│")[1].strip(): line for line in ma("schedule", "list").stdout.splitlines()
                if line.count("│") > 3}
        assert title in rows[str(in_group["scheduled_id"])] and "group later" in rows[str(in_group["scheduled_id"])]
        assert f"@{b}" in rows[str(in_dm["scheduled_id"])]
    finally:
        for sid in (in_group["scheduled_id"], in_dm["scheduled_id"]):
            ma("schedule", "cancel", str(sid))
