"""Calls in the TUI: an SDK client calls the TUI user; Pilot accepts in the modal, sees the call bar
connected, hangs up, and the SDK side's call ends.

On PostgreSQL + Redis like tests/calls.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from melo_protocol.client.call import Call
from melo_protocol.client.call_media import SilenceTrack
from melo_protocol.client.call_state import CallState
from melo_tui.app import MeloApp
from melo_tui.screens.chat import ChatScreen
from melo_tui.screens.incoming_call import IncomingCallScreen
from melo_tui.widgets.call_bar import CallBar
from tests.calls.conftest import postgres_live
from tests.kit.callkit import Party
from tests.kit.e2ekit import device
from tests.kit.livekit import Live
from tests.tui.tuikit import SIZE, login, make_app, type_text, unique, wait_for


@pytest.fixture
async def call_live(databases: Any, redis_url: str, tmp_path: Path) -> AsyncIterator[Live]:
    async with postgres_live(databases, redis_url, tmp_path) as lv:
        yield lv


@dataclass
class Ringing:
    """alice in the TUI, logged in and connected, with bob's call ringing in the incoming-call modal."""

    app: MeloApp
    pilot: Pilot[None]
    screen: ChatScreen
    alice: str
    bob: Party
    bob_name: str
    call: Call


@asynccontextmanager
async def ringing(call_live: Live, tmp_path: Path) -> AsyncIterator[Ringing]:
    alice, bob_name = unique("alice"), unique("bob")
    app = make_app(tmp_path / "alice-home", call_live.server.url)
    bob = Party(await device(call_live, tmp_path / "bob-home", bob_name, "bob", register=True))
    try:
        async with app.run_test(size=SIZE) as pilot:
            await login(pilot, alice, register=True)
            screen = app.screen
            assert isinstance(screen, ChatScreen)
            await wait_for(pilot, lambda: screen.status == f"{alice} · connected", what="connected")
            await bob.m.client.create_direct(alice)  # callers must share a chat with the callee
            call = await bob.calls.start(alice, source=SilenceTrack())
            await wait_for(pilot, lambda: isinstance(app.screen, IncomingCallScreen), what="the incoming-call modal")
            yield Ringing(app, pilot, screen, alice, bob, bob_name, call)
    finally:
        await bob.close()


async def test_accept_incoming_call_and_hang_up(call_live: Live, tmp_path: Path) -> None:
    async with ringing(call_live, tmp_path) as r:
        app, pilot, screen, call, bob_name = r.app, r.pilot, r.screen, r.call, r.bob_name
        modal = app.screen
        assert isinstance(modal, IncomingCallScreen) and modal.caller == bob_name
        bar = screen.query_one(CallBar)
        assert bar.display and "ringing" in bar.text

        await pilot.press("a")
        await wait_for(pilot, lambda: app.screen is screen, what="the modal closed")
        await wait_for(pilot, lambda: "connected" in bar.text, timeout=20, what="the call bar connected")
        assert await call.wait_for(CallState.CONNECTED, timeout=15) is CallState.CONNECTED
        assert bob_name in bar.text and "mic on" in bar.text
        await wait_for(pilot, lambda: bar.has_focus, what="the call bar focused")

        await pilot.press("m")
        await wait_for(pilot, lambda: "muted" in bar.text, what="muted")
        await pilot.press("m")
        await wait_for(pilot, lambda: "mic on" in bar.text, what="unmuted")

        await pilot.press("h")
        assert await call.wait_for(CallState.ENDED, timeout=3) is CallState.ENDED
        assert call.reason == "remote_hangup"
        await wait_for(pilot, lambda: "ended (hangup)" in bar.text, what="the bar shows the end")
        assert app.calls is not None and app.calls.active is None


async def test_caller_gives_up_closes_modal_and_call_in_group_is_refused(call_live: Live, tmp_path: Path) -> None:
    async with ringing(call_live, tmp_path) as r:
        app, pilot, screen, call, bob = r.app, r.pilot, r.screen, r.call, r.bob
        await bob.calls.hang_up(call)
        await wait_for(pilot, lambda: app.screen is screen, what="the modal gone when the caller hangs up")
        bar = screen.query_one(CallBar)
        await wait_for(pilot, lambda: "ended" in bar.text, what="the bar shows the end")

        # /call in a group: an error, no call
        group = await bob.m.client.create_chat("group", "Team", [r.alice])
        await screen.load_chats().wait()
        screen.open_chat(group.id)
        await wait_for(pilot, lambda: screen.chat_id == group.id and screen.query_one("#composer").has_focus,
                       what="the group open")
        await type_text(pilot, "/call")
        await pilot.press("enter")
        await wait_for(pilot, lambda: any("/call works in a direct chat" in str(n.message)
                                          for n in app._notifications), what="the error")
        assert app.calls is not None and app.calls.active is None
