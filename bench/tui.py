"""melo-tui: time to first paint (app start → chat screen mounted with its chats, logged in from stored
credentials against a live ``melo-server``), and time to render a 5,000-message history in the message
view; each beside a bare Textual app doing the least comparable work in the same run.
"""

import asyncio
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from textual.app import App, ComposeResult
from textual.widgets import Log, Static

from bench.common import melo_server, table
from melo_protocol.client import CredentialStore, MeloClient
from melo_protocol.client.events import Message
from melo_tui.app import MeloApp
from melo_tui.backend import Backend
from melo_tui.formatting import FIXED
from melo_tui.screens.chat import ChatScreen
from melo_tui.widgets.conversation.message_view import MessageItem, MessageView

RUNS = 5
HISTORY = 5_000
SIZE = (120, 40)
PASSWORD = "bench password 123"


class HelloApp(App[None]):
    def compose(self) -> ComposeResult:
        yield Static("hello")


class ViewApp(App[None]):
    def compose(self) -> ComposeResult:
        yield MessageView("me", FIXED, id="messages")


class LogApp(App[None]):
    def compose(self) -> ComposeResult:
        yield Log()


def history(n: int) -> list[Message]:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    return [
        Message(
            id=i,
            chat_id=1,
            seq=i,
            sender="me" if i % 3 else "bob",
            sender_device="D",
            text=f"message number {i} with some [bold]text[/] to wrap " * (1 + i % 4),
            status="ok",
            created_at=start + timedelta(minutes=i),
            reactions={"👍": ["x"]} if i % 10 == 0 else {},
        )
        for i in range(1, n + 1)
    ]


async def _until(pilot: object, cond: object) -> None:
    async with asyncio.timeout(60):
        while not cond():  # type: ignore[operator]
            await pilot.pause(0.001)  # type: ignore[attr-defined]


async def first_paint_hello() -> float:
    t0 = time.perf_counter()
    async with HelloApp().run_test(size=SIZE) as pilot:
        await pilot.pause()
        return time.perf_counter() - t0


async def first_paint_melo(home: Path, url: str) -> float:
    app = MeloApp(lambda profile: Backend(CredentialStore(home, profile)), "bench", formatting=FIXED)
    t0 = time.perf_counter()
    async with app.run_test(size=SIZE) as pilot:
        await _until(pilot, lambda: isinstance(app.screen, ChatScreen) and app.screen.query("ChatRow"))
        await pilot.pause()
        elapsed = time.perf_counter() - t0
    await app.backend.close()
    return elapsed


async def render_history(messages: list[Message], *, all_of_it: bool) -> tuple[float, int]:
    app = ViewApp()
    async with app.run_test(size=SIZE) as pilot:
        view = app.query_one(MessageView)
        t0 = time.perf_counter()
        await view.show_chat(1, messages, complete=True)
        if all_of_it:  # scroll to the top until the first message is mounted (a bounded window of them)
            while view.shown_from > 0:
                await view.load_older()
        await pilot.pause()
        return time.perf_counter() - t0, len(view.query(MessageItem))


async def render_log(messages: list[Message]) -> float:
    app = LogApp()
    async with app.run_test(size=SIZE) as pilot:
        log = app.query_one(Log)
        t0 = time.perf_counter()
        log.write_lines(f"{m.sender}: {m.text}" for m in messages)
        await pilot.pause()
        return time.perf_counter() - t0


async def _login(url: str, home: Path) -> None:
    async with MeloClient(url, store=CredentialStore(home, "bench")) as client:
        await client.register("bencher", PASSWORD, device_name="bench")
        other = MeloClient(url, store=CredentialStore(home, "peer"))
        await other.register("peer", PASSWORD)
        await other.create_direct("bencher")
        await other.aclose()


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.0f}"


async def measure() -> list[tuple[str, ...]]:
    os.environ.setdefault("MELO_KEYRING", "file")
    rows: list[tuple[str, ...]] = [
        ("measure", f"ms (median of {RUNS}; last row 1 run)", "widgets mounted", "beside it")
    ]
    messages = history(HISTORY)
    with tempfile.TemporaryDirectory(prefix="melo-bench-tui-") as tmp, melo_server(tmp + "/server") as server:
        url = f"http://127.0.0.1:{server.port}"
        home = Path(tmp) / "home"
        await _login(url, home)
        hello = [await first_paint_hello() for _ in range(RUNS)]
        melo = [await first_paint_melo(home, url) for _ in range(RUNS)]
    rows.append(("first paint: bare Textual app (one Static)", _ms(hello), "1", "peer"))
    rows.append(
        (
            "first paint: melo-tui auto-login → chat list",
            _ms(melo),
            "-",
            f"{statistics.median(melo) / statistics.median(hello):.1f}× bare",
        )
    )
    logs = [await render_log(messages) for _ in range(RUNS)]
    window = [await render_history(messages, all_of_it=False) for _ in range(RUNS)]
    full = [await render_history(messages, all_of_it=True) for _ in range(1)]
    rows.append((f"{HISTORY:,} lines into a bare Textual Log", _ms(logs), "1", "peer"))
    rows.append(
        (
            f"{HISTORY:,}-message history, newest window shown",
            _ms([w[0] for w in window]),
            str(window[0][1]),
            f"{statistics.median([w[0] for w in window]) / statistics.median(logs):.1f}× Log",
        )
    )
    rows.append(
        (
            f"{HISTORY:,}-message history, scrolled up to the first",
            _ms([f[0] for f in full]),
            str(full[0][1]),
            f"{statistics.median([f[0] for f in full]) / statistics.median(logs):.1f}× Log",
        )
    )
    return rows


def main() -> None:
    rows = asyncio.run(measure())
    table("melo-tui: first paint and history rendering (120×40, headless)", rows)


if __name__ == "__main__":
    main()
