"""The member panel (F2) and the chat info screen (F3), under Pilot.

The TUI user is alice. In the first test the other members are SDK clients of a live server: presence
comes from the peer's SDK stream connecting and closing, and every management action is checked against
the server through the SDK. The others run on a fake server, whose rules (who may manage) are the real
server's.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textual.command import CommandList

from melo_protocol.client import CredentialStore, MeloClient
from melo_protocol.client.messenger import Messenger
from melo_protocol.wire.chats import ChatOut
from melo_tui.app import MeloApp
from melo_tui.screens.chat import ChatScreen
from melo_tui.screens.chat_info import ChatInfoScreen
from melo_tui.widgets.chats.chat_list import ChatList
from melo_tui.widgets.members import MemberPanel
from tests.kit.e2ekit import PASSWORD
from tests.kit.livekit import Live
from tests.tui.fake_backend import FakeClient, FakeServer
from tests.tui.tuikit import SIZE, fake_app, login, make_app, prompt_ready, type_text, unique, wait_for


async def _registered(live: Live, home: Path, username: str) -> MeloClient:
    """A user with no live stream yet (so not online)."""
    client = MeloClient(live.server.url, store=CredentialStore(home, "peer"))
    await client.register(username, PASSWORD, device_name="peer")
    return client


async def _open_chat(pilot: Any, screen: ChatScreen, chat_id: int, filter_text: str) -> None:
    chats = screen.query_one(ChatList)
    await wait_for(pilot, lambda: chat_id in chats.entries, what="the chat in the list")
    screen.query_one("#chat-filter").focus()
    await type_text(pilot, filter_text)
    await pilot.press("enter")
    await wait_for(pilot, lambda: screen.chat_id == chat_id, what="the chat open")


def _info_text(app: MeloApp) -> str:
    screen = app.screen
    if not isinstance(screen, ChatInfoScreen):
        return ""
    shown = screen.query_one("#chat-info-body").render()
    return str(getattr(shown, "plain", shown))


def _palette_top(app: MeloApp) -> str:
    """The highlighted entry of the open command palette ("" when there is none)."""
    lists = app.screen.query(CommandList)
    if not lists or lists.first().highlighted != 0:
        return ""
    prompt = lists.first().get_option_at_index(0).prompt
    return str(getattr(prompt, "plain", prompt))


def _notified(app: MeloApp, needle: str) -> bool:
    return any(needle in str(n.message) for n in app._notifications)


async def _answer_prompt(pilot: Any, *answers: str) -> None:
    app = pilot.app
    await wait_for(pilot, lambda: prompt_ready(app), what="the prompt")
    for answer in answers:
        await type_text(pilot, answer)
        await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(app.screen, ChatInfoScreen), what="back on chat info")


async def test_member_panel_shows_roles_and_live_presence_and_owner_manages_the_chat(
    live: Live, tmp_path: Path
) -> None:
    alice, bob_name, carol_name = unique("alice"), unique("bob"), unique("carol")
    app = make_app(tmp_path / "alice-home", live.server.url)
    bob_client = await _registered(live, tmp_path / "bob-home", bob_name)
    carol_client = await _registered(live, tmp_path / "carol-home", carol_name)
    bob: Messenger | None = None
    try:
        async with app.run_test(size=SIZE) as pilot:
            await login(pilot, alice, register=True)
            screen = app.screen
            assert isinstance(screen, ChatScreen)
            await wait_for(pilot, lambda: screen.status == f"{alice} · connected", what="connected")
            group = await app.backend.messenger.client.create_chat(  # type: ignore[union-attr]
                "group", "book club", [bob_name, carol_name]
            )
            await _open_chat(pilot, screen, group.id, "book")

            # F2 shows the panel: owner first, then members by name; the server says who is online now
            panel = screen.query_one(MemberPanel)
            assert not panel.is_open
            await pilot.press("f2")
            assert panel.is_open and panel.display
            await wait_for(pilot, lambda: panel.chat_id == group.id and len(panel.members) == 3, what="members")
            assert panel.lines() == [f"● {alice} (you)  owner", f"○ {bob_name}  member", f"○ {carol_name}  member"]

            # bob's SDK stream connects → online; closes → offline
            bob = Messenger.open(bob_client, CredentialStore(tmp_path / "bob-home", "peer"))
            await bob.start()
            await wait_for(pilot, lambda: f"● {bob_name}  member" in panel.lines(), what="bob online")
            await bob.close()
            await wait_for(pilot, lambda: f"○ {bob_name}  member" in panel.lines(), what="bob offline")
            assert f"○ {carol_name}  member" in panel.lines()

            # F3: chat info, as the owner
            await pilot.press("f3")
            await wait_for(pilot, lambda: "Your role:" in _info_text(app), what="chat info")
            info = app.screen
            assert isinstance(info, ChatInfoScreen)
            text = _info_text(app)
            assert "book club" in text and "group · end-to-end encrypted" in text
            for label, value in (
                ("Slow mode:", "off"),
                ("Disappearing messages:", "off"),
                ("Members:", "3"),
                ("Your role:", "owner"),
            ):
                assert any(line.startswith(label) and line.endswith(value) for line in text.splitlines()), label

            # s: slow mode 30 s → the server has it
            await pilot.press("s")
            await _answer_prompt(pilot, "30")
            await wait_for(
                pilot,
                lambda: any(
                    line.startswith("Slow mode:") and line.endswith("30 s") for line in _info_text(app).splitlines()
                ),
                what="slow mode shown",
            )
            assert (await bob_client.get_chat(group.id)).slow_mode_seconds == 30

            # e: title and description → the server has them
            await pilot.press("e")
            await _answer_prompt(pilot, "tea club", "Tuesdays at five")
            await wait_for(
                pilot,
                lambda: "tea club" in _info_text(app) and "Tuesdays at five" in _info_text(app),
                what="new title shown",
            )
            chat = await bob_client.get_chat(group.id)
            assert (chat.title, chat.description) == ("tea club", "Tuesdays at five")

            # a on bob (second row): bob becomes admin on the server, in the info and in the panel
            await pilot.press("down")
            assert info.selected_member() is not None and info.selected_member().user.username == bob_name
            await pilot.press("a")
            await wait_for(
                pilot,
                lambda: any(m.user.username == bob_name and m.role == "admin" for m in info.members),
                what="bob admin in chat info",
            )
            roles = {m.user.username: m.role for m in await bob_client.list_members(group.id)}
            assert roles == {alice: "owner", bob_name: "admin", carol_name: "member"}
            await wait_for(pilot, lambda: f"○ {bob_name}  admin" in panel.lines(), what="bob admin in the panel")

            # x on carol (third row), confirmed: carol is out on the server and in the panel
            await pilot.press("down")
            assert info.selected_member().user.username == carol_name  # type: ignore[union-attr]
            await pilot.press("x")
            await _answer_prompt(pilot, "yes")
            await wait_for(
                pilot,
                lambda: [m.user.username for m in info.members] == [alice, bob_name],
                what="carol removed in chat info",
            )
            assert {m.user.username for m in await bob_client.list_members(group.id)} == {alice, bob_name}
            await wait_for(pilot, lambda: len(panel.lines()) == 2, what="carol gone from the panel")

            await pilot.press("escape")
            assert app.screen is screen
            await pilot.press("f2")
            assert not panel.is_open
    finally:
        await app.backend.close()
        if bob is not None:
            await bob.close()
        await bob_client.aclose()
        await carol_client.aclose()


@dataclass
class InBobsGroup:
    """alice in the TUI, with a chat bob (REST only) made with her open: his group (he owns it), or a DM."""

    app: MeloApp
    pilot: Any
    screen: ChatScreen
    alice: str
    bob: FakeClient
    bob_name: str
    group: ChatOut


@asynccontextmanager
async def in_bobs_group(tmp_path: Path, title: str | None) -> AsyncIterator[InBobsGroup]:
    """alice in bob's group ``title`` (None: in bob's direct chat with her), open; on a fake server."""
    alice, bob_name = "alice", "bob"
    world = FakeServer()
    world.user(bob_name)
    app = fake_app(tmp_path / "alice-home", world)
    bob = FakeClient(world, bob_name)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await login(pilot, alice, register=True)
            screen = app.screen
            assert isinstance(screen, ChatScreen)
            if title is None:
                group = await bob.create_direct(alice)
            else:
                group = await bob.create_chat("group", title, [alice])
            await _open_chat(pilot, screen, group.id, bob_name if title is None else title.split()[-1])
            yield InBobsGroup(app, pilot, screen, alice, bob, bob_name, group)
    finally:
        await app.backend.close()


async def test_chat_info_refuses_management_politely_for_non_admins(tmp_path: Path) -> None:
    async with in_bobs_group(tmp_path, "bob's club") as g:
        app, pilot, screen, alice, bob, bob_name, group = g.app, g.pilot, g.screen, g.alice, g.bob, g.bob_name, g.group

        # the palette's "Chat info" opens it too
        await pilot.press("ctrl+p")
        await type_text(pilot, "chat info")
        await wait_for(pilot, lambda: _palette_top(app).startswith("Chat info"), what="Chat info in the palette")
        await pilot.press("enter")
        await wait_for(pilot, lambda: "Your role:" in _info_text(app), what="chat info")
        info = app.screen
        assert isinstance(info, ChatInfoScreen)
        assert _info_text(app).splitlines()[-1].endswith("member")
        hints = info.query_one("#chat-info-keys").render()
        assert "Only owners and admins" in str(getattr(hints, "plain", hints))

        # a plain member: every management key is refused with a notice, no prompt, nothing sent
        await pilot.press("s")
        await wait_for(
            pilot, lambda: _notified(app, "Only owners and admins can set slow mode"), what="slow mode refused"
        )
        await pilot.press("e")
        await wait_for(pilot, lambda: _notified(app, "Only owners and admins can edit"), what="edit refused")
        await pilot.press("x")
        await wait_for(pilot, lambda: _notified(app, "Only owners and admins can remove"), what="remove refused")
        await pilot.press("a")
        await wait_for(pilot, lambda: _notified(app, "Only the owner can change roles"), what="role refused")
        await pilot.press("t")
        await wait_for(
            pilot, lambda: _notified(app, "Only owners and admins can set disappearing messages"), what="timer refused"
        )
        assert app.screen is info
        chat = await bob.get_chat(group.id)
        assert chat.slow_mode_seconds == 0 and chat.title == "bob's club" and chat.message_ttl_seconds is None

        # an admin may try to remove the owner: the server refuses (403), shown as a notification
        await bob.change_role(group.id, alice, "admin")  # the open screen follows, no F5 needed
        await wait_for(pilot, lambda: _info_text(app).splitlines()[-1].endswith("admin"), what="now admin")
        assert info.selected_member().user.username == bob_name  # type: ignore[union-attr]  # the owner
        await pilot.press("a")
        await wait_for(pilot, lambda: _notified(app, "Only the owner can change roles"), what="admin: no roles")
        await pilot.press("x")
        await _answer_prompt(pilot, "yes")
        await wait_for(pilot, lambda: _notified(app, f"Removing {bob_name} was refused"), what="403 notified")
        assert app.screen is info and app.return_code is None
        roles = {m.user.username: m.role for m in await bob.list_members(group.id)}
        assert roles == {bob_name: "owner", alice: "admin"}
        await bob.update_chat(group.id, title="bob's new club")  # renamed elsewhere: shown at once
        await wait_for(pilot, lambda: "bob's new club" in _info_text(app), what="the new title")

        # the panel follows the role change; after /leave it shows no chat
        await pilot.press("escape")
        assert app.screen is screen
        panel = screen.query_one(MemberPanel)
        await pilot.press("f2")
        await wait_for(pilot, lambda: f"● {alice} (you)  admin" in panel.lines(), what="alice admin in the panel")
        await type_text(pilot, "/leave")
        await pilot.press("enter")
        await wait_for(pilot, lambda: panel.chat_id is None and not panel.lines(), what="panel cleared")
        assert {m.user.username for m in await bob.list_members(group.id)} == {bob_name}


async def test_chat_info_follows_a_removal_from_the_chat(tmp_path: Path) -> None:
    async with in_bobs_group(tmp_path, "a short stay") as g:
        app, pilot, screen = g.app, g.pilot, g.screen
        await pilot.press("f3")
        await wait_for(pilot, lambda: "Your role:" in _info_text(app), what="chat info")
        await g.bob.remove_member(g.group.id, g.alice)
        await wait_for(pilot, lambda: app.screen is screen, what="chat info closed")
        assert _notified(app, "You are no longer a member of this chat.")


async def test_chat_info_of_a_direct_chat_sets_its_disappearing_messages(tmp_path: Path) -> None:
    """A DM has one setting, the timer, which either person sets: chat info shows it and sets it."""
    async with in_bobs_group(tmp_path, None) as g:
        app, pilot, bob, dm = g.app, g.pilot, g.bob, g.group
        await pilot.press("f3")
        await wait_for(pilot, lambda: "Your role:" in _info_text(app), what="chat info")
        info = app.screen
        assert isinstance(info, ChatInfoScreen)
        assert "direct message" in _info_text(app)
        assert any(
            line.startswith("Disappearing messages:") and line.endswith("off") for line in _info_text(app).splitlines()
        )
        hints = info.query_one("#chat-info-keys").render()
        hints_text = str(getattr(hints, "plain", hints))
        assert "t disappearing messages" in hints_text and "no settings" not in hints_text

        await pilot.press("t")
        await _answer_prompt(pilot, "1h")
        await wait_for(
            pilot,
            lambda: any(
                line.startswith("Disappearing messages:") and line.endswith("1 h")
                for line in _info_text(app).splitlines()
            ),
            what="1 h shown",
        )
        assert (await bob.get_chat(dm.id)).message_ttl_seconds == 3600
        await pilot.press("t")
        await _answer_prompt(pilot, "soon")  # not a duration: a notice, nothing sent
        await wait_for(
            pilot,
            lambda: any(n.severity == "warning" and "soon" in str(n.message) for n in app._notifications),
            what="bad duration refused",
        )
        assert (await bob.get_chat(dm.id)).message_ttl_seconds == 3600
        await pilot.press("t")
        await _answer_prompt(pilot, "off")
        await wait_for(
            pilot,
            lambda: any(
                line.startswith("Disappearing messages:") and line.endswith("off")
                for line in _info_text(app).splitlines()
            ),
            what="off shown",
        )
        assert (await bob.get_chat(dm.id)).message_ttl_seconds is None
        await pilot.press("s")  # the settings a DM does not have are refused politely
        await wait_for(
            pilot,
            lambda: _notified(app, "A direct chat has no roles, title or slow mode"),
            what="slow mode refused in a DM",
        )
