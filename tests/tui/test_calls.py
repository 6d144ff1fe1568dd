"""Calls in the TUI: an SDK client calls the TUI user; Pilot accepts in the modal, sees the call bar
connected, hangs up, and the SDK side's call ends.

On PostgreSQL + Redis like tests/calls (on SQLite the server's to-device queue can lose later signals).
"""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from melo_protocol.client.calls import CallState, SilenceTrack
from melo_tui.screens.chat import ChatScreen
from melo_tui.screens.incoming_call import IncomingCallScreen
from melo_tui.widgets.call_bar import CallBar
from tests.calls.callkit import Party
from tests.conftest import make_settings
from tests.realtime.conftest import Live, start_live
from tests.realtime.e2ekit import device
from tests.tui.tuikit import SIZE, login, make_app, type_text, unique, wait_for


@pytest.fixture
async def call_live(databases: Any, redis_url: str, tmp_path: Path) -> AsyncIterator[Live]:
    url = await asyncio.to_thread(databases.url, "postgres")
    server = await start_live(make_settings(tmp_path, url, redis_url=redis_url))
    lv = Live(server)
    try:
        yield lv
    finally:
        await lv.close()
        await server.stop()


async def test_accept_incoming_call_and_hang_up(call_live: Live, tmp_path: Path) -> None:
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
    finally:
        await bob.close()


async def test_caller_gives_up_closes_modal_and_call_in_group_is_refused(call_live: Live, tmp_path: Path) -> None:
    alice, bob_name = unique("alice"), unique("bob")
    app = make_app(tmp_path / "alice-home", call_live.server.url)
    bob = Party(await device(call_live, tmp_path / "bob-home", bob_name, "bob", register=True))
    try:
        async with app.run_test(size=SIZE) as pilot:
            await login(pilot, alice, register=True)
            screen = app.screen
            assert isinstance(screen, ChatScreen)
            await wait_for(pilot, lambda: screen.status == f"{alice} · connected", what="connected")
            await bob.m.client.create_direct(alice)

            call = await bob.calls.start(alice, source=SilenceTrack())
            await wait_for(pilot, lambda: isinstance(app.screen, IncomingCallScreen), what="the incoming-call modal")
            await bob.calls.hang_up(call)
            await wait_for(pilot, lambda: app.screen is screen, what="the modal gone when the caller hangs up")
            bar = screen.query_one(CallBar)
            await wait_for(pilot, lambda: "ended" in bar.text, what="the bar shows the end")

            # /call in a group: an error, no call
            group = await bob.m.client.create_chat("group", "Team", [alice])
            await screen.load_chats().wait()
            screen.open_chat(group.id)
            await wait_for(pilot, lambda: screen.chat_id == group.id and screen.query_one("#composer").has_focus,
                           what="the group open")
            await type_text(pilot, "/call")
            await pilot.press("enter")
            await wait_for(pilot, lambda: any("/call works in a direct chat" in str(n.message)
                                              for n in app._notifications), what="the error")
            assert app.calls is not None and app.calls.active is None
    finally:
        await bob.close()
