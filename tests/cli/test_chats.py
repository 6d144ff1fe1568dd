"""``melo chats``, ``members``, ``slowmode``, ``invites`` and ``join`` against a live server."""

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cli.conftest import Melo, new_username
from tests.live import LiveServer

CHAT_KEYS = {
    "id", "kind", "title", "label", "description", "e2e", "role", "member_count", "unread_count", "last_seq",
    "slow_mode_seconds", "peer", "created_at", "last_message_at",
}
MEMBER_KEYS = {"username", "user_id", "display_name", "role", "joined_at", "read_seq", "delivered_seq"}
INVITE_KEYS = {"code", "chat_id", "created_at", "expires_at", "max_uses", "uses", "revoked"}


@dataclass
class Person:
    name: str
    melo: Melo

    def json(self, *args: str) -> dict:
        result = self.melo("--json", *args)
        assert result.returncode == 0, (args, result.stderr)
        return json.loads(result.stdout)


def _person(server: LiveServer, tmp_path: Path, prefix: str) -> Person:
    name = new_username(prefix)
    melo = Melo(home=tmp_path / name, server=server.url)
    melo.register(name)
    return Person(name, melo)


@pytest.fixture(scope="module")
def trio(live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> tuple[Person, Person, Person]:
    """Three accounts shared by this module's tests (each test makes chats with its own titles)."""
    home = tmp_path_factory.mktemp("chat-people")
    return tuple(_person(live_server, home, p) for p in ("ann", "ben", "cat"))  # type: ignore[return-value]


def _ids(person: Person) -> set[int]:
    return {c["id"] for c in person.json("chats", "list")["chats"]}


def test_dm_list_info_by_id_and_at_username(trio: tuple[Person, Person, Person]) -> None:
    ann, ben, _cat = trio
    dm = ann.json("chats", "dm", ben.name)
    assert set(dm) == CHAT_KEYS
    assert (dm["kind"], dm["peer"], dm["label"], dm["e2e"]) == ("direct", ben.name, f"@{ben.name}", True)
    assert ann.json("chats", "dm", ben.name)["id"] == dm["id"]  # one DM per pair

    chats = ann.json("chats", "list")["chats"]
    assert dm["id"] in {c["id"] for c in chats} and all(set(c) == CHAT_KEYS for c in chats)
    human = ann.melo("chats", "list")
    assert human.returncode == 0 and f"@{ben.name}" in human.stdout and str(dm["id"]) in human.stdout

    assert ann.json("chats", "info", f"@{ben.name}")["id"] == dm["id"]
    assert ann.json("chats", "info", str(dm["id"]))["peer"] == ben.name
    info = ann.melo("chats", "info", f"@{ben.name}")
    assert info.returncode == 0 and "end-to-end" in info.stdout

    no_dm = ann.melo("--json", "chats", "info", "@someone_else")
    assert no_dm.returncode == 1
    assert json.loads(no_dm.stderr)["error"]["code"] == "chat_not_found"


def test_groups_titles_members_roles_and_leave(trio: tuple[Person, Person, Person]) -> None:
    ann, ben, cat = trio
    group = ann.json("chats", "create-group", "Team", "--member", ben.name, "--description", "the team")
    assert (group["kind"], group["title"], group["role"], group["member_count"]) == ("group", "Team", "owner", 2)

    assert ann.json("chats", "info", "Team")["id"] == group["id"]  # by exact title
    assert ann.melo("chats", "info", "team").returncode == 1  # titles are exact

    members = ann.json("members", "list", "Team")
    assert members["chat_id"] == group["id"]
    assert all(set(m) == MEMBER_KEYS for m in members["members"])
    assert {m["username"]: m["role"] for m in members["members"]} == {ann.name: "owner", ben.name: "member"}
    human = ann.melo("members", "list", "Team")
    assert human.returncode == 0 and ben.name in human.stdout and "owner" in human.stdout

    added = ann.json("members", "add", "Team", cat.name)
    assert (added["username"], added["role"], added["chat_id"]) == (cat.name, "member", group["id"])
    assert ann.json("members", "role", "Team", ben.name, "admin")["role"] == "admin"
    assert ann.melo("members", "role", "Team", ben.name, "king").returncode == 2

    # cat, a plain member, may not remove people: forbidden is a user error
    assert cat.melo("members", "remove", str(group["id"]), ben.name).returncode == 1
    removed = ann.json("members", "remove", "Team", cat.name)
    assert removed == {"chat_id": group["id"], "username": cat.name, "removed": True}
    assert group["id"] not in _ids(cat)
    assert cat.melo("members", "list", str(group["id"])).returncode == 1  # not a member: not found

    last_owner = ann.melo("--json", "chats", "leave", "Team")
    assert last_owner.returncode == 1
    assert json.loads(last_owner.stderr)["error"]["code"] == "last_owner"
    assert ben.json("chats", "leave", "Team") == {"chat_id": group["id"], "left": True}
    assert group["id"] not in _ids(ben)


def test_ambiguous_and_unknown_titles_exit_1_listing_ids(trio: tuple[Person, Person, Person]) -> None:
    ann, _ben, _cat = trio
    first = ann.json("chats", "create-group", "Twins")["id"]
    second = ann.json("chats", "create-channel", "Twins")["id"]
    result = ann.melo("chats", "info", "Twins")
    assert result.returncode == 1
    assert str(first) in result.stderr and str(second) in result.stderr
    as_json = ann.melo("--json", "members", "list", "Twins")
    assert as_json.returncode == 1
    error = json.loads(as_json.stderr)["error"]
    assert error["code"] == "ambiguous_chat" and error["details"]["ids"] == sorted([first, second])
    assert ann.melo("chats", "info", "No such title").returncode == 1
    assert ann.melo("chats", "info", "987654321").returncode == 1


def test_slowmode(trio: tuple[Person, Person, Person]) -> None:
    ann, ben, _cat = trio
    ann.json("chats", "create-group", "Calm", "--member", ben.name)
    assert ann.json("slowmode", "Calm", "2m") == {"chat_id": ann.json("chats", "info", "Calm")["id"],
                                                 "slow_mode_seconds": 120}
    assert ann.json("chats", "info", "Calm")["slow_mode_seconds"] == 120
    assert ann.json("slowmode", "Calm", "off")["slow_mode_seconds"] == 0
    assert ann.melo("slowmode", "Calm", "soon").returncode == 2
    assert ben.melo("slowmode", "Calm", "30").returncode == 1  # members are not chat admins


def test_invites_create_list_join_revoke(trio: tuple[Person, Person, Person]) -> None:
    ann, ben, cat = trio
    channel = ann.json("chats", "create-channel", "News")
    assert (channel["kind"], channel["e2e"]) == ("channel", False)
    invite = ann.json("invites", "create", "News", "--expires", "1d", "--max-uses", "2")
    assert set(invite) == INVITE_KEYS
    assert (invite["chat_id"], invite["max_uses"], invite["uses"]) == (channel["id"], 2, 0)
    assert invite["expires_at"] is not None
    plain = ann.melo("invites", "create", "News")
    assert plain.returncode == 0 and plain.stdout.strip()  # the code alone on stdout, for scripts

    listed = ann.json("invites", "list", "News")
    assert listed["chat_id"] == channel["id"]
    assert invite["code"] in {i["code"] for i in listed["invites"]}
    human = ann.melo("invites", "list", "News")
    assert human.returncode == 0 and invite["code"] in human.stdout

    joined = ben.json("join", invite["code"])
    assert (joined["id"], joined["role"]) == (channel["id"], "member")
    assert channel["id"] in _ids(ben)
    assert ben.melo("invites", "list", "News").returncode == 1  # members cannot see invites

    assert ann.json("invites", "revoke", invite["code"])["revoked"] is True
    refused = cat.melo("--json", "join", invite["code"])
    assert refused.returncode == 1
    assert json.loads(refused.stderr)["error"]["code"] == "invite_invalid"
    assert ann.melo("invites", "create", "News", "--expires", "5 parsecs").returncode == 2


def test_chat_commands_need_login(melo: Melo) -> None:
    for args in (("chats", "list"), ("members", "list", "1")):
        assert melo(*args).returncode == 4, args


def test_slow_mode_refusal_says_when_once(trio: tuple[Person, Person, Person]) -> None:
    ann, ben, _cat = trio
    ann.json("chats", "create-group", "Slow", "--member", ben.name)
    ann.json("slowmode", "Slow", "1h")
    assert ben.melo("send", "Slow", "first").returncode == 0
    refused = ben.melo("send", "Slow", "second")
    assert refused.returncode == 1
    message = refused.stderr.strip()
    assert re.fullmatch(r"melo: error: slow mode: you can post again in \d+ s", message), message
    too_long = ann.melo("slowmode", "Slow", "2d")
    assert too_long.returncode == 1 and "slow mode too long: 2 days, at most 1 day" in too_long.stderr


def test_transfer_confirms_like_other_destructive_commands(trio: tuple[Person, Person, Person]) -> None:
    ann, ben, cat = trio
    group = ann.json("chats", "create-group", "Handover", "--member", ben.name)
    refused = ann.melo("chats", "transfer", "Handover", ben.name)  # no terminal, no --yes
    assert refused.returncode == 2 and "--yes" in refused.stderr
    plan = ann.json("chats", "transfer", "Handover", ben.name, "--dry-run")
    assert plan == {"dry_run": True, "action": "chats.transfer", "chat_id": group["id"], "chat": "Handover",
                    "owner": ben.name, "would": f"make {ben.name} the owner of Handover (you stay as an admin)"}
    assert ann.json("chats", "info", "Handover")["role"] == "owner"  # nothing changed yet
    outsider = ann.melo("chats", "transfer", "Handover", cat.name, "--dry-run")
    assert outsider.returncode == 1 and f"{cat.name} is not a member of Handover" in outsider.stderr
    assert ann.json("chats", "transfer", "Handover", ben.name, "--yes") == {"chat_id": group["id"],
                                                                            "owner": ben.name}
    assert (ann.json("chats", "info", "Handover")["role"], ben.json("chats", "info", "Handover")["role"]) == (
        "admin", "owner")
