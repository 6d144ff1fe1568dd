"""Chat features of the TUI against a live server: joining by invite at registration, delivered and read
ticks, the pinned banner, /timer, /schedule, notifications (bell, mentions, desktop) and profile switching."""

import asyncio
from pathlib import Path

import pytest
from textual.pilot import Pilot

from melo_protocol.client import CredentialStore, MeloClient
from melo_protocol.client import events as ev
from melo_protocol.client.errors import SessionRevoked
from melo_tui.app import MeloApp
from melo_tui.backend import Backend
from melo_tui.media import quiet_media
from melo_tui.screens.chat import ChatScreen
from melo_tui.screens.login import LoginScreen
from melo_tui.widgets.chats.chat_list import ChatList
from melo_tui.widgets.conversation.composer import Composer
from melo_tui.widgets.conversation.message_view import MessageItem, MessageView
from melo_tui.widgets.conversation.pinned_banner import PinnedBanner
from tests.kit.e2ekit import close_all, device, next_of
from tests.kit.livekit import Live
from tests.tui.fake_backend import FakeBackend, FakeServer
from tests.tui.tuikit import (
    PASSWORD,
    SIZE,
    home_backends,
    info_shown,
    login,
    message_texts,
    prompt_ready,
    type_text,
    unique,
    wait_for,
)


def own_item(app: MeloApp, text: str) -> MessageItem | None:
    screen = app.chat_screen
    assert screen is not None
    for item in screen.query_one(MessageView).query(MessageItem):
        if item.message.text == text:
            return item
    return None


def notified(app: MeloApp, needle: str) -> bool:
    return any(needle in str(n.message) for n in app._notifications)


async def send_line(pilot: Pilot[None], app: MeloApp, text: str) -> None:
    screen = app.chat_screen
    assert screen is not None
    composer = screen.query_one("#composer", Composer)
    # an opening chat gives the composer the focus once its messages are in: Enter before that opens it again
    await wait_for(pilot, lambda: composer.has_focus, what="the composer focused")
    composer.insert(text)
    await pilot.press("enter")


