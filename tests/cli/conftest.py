"""CLI tests: one live server per run, and ``melo`` run as a real process against it."""

import itertools
import os
import secrets
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.live import LiveServer, live_server_fixture

live_server = live_server_fixture(scope="session", name="cli-live")
PASSWORD = "correct horse battery"
_names = itertools.count(1)


def new_username(prefix: str = "cli") -> str:
    return f"{prefix}{next(_names)}_{secrets.token_hex(3)}"


def melo_command() -> list[str]:
    script = Path(sys.executable).with_name("melo")
    return [str(script)] if script.exists() else [sys.executable, "-m", "melo_cli"]


@dataclass
class Melo:
    """Runs ``melo`` as a subprocess with an isolated home, the file credential store, and a server."""

    home: Path
    server: str | None

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MELO_")}
        env.update({"MELO_HOME": str(self.home), "MELO_KEYRING": "file", "NO_COLOR": "1", "COLUMNS": "200"})
        if self.server is not None:
            env["MELO_SERVER"] = self.server
        return env

    def __call__(
        self, *args: str, stdin: str | None = None, extra_env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = self.env()
        env.update(extra_env or {})
        return subprocess.run(
            [*melo_command(), *args],
            input=stdin if stdin is not None else "",
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def register(
        self, username: str, *args: str, password: str = PASSWORD
    ) -> subprocess.CompletedProcess[str]:
        result = self("register", username, "--password-stdin", *args, stdin=password + "\n")
        assert result.returncode == 0, result.stderr
        return result

    def login(
        self, username: str, *args: str, password: str = PASSWORD, global_args: Sequence[str] = ()
    ) -> subprocess.CompletedProcess[str]:
        return self(*global_args, "login", username, "--password-stdin", *args, stdin=password + "\n")


@pytest.fixture
def melo(live_server: LiveServer, tmp_path: Path) -> Melo:
    return Melo(home=tmp_path / "melo-cli-home", server=live_server.url)


def all_strings(doc: object) -> Sequence[str]:
    if isinstance(doc, dict):
        return [s for v in doc.values() for s in all_strings(v)] + [str(k) for k in doc]
    if isinstance(doc, list):
        return [s for v in doc for s in all_strings(v)]
    return [str(doc)]
