"""Global options (--server, --profile, --home, --json, -v, -q) before or after the subcommand."""

import json
from pathlib import Path

from tests.cli.conftest import Melo, new_username
from tests.live import LiveServer, closed_port_url


def test_server_after_the_command_is_used(live_server: LiveServer, tmp_path: Path) -> None:
    name = new_username("glo")
    melo = Melo(tmp_path / "home", live_server.url)
    melo.register(name)
    elsewhere = Melo(melo.home, closed_port_url())  # MELO_SERVER points at nothing

    who = elsewhere("whoami", "--server", live_server.url, "--json")
    assert who.returncode == 0, who.stderr
    assert json.loads(who.stdout)["username"] == name

    # after the command equals before it; the later one wins when both are given
    assert elsewhere("--server", live_server.url, "whoami").returncode == 0
    assert elsewhere("--server", closed_port_url(), "whoami", "--server", live_server.url).returncode == 0
    nowhere = closed_port_url()
    refused = melo("whoami", "--server", nowhere)  # the command line wins over MELO_SERVER
    assert refused.returncode == 4 and f"not {nowhere}" in refused.stderr


def test_profile_home_json_verbose_quiet_after_the_command(live_server: LiveServer, tmp_path: Path) -> None:
    name = new_username("glp")
    melo = Melo(tmp_path / "home", live_server.url)
    assert melo.register(name, "--profile", "work").returncode == 0

    doc = json.loads(melo("whoami", "--profile", "work", "--json").stdout)
    assert (doc["username"], doc["profile"]) == (name, "work")
    assert melo("whoami").returncode == 4  # the default profile was never logged in
    assert melo("whoami", "--profile", "../x").returncode == 2  # checked like the global one

    other_home = Melo(tmp_path / "other", live_server.url)
    assert melo("whoami", "--profile", "work", "--home", str(other_home.home)).returncode == 4

    chats = melo("chats", "list", "--profile", "work", "--json")  # a command with its own --json
    assert chats.returncode == 0 and json.loads(chats.stdout) == {"chats": []}
    verbose = melo("whoami", "--profile", "work", "-v")
    assert verbose.returncode == 0 and f"debug: server {live_server.url}, profile work" in verbose.stderr
    quiet = melo("logout", "--profile", "work", "-q")
    assert quiet.returncode == 0 and quiet.stdout == ""
    assert melo("whoami", "--profile", "work").returncode == 4


def test_help_lists_the_global_options_of_each_command(melo: Melo) -> None:
    root = melo("--help")
    assert root.returncode == 0 and "before or after the command" in " ".join(root.stdout.split())
    for command in (("whoami",), ("smoke",), ("sessions", "revoke"), ("admin", "users", "ban")):
        shown = melo(*command, "--help")
        assert shown.returncode == 0, command
        section = shown.stdout.split("Global options")[1]
        for option in ("--server URL", "--profile NAME", "--home DIR", "-v, --verbose", "-q, --quiet"):
            assert option in section, (command, option)
        assert "--json" in shown.stdout