async def test_invite_at_registration_ticks_pins_timer_schedule_and_alerts(live: Live, tmp_path: Path) -> None:
    alice, bob_name = unique("alice"), unique("bob")
    desktop: list[tuple[str, str]] = []

    async def record(title: str, body: str) -> None:
        desktop.append((title, body))

    app = MeloApp(
        home_backends(tmp_path / "alice-home", live.server.url),
        "tui",
        call_media=quiet_media,
        desktop_notify=record,
    )
    bob = await device(live, tmp_path / "bob-home", bob_name, "bob", register=True)
    group = await bob.client.create_chat("group", "Plans")
    invite = await bob.client.create_invite(group.id)
    try:
        async with app.run_test(size=SIZE) as pilot:
            # registering with an invite code lands in the invited chat
            await wait_for(pilot, lambda: app.screen.query("#invite"), what="the login screen")
            app.screen.query_one("#invite").value = invite.code  # type: ignore[attr-defined]
            await login(pilot, alice, register=True)
            screen = app.screen
            assert isinstance(screen, ChatScreen)
            await wait_for(pilot, lambda: screen.chat_id == group.id, what="the invited chat open")
            await wait_for(pilot, lambda: screen.status == f"{alice} · connected", what="connected")
            assert {m.user.username for m in await bob.client.list_members(group.id)} == {alice, bob_name}

            # ✓ sent, ✓✓ delivered once bob's device has it, ✓✓ read (green) once he read it
            received = asyncio.create_task(next_of(bob, ev.MessageReceived, lambda e: e.chat_id == group.id))
            await send_line(pilot, app, "hello plans")
            got = (await received).message
            assert got.text == "hello plans"
            await wait_for(
                pilot,
                lambda: (i := own_item(app, "hello plans")) is not None and i.rendering.delivered,
                what="delivered tick",
            )
            item = own_item(app, "hello plans")
            assert item is not None and not item.rendering.read and "✓✓" in item.rendered.plain
            await bob.mark_read(group.id, got.seq)
            await wait_for(
                pilot, lambda: (i := own_item(app, "hello plans")) is not None and i.rendering.read, what="read tick"
            )

            # the pinned banner follows pins made elsewhere
            banner = screen.query_one(PinnedBanner)
            assert not banner.display
            await bob.pin(group.id, got.id)
            await wait_for(
                pilot,
                lambda: banner.display and f"📌 {alice}: hello plans" in banner.rendered.plain,
                what="the pinned banner",
            )
            await bob.pin(group.id, got.id, unpin=True)
            await wait_for(pilot, lambda: not banner.display, what="the banner gone after unpinning")

            # the owner sets a disappearing timer: a notice and the title; a plain member may not
            await bob.client.set_timer(group.id, 3600)
            notice = f"{bob_name} set messages to disappear 1h after sending"
            await wait_for(
                pilot, lambda: any(notice in str(n.render()) for n in screen.query(".notice")), what="the timer notice"
            )
            title = screen.query_one("#chat-title")
            await wait_for(pilot, lambda: "⏱ 1h" in str(title.render()), what="timer title")
            await send_line(pilot, app, "/timer 30m")
            await wait_for(pilot, lambda: notified(app, "/timer was refused"), what="the refusal")
            assert (await bob.client.get_chat(group.id)).message_ttl_seconds == 3600
            await send_line(pilot, app, "/timer soon")
            await wait_for(pilot, lambda: notified(app, "invalid duration"), what="the usage message")

            # /schedule: schedule, list, cancel
            await send_line(pilot, app, "/schedule +2h see you later")
            await wait_for(pilot, lambda: notified(app, "Scheduled message"), what="the scheduled notice")
            rows = await app.backend.messenger.client.list_scheduled()  # type: ignore[union-attr]
            assert [r.chat_id for r in rows] == [group.id] and rows[0].text is None  # E2E: only an envelope
            await send_line(pilot, app, "/schedule")
            await wait_for(pilot, lambda: info_shown(app), what="the scheduled list")
            listed = str(app.screen.query_one("#info-body").render())
            assert f"#{rows[0].id}" in listed and "see you later" in listed  # this device remembers the text
            await pilot.press("escape")
            await wait_for(pilot, lambda: app.screen is screen, what="back in the chat")
            await send_line(pilot, app, f"/schedule cancel {rows[0].id}")
            await wait_for(pilot, lambda: notified(app, f"Scheduled message {rows[0].id} cancelled"), what="cancel")
            assert await app.backend.messenger.client.list_scheduled() == []  # type: ignore[union-attr]
            await send_line(pilot, app, "/schedule whenever hi")
            await wait_for(pilot, lambda: notified(app, "invalid time"), what="the bad time refused")

            # a message in another chat rings and notifies the desktop, without its text; a mention too
            dm = await bob.client.create_direct(alice)
            await bob.send_text(dm.id, "psst, a secret")
            await wait_for(pilot, lambda: desktop, what="a desktop notification")
            assert desktop[0] == (f"Melo · {bob_name}", f"New message from {bob_name}")
            chats = screen.query_one(ChatList)  # the new DM's dot: the server says bob is online
            await wait_for(
                pilot,
                lambda: (e := chats.entries.get(dm.id)) is not None and e.online is True,
                what="bob's presence dot",
            )
            await bob.send_text(group.id, f"@{alice} look at this")
            await wait_for(pilot, lambda: len(desktop) == 2, what="the mention notification")
            assert desktop[1] == ("Melo · Plans", f"{bob_name} mentioned you")
            assert not any("secret" in t or "look at" in t for pair in desktop for t in pair)
            await wait_for(pilot, lambda: any("look at this" in t for t in message_texts(app)), what="the mention")
    finally:
        await app.backend.close()
        await close_all(bob)


async def test_switch_profile_between_accounts_and_to_a_new_one(tmp_path: Path) -> None:
    world = FakeServer()
    names = {"work": "wo", "personal": "pe"}
    for name in names.values():
        world.user(name)
    made: list[str] = []  # the profiles the app asked its backend factory for

    def backends(profile: str) -> Backend:
        made.append(profile)
        known = profile in names  # a new profile has no server yet: its login form offers the last one's
        return FakeBackend(
            world,
            CredentialStore(tmp_path / "home", profile),
            logged_in_as=names.get(profile),
            server_url="https://melo.example" if known else None,
        )

    app = MeloApp(backends, "work", call_media=quiet_media)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen), what="auto-login")
            await wait_for(
                pilot,
                lambda: app.screen.status == f"{names['work']} · connected",  # type: ignore[attr-defined]
                what="work connected",
            )
            app.action_switch_profile()
            await wait_for(pilot, lambda: app.screen.query("#prompt-box Input"), what="the profile prompt")
            await type_text(pilot, "personal")
            await pilot.press("enter")
            await wait_for(
                pilot,
                lambda: isinstance(app.screen, ChatScreen) and app.screen.status == f"{names['personal']} · connected",
                what="personal connected",
            )
            assert app.backend.store.profile == "personal" and app.backend.username == names["personal"]
            assert len([s for s in app.screen_stack if isinstance(s, ChatScreen)]) == 1
            app.switch_profile("fresh")
            await wait_for(pilot, lambda: isinstance(app.screen, LoginScreen), what="a new profile logs in")
            assert app.backend.store.profile == "fresh" and app.backend.messenger is None
            assert app.screen.query_one("#server").value == "https://melo.example"  # type: ignore[attr-defined]
            assert made == ["work", "personal", "fresh"]  # every backend from the injected factory
    finally:
        await app.backend.close()


