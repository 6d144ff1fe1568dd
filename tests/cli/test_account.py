"""register, login, whoami, logout and the exit codes, through a real ``melo`` process."""

import json
import stat
import time
from pathlib import Path

from melo_protocol.client import Credentials, CredentialStore
from tests.cli.conftest import PASSWORD, Melo, all_strings, new_username
from tests.live import LiveServer, closed_port_url

WHOAMI_KEYS = {
    "server",
    "profile",
    "id",
    "username",
    "display_name",
    "bio",
    "is_admin",
    "session_id",
    "device_id",
    "created_at",
}


def _secrets(home: Path, profile: str = "default") -> dict[str, str]:
    return json.loads((home / "credentials" / f"{profile}.json").read_text())


def test_register_stores_credentials_0600_and_whoami_shows_no_token(melo: Melo) -> None:
    name = new_username()
    result = melo.register(name, "--json")
    doc = json.loads(result.stdout)
    assert doc["username"] == name and doc["profile"] == "default"
    assert "MELO_KEYRING=file" in result.stderr  # the one-time warning about the file store

    cred_file = melo.home / "credentials" / "default.json"
    assert stat.S_IMODE(cred_file.stat().st_mode) == 0o600
    secrets = _secrets(melo.home)
    assert secrets["refresh_token"] and secrets["access_token"]
    profile_text = (melo.home / "profiles" / "default.json").read_text()
    assert secrets["refresh_token"] not in profile_text and secrets["access_token"] not in profile_text

    who = melo("whoami", "--json")
    assert who.returncode == 0, who.stderr
    me = json.loads(who.stdout)
    assert set(me) == WHOAMI_KEYS
    assert me["username"] == name and me["session_id"] == doc["session_id"] and me["is_admin"] is False
    assert not {secrets["refresh_token"], secrets["access_token"]} & set(all_strings(me))
    for text in (who.stdout, who.stderr, result.stdout):
        assert secrets["refresh_token"] not in text and secrets["access_token"] not in text
    # the warning is printed once per home, not on every command
    assert "MELO_KEYRING=file" not in who.stderr


def test_whoami_human_and_global_json_flag(melo: Melo) -> None:
    name = new_username()
    melo.register(name)
    human = melo("whoami")
    assert human.returncode == 0
    assert name in human.stdout and "session" in human.stdout
    with_global = melo("--json", "whoami")
    assert json.loads(with_global.stdout)["username"] == name


