"""``melo-tui`` in a real terminal: tmux at 120×40 against a ``melo-server`` process; an SDK peer receives,
and a ``melo send`` on the same profile goes through melo-tui's control socket."""

import asyncio
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from melo_protocol.client import CredentialStore, MeloClient
from melo_protocol.client import events as ev
from melo_protocol.client.messenger import Messenger
from tests.kit.e2ekit import PASSWORD, next_of
from tests.live import LiveServer
from tests.tui.tuikit import unique

REQUIRE = os.environ.get("MELO_TEST_REQUIRE_SERVICES") == "1"


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, timeout=10, check=True).stdout


async def pane(session: str, *, styled: bool = False) -> str:
    return await asyncio.to_thread(tmux, "capture-pane", "-p", *(["-e"] if styled else []), "-t", session)


def password_line(styled_screen: str) -> str:
    return next((line for line in styled_screen.splitlines() if "Password" in line), "")


def bottom_borders(styled_screen: str) -> str:
    """The line with the panes' bottom borders: its colours show which pane has the focus."""
    return next((line for line in reversed(styled_screen.splitlines()) if "╰" in line), "")


async def wait_pane(session: str, cond: Callable[[str], bool], what: str, timeout: float = 30.0,
                    styled: bool = False) -> str:
    """Poll the pane until ``cond`` holds (a real terminal offers nothing to wait on)."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                screen = await pane(session, styled=styled)
                if cond(screen):
                    return screen
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}; the pane shows:\n{await pane(session)}") from None


async def keys(session: str, *k: str, literal: bool = False) -> None:
    await asyncio.to_thread(tmux, "send-keys", "-t", session, *(["-l"] if literal else []), *k)


async def test_melo_tui_in_tmux_logs_in_and_sends(tui_server: LiveServer, tmp_path: Path) -> None:
    if shutil.which("tmux") is None:
        if REQUIRE:
            pytest.fail("tmux is not installed but MELO_TEST_REQUIRE_SERVICES=1")
        pytest.skip("tmux not installed")
    alice, bob_name = unique("tmuxa"), unique("tmuxb")
    async with MeloClient(tui_server.url, store=CredentialStore(tmp_path / "reg", "reg")) as reg:
        await reg.register(alice, PASSWORD)
    bob_store = CredentialStore(tmp_path / "bob", "bob")
    bob_client = MeloClient(tui_server.url, store=bob_store)
    await bob_client.register(bob_name, PASSWORD)
    bob = Messenger.open(bob_client, bob_store)
    await bob.start()
    session = f"melo-{secrets.token_hex(4)}"
    script = Path(sys.executable).with_name("melo-tui")
    runtime = Path(tempfile.mkdtemp(prefix="mr"))  # the control socket's directory, for melo-tui and melo alike
    env = f"MELO_HOME={tmp_path / 'alice'} MELO_KEYRING=file XDG_RUNTIME_DIR={runtime} TERM=xterm-256color"
    try:
        chat = await bob.client.create_direct(alice)
        await asyncio.to_thread(tmux, "new-session", "-d", "-s", session, "-x", "120", "-y", "40",
                                f"env {env} {script} --server {tui_server.url} --profile tmux")
        await wait_pane(session, lambda s: "Username" in s and "Log in" in s, "the login screen")
        await keys(session, alice, literal=True)
        await wait_pane(session, lambda s: alice in s, "the username typed")
        before = password_line(await pane(session, styled=True))
        await keys(session, "Tab")
        # keys typed in the same instant as Tab would still reach the old field: wait for the focus
        # highlight to move to the password field, as a person's eyes would
        await wait_pane(session, lambda s: password_line(s) != before, "focus on the password field", styled=True)
        await keys(session, PASSWORD, literal=True)
        await wait_pane(session, lambda s: "•" * len(PASSWORD) in s, "the password typed (masked)")
        await keys(session, "Enter")
        await wait_pane(session, lambda s: bob_name in s and "connected" in s, "the chat list")
        await keys(session, "j", "k")  # the list has the focus: moves, not letters in its filter
        before = bottom_borders(await pane(session, styled=True))
        await keys(session, "Enter")
        await wait_pane(session, lambda s: "end-to-end encrypted" in s, "the open chat")
        # typing before the composer has the focus would lose the text: wait until its border lights up
        await wait_pane(session, lambda s: bottom_borders(s) != before, "focus in the composer", styled=True)
        received = asyncio.create_task(next_of(bob, ev.MessageReceived, lambda e: e.chat_id == chat.id, timeout=30))
        await keys(session, "hello from a real terminal", literal=True)
        await keys(session, "Enter")
        screen = await wait_pane(session, lambda s: "hello from a real terminal" in s, "the sent message")
        assert alice in screen
        got = await received
        assert got.message.text == "hello from a real terminal" and got.message.sender == alice
        assert "filter chats…" in screen  # j and k never reached the filter

        # meanwhile a script on the same profile sends through melo-tui, and it shows there as sent by alice
        received = asyncio.create_task(next_of(bob, ev.MessageReceived, lambda e: e.chat_id == chat.id, timeout=30))
        melo_env = {k: v for k, v in os.environ.items() if not k.startswith("MELO_")}
        melo_env.update({"MELO_HOME": str(tmp_path / "alice"), "MELO_KEYRING": "file", "XDG_RUNTIME_DIR": str(runtime)})
        sent = await asyncio.to_thread(subprocess.run, [str(script.with_name("melo")), "--profile", "tmux", "send",
                                                        f"@{bob_name}", "and one from a script"],
                                       env=melo_env, capture_output=True, text=True, timeout=60, check=False)
        assert sent.returncode == 0, sent.stderr
        screen = await wait_pane(session, lambda s: "and one from a script" in s, "the script's message")
        got = await received
        assert got.message.text == "and one from a script" and got.message.sender == alice
    finally:
        await asyncio.to_thread(subprocess.run, ["tmux", "kill-session", "-t", session], capture_output=True,
                                timeout=10, check=False)
        shutil.rmtree(runtime, ignore_errors=True)
        await bob.close()
        await bob_client.aclose()
