"""Snapshot tests (pytest-textual-snapshot) of login, chat list with a conversation, sessions, verify, help,
chat info, the call bar and emoji (SAS) verification.

Deterministic and without a server: the chats, sessions and messages of a ``FakeServer``
(``tests/tui/fake_backend.py``) with fixed usernames, the fixed clock of ``formatting.FIXED``, a fixed server
URL on the login form, safety numbers from fixed keys, and nothing random (ids, ports) on screen.
Update with ``pytest tests/tui/test_snapshots.py --snapshot-update``.
"""

from pathlib import Path
from typing import Any

from textual.app import App, ComposeResult
from textual.pilot import Pilot
from textual.widgets import DataTable

import melo_tui
from melo_protocol.client.call_state import CallQuality, CallState
from melo_protocol.crypto import PartyIdentity, safety_number, safety_qr
from melo_protocol.crypto.sas import EMOJI
from melo_tui.app import MeloApp
from melo_tui.formatting import FIXED
from melo_tui.media import quiet_media
from melo_tui.screens.chat import ChatScreen
from melo_tui.screens.chat_info import ChatInfoScreen
from melo_tui.screens.sas import SasScreen
from melo_tui.screens.sessions import SessionsScreen
from melo_tui.screens.verify import VerifyScreen
from melo_tui.widgets.call_bar import CallBar
from melo_tui.widgets.chats.chat_list import ChatList
from melo_tui.widgets.conversation.message_view import MessageItem, MessageView
from tests.tui.fake_backend import FakeServer, fake_backends
from tests.tui.tuikit import SIZE, make_app, wait_for

ALICE, BOB = "alice", "bob"
FIXED_ME = PartyIdentity.of(1, "A" * 43)
FIXED_THEM = PartyIdentity.of(2, "B" * 43)


def snapshot_world() -> FakeServer:
    """alice (the profile the app opens) and bob talk; a second alice session exists elsewhere."""
    world = FakeServer()
    world.user(ALICE, devices=("melo-tui", "laptop"))
    world.user(BOB, devices=("phone",))
    dm = world.create_chat(BOB, "direct", None, [ALICE])
    world.send(BOB, dm.id, "Hi Alice! This is [bold]not bold[/] and stays literal.")
    world.send(BOB, dm.id, "welcome")
    world.send(ALICE, dm.id, "Hello Bob 👋")
    world.create_chat(BOB, "group", "Melo team", [ALICE])
    return world


def alice_app(tmp_path: Path) -> MeloApp:
    backends = fake_backends(snapshot_world(), tmp_path, {"alice": ALICE})
    return MeloApp(backends, "alice", formatting=FIXED, call_media=quiet_media)


async def _conversation_open(pilot: Pilot[Any]) -> ChatScreen:
    app = pilot.app
    await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen), what="auto-login")
    screen = app.screen
    assert isinstance(screen, ChatScreen)
    await wait_for(
        pilot,
        lambda: screen.status == f"{ALICE} · connected" and len(screen.query("ChatRow")) == 2,
        what="connected with chats",
    )
    await pilot.press("down", "down")  # to the DM: the newest chat (the group) is first
    await pilot.press("enter")
    view = screen.query_one(MessageView)
    await wait_for(pilot, lambda: len(view.query(MessageItem)) == 3, what="the conversation")
    await pilot.pause()
    return screen


def test_login_screen(snap_compare: Any) -> None:
    app = make_app(Path("/nonexistent-melo-home"), "https://melo.example", formatting=FIXED)
    assert snap_compare(app, terminal_size=SIZE)


def test_help_screen(snap_compare: Any) -> None:
    app = make_app(Path("/nonexistent-melo-home"), "https://melo.example", formatting=FIXED)
    assert snap_compare(app, terminal_size=SIZE, press=["f1"])


def test_chat_list_with_conversation(snap_compare: Any, tmp_path: Path) -> None:
    app = alice_app(tmp_path)
    texts: list[str] = []

    async def run_before(pilot: Pilot[Any]) -> None:
        screen = await _conversation_open(pilot)
        texts.extend(i.rendered.plain for i in screen.query(MessageItem))

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
    assert any("[bold]not bold[/]" in t for t in texts)  # literally, on screen
    assert any("Hello Bob 👋" in t for t in texts)


