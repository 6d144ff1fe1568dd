"""Two clients in one test: the TUI under Pilot and an SDK Messenger, over a live server."""

import asyncio
from pathlib import Path

from melo_protocol.client import events as ev
from melo_tui.app import MeloApp
from melo_tui.screens.chat import ChatScreen
from melo_tui.widgets.chats.chat_list import ChatList
from melo_tui.widgets.conversation.message_view import MessageItem
from melo_tui.widgets.conversation.typing_indicator import TypingIndicator
from tests.kit.e2ekit import close_all, device, next_of
from tests.kit.livekit import Live
from tests.tui.tuikit import SIZE, login, make_app, message_texts, screen_shows, type_text, unique, wait_for


async def test_two_clients_exchange_messages_typing_reactions_edits_receipts(live: Live, tmp_path: Path) -> None:
    alice, bob_name = unique("alice"), unique("bob")
    app = make_app(tmp_path / "alice-home", live.server.url)
    bob = await device(live, tmp_path / "bob-home", bob_name, "bob", register=True)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await login(pilot, alice, register=True)
            assert isinstance(app.screen, ChatScreen)
            await wait_for(pilot, lambda: app.screen.status == f"{alice} · connected",  # type: ignore[attr-defined]
                           what="connected in the header")
            chat = await bob.client.create_direct(alice)
            screen = app.screen
            assert isinstance(screen, ChatScreen)
            chats = screen.query_one(ChatList)
            await wait_for(pilot, lambda: chat.id in chats.entries, what="the DM in the chat list")
            assert chats.entries[chat.id].title == bob_name  # a DM shows the peer

            # open it from the filter: type part of the name, Enter
            await type_text(pilot, bob_name[:4])
            await pilot.press("enter")
            await wait_for(pilot, lambda: screen.chat_id == chat.id and screen.query_one("#composer").has_focus,
                           what="the chat open")

            # alice → bob (E2E through the SDK)
            received = asyncio.create_task(next_of(bob, ev.MessageReceived, lambda e: e.chat_id == chat.id))
            await type_text(pilot, "hello bob")
            await pilot.press("enter")
            got = await received
            assert got.message.text == "hello bob" and got.message.sender == alice
            await wait_for(pilot, lambda: screen_shows(app, "hello bob"), what="own message shown")

            # bob → alice: shown with the sender, unread not counted while open
            sent = await bob.send_text(chat.id, "hi alice")
            await wait_for(pilot, lambda: screen_shows(app, "hi alice"), what="bob's message")
            assert any(t.startswith(bob_name) and "hi alice" in t for t in message_texts(app))
            assert chats.entries[chat.id].unread == 0

            # bob types → indicator; alice types → bob gets Typing
            await bob.typing(chat.id, True)
            indicator = screen.query_one(TypingIndicator)
            await wait_for(pilot, lambda: bob_name in indicator.typing, what="typing indicator")
            typing = asyncio.create_task(next_of(bob, ev.Typing, lambda e: e.user == alice))
            await type_text(pilot, "x")
            assert (await typing).typing is True
            await pilot.press("backspace")

            # bob reacts and edits → alice sees both
            own = screen.query_one("#messages").last_own()  # type: ignore[attr-defined]
            await bob.react(chat.id, own.id, "👍")
            await wait_for(pilot, lambda: any("hello bob" in t and "👍 1" in t for t in message_texts(app)),
                           what="reaction shown")
            await bob.edit_text(chat.id, sent.id, "hi alice, edited")
            await wait_for(pilot, lambda: any("hi alice, edited (edited)" in t for t in message_texts(app)),
                           what="edit shown")

            # alice reacts with a slash command → bob gets the reaction
            reacted = asyncio.create_task(next_of(bob, ev.ReactionChanged, lambda e: e.user == alice))
            screen.query_one("#composer").insert("/react 🎉")  # type: ignore[attr-defined]  # no key for emoji
            await pilot.press("enter")
            reaction = await reacted
            assert reaction.emoji == "🎉" and reaction.message_id == sent.id
            # a word is not a reaction: a clear notification, nothing sent, the app goes on
            screen.query_one("#composer").insert("/react notanemoji")  # type: ignore[attr-defined]
            await pilot.press("enter")
            await wait_for(pilot, lambda: any("/react failed: a reaction is one emoji"
                                              in str(n.message) for n in app._notifications),
                           what="the refused reaction explained")

            # Up edits alice's last message → bob gets the edit
            edited = asyncio.create_task(next_of(bob, ev.MessageEdited, lambda e: e.chat_id == chat.id))
            await pilot.press("up")
            assert screen.editing is not None and screen.editing.id == own.id
            await type_text(pilot, " again")
            await pilot.press("enter")
            assert (await edited).message.text == "hello bob again"
            await wait_for(pilot, lambda: screen_shows(app, "hello bob again (edited)"), what="own edit shown")

            # bob reads → alice's message gets the read ticks
            await bob.mark_read(chat.id, sent.seq)
            def read_ticks() -> bool:
                view = screen.query_one("#messages")
                return any(item.message.text == "hello bob again" and item.rendering.read
                           and "✓✓" in item.rendered.plain for item in view.query(MessageItem))
            await wait_for(pilot, read_ticks, what="read receipt")

            # /me, /reply and /delete
            received = asyncio.create_task(next_of(bob, ev.MessageReceived, lambda e: e.chat_id == chat.id))
            await type_text(pilot, "/reply sure")
            await pilot.press("enter")
            reply = (await received).message
            assert reply.text == "sure" and reply.reply_to == sent.id
            await wait_for(pilot, lambda: any(f"↳ {bob_name}: hi alice, edited" in t and "sure" in t
                                              for t in message_texts(app)), what="quoted reply")
            deleted = asyncio.create_task(next_of(bob, ev.MessageDeleted, lambda e: e.chat_id == chat.id))
            await type_text(pilot, "/delete")
            await pilot.press("enter")
            assert (await deleted).message_id == reply.id
            await wait_for(pilot, lambda: screen_shows(app, "message deleted"), what="tombstone")
    finally:
        await app.backend.close()
        await close_all(bob)


async def test_auto_login_from_stored_credentials(live: Live, tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = make_app(home, live.server.url)
    try:
        async with first.run_test(size=SIZE) as pilot:
            await login(pilot, carol := unique("carol"), register=True)
    finally:
        await first.backend.close()
    second: MeloApp = make_app(home, None)  # no server given: the stored profile says where
    try:
        async with second.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: isinstance(second.screen, ChatScreen), what="auto-login")
            assert second.backend.username == carol
    finally:
        await second.backend.close()


async def test_wrong_password_is_a_notification_not_a_crash(live: Live, tmp_path: Path) -> None:
    user = await live.user("dave")
    app = make_app(tmp_path / "home", live.server.url)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.screen.query("#username"), what="login screen")
        app.screen.query_one("#username").value = user.username  # type: ignore[attr-defined]
        app.screen.query_one("#password").value = "wrong password!"  # type: ignore[attr-defined]
        await pilot.click("#login")
        await wait_for(pilot, lambda: any("Login failed" in str(n.message) for n in app._notifications),
                       what="error notification")
        assert not isinstance(app.screen, ChatScreen)
        assert app.return_code is None
    await app.backend.close()
