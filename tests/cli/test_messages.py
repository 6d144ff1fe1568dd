"""``melo send | history | edit | delete | react | pin | read`` against the live server (E2E DMs, channels)."""

import json
from pathlib import Path

import pytest

from tests.cli.conftest import Melo, new_username
from tests.live import LiveServer

MESSAGE_KEYS = {"message_id", "chat_id", "seq", "sender", "sender_device", "text", "status", "kind", "created_at",
                "edited_at", "reply_to", "reactions", "pinned", "verified"}


@pytest.fixture(scope="module")
def pair(live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Melo, str, Melo]:
    home = tmp_path_factory.mktemp("messages")
    a, b = new_username("msa"), new_username("msb")
    ma, mb = Melo(home / a, live_server.url), Melo(home / b, live_server.url)
    ma.register(a)
    mb.register(b)
    return a, ma, b, mb


def _json(melo: Melo, *args: str, stdin: str | None = None) -> dict:
    result = melo("--json", *args, stdin=stdin)
    assert result.returncode == 0, (args, result.stderr)
    return json.loads(result.stdout)


def test_dm_round_trip_every_command(pair: tuple[str, Melo, str, Melo]) -> None:
    a, ma, b, mb = pair
    sent = _json(ma, "send", f"@{b}", "hello [bold]bob[/bold]")  # @user creates the DM
    assert set(sent) == MESSAGE_KEYS and sent["status"] == "ok" and sent["sender"] == a
    chat = f"@{a}"
    piped = _json(mb, "send", chat, "-", "--reply-to", str(sent["message_id"]), stdin="from stdin\n")
    assert (piped["text"], piped["reply_to"], piped["chat_id"]) == ("from stdin", sent["message_id"], sent["chat_id"])

    hist = _json(mb, "history", chat, "--limit", "10")
    assert hist["chat_id"] == sent["chat_id"]
    texts = [(m["message_id"], m["sender"], m["text"], m["status"]) for m in hist["messages"]]
    assert texts == [(sent["message_id"], a, "hello [bold]bob[/bold]", "ok"),
                     (piped["message_id"], b, "from stdin", "ok")]

    human = mb("history", chat)
    assert human.returncode == 0
    assert "hello [bold]bob[/bold]" in human.stdout  # message text is never read as markup

    mid = str(sent["message_id"])
    edited = _json(ma, "edit", f"@{b}", mid, "hello, edited")
    assert edited["text"] == "hello, edited" and edited["edited_at"]
    assert _json(mb, "react", chat, mid, "👍") == {"chat_id": sent["chat_id"], "message_id": sent["message_id"],
                                                   "emoji": "👍", "added": True}
    assert _json(mb, "pin", chat, mid)["pinned"] is True
    read = _json(mb, "read", chat)
    assert read["read_seq"] >= piped["seq"]
    after = {m["message_id"]: m for m in _json(mb, "history", chat)["messages"]}
    assert after[sent["message_id"]]["text"] == "hello, edited"
    assert after[sent["message_id"]]["reactions"] == {"👍": [b]} and after[sent["message_id"]]["pinned"] is True

    assert mb("react", chat, mid, "👍", "--remove").stdout.startswith("Removed 👍")
    assert mb("pin", chat, mid, "--unpin").stdout.startswith("Unpinned")
    assert _json(mb, "delete", chat, str(piped["message_id"]))["deleted"] is True
    final = {m["message_id"]: m for m in _json(ma, "history", f"@{b}")["messages"]}
    assert final[piped["message_id"]]["status"] == "deleted" and final[piped["message_id"]]["text"] is None
    assert final[sent["message_id"]]["reactions"] == {} and final[sent["message_id"]]["pinned"] is False
    assert "(deleted)" in ma("history", f"@{b}").stdout


def test_react_takes_one_emoji(pair: tuple[str, Melo, str, Melo]) -> None:
    a, ma, b, mb = pair
    sent = _json(ma, "send", f"@{b}", "react to this")
    mid = str(sent["message_id"])
    refused = mb("react", f"@{a}", mid, "notanemoji")
    assert refused.returncode == 1  # a user error
    assert "a reaction is one emoji, e.g. 👍" in refused.stderr
    assert "Traceback" not in refused.stderr
    refused_json = mb("--json", "react", f"@{a}", mid, "👍👍")
    assert refused_json.returncode == 1
    assert json.loads(refused_json.stderr)["error"]["code"] == "validation_error"
    # an unqualified heart is the heart everyone else sends
    assert _json(mb, "react", f"@{a}", mid, "❤")["emoji"] == "❤️"
    assert mb("react", f"@{a}", mid, "❤", "--remove").stdout.startswith("Removed ❤️")
    after = {m["message_id"]: m for m in _json(ma, "history", f"@{b}")["messages"]}
    assert after[sent["message_id"]]["reactions"] == {}


def test_channel_is_plain_text_and_human_forms(pair: tuple[str, Melo, str, Melo]) -> None:
    a, ma, _, _ = pair
    title = f"news-{a}"
    assert ma("chats", "create-channel", title).returncode == 0
    sent = ma("send", title, "announcement")
    assert sent.returncode == 0 and sent.stdout.startswith("Sent message ")
    hist = _json(ma, "history", title)
    assert [m["text"] for m in hist["messages"]] == ["announcement"]
    assert ma("read", title).stdout.startswith("Marked chat")


def test_exit_codes(pair: tuple[str, Melo, str, Melo], live_server: LiveServer, tmp_path: Path) -> None:
    _, ma, b, _ = pair
    assert ma("send", "no such title", "x").returncode == 1
    assert ma("history", "@nobody_at_all").returncode == 1
    assert ma("send", f"@{b}", "   ").returncode == 2  # empty message: usage
    assert ma("send", f"@{b}").returncode == 2  # missing TEXT
    assert ma("edit", f"@{b}", "999999", "x").returncode == 1  # no such message
    stranger = Melo(tmp_path / "stranger", live_server.url)
    assert stranger("send", "1", "x").returncode == 4  # not logged in
    assert stranger("history", "1").returncode == 4


def test_message_limit_is_the_same_in_every_chat_and_said_with_the_limit(pair: tuple[str, Melo, str, Melo]) -> None:
    a, ma, b, mb = pair
    title = f"limits-{a}"
    assert ma("chats", "create-channel", title).returncode == 0
    too_long = "x" * 70_000
    for chat in (title, f"@{b}"):  # a channel (plain) and a DM (E2E, checked before encrypting)
        for args in (("send", chat, "-"), ("send", chat, "-", "--at", "+1h")):
            refused = ma("--json", *args, stdin=too_long)
            assert refused.returncode == 1, (args, refused.stderr)
            error = json.loads(refused.stderr)["error"]
            assert (error["code"], error["message"]) == (
                "validation_error", "message too long: 70,000 characters, at most 65,536"), args
    huge = ma("send", f"@{b}", "-", stdin="y" * 3_000_000)
    assert huge.returncode == 1 and "message too long: 3,000,000 characters, at most 65,536" in huge.stderr
    assert "ciphertext" not in huge.stderr

    # at the limit, even text that doubles when escaped inside the encrypted event goes through
    at_limit = '"\n' * 32_768
    sent = _json(ma, "send", f"@{b}", "-", stdin=at_limit + "\n")
    got = {m["message_id"]: m for m in _json(mb, "history", f"@{a}", "--limit", "5")["messages"]}
    assert got[sent["message_id"]]["text"] == at_limit and got[sent["message_id"]]["status"] == "ok"
