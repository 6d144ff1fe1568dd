"""`ui_work`: a worker whose widgets are pruned while it waits on the network ends quietly; a missing
widget anywhere else is still an error.

The race comes from CI: the app shut down while `ChatScreen.load_pins` awaited the server, the banner was
already gone when the answer came, and the failed worker failed the test. Here the worker's "network" is
an event that the widget sets as it unmounts, so the answer always lands in that window.
"""

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from textual import work
from textual.app import App, ComposeResult
from textual.screen import Screen
from textual.widgets import Static
from textual.worker import WorkerFailed

from melo_tui.screens.login import LoginScreen
from melo_tui.workers import ui_work


class Banner(Static):
    def __init__(self, unmounted: asyncio.Event) -> None:
        super().__init__("pinned", id="banner")
        self.unmounted = unmounted

    def on_unmount(self) -> None:
        self.unmounted.set()


def screen_with(decorator: Callable[..., Any]) -> type[Screen[None]]:
    class Loading(Screen[None]):
        def __init__(self) -> None:
            super().__init__()
            self.answer = asyncio.Event()
            self.shown: list[str] = []

        def compose(self) -> ComposeResult:
            yield Banner(self.answer)

        @decorator(exclusive=True, group="pins")
        async def load(self) -> None:
            await self.answer.wait()  # the server answers only once the banner is on its way out
            self.shown.append(str(self.query_one("#banner", Banner).content))

    return Loading


class Host(App[None]):
    def __init__(self, screen: Screen[None]) -> None:
        super().__init__()
        self.loading = screen

    def on_mount(self) -> None:
        self.push_screen(self.loading)
        self.loading.load()


async def shut_down_while_loading(decorator: Callable[..., Any]) -> Screen[None]:
    screen = screen_with(decorator)()
    app = Host(screen)
    async with app.run_test() as pilot:
        await pilot.pause()
        assert app.screen is screen and not screen.answer.is_set()
    return screen


async def test_a_worker_whose_screen_closes_under_it_ends_quietly() -> None:
    screen = await shut_down_while_loading(ui_work)
    assert screen.answer.is_set() and screen.shown == []  # it woke up, found nothing, and stopped


async def test_plain_textual_work_fails_the_app_in_the_same_window() -> None:
    """The control: without the guard the same sequence is the CI failure."""
    with pytest.raises(WorkerFailed, match="No nodes match"):
        await shut_down_while_loading(work)


async def test_a_missing_widget_on_a_live_screen_is_still_an_error() -> None:
    screen = screen_with(ui_work)()
    app = Host(screen)
    with pytest.raises(WorkerFailed, match="No nodes match"):
        async with app.run_test() as pilot:
            await pilot.pause()
            await screen.query_one(Banner).remove()  # sets the answer; the screen itself stays
            await pilot.pause()


class ExitsAtOnce(App[None]):
    """Pushes the login screen and exits in the same breath: the screen's Mount comes after its fields
    were pruned (what a quick profile switch then quit, or a test ending there, does)."""

    def on_mount(self) -> None:
        self.push_screen(LoginScreen("http://127.0.0.1:1"))
        self.exit()


async def test_a_screen_mounted_as_the_app_exits_does_not_crash_it() -> None:
    for _ in range(3):
        app = ExitsAtOnce()
        async with app.run_test():
            pass
        assert app.return_code in (0, None)
