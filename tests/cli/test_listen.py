"""``melo listen``: JSON lines and human lines, --count/--timeout, exit 4 on a ban, and a shell pipeline."""

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from melo_protocol.client import CredentialStore
from melo_protocol.client.control import socket_path
from tests.cli.conftest import PASSWORD, Melo, melo_command, new_username
from tests.live import LiveServer, create_admin

READY = "listening"


def _popen(melo: Melo, *args: str, shell: str | None = None) -> subprocess.Popen[str]:
    cmd = ["bash", "-c", shell] if shell is not None else [*melo_command(), *args]
    return subprocess.Popen(cmd, env=melo.env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_line(stream: IO[str], needle: str) -> str:
    """Read lines until one contains ``needle`` (the process's own output: no sleeping)."""
    for line in stream:
        if needle in line:
            return line
    raise AssertionError(f"{needle!r} never appeared")


@pytest.fixture(scope="module")
def pair(live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Melo, str, Melo]]:
    home = tmp_path_factory.mktemp("listen")
    a, b = new_username("lsa"), new_username("lsb")
    ma, mb = Melo(home / a, live_server.url), Melo(home / b, live_server.url)
    ma.register(a)
    mb.register(b)
    assert ma("send", f"@{b}", "first").returncode == 0
    yield a, ma, b, mb


def test_listen_json_lines_then_count(pair: tuple[str, Melo, str, Melo]) -> None:
    a, ma, b, mb = pair
    proc = _popen(mb, "listen", "--json", "--count", "2", "--chat", f"@{a}")
    assert proc.stderr is not None and proc.stdout is not None
    _wait_line(proc.stderr, READY)
    assert ma("send", f"@{b}", "<b>not markup</b> [red]x[/red]").returncode == 0
    assert ma("send", f"@{b}", "second").returncode == 0
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert [(d["type"], d["sender"], d["text"]) for d in lines] == [
        ("message.created", a, "<b>not markup</b> [red]x[/red]"), ("message.created", a, "second")]
    assert all(isinstance(d["chat_id"], int) and isinstance(d["message_id"], int) for d in lines)


def test_listen_human_lines_and_timeout(pair: tuple[str, Melo, str, Melo]) -> None:
    a, ma, b, mb = pair
    proc = _popen(mb, "listen", "--count", "1")
    assert proc.stderr is not None
    _wait_line(proc.stderr, READY)
    assert ma("send", f"@{b}", "[bold]hi[/bold]").returncode == 0
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert f"[@{a}]" in out and f"{a}: [bold]hi[/bold]" in out

    started = time.monotonic()
    quiet = mb("listen", "--json", "--timeout", "1", "--chat", "999999999")
    assert quiet.returncode == 0 and quiet.stdout == ""
    assert time.monotonic() - started < 15
    assert "--count" in mb("listen", "--help").stdout and "message_id" in mb("listen", "--help").stdout


def test_banned_user_listen_exits_4_quickly(live_server: LiveServer, tmp_path: Path) -> None:
    admin_name, victim = new_username("lroot"), new_username("lban")
    create_admin(live_server, admin_name, PASSWORD)
    admin = Melo(tmp_path / "admin", live_server.url)
    assert admin.login(admin_name).returncode == 0
    user = Melo(tmp_path / "victim", live_server.url)
    user.register(victim)
    proc = _popen(user, "listen", "--json")
    assert proc.stderr is not None
    _wait_line(proc.stderr, READY)
    assert admin("admin", "users", "ban", victim, "--yes").returncode == 0
    banned_at = time.monotonic()
    proc.wait(timeout=10)
    assert proc.returncode == 4
    assert time.monotonic() - banned_at < 2.0
    said = proc.stderr.read()
    assert "this account is banned" in said and "melo login" not in said


def test_shell_pipeline_consumer_parses_each_line(pair: tuple[str, Melo, str, Melo]) -> None:
    a, ma, b, mb = pair
    n = 3
    melo = " ".join(melo_command())
    consumer = ("import json, sys\n"
                "for line in sys.stdin:\n"
                "    d = json.loads(line)\n"
                "    print(d['type'], d['sender'], d['text'], flush=True)\n")
    jq = shutil.which("jq")
    parse = f"{jq} -r '[.type, .sender, .text] | join(\" \")'" if jq else f"python3 -c {json.dumps(consumer)}"
    script = f"set -o pipefail; {melo} listen --json --count {n} --chat @{a} | {parse}"
    proc = _popen(mb, shell=script)
    assert proc.stderr is not None
    _wait_line(proc.stderr, READY)
    for i in range(n):
        assert ma("send", f"@{b}", f"piped {i}").returncode == 0
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert out.splitlines() == [f"message.created {a} piped {i}" for i in range(n)]


