"""Focus on the chat screen: the chat list has it at start and after Ctrl+O (j/k move, never type into the
filter); / and Ctrl+F go to the filter, Escape back; Tab and Shift+Tab go round the panes, and the focused
pane's border is lit."""

from pathlib import Path

from textual.widget import Widget
from textual.widgets import Input

from melo_tui.screens.chat import ChatScreen
from melo_tui.widgets.call_bar import CallBar
from melo_tui.widgets.chats.chat_list import ChatList
from melo_tui.widgets.conversation.composer import Composer
from melo_tui.widgets.conversation.message_view import MessageView
from melo_tui.widgets.members import MemberPanel
from tests.tui.fake_backend import FakeServer
from tests.tui.tuikit import SIZE, fake_app, login, wait_for


async def test_keys_reach_the_chat_list_first_and_tab_goes_round_the_panes(tmp_path: Path) -> None:
    world = FakeServer()
    world.user("bob")
    app = fake_app(tmp_path / "home", world)
    alice = "alice"
    try:
        async with app.run_test(size=SIZE) as pilot:
            await login(pilot, alice, register=True)
            screen = app.screen
            assert isinstance(screen, ChatScreen)
            for title in ("one", "two", "three"):
                world.create_chat("bob", "group", title, [alice])
            chats = screen.query_one(ChatList)
            await wait_for(pilot, lambda: len(chats.list_view.children) == 3, what="three chats listed")
            chat_filter = chats.query_one("#chat-filter", Input)
            view, composer = screen.query_one(MessageView), screen.query_one(Composer)
            members = screen.query_one(MemberPanel)

            def border(pane: Widget) -> object:
                return pane.styles.border_top

            def lit(pane: Widget) -> bool:
                """The pane's border differs from every other pane's, which all look alike."""
                others = [border(p) for p in (chats, view, composer, members) if p is not pane]
                return all(b != border(pane) for b in others) and len(set(map(str, others))) == 1

            async def j_and_k_move_in_the_list() -> None:
                await pilot.pause()
                assert app.focused is chats.list_view and lit(chats)
                first = chats.selected_chat_id()
                # down then up, unless the selection is at the bottom (it follows its chat as new ones come)
                there, back = ("j", "k") if chats.list_view.index != 2 else ("k", "j")
                await pilot.press(there)
                moved = chats.selected_chat_id()
                assert moved is not None and moved != first
                await pilot.press(back)
                assert chats.selected_chat_id() == first
                assert chat_filter.value == "" and len(chats.list_view.children) == 3

            # at start
            await j_and_k_move_in_the_list()

            # / and Ctrl+F go to the filter; Escape back to the list, which shows what the filter matched
            for key in ("slash", "ctrl+f"):
                await pilot.press(key)
                assert app.focused is chat_filter and lit(chats)
                await pilot.press("t", "w")
                await wait_for(pilot, lambda: len(chats.list_view.children) == 1, what="filtered to 'two'")
                await pilot.press("escape")
                assert app.focused is chats.list_view
                await pilot.press("j", "k")
                assert chat_filter.value == "tw"  # moves, not letters
                await pilot.press(key, "backspace", "backspace", "escape")
                await wait_for(pilot, lambda: len(chats.list_view.children) == 3, what="the filter cleared")

            # Enter opens the chat and the composer takes the focus; Tab goes round the panes
            await pilot.press("enter")
            await wait_for(pilot, lambda: screen.chat_id is not None and composer.has_focus, what="chat open")
            assert lit(composer)
            await pilot.press("tab")
            assert app.focused is chats.list_view and lit(chats)
            await pilot.press("tab")
            assert app.focused is view and lit(view)
            await pilot.press("tab")
            assert app.focused is composer
            await pilot.press("shift+tab", "shift+tab", "shift+tab")
            assert app.focused is composer  # round the other way
            await pilot.press("f2", "tab")  # the member panel joins the round while it shows
            assert app.focused is members and lit(members)
            await pilot.press("tab")
            assert app.focused is chats.list_view
            await pilot.press("shift+tab")
            assert app.focused is members
            assert not screen.query_one(CallBar).display  # no call: the call bar is not in the round

            # Ctrl+O from anywhere: the list again, where j/k move
            composer.focus()
            await pilot.press("ctrl+o")
            await j_and_k_move_in_the_list()
    finally:
        await app.backend.close()
