"""``melo admin …`` against its own live server (it closes registration and rotates keys).

The admin is bootstrapped with ``melo-server create-admin``; users are throwaway accounts.
"""

import base64
import json
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.conftest import PASSWORD, Melo, new_username
from tests.live import LiveServer, create_admin, running_server

USER_KEYS = {"id", "username", "display_name", "is_admin", "status", "banned", "deactivated", "created_at",
             "last_seen_at"}


@pytest.fixture(scope="module")
def admin_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with running_server(tmp_path_factory.mktemp("cli-admin")) as server:
        yield server


@pytest.fixture(scope="module")
def admin(admin_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Melo:
    name = new_username("root")
    create_admin(admin_server, name, PASSWORD)
    melo = Melo(home=tmp_path_factory.mktemp("admin-home"), server=admin_server.url)
    assert melo.login(name).returncode == 0
    return melo


def _user(server: LiveServer, tmp_path: Path, prefix: str = "usr") -> tuple[str, Melo]:
    name = new_username(prefix)
    melo = Melo(home=tmp_path / name, server=server.url)
    melo.register(name)
    return name, melo


def _ok(melo: Melo, *args: str, stdin: str | None = None) -> dict:
    result = melo("--json", *args, stdin=stdin)
    assert result.returncode == 0, (args, result.stderr)
    return json.loads(result.stdout)


def _show(admin: Melo, name: str) -> dict:
    return _ok(admin, "admin", "users", "show", name)


def _kid(access_token: str) -> str:
    header = access_token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"]


def test_ban_dry_run_refusal_unban(admin: Melo, admin_server: LiveServer, tmp_path: Path) -> None:
    name, user = _user(admin_server, tmp_path)

    refused = admin("admin", "users", "ban", name, "--reason", "spam")  # no TTY, no --yes
    assert refused.returncode == 2
    assert "--yes" in refused.stderr

    dry = _ok(admin, "admin", "users", "ban", name, "--dry-run")
    assert dry["dry_run"] is True and dry["action"] == "users.ban" and dry["target"] == name
    assert dry["active_sessions"] == 1
    dry_human = admin("admin", "users", "ban", name, "--dry-run")
    assert dry_human.returncode == 0 and "Dry run" in dry_human.stdout
    assert _show(admin, name)["banned"] is False
    assert user("whoami").returncode == 0

    banned = _ok(admin, "admin", "users", "ban", name, "--reason", "spam", "--yes")
    assert set(banned) == USER_KEYS and banned["status"] == "banned"
    who = user("whoami")  # the session the ban revoked says why: no point logging in again
    assert who.returncode == 4
    assert "this account is banned" in who.stderr and "melo login" not in who.stderr
    again = user.login(name)
    assert again.returncode == 1  # a banned account is refused (a user error, not a session one)
    assert "this account is banned" in again.stderr and "melo login" not in again.stderr
    detail = _show(admin, name)
    assert (detail["banned"], detail["ban_reason"], detail["sessions"]) == (True, "spam", [])

    assert _ok(admin, "admin", "users", "unban", name)["status"] == "active"
    again = admin("admin", "users", "ban", name, "--yes")  # the human form says what happened
    assert again.returncode == 0 and f"Banned {name}" in again.stdout
    assert _ok(admin, "admin", "users", "unban", name)["status"] == "active"
    assert user.login(name).returncode == 0
    assert user("whoami").returncode == 0


def test_keys_rotate_jwt_keeps_logins_and_new_tokens_use_new_kid(
    admin: Melo, admin_server: LiveServer, tmp_path: Path
) -> None:
    name, user = _user(admin_server, tmp_path)
    before = _ok(admin, "admin", "keys", "list")["keys"]
    assert all(set(k) == {"kid", "kind", "active", "created_at", "activates_at", "retired_at"} for k in before)
    old_kid = next(k["kid"] for k in before if k["kind"] == "jwt" and k["active"])
    human = admin("admin", "keys", "list")
    assert human.returncode == 0 and old_kid in human.stdout

    assert admin("admin", "keys", "rotate").returncode == 2  # which keys? say it
    assert admin("admin", "keys", "rotate", "--jwt").returncode == 2  # no TTY, no --yes
    assert _ok(admin, "admin", "keys", "rotate", "--jwt", "--dry-run")["dry_run"] is True
    assert _ok(admin, "admin", "keys", "list")["keys"] == before

    rotated = _ok(admin, "admin", "keys", "rotate", "--jwt", "--yes")["rotated"]
    new_kid = rotated[0]["kid"]
    assert rotated[0]["kind"] == "jwt" and new_kid != old_kid and rotated[0]["activates_at"]
    # published at once, used from its activation time (half a second on this server)
    deadline = time.monotonic() + 30
    while not (after := {k["kid"]: k for k in _ok(admin, "admin", "keys", "list")["keys"]})[new_kid]["active"]:
        assert time.monotonic() < deadline, after
    assert old_kid in after and not after[old_kid]["active"]
    # the old key retires once its last token has expired: a time to come, labelled so
    human = admin("admin", "keys", "list")
    old_row = next(line for line in human.stdout.splitlines() if old_kid in line)
    assert human.returncode == 0 and "retires at" in old_row and "retired" not in old_row

    assert user("whoami").returncode == 0  # signed with the old key, still accepted
    fresh = Melo(home=tmp_path / "fresh", server=admin_server.url)
    assert fresh.login(name).returncode == 0
    stored = json.loads((fresh.home / "credentials" / "default.json").read_text())
    assert _kid(stored["access_token"]) == new_kid


    # the audit log lists both actions: the rotation above and a ban
    _ok(admin, "admin", "users", "ban", name, "--yes")
    entries = _ok(admin, "admin", "audit", "--limit", "20")["entries"]
    assert all(set(e) == {"id", "created_at", "actor", "action", "target", "outcome", "details"} for e in entries)
    actions = [e["action"] for e in entries]
    assert "keys.rotate" in actions
    assert any(e["action"] == "users.ban" and e["target"] == name for e in entries)
    only_bans = _ok(admin, "admin", "audit", "--action", "users.ban")["entries"]
    assert only_bans and {e["action"] for e in only_bans} == {"users.ban"}
    human = admin("admin", "audit", "-n", "5")
    assert human.returncode == 0 and "users.ban" in human.stdout


def test_keys_rotate_data_is_clear_either_way(admin: Melo) -> None:
    result = admin("--json", "admin", "keys", "rotate", "--data", "--yes")
    if result.returncode == 0:
        assert [k["kind"] for k in json.loads(result.stdout)["rotated"]] != []
    else:
        assert result.returncode == 1
        assert json.loads(result.stderr)["error"]["code"] == "data_key_rotation_unsupported"


def test_users_list_show_stats_promote_demote(admin: Melo, admin_server: LiveServer, tmp_path: Path) -> None:
    name, user = _user(admin_server, tmp_path, "findme")
    listed = _ok(admin, "admin", "users", "list", "--search", name)["users"]
    assert [u["username"] for u in listed] == [name] and set(listed[0]) == USER_KEYS
    human = admin("admin", "users", "list")
    assert human.returncode == 0 and name in human.stdout
    shown = admin("admin", "users", "show", name)
    assert shown.returncode == 0 and name in shown.stdout and "melo-cli on" in shown.stdout
    assert admin("admin", "users", "show", "ghost_" + name).returncode == 1

    stats = _ok(admin, "admin", "stats")
    assert set(stats) == {"users", "active_users", "admins", "banned_users", "sessions", "messages"}
    assert stats["users"] >= 2 and stats["admins"] >= 1
    assert "banned users" in admin("admin", "stats").stdout

    assert user("admin", "stats").returncode == 1  # not an admin: forbidden
    assert _ok(admin, "admin", "users", "promote", name)["is_admin"] is True
    assert _ok(user, "admin", "stats")["admins"] == stats["admins"] + 1
    assert admin("admin", "users", "demote", name).returncode == 2
    assert _ok(admin, "admin", "users", "demote", name, "--dry-run")["dry_run"] is True
    assert _show(admin, name)["is_admin"] is True
    demoted = admin("admin", "users", "demote", name, "--yes")
    assert demoted.returncode == 0 and f"{name} is no longer a server admin" in demoted.stdout
    assert _show(admin, name)["is_admin"] is False

    me = _ok(admin, "whoami")["username"]
    assert admin("admin", "users", "ban", me, "--yes").returncode == 1  # cannot_target_self


def test_deactivate_and_revoke_all(admin: Melo, admin_server: LiveServer, tmp_path: Path) -> None:
    name, user = _user(admin_server, tmp_path)
    assert admin("admin", "sessions", "revoke-all", name).returncode == 2
    assert _ok(admin, "admin", "sessions", "revoke-all", name, "--dry-run")["active_sessions"] == 1
    assert user("whoami").returncode == 0
    assert _ok(admin, "admin", "sessions", "revoke-all", name, "--yes") == {"username": name, "revoked": 1}
    assert user("whoami").returncode == 4

    assert user.login(name).returncode == 0
    assert admin("admin", "users", "deactivate", name).returncode == 2
    assert _ok(admin, "admin", "users", "deactivate", name, "--dry-run")["dry_run"] is True
    assert user("whoami").returncode == 0
    assert _ok(admin, "admin", "users", "deactivate", name, "--yes")["status"] == "deactivated"
    assert user("whoami").returncode == 4


def test_reset_password_keeps_the_secret_out_of_pipes(admin: Melo, admin_server: LiveServer, tmp_path: Path) -> None:
    name, user = _user(admin_server, tmp_path)
    refused = admin("admin", "users", "reset-password", name, "--yes")  # stdout is a pipe: nowhere safe
    assert refused.returncode == 2 and "--password-file" in refused.stderr
    assert _ok(admin, "admin", "users", "reset-password", name, "--dry-run")["dry_run"] is True
    assert user("whoami").returncode == 0  # nothing changed: the session lives

    secret_file = tmp_path / "pw.txt"
    result = admin("--json", "admin", "users", "reset-password", name, "--yes", "--password-file", str(secret_file))
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc == {"username": name, "sessions_revoked": 1, "password_generated": True,
                   "password_file": str(secret_file)}
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    temporary = secret_file.read_text().strip()
    assert temporary and temporary not in result.stdout + result.stderr
    assert user("whoami").returncode == 4
    assert user.login(name, password=temporary).returncode == 0

    shown = _ok(admin, "admin", "users", "reset-password", name, "--yes", "--show-password")
    assert user.login(name, password=shown["temporary_password"]).returncode == 0

    chosen = "a chosen password 42"
    _ok(admin, "admin", "users", "reset-password", name, "--yes", "--password-stdin", stdin=chosen + "\n")
    assert user.login(name, password=chosen).returncode == 0


def test_registration_modes_and_tokens(admin: Melo, admin_server: LiveServer, tmp_path: Path) -> None:
    newcomer = Melo(home=tmp_path / "newcomer", server=admin_server.url)
    assert _ok(admin, "admin", "registration") == {"mode": "open"}
    try:
        assert admin("admin", "registration", "closed").returncode == 2
        assert _ok(admin, "admin", "registration", "closed", "--dry-run")["dry_run"] is True
        assert _ok(admin, "admin", "registration")["mode"] == "open"

        assert _ok(admin, "admin", "registration", "token") == {"mode": "token", "previous": "open"}
        register = ("register", new_username("new"), "--password-stdin")
        assert newcomer(*register, stdin=PASSWORD + "\n").returncode == 1

        token = _ok(admin, "admin", "tokens", "create", "--uses", "1", "--expires", "1d")
        assert set(token) == {"token", "created_at", "expires_at", "max_uses", "uses", "revoked"}
        assert token["max_uses"] == 1 and token["expires_at"] is not None
        joined = newcomer(*register, "--registration-token", token["token"], stdin=PASSWORD + "\n")
        assert joined.returncode == 0, joined.stderr

        other = _ok(admin, "admin", "tokens", "create")["token"]
        listed = admin("--json", "admin", "tokens", "list")
        assert token["token"] not in listed.stdout and other not in listed.stdout  # prefixes only
        prefixes = {t["token_prefix"]: t for t in json.loads(listed.stdout)["tokens"]}
        assert prefixes[token["token"][:6]]["uses"] == 1
        assert "…" in admin("admin", "tokens", "list").stdout

        assert admin("admin", "tokens", "revoke", other[:8]).returncode == 2
        assert _ok(admin, "admin", "tokens", "revoke", other[:8], "--yes")["revoked"] is True
        assert admin("admin", "tokens", "revoke", "zzzzzzzz", "--yes").returncode == 1
        late = Melo(home=tmp_path / "late", server=admin_server.url)
        refused = late("register", new_username("late"), "--password-stdin", "--registration-token", other,
                       stdin=PASSWORD + "\n")
        assert refused.returncode == 1

        assert _ok(admin, "admin", "registration", "closed", "--yes")["mode"] == "closed"
        assert admin("admin", "registration", "sideways").returncode == 2
    finally:
        _ok(admin, "admin", "registration", "open")


def _in_terminal(melo: Melo, *args: str, typed: str) -> tuple[int, str]:
    """Run melo with stdin and stdout on a pseudo-terminal, ``typed`` already waiting in its input."""
    import os
    import pty
    import subprocess

    from tests.cli.conftest import melo_command

    master, slave = pty.openpty()
    proc = subprocess.Popen([*melo_command(), *args], stdin=slave, stdout=slave, stderr=slave, env=melo.env())
    os.close(slave)
    os.write(master, typed.encode())
    chunks = []
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    return proc.wait(timeout=60), b"".join(chunks).decode(errors="replace")


def test_terminal_confirmation_and_password_display(admin: Melo, admin_server: LiveServer, tmp_path: Path) -> None:
    name, user = _user(admin_server, tmp_path)
    code, screen = _in_terminal(admin, "admin", "users", "ban", name, typed="n\n")
    assert code == 1 and f"Ban {name}" in screen and "aborted" in screen
    assert _show(admin, name)["banned"] is False

    code, screen = _in_terminal(admin, "admin", "users", "reset-password", name, typed="y\n")
    assert code == 0, screen
    shown = screen.split("Temporary password: ", 1)[1].split()[0]
    assert user.login(name, password=shown).returncode == 0