async def test_admin_actions_and_new_dm_and_channel_from_the_palette(live: Live, tmp_path: Path) -> None:
    from sqlalchemy import select, update

    from server.db.models import User

    home = tmp_path / "home"
    admin_name = unique("root")
    async with MeloClient(live.server.url, store=CredentialStore(home, "admin")) as client:
        await client.register(admin_name, PASSWORD, device_name="tui")
    async with live.server.state.sessions() as db:
        await db.execute(update(User).where(User.username == admin_name).values(is_admin=True))
        await db.commit()
    victim = await device(live, tmp_path / "victim-home", unique("mal"), "v", register=True)
    troll = await live.user("troll")
    app = MeloApp(home_backends(home), "admin", call_media=quiet_media)

    async def fill(*values: str) -> None:
        await wait_for(pilot, lambda: prompt_ready(app), what="a prompt")
        for value in values:
            await type_text(pilot, value)
            await pilot.press("enter")

    try:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen), what="auto-login")
            screen = app.screen
            assert isinstance(screen, ChatScreen) and app.backend.is_admin

            # a new DM and a new channel, each opened at once
            app.action_new_dm()
            await fill(victim.username)
            await wait_for(pilot, lambda: screen.chat_id is not None, what="the DM open")
            dm = await victim.client.get_chat(screen.chat_id or 0)
            assert dm.kind == "direct" and dm.peer is not None and dm.peer.username == admin_name
            app.action_new_chat("channel")
            await fill("news", "")
            await wait_for(pilot, lambda: screen.chat_id not in (None, dm.id), what="the channel open")
            channel = await app.backend.messenger.client.get_chat(screen.chat_id or 0)  # type: ignore[union-attr]
            assert channel.kind == "channel" and channel.title == "news" and channel.role == "owner"

            # revoke a user's sessions: their live stream ends
            ended = asyncio.create_task(next_of(victim, ev.SessionEnded, timeout=20))
            app.action_admin_revoke()
            await fill(victim.username)
            await wait_for(pilot, lambda: notified(app, f"Revoked 1 session(s) of {victim.username}"), what="revoked")
            with pytest.raises(SessionRevoked):
                await ended

            # ban: the user can no longer log in
            app.action_admin_ban()
            await fill(troll.username, "spam")
            await wait_for(pilot, lambda: notified(app, f"Banned {troll.username}."), what="banned")
            async with live.server.state.sessions() as db:
                banned = (await db.scalars(select(User).where(User.username == troll.username))).one()
            assert banned.banned_at is not None

            # rotate the signing key; the audit log shows all three actions, newest first
            app.action_admin_rotate()
            await wait_for(pilot, lambda: notified(app, "Keys rotated."), what="rotated")
            app.action_admin_audit()
            await wait_for(pilot, lambda: info_shown(app), what="the audit log")
            body = str(app.screen.query_one("#info-body").render())
            assert victim.username in body and troll.username in body and admin_name in body
            assert body.index("keys.rotate") < body.index("users.ban") < body.index("sessions.revoke_all")
    finally:
        await app.backend.close()
        await close_all(victim)


async def test_notifications_never_interpret_markup(tmp_path: Path) -> None:
    """Notifications quote server errors, usernames and titles: "[/]" would be a markup error, "[b]" bold."""
    from textual.widgets._toast import Toast

    app = MeloApp(home_backends(tmp_path, "http://127.0.0.1:9"), "tui", call_media=quiet_media)
    text = "Could not load chats: [/] [b]chat[/b] [link=http://x]y[/link]"
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, LoginScreen), what="the login screen")
        app.screen.notify(text)  # a screen's notify passes markup=True unless told: the app overrides it
        await wait_for(pilot, lambda: app._notifications, what="the notification")
        [note] = list(app._notifications)
        assert note.message == text and note.markup is False and app.return_code is None
        rendered = Toast(note).render()
        assert text in getattr(rendered, "plain", str(rendered))