def test_a_second_process_on_a_listening_profile_is_told_why_not_crashed(pair: tuple[str, Melo, str, Melo]) -> None:
    """One process per profile (its encrypted store is locked). Message commands go through the listener;
    any other command needing the store gets exit 1 and a reason, never a traceback."""
    a, _, _, mb = pair
    proc = _popen(mb, "listen", "--timeout", "60")
    assert proc.stderr is not None
    try:
        _wait_line(proc.stderr, READY)
        busy = mb("--json", "devices", "list")
        assert busy.returncode == 1, busy.stderr
        error = json.loads(busy.stdout or busy.stderr)["error"]
        assert error["code"] == "profile_in_use" and "--profile" in error["message"]
        assert "melo listen" in error["message"]  # and what does work meanwhile
        assert "Traceback" not in busy.stderr
        assert socket_path(CredentialStore(mb.home, "default")).exists()
    finally:
        proc.terminate()  # SIGTERM, as a service manager stops it: a clean exit 0 ...
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "Traceback" not in err, err
    assert not socket_path(CredentialStore(mb.home, "default")).exists()  # ... that takes its socket away
    assert mb("send", f"@{a}", "after listening").returncode == 0  # the lock goes with the process


def test_listen_and_reply_on_one_profile(pair: tuple[str, Melo, str, Melo]) -> None:
    """A bot on one profile: `melo listen` holds it and each `melo send` meanwhile runs in the listener
    (its control socket), answering exactly as a local send would, errors and exit codes included."""
    a, ma, b, mb = pair
    proc = _popen(mb, "listen", "--json", "--chat", f"@{a}", "--type", "message.created", "--timeout", "90")
    assert proc.stderr is not None and proc.stdout is not None
    try:
        _wait_line(proc.stderr, READY)
        for i in range(3):
            assert ma("send", f"@{b}", f"question {i}").returncode == 0
            event = json.loads(_wait_line(proc.stdout, f"question {i}"))
            reply = mb("--json", "send", f"@{a}", f"answer to {event['text']}", "--reply-to",
                       str(event["message_id"]))
            assert reply.returncode == 0, reply.stderr
            sent = json.loads(reply.stdout)
            assert (sent["sender"], sent["text"], sent["reply_to"]) == (b, f"answer to question {i}",
                                                                        event["message_id"])
            assert sent["status"] == "ok" and isinstance(sent["message_id"], int)
            _wait_line(proc.stdout, f"answer to question {i}")  # the listener sees its own reply too
        # the other commands of a conversation work the same way meanwhile
        assert mb("react", f"@{a}", str(sent["message_id"]), "👍").returncode == 0
        assert json.loads(mb("--json", "read", f"@{a}").stdout)["read_seq"] > 0
        shown = json.loads(mb("--json", "history", f"@{a}", "-n", "6").stdout)["messages"]
        assert [m["text"] for m in shown][-2:] == ["question 2", "answer to question 2"]
        # an error in the listener is the caller's error: same code, message and exit status
        missing = mb("--json", "send", "no-such-chat", "x")
        assert missing.returncode == 1 and "Traceback" not in missing.stderr
        assert json.loads(missing.stdout or missing.stderr)["error"]["code"] == "chat_not_found"
        empty = mb("send", f"@{a}", "  ")
        assert empty.returncode == 2  # checked before anything is handed over
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    texts = [m["text"] for m in json.loads(ma("--json", "history", f"@{b}", "-n", "20").stdout)["messages"]]
    assert [t for t in texts if t.startswith("answer to")] == [f"answer to question {i}" for i in range(3)]


def test_human_lines_name_the_new_role_and_the_message_read_up_to(pair: tuple[str, Melo, str, Melo]) -> None:
    a, ma, b, mb = pair
    title = f"roles-{a}"
    assert ma("chats", "create-group", title, "--member", b).returncode == 0
    proc = _popen(ma, "listen", "--chat", title, "--type", "receipt", "--type", "member.role_changed",
                  "--count", "2")
    assert proc.stderr is not None
    _wait_line(proc.stderr, READY)
    sent = ma("--json", "send", title, "read me")  # runs inside the listener: its stream caches it
    assert sent.returncode == 0, sent.stderr
    message_id = json.loads(sent.stdout)["message_id"]
    assert mb("read", title).returncode == 0
    assert ma("members", "role", title, b, "admin").returncode == 0
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert out.splitlines() == [f"[{title}] {b} read up to message #{message_id}",
                                f"[{title}] {b} is now admin (by {a})"]


def test_receipt_and_member_lines_without_a_known_message() -> None:
    from melo_cli.commands.listen import human_line

    receipt = {"type": "receipt", "chat_id": 1, "seq": 9, "user": "bob", "read_seq": 7, "delivered_seq": 7,
               "read_message_id": None}
    assert human_line(receipt, "Team") == "[Team] bob read up to seq 7"
    member = {"type": "member.removed", "chat_id": 1, "seq": 10, "user": "bob", "role": None, "by": "ann"}
    assert human_line(member, "Team") == "[Team] bob was removed (by ann)"
    left = {**member, "type": "member.left", "by": "bob"}
    assert human_line(left, "Team") == "[Team] bob left"