def test_login_gives_a_new_session_and_logout_forgets_it(melo: Melo, tmp_path: Path) -> None:
    name = new_username()
    first = json.loads(melo.register(name, "--json").stdout)
    other = Melo(home=tmp_path / "other-home", server=melo.server)
    login = other.login(name, "--json", "--device-name", "laptop")
    assert login.returncode == 0, login.stderr
    doc = json.loads(login.stdout)
    assert doc["username"] == name and doc["session_id"] != first["session_id"]
    assert json.loads(other("whoami", "--json").stdout)["session_id"] == doc["session_id"]

    out = other("logout", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["logged_out"] is True
    assert not (other.home / "credentials" / "default.json").exists()
    assert other("whoami").returncode == 4
    # the first device is untouched
    assert melo("whoami").returncode == 0


def test_login_username_is_case_insensitive(melo: Melo, tmp_path: Path) -> None:
    name = new_username()
    melo.register(name)
    other = Melo(home=tmp_path / "h2", server=melo.server)
    assert other.login(name.upper()).returncode == 0


def test_wrong_password_exits_1(melo: Melo) -> None:
    name = new_username()
    melo.register(name)
    result = melo.login(name, password="not the password")
    assert result.returncode == 1
    assert "wrong username or password" in result.stderr
    assert "not the password" not in result.stderr + result.stdout


def test_taken_username_and_weak_password_exit_1(melo: Melo, tmp_path: Path) -> None:
    name = new_username()
    melo.register(name)
    other = Melo(home=tmp_path / "h3", server=melo.server)
    taken = other("--json", "register", name, "--password-stdin", stdin=PASSWORD + "\n")
    assert taken.returncode == 1
    assert json.loads(taken.stderr)["error"]["code"] == "username_taken"
    weak = other("register", new_username(), "--password-stdin", stdin="short\n")
    assert weak.returncode == 1


def test_not_logged_in_exits_4(melo: Melo) -> None:
    result = melo("--json", "whoami")
    assert result.returncode == 4
    assert result.stdout == ""
    assert json.loads(result.stderr)["error"] == {
        "code": "not_logged_in",
        "message": json.loads(result.stderr)["error"]["message"],
        "exit_code": 4,
    }
    assert melo("sessions", "list").returncode == 4
    assert melo("logout").returncode == 4


def test_revoked_from_another_login_exits_4(melo: Melo) -> None:
    name = new_username()
    melo.register(name)
    revoke = melo.login(name, global_args=("--profile", "second"))
    assert revoke.returncode == 0, revoke.stderr
    result = melo("--profile", "second", "sessions", "revoke-all", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"revoked": 1, "include_current": False}

    gone = melo("whoami")
    assert gone.returncode == 4
    assert "revoked" in gone.stderr
    assert melo("whoami").returncode == 4  # and it stays so: the dead session was forgotten
    assert melo("--profile", "second", "whoami").returncode == 0


def test_server_unreachable_exits_3(melo: Melo, live_server: LiveServer) -> None:
    closed = closed_port_url()
    result = melo("--server", closed, "login", new_username(), "--password-stdin", stdin=PASSWORD + "\n")
    assert result.returncode == 3
    assert "cannot reach" in result.stderr
    # logged in, but the server has gone away
    CredentialStore(melo.home, "stale").save(
        Credentials(
            server_url=closed,
            username="someone",
            session_id="s",
            device_id="d",
            refresh_token="r",
            access_token="a",
            access_expires_at=time.time() + 600,
        )
    )
    assert melo("--profile", "stale", "--server", closed, "whoami").returncode == 3
    # without --server the profile's own server is used
    unset = Melo(home=melo.home, server=None)
    assert unset("--profile", "stale", "whoami").returncode == 3


def test_credentials_for_another_server_are_not_used(melo: Melo) -> None:
    name = new_username()
    melo.register(name)
    result = melo("--server", closed_port_url(), "whoami")
    assert result.returncode == 4
    assert "logged in to" in result.stderr


def test_usage_errors_exit_2(melo: Melo) -> None:
    assert melo("sessions", "bogus").returncode == 2
    assert melo("login").returncode == 2
    assert melo("--profile", "../escape", "whoami").returncode == 2
    empty = melo("login", new_username(), "--password-stdin", stdin="")
    assert empty.returncode == 2
    assert "no password on stdin" in empty.stderr


def test_help_lists_exit_codes(melo: Melo) -> None:
    result = melo("--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for entry in ("0 ok", "2 usage", "3 server unreachable", "4 not logged in", "5 E2E trust", "6 smoke"):
        assert entry in text


def test_password_prompt_without_a_terminal_says_use_password_stdin(melo: Melo) -> None:
    name = new_username("notty")
    for args in (("register", name), ("login", name), ("--json", "login", name)):
        result = melo(*args)  # stdin is a pipe: no one to prompt
        assert result.returncode == 2, (args, result.stderr)
        assert "no terminal to ask for a password: use --password-stdin" in result.stderr
        assert "GetPassWarning" not in result.stderr and "Aborted" not in result.stderr
        assert result.stdout == ""
    assert json.loads(melo("--json", "login", name).stderr)["error"]["code"] == "no_terminal"
    assert melo("whoami").returncode == 4  # nothing was registered


def test_password_prompt_on_a_terminal_still_asks(melo: Melo) -> None:
    """On a terminal (a pty as stdin, in a session of its own: no other /dev/tty) login prompts as before."""
    import os
    import pty
    import select
    import subprocess

    from tests.cli.conftest import melo_command

    name = new_username("tty")
    melo.register(name)
    main, child = pty.openpty()
    proc = subprocess.Popen([*melo_command(), "login", name], env=melo.env(), stdin=child, stdout=child,
                            stderr=child, start_new_session=True)
    os.close(child)
    seen = b""

    def read_until(needle: bytes) -> None:
        nonlocal seen
        while needle not in seen:
            ready, _, _ = select.select([main], [], [], 30)
            assert ready, seen
            try:
                seen += os.read(main, 4096)
            except OSError:  # the child closed the pty
                break
        assert needle in seen, seen

    try:
        read_until(b"Password: ")  # click prints "Password:", then getpass " " once echo is off
        os.write(main, (PASSWORD + "\n").encode())
        read_until(b"Logged in as")
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
        os.close(main)
    assert PASSWORD.encode() not in seen  # not echoed