def test_sessions_screen(snap_compare: Any, tmp_path: Path) -> None:
    app = alice_app(tmp_path)

    async def run_before(pilot: Pilot[Any]) -> None:
        await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen), what="auto-login")
        await pilot.press("ctrl+s")
        screen = app.screen
        assert isinstance(screen, SessionsScreen)
        await wait_for(pilot, lambda: len(screen.sessions) == 2, what="two sessions")
        table = screen.query_one(DataTable)
        # the table sizes its columns to new rows on idle; the picture waits for that, or it is truncated
        await wait_for(
            pilot,
            lambda: table.ordered_columns[0].content_width >= len("● this device"),
            what="columns sized to the rows",
        )
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_verify_screen(snap_compare: Any, tmp_path: Path) -> None:
    app = alice_app(tmp_path)

    async def fixed_safety_number(username: str) -> tuple[str, str]:
        # real keys are new every run: the same functions over fixed keys keep the picture stable
        return safety_number(FIXED_ME, FIXED_THEM), safety_qr(FIXED_ME, FIXED_THEM)

    async def run_before(pilot: Pilot[Any]) -> None:
        await _conversation_open(pilot)
        app.backend.messenger.safety_number = fixed_safety_number  # type: ignore[union-attr, method-assign]
        await pilot.press(*"/verify", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, VerifyScreen), what="verify screen")
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_chat_info_screen(snap_compare: Any, tmp_path: Path) -> None:
    app = alice_app(tmp_path)

    async def run_before(pilot: Pilot[Any]) -> None:
        await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen), what="auto-login")
        screen = app.screen
        assert isinstance(screen, ChatScreen)
        await wait_for(
            pilot,
            lambda: screen.status == f"{ALICE} · connected" and len(screen.query("ChatRow")) == 2,
            what="connected with chats",
        )
        # the group "Melo team" (bob owns it, alice is a member), by the filter: list order and focus vary
        await pilot.click("#chat-filter")
        await pilot.press(*"melo", "enter")
        group = next(e.chat.id for e in screen.query_one(ChatList).entries.values() if e.title == "Melo team")
        await wait_for(
            pilot, lambda: screen.chat_id == group and screen.query_one("#composer").has_focus, what="the group open"
        )
        await pilot.press("f3")
        await wait_for(
            pilot,
            lambda: isinstance(app.screen, ChatInfoScreen) and len(app.screen.members) == 2,
            what="chat info with its members",
        )
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


class FixedCall:
    """A call frozen in one state: the call bar's snapshot must not depend on a live connection."""

    peer = "bob"
    state = CallState.CONNECTED
    reason: str | None = None
    muted = True
    level = 0.5
    duration = 83.4

    async def quality(self) -> CallQuality:
        return CallQuality(rtt_ms=42.0, loss_fraction=0.0125)


class CallBarApp(App[None]):
    CSS_PATH = str(Path(melo_tui.__file__).parent / "app.tcss")

    def compose(self) -> ComposeResult:
        yield CallBar(id="call-bar")


def test_call_bar(snap_compare: Any) -> None:
    app = CallBarApp()

    async def run_before(pilot: Pilot[Any]) -> None:
        bar = app.query_one(CallBar)
        bar.show_call(FixedCall())
        await bar.tick()
        await pilot.pause()
        assert bar.text.startswith("☎ bob  connected  01:23  muted  ▮▮▮▮▯▯▯▯  RTT 42 ms · loss 1.2%")

    assert snap_compare(app, terminal_size=(100, 3), run_before=run_before)


class SasApp(App[None]):
    """The SAS screen with fixed codes: real ones are new every verification."""

    CSS_PATH = str(Path(melo_tui.__file__).parent / "app.tcss")

    def on_mount(self) -> None:
        screen = SasScreen("bob", "PHONE", "t1", lambda _match: None)
        screen.show(
            "keys_exchanged", emoji=[EMOJI[i] for i in (0, 11, 22, 33, 44, 55, 63)], decimals=(1234, 5678, 4321)
        )
        self.push_screen(screen)


def test_sas_screen(snap_compare: Any) -> None:
    app = SasApp()

    async def run_before(pilot: Pilot[Any]) -> None:
        await wait_for(pilot, lambda: isinstance(app.screen, SasScreen) and app.screen.can_decide, what="the codes")
        await pilot.pause()

    assert snap_compare(app, terminal_size=(100, 24), run_before=run_before)
