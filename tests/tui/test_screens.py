"""Sessions, verify, help and the command palette (on a fake server), and the offline outbox (against a live
server: it checks the SDK's transaction ids too)."""

import asyncio
from pathlib import Path
from typing import Any

from textual.widgets import DataTable

from melo_protocol.client import events as ev
from melo_protocol.client.errors import ServerUnreachable
from melo_tui.screens.chat import ChatScreen
from melo_tui.screens.help import HelpScreen
from melo_tui.screens.sessions import SessionsScreen
from melo_tui.screens.verify import VerifyScreen
from melo_tui.widgets.conversation.message_view import PendingItem
from tests.kit.e2ekit import close_all, device, next_of
from tests.kit.livekit import Live
from tests.tui.fake_backend import FakeMessenger, FakeServer
from tests.tui.tuikit import (
    SIZE,
    fake_app,
    info_shown,
    login,
    make_app,
    message_texts,
    prompt_ready,
    screen_shows,
    type_text,
    unique,
    wait_for,
)


async def test_sessions_screen_lists_and_revokes(tmp_path: Path) -> None:
    world = FakeServer()
    app = fake_app(tmp_path / "home", world)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await login(pilot, erin := "erin", register=True)
            for i in range(2):  # two more sessions of erin elsewhere
                world.add_session(erin, f"laptop{i}")
            await pilot.press("ctrl+s")
            screen = app.screen
            assert isinstance(screen, SessionsScreen)
            await wait_for(pilot, lambda: len(screen.sessions) == 3, what="three sessions")
            assert screen.sessions[0].current
            table = screen.query_one(DataTable)
            assert "this device" in str(table.get_row_at(0)[0])
            await pilot.press("down", "r")  # revoke the first other session
            await wait_for(pilot, lambda: len(screen.sessions) == 2, what="one revoked")
            await pilot.press("o")  # revoke all others
            await wait_for(
                pilot, lambda: len(screen.sessions) == 1 and screen.sessions[0].current, what="only this session left"
            )
            sessions = await app.backend.messenger.client.list_sessions()  # type: ignore[union-attr]
            assert len(sessions) == 1
            await pilot.press("escape")
            assert isinstance(app.screen, ChatScreen)
    finally:
        await app.backend.close()


async def test_verify_help_and_palette(tmp_path: Path) -> None:
    world = FakeServer()
    app = fake_app(tmp_path / "home", world)
    alice, bob_name = "alice", "bob"
    world.user(bob_name)
    bob = FakeMessenger(world, bob_name)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await login(pilot, alice, register=True)
            screen = app.screen
            assert isinstance(screen, ChatScreen)
            dm = await bob.client.create_direct(alice)
            await wait_for(
                pilot,
                lambda: dm.id in screen.query_one("#chat-list").entries,  # type: ignore[attr-defined]
                what="DM listed",
            )
            await pilot.press("enter")
            await wait_for(
                pilot,
                lambda: screen.chat_id == dm.id and screen.query_one("#composer").has_focus,
                what="DM open, the composer focused",
            )  # keys typed before would not reach it

            # /verify with no name verifies the DM peer: digits match what bob sees
            await type_text(pilot, "/verify")
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, VerifyScreen), what="verify screen")
            verify = app.screen
            assert isinstance(verify, VerifyScreen)
            digits, qr = await bob.safety_number(alice)
            assert verify.digits == digits and verify.qr == qr
            shown = verify.query_one("#safety-digits").render()
            assert getattr(shown, "plain", str(shown)) == digits
            await pilot.press("escape")

            # help on F1, and on ? outside text inputs
            await pilot.press("f1")
            assert isinstance(app.screen, HelpScreen)
            text = app.screen.query_one("#help-text").render()
            assert "/react" in getattr(text, "plain", str(text))
            await pilot.press("escape")
            screen.query_one("#messages").focus()
            await pilot.press("question_mark")
            assert isinstance(app.screen, HelpScreen)
            await pilot.press("escape")

            # palette: join by code
            group = await bob.client.create_chat("group", "book club")
            invite = await bob.client.create_invite(group.id)
            await pilot.press("ctrl+p")
            await type_text(pilot, "join by code")
            await wait_for(pilot, lambda: app.screen.query("CommandList Option") or True)
            await pilot.press("enter")
            await wait_for(pilot, lambda: prompt_ready(app), what="join prompt")
            await type_text(pilot, invite.code)
            await pilot.press("enter")
            await wait_for(pilot, lambda: screen.chat_id == group.id, what="joined group opened")
            members = [m.user.username for m in await bob.client.list_members(group.id)]
            assert alice in members

            # palette: a new group (with bob), then its invite code
            await pilot.press("ctrl+p")
            await type_text(pilot, "new group")
            await pilot.pause(0.3)
            await pilot.press("enter")
            await wait_for(pilot, lambda: prompt_ready(app), what="group prompt")
            await type_text(pilot, "tea")
            await pilot.press("enter")
            await type_text(pilot, bob_name)
            await pilot.press("enter")
            await wait_for(pilot, lambda: screen.chat_id not in (None, dm.id, group.id), what="new group opened")
            assert screen.chat_id is not None
            new_group = await bob.client.get_chat(screen.chat_id)
            assert new_group.title == "tea" and new_group.kind == "group"
            await pilot.press("ctrl+p")
            await type_text(pilot, "invite to this chat")
            await pilot.pause(0.3)
            await pilot.press("enter")
            await wait_for(pilot, lambda: info_shown(app), what="invite code")
            code = str(getattr(app.screen.query_one("#info-body").render(), "plain", ""))
            invites = await app.backend.messenger.client.list_invites(new_group.id)  # type: ignore[union-attr]
            assert [i.code for i in invites] == [code]
            await pilot.press("escape")

            # admin actions only for admins; a refused one is a notification
            titles = [a[0] for a in _palette_actions(app)]
            assert "Admin: audit log" not in titles
            app.backend.is_admin = True
            titles = [a[0] for a in _palette_actions(app)]
            assert {"Admin: ban user", "Admin: revoke user sessions", "Admin: rotate keys", "Admin: audit log"} <= set(
                titles
            )
            app.action_admin_audit()
            await wait_for(
                pilot,
                lambda: any("Audit log was refused" in str(n.message) for n in app._notifications),
                what="refusal notified",
            )
            assert app.return_code is None
    finally:
        await app.backend.close()


