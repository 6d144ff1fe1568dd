"""Older history on scroll-up (on a fake server), and how each message state is shown."""

from datetime import UTC, datetime
from pathlib import Path

from textual.app import App, ComposeResult

from melo_protocol.client import events as ev
from melo_protocol.client.events import Message
from melo_tui.formatting import FIXED
from melo_tui.screens.chat import HISTORY_PAGE, ChatScreen
from melo_tui.widgets.conversation.message_view import MessageItem, MessageView
from tests.tui.fake_backend import FakeServer
from tests.tui.tuikit import SIZE, fake_app, login, message_texts, wait_for


async def test_older_history_loads_on_scroll_up_and_key_warnings_show(tmp_path: Path) -> None:
    me, peer = "reader", "writer"
    world = FakeServer()
    world.user(peer)
    app = fake_app(tmp_path / "home", world)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await login(pilot, me, register=True)
            group = world.create_chat(peer, "group", "long story", [me])
            total = HISTORY_PAGE + 15
            for i in range(total):
                world.send(peer, group.id, f"line {i}")
            screen = app.screen
            assert isinstance(screen, ChatScreen)
            await wait_for(
                pilot,
                lambda: group.id in screen.query_one("#chat-list").entries,  # type: ignore[attr-defined]
                what="the group",
            )
            screen.open_chat(group.id)
            view = screen.query_one(MessageView)
            await wait_for(pilot, lambda: len(view.query(MessageItem)) == HISTORY_PAGE, what="the first page")
            assert message_texts(app)[-1].endswith("line 64  unverified") or "line 64" in message_texts(app)[-1]
            await wait_for(pilot, lambda: screen.query_one("#composer").has_focus, what="composer focused")
            await wait_for(
                pilot,
                lambda: view.max_scroll_y > 0 and view.scroll_y == view.max_scroll_y,
                what="the newest message at the bottom",
            )
            view.focus()
            await pilot.press("home")  # to the top of what is loaded: older history follows
            await wait_for(pilot, lambda: len(view.query(MessageItem)) == total, what="older history")
            texts = message_texts(app)
            assert [t.rsplit("line ", 1)[1].split()[0] for t in texts] == [str(i) for i in range(total)]
            await pilot.press("home", "k")
            await wait_for(pilot, lambda: view.history_complete, what="history complete")

            # a key change is shown loudly in the conversation and as a notification
            await app.dispatch_event(ev.KeyWarning(user=peer, device_id="NEWDEVICE", reason="identity_changed"))
            await pilot.pause()
            notices = [getattr(w.render(), "plain", "") for w in view.query(".notice")]
            assert any(f"{peer}'s security key changed" in n for n in notices)
            assert any("security key changed" in str(n.message) for n in app._notifications)
    finally:
        await app.backend.close()


class ViewApp(App[None]):
    def compose(self) -> ComposeResult:
        yield MessageView("me", FIXED, id="messages")


def msg(i: int, **kw: object) -> Message:
    base = {
        "id": i,
        "chat_id": 1,
        "seq": i,
        "sender": "bob",
        "sender_device": "D",
        "text": f"text {i}",
        "status": "ok",
        "created_at": datetime(2024, 1, 1, 12, 0, tzinfo=UTC),
    }
    base.update(kw)
    return Message(**base)  # type: ignore[arg-type]


async def test_message_states_are_shown() -> None:
    app = ViewApp()
    async with app.run_test(size=SIZE) as pilot:
        view = app.query_one(MessageView)
        await view.show_chat(
            1,
            [
                msg(1, text="original"),
                msg(2, status="waiting_for_key", text=None),
                msg(3, status="undecryptable", text=None),
                msg(4, status="deleted", text=None),
                msg(5, text="answer", reply_to=1, sender="me", edited_at=datetime(2024, 1, 1, tzinfo=UTC)),
                msg(6, text="waves", kind="emote"),
                msg(7, text="pinned one", pinned=True, reactions={"👍": ["a", "b"]}),
            ],
            complete=True,
        )
        await pilot.pause()
        texts = [i.rendered.plain for i in view.query(MessageItem)]
        assert "waiting for the key" in texts[1]
        assert "could not be decrypted" in texts[2]
        assert "message deleted" in texts[3]
        assert "↳ bob: original" in texts[4] and "answer (edited)" in texts[4]
        assert "* bob waves" in texts[5]
        assert "📌" in texts[6] and "👍 2" in texts[6]
        assert texts[0].startswith("bob  12:00") and not texts[1].startswith("bob")  # grouped by sender
        # the key arrives: the placeholder becomes the text
        view.replace_message(msg(2, text="now readable"))
        assert "now readable" in view.items[2].rendered.plain
        view.mark_deleted(7)
        assert "message deleted" in view.items[7].rendered.plain and "👍" not in view.items[7].rendered.plain


async def test_mentions_are_highlighted_and_j_k_move_in_the_chat_list() -> None:
    from textual.widgets import ListView

    from melo_protocol.wire.chats import ChatOut
    from melo_tui.widgets.chats.chat_list import ChatList

    app = ViewApp()
    async with app.run_test(size=SIZE) as pilot:
        view = app.query_one(MessageView)
        await view.show_chat(
            1, [msg(1, text="hey @me look"), msg(2, text="[@me] is not a mention of @mex")], complete=True
        )
        first, second = (view.items[1].rendered, view.items[2].rendered)
        assert any(span.style == "bold reverse yellow" for span in first.spans)
        assert "[@me]" in second.plain  # literal, never markup

    class ListApp(App[None]):
        def compose(self) -> ComposeResult:
            yield ChatList()

    now = datetime(2024, 1, 1, tzinfo=UTC)
    chats = [
        ChatOut(id=i, kind="group", title=f"g{i}", e2e=True, created_at=now, member_count=2, last_seq=0)
        for i in (1, 2, 3)
    ]
    list_app = ListApp()
    async with list_app.run_test(size=SIZE) as pilot:
        chat_list = list_app.query_one(ChatList)
        await chat_list.set_chats(chats, {})
        await pilot.press("j", "k")  # typed into the filter: letters, not moves
        assert chat_list.query_one("#chat-filter").value == "jk"  # type: ignore[attr-defined]
        chat_list.query_one("#chat-filter").value = ""  # type: ignore[attr-defined]
        await pilot.pause()
        chat_list.query_one(ListView).focus()
        await pilot.press("j", "j")
        assert chat_list.selected_chat_id() == 3
        await pilot.press("k")
        assert chat_list.selected_chat_id() == 2
