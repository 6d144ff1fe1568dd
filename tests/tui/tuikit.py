"""Helpers for TUI tests: an app on a temporary home (on a live server, or on a ``FakeServer``), waiting on
conditions, reading what is on screen."""

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual.pilot import Pilot

from melo_protocol.client import CredentialStore
from melo_tui.actions.base import BackendFactory
from melo_tui.app import MeloApp
from melo_tui.backend import Backend
from melo_tui.formatting import Formatting
from melo_tui.media import quiet_media
from melo_tui.screens.chat import ChatScreen
from melo_tui.widgets.conversation.message_view import MessageItem, MessageView
from tests.tui.fake_backend import FakeServer, fake_backends

PASSWORD = "correct horse battery"
SIZE = (120, 40)


def home_backends(home: Path, server_url: str | None = None) -> BackendFactory:
    """The backends of the profiles of ``home`` (as ``melo-tui`` makes them), on ``server_url``."""

    def make(profile: str) -> Backend:
        return Backend(CredentialStore(home, profile), server_url=server_url)

    return make


def make_app(home: Path, server_url: str | None, profile: str = "tui", formatting: Formatting | None = None) -> MeloApp:
    return MeloApp(
        home_backends(home, server_url), profile, formatting=formatting, call_media=quiet_media
    )  # no audio devices in tests


def fake_app(
    home: Path, world: FakeServer, profile: str = "tui", *, logged_in_as: str | None = None, **options: Any
) -> MeloApp:
    """The app on a ``FakeServer`` (no network): logged in as ``logged_in_as``, or at the login screen."""
    backends = fake_backends(world, home, {profile: logged_in_as} if logged_in_as else None)
    return MeloApp(backends, profile, call_media=quiet_media, **options)


async def wait_for(
    pilot: Pilot[None], condition: Callable[[], object], timeout: float = 15.0, what: str = "condition"
) -> None:
    """Let the app run until ``condition()`` holds; fail after ``timeout`` seconds."""
    try:
        async with asyncio.timeout(timeout):
            while not condition():
                await pilot.pause(0.02)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


def chat_screen(app: MeloApp) -> ChatScreen | None:
    return app.chat_screen


def info_shown(app: MeloApp) -> bool:
    """An InfoScreen is on top and composed (its body can be read)."""
    from melo_tui.screens.info import InfoScreen

    return isinstance(app.screen, InfoScreen) and bool(app.screen.query("#info-body"))


def prompt_ready(app: MeloApp) -> bool:
    """A PromptScreen is on top with its first field focused: typed keys reach it."""
    from textual.widgets import Input

    from melo_tui.screens.prompt import PromptScreen

    return isinstance(app.screen, PromptScreen) and isinstance(app.focused, Input) and app.focused.screen is app.screen


def message_texts(app: MeloApp) -> list[str]:
    screen = app.chat_screen
    if screen is None:
        return []
    view = screen.query_one(MessageView)
    return [item.rendered.plain for item in view.query(MessageItem)]


def screen_shows(app: MeloApp, needle: str) -> bool:
    return any(needle in t for t in message_texts(app))


async def type_text(pilot: Pilot[None], text: str) -> None:
    """Type printable text key by key (as a person does)."""
    await pilot.press(*[c if c != " " else "space" for c in text])


async def login(pilot: Pilot[None], username: str, password: str = PASSWORD, *, register: bool = False) -> None:
    app = pilot.app
    await wait_for(pilot, lambda: app.screen.query("#username"), what="the login screen")
    app.screen.query_one("#username").value = username  # type: ignore[attr-defined]
    app.screen.query_one("#password").value = password  # type: ignore[attr-defined]
    await pilot.click("#register" if register else "#login")
    await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen), what="the chat screen")


def unique(prefix: str) -> str:
    """A username nobody has yet (the live fixture's database is shared by the run)."""
    import secrets

    return f"{prefix}{secrets.token_hex(3)}"