def _palette_actions(app: Any) -> list[Any]:
    from melo_tui.palette import PaletteCommands

    return PaletteCommands(app.screen)._actions()


async def test_offline_send_is_retried_without_duplicates(live: Live, tmp_path: Path) -> None:
    app = make_app(tmp_path / "home", live.server.url)
    alice, bob_name = unique("alice"), unique("bob")
    bob = await device(live, tmp_path / "bob-home", bob_name, "bob", register=True)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await login(pilot, alice, register=True)
            screen = app.screen
            assert isinstance(screen, ChatScreen)
            dm = await bob.client.create_direct(alice)
            await wait_for(
                pilot,
                lambda: dm.id in screen.query_one("#chat-list").entries,  # type: ignore[attr-defined]
                what="DM listed",
            )
            await pilot.press("enter")
            await wait_for(
                pilot,
                lambda: screen.chat_id == dm.id and screen.query_one("#composer").has_focus,
                what="DM open, the composer focused",
            )  # keys typed before would not reach it

            client = app.backend.messenger.client  # type: ignore[union-attr]
            real_send = client.send_raw
            calls: list[str] = []

            async def flaky_send(chat_id: int, txn_id: str, **kwargs: Any) -> Any:
                calls.append(txn_id)
                if len(calls) == 1:
                    raise ServerUnreachable("offline")  # never reached the server
                if len(calls) == 2:
                    await real_send(chat_id, txn_id, **kwargs)
                    raise ServerUnreachable("connection lost")  # reached it, the answer was lost
                return await real_send(chat_id, txn_id, **kwargs)

            client.send_raw = flaky_send
            received = asyncio.create_task(next_of(bob, ev.MessageReceived, lambda e: e.chat_id == dm.id))
            await type_text(pilot, "sent while offline")
            await pilot.press("enter")
            await wait_for(pilot, lambda: screen.query(PendingItem), what="pending marker")
            assert any("Offline" in str(n.message) for n in app._notifications)
            await wait_for(pilot, lambda: len(calls) >= 3 and not screen.outbox, timeout=20, what="retried")
            assert len(set(calls)) == 1  # one transaction id for every attempt
            assert (await received).message.text == "sent while offline"
            await wait_for(pilot, lambda: screen_shows(app, "sent while offline"), what="shown as sent")
            assert not screen.query(PendingItem)
            history = await bob.history(dm.id)
            assert [m.text for m in history].count("sent while offline") == 1
            assert sum("sent while offline" in t for t in message_texts(app)) == 1
    finally:
        await app.backend.close()
        await close_all(bob)
