"""What every command shares: help, completion, usage errors, profiles, colour, stdout vs stderr, durations."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from melo_cli.options import parse_duration
from tests.cli.conftest import Melo, melo_command, new_username
from tests.live import closed_port_url


def test_help_lists_groups_and_exit_codes(melo: Melo) -> None:
    result = melo("--help")
    assert result.returncode == 0
    for group in ("profiles", "profile", "avatar", "chats", "members", "slowmode", "invites", "join", "admin"):
        assert f"  {group} " in result.stdout, group
    assert "Exit codes" in result.stdout and "4 not logged in" in result.stdout
    admin_help = melo("admin", "users", "--help")
    assert admin_help.returncode == 0 and "reset-password" in admin_help.stdout


def test_usage_errors_exit_2(melo: Melo) -> None:
    assert melo("no-such-command").returncode == 2
    assert melo("chats", "info").returncode == 2  # missing CHAT
    assert melo("--profile", "../escape", "whoami").returncode == 2
    assert melo("admin", "audit", "--limit", "0").returncode == 2


def test_shell_completion_script(melo: Melo) -> None:
    result = melo("--show-completion", "bash")
    assert result.returncode == 0
    assert "_MELO_COMPLETE" in result.stdout and "complete" in result.stdout


def test_server_unreachable_exits_3(melo: Melo) -> None:
    result = melo("--server", closed_port_url(), "--json", "login", "someone", "--password-stdin", stdin="x" * 12)
    assert result.returncode == 3
    assert result.stdout == ""
    assert json.loads(result.stderr)["error"]["exit_code"] == 3


def test_data_on_stdout_diagnostics_on_stderr(melo: Melo) -> None:
    melo.register(new_username("io"))
    ok = melo("--json", "chats", "list")
    assert ok.returncode == 0 and ok.stderr == ""
    assert json.loads(ok.stdout) == {"chats": []}
    bad = melo("--json", "chats", "info", "nothing here")
    assert bad.returncode == 1 and bad.stdout == ""
    assert json.loads(bad.stderr)["error"]["code"] == "chat_not_found"


def test_no_color_is_honoured(tmp_path: Path) -> None:
    def run(no_color: bool) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MELO_") and k != "NO_COLOR"}
        env.update({"MELO_HOME": str(tmp_path), "MELO_KEYRING": "file", "FORCE_COLOR": "1"})
        if no_color:
            env["NO_COLOR"] = "1"
        done = subprocess.run([*melo_command(), "whoami"], env=env, capture_output=True, text=True, timeout=60,
                              check=False)
        assert done.returncode == 4
        return done.stderr

    assert "\x1b[" in run(no_color=False)
    assert "\x1b[" not in run(no_color=True)


def test_profiles_for_two_accounts(melo: Melo) -> None:
    first, second = new_username("pa"), new_username("pb")
    melo.register(first)
    assert melo("--profile", "work", "register", second, "--password-stdin", stdin="correct horse battery\n"
                ).returncode == 0

    listed = json.loads(melo("profiles", "list", "--json").stdout)
    assert listed["current"] == "default"
    assert {p["name"]: (p["username"], p["current"]) for p in listed["profiles"]} == {
        "default": (first, True), "work": (second, False)}
    assert all(p["server"] == melo.server for p in listed["profiles"])
    human = melo("profiles", "list")
    assert human.returncode == 0 and second in human.stdout

    assert json.loads(melo("profiles", "use", "work", "--json").stdout)["username"] == second
    assert json.loads(melo("whoami", "--json").stdout)["username"] == second
    assert json.loads(melo("--profile", "default", "whoami", "--json").stdout)["username"] == first
    assert json.loads(melo("whoami", "--json", extra_env={"MELO_PROFILE": "default"}).stdout)["username"] == first

    assert melo("profiles", "use", "nowhere").returncode == 1
    assert json.loads(melo("profiles", "list", "--json").stdout)["current"] == "work"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("45s", 45), ("30m", 1800), ("2h", 7200), ("1d", 86400), ("1w", 604800), ("1h30m", 5400)],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "1y", "1.5h", "-1d", "1d junk"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize(("body", "said"), [
    (b'{"error": {"code": "rate_limited", "message": "too many requests; retry in 3161 s", '
     b'"details": {"retry_after": 3161}}}', "too many requests; retry in 3161 s"),
    (b'{"error": {"code": "slow_mode", "message": "slow mode: you can post again in 60 s", '
     b'"details": {"retry_after": 60}}}', "slow mode: you can post again in 60 s"),
    (b"<html>Too Many Requests</html>", "HTTP 429; retry in 60 s"),  # a proxy's 429: only the header says
])
def test_a_rate_limit_says_when_once(body: bytes, said: str) -> None:
    from melo_cli.errors import describe
    from melo_protocol.client.errors import error_from_response

    assert describe(error_from_response(429, body, {"Retry-After": "60"}))[1] == said
