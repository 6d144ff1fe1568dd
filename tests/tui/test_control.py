"""melo-tui answers scripts like `melo listen` does: while it holds a profile, `melo send`, `history`… on
that profile run inside it (its control socket), and what a script sends shows in the open conversation
as sent by you. A `melo` process runs beside the app (the app keeps running while it waits)."""

import asyncio
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from melo_protocol.client import CredentialStore, MeloClient
from melo_protocol.client import events as ev
from melo_protocol.client.control import socket_path
from melo_protocol.client.messenger import Messenger
from melo_tui.screens.chat import ChatScreen
from melo_tui.widgets.conversation.message_view import MessageItem, MessageView
from tests.cli.conftest import melo_command
from tests.kit.e2ekit import next_of
from tests.live import LiveServer
from tests.tui.tuikit import PASSWORD, SIZE, login, make_app, unique, wait_for

PROFILE = "tui"


@pytest.fixture
def runtime_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private XDG_RUNTIME_DIR with a short path (as /run/user/UID is), shared with the `melo` processes."""
    with tempfile.TemporaryDirectory(prefix="mr") as run:  # mode 0700
        monkeypatch.setenv("XDG_RUNTIME_DIR", run)
        yield Path(run)


async def melo(home: Path, *args: str) -> tuple[int, str, str]:
    """`melo --profile tui ARGS` as its own process, awaited without blocking the app's event loop."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MELO_")}
    env.update({"MELO_HOME": str(home), "MELO_KEYRING": "file", "NO_COLOR": "1", "COLUMNS": "200"})
    proc = await asyncio.create_subprocess_exec(*melo_command(), "--profile", PROFILE, *args, env=env,
                                                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_melo_send_and_history_run_inside_the_open_tui(tui_server: LiveServer, tmp_path: Path,
                                                             runtime_dir: Path) -> None:
    alice, bob_name = unique("ctla"), unique("ctlb")
    home = tmp_path / "alice"
    bob_store = CredentialStore(tmp_path / "bob", "bob")
    bob_client = MeloClient(tui_server.url, store=bob_store)
    await bob_client.register(bob_name, PASSWORD)
    bob = Messenger.open(bob_client, bob_store)
    await bob.start()
    app = make_app(home, tui_server.url, profile=PROFILE)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await login(pilot, alice, register=True)
            screen = app.screen
            assert isinstance(screen, ChatScreen)
            chat = await bob.client.create_direct(alice)
            await bob.send_text(chat.id, "hello from bob")
            await wait_for(pilot, lambda: chat.id in screen.query_one("ChatList").entries,  # type: ignore[attr-defined]
                           what="the DM in the list")
            screen.open_chat(chat.id)
            view = screen.query_one(MessageView)
            await wait_for(pilot, lambda: len(view.query(MessageItem)) == 1, what="the conversation")
            assert socket_path(CredentialStore(home, PROFILE)).exists()

            received = asyncio.create_task(next_of(
                bob, ev.MessageReceived, lambda e: e.chat_id == chat.id and e.message.sender == alice, timeout=30))
            code, out, err = await melo(home, "--json", "send", f"@{bob_name}", "sent by a script")
            assert code == 0, err
            sent = json.loads(out)
            assert (sent["sender"], sent["text"], sent["chat_id"], sent["status"]) == (
                alice, "sent by a script", chat.id, "ok")
            got = await received
            assert (got.message.sender, got.message.text) == (alice, "sent by a script")
            # in the open conversation, as sent by you (your name, the ✓ of your own messages)
            await wait_for(pilot, lambda: any(i.message.id == sent["message_id"] for i in view.query(MessageItem)),
                           what="the script's message in the conversation")
            item = next(i for i in view.query(MessageItem) if i.message.id == sent["message_id"])
            assert item.message.sender == alice and "sent by a script" in item.rendered.plain
            assert "✓" in item.rendered.plain

            code, out, err = await melo(home, "--json", "history", f"@{bob_name}", "-n", "5")
            assert code == 0, err
            history = json.loads(out)
            assert history["chat_id"] == chat.id
            assert [(m["sender"], m["text"]) for m in history["messages"]] == [
                (bob_name, "hello from bob"), (alice, "sent by a script")]
            code, out, err = await melo(home, "history", f"@{bob_name}")
            assert code == 0 and "hello from bob" in out and "sent by a script" in out, err

            # an error in the app is the script's error: same code and exit status as on its own
            code, out, err = await melo(home, "--json", "send", "no-such-chat", "x")
            assert code == 1 and json.loads(out or err)["error"]["code"] == "chat_not_found"
            # a command that needs the store to itself says truthfully what works meanwhile
            code, out, err = await melo(home, "--json", "devices", "list")
            assert code == 1 and "Traceback" not in err
            error = json.loads(out or err)["error"]
            assert error["code"] == "profile_in_use" and "melo-tui" in error["message"]
            assert "wait for it" not in error["message"]
            await pilot.press("ctrl+q")
        assert not socket_path(CredentialStore(home, PROFILE)).exists()  # gone with the app
        code, out, err = await melo(home, "send", f"@{bob_name}", "after the app")  # the profile is free
        assert code == 0, err
    finally:
        await bob.close()
        await bob_client.aclose()
