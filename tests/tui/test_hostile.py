"""Hostile content: markup, ANSI, control characters, bidi overrides, huge texts render literally and safely."""

import random
import unicodedata
from datetime import UTC, datetime
from pathlib import Path

from textual.app import App, ComposeResult

from melo_protocol.client.events import Message
from melo_tui.formatting import FIXED, Formatting
from melo_tui.sanitize import MAX_CHARS, clean, clean_body
from melo_tui.widgets.conversation.message_view import MessageItem, MessageView
from tests.tui.fake_backend import FakeServer
from tests.tui.tuikit import SIZE, fake_app, login, message_texts, wait_for

PIECES = [
    "[bold]x[/]",
    "[link=https://evil.example]click me[/link]",
    "[red on blue]alarm[/]",
    "[/]",
    "[",
    "]",
    "[@click=app.quit]quit[/]",
    "\x1b[31mred\x1b[0m",
    "\x1b]8;;https://evil.example\x07link\x1b]8;;\x07",
    "\x1b[2J\x1b[H",
    "\x1b]0;title\x07",
    "\x07",
    "\x08\x08",
    "\r",
    "\x00",
    "\x7f",
    "\x9b31m",
    "\x85",
    "\u202e",
    "\u202d",
    "\u2066",
    "\u2069",
    "\u200b",
    "\u200d",
    "\u200e",
    "\u061c",
    "\ufeff",
    "\u2028",
    "e\u0301",
    "👍🏽",
    "مرحبا",
    "שלום",
    "\t",
    "\n",
    "plain words",
    "{x}",
    "$(rm -rf /)",
    "%s%n",
    "<script>",
    "**bold**",
    "\\",
]
BIDI_AND_INVISIBLE = {
    0x202A,
    0x202B,
    0x202C,
    0x202D,
    0x202E,
    0x2066,
    0x2067,
    0x2068,
    0x2069,
    0x200B,
    0x200C,
    0x200D,
    0x200E,
    0x200F,
    0x061C,
    0xFEFF,
    0x2028,
    0x2029,
}


def hostile_strings(n: int = 200, seed: int = 6) -> list[str]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        if i % 25 == 0:
            out.append(rng.choice(PIECES) * rng.randint(2_000, 20_000))  # very long
        elif i % 25 == 1:
            out.append("\n".join(rng.choice(PIECES) for _ in range(500)))  # very many lines
        else:
            out.append("".join(rng.choice(PIECES) for _ in range(rng.randint(1, 12))))
    return out


def message(i: int, text: str, sender: str = "mallory") -> Message:
    return Message(
        id=i + 1,
        chat_id=1,
        seq=i + 1,
        sender=sender,
        sender_device="D",
        text=text,
        status="ok",
        created_at=datetime(2024, 1, 1, 12, 0, tzinfo=UTC),
        reactions={"[bold]🔥[/]": ["x"]},
    )


class ViewApp(App[None]):
    def __init__(self, formatting: Formatting = FIXED) -> None:
        super().__init__()
        self.formatting = formatting

    def compose(self) -> ComposeResult:
        yield MessageView("me", self.formatting, id="messages")


def assert_safe(plain: str) -> None:
    for ch in plain:
        code = ord(ch)
        assert ch == "\n" or not (code < 0x20 or 0x7F <= code <= 0x9F), f"control {code:#x} on screen"
        assert code not in BIDI_AND_INVISIBLE, f"invisible/bidi {code:#x} on screen"
        assert unicodedata.category(ch) != "Cs"


async def test_200_hostile_strings_render_literally_without_crash() -> None:
    strings = hostile_strings(199)
    strings.append("lone surrogate \ud800 here")  # a broken sender could deliver one
    app = ViewApp()
    async with app.run_test(size=SIZE) as pilot:
        view = app.query_one(MessageView)
        await view.show_chat(1, [message(i, s) for i, s in enumerate(strings)], complete=True)
        await pilot.pause()
        items = list(view.query(MessageItem))
        assert len(items) == len(strings)
        for item, original in zip(items, strings, strict=True):
            plain = item.rendered.plain
            shown = item.render()
            # what Textual draws is exactly our Text: nothing was parsed as markup
            assert getattr(shown, "plain", str(shown)) == plain
            assert clean_body(original)[0] in plain
            assert_safe(plain)
            kept = original[: len(original) - clean_body(original)[1]]  # the part not cut for length
            for piece in ("[bold]x[/]", "[link=https://evil.example]click me[/link]", "[@click=app.quit]quit[/]"):
                if piece in kept:
                    assert piece in plain
            if "\x1b[31m" in kept:
                assert "⟨U+001B⟩[31m" in plain
            if "\u202e" in kept:
                assert "⟨U+202E⟩" in plain
            assert "[bold]🔥[/] 1" in plain  # reactions are user text too
        assert "U+" in app.export_screenshot()  # a full paint of the screen does not raise, markers drawn
        assert app.return_code is None


async def test_one_megabyte_message_is_cut_with_an_indicator() -> None:
    huge = ("[b]A\x1b[31m" * 200_000)[:1_048_576]
    app = ViewApp()
    async with app.run_test(size=SIZE) as pilot:
        view = app.query_one(MessageView)
        await view.show_chat(1, [message(0, huge)], complete=True)
        await pilot.pause()
        plain = view.query_one(MessageItem).rendered.plain
        assert len(plain) < MAX_CHARS * 12
        assert f"… {1_048_576 - MAX_CHARS:,} more characters not shown" in plain
        assert_safe(plain)


def test_sanitize_markers() -> None:
    assert clean("a\u202eb\u200bc\x1b[0m") == "a⟨U+202E⟩b⟨U+200B⟩c⟨U+001B⟩[0m"
    assert clean("[bold]x[/]") == "[bold]x[/]"
    assert clean("tab\there") == "tab    here"


async def test_hostile_messages_from_a_peer_appear_literally(tmp_path: Path) -> None:
    """Through the app's whole path (live events, chat list, title, history) on a fake server; what the wire
    and E2E do to such strings is the SDK's tests' business."""
    strings = [s[:4000] for s in hostile_strings(30, seed=7)]
    world = FakeServer()
    world.user("mallory")
    app = fake_app(tmp_path / "home", world)
    victim = "victim"
    try:
        async with app.run_test(size=SIZE) as pilot:
            await login(pilot, victim, register=True)
            chat = world.create_chat("mallory", "group", "[blink]evil\x1b[5m title\u202e", [victim])
            for s in strings:
                world.send("mallory", chat.id, s)
            screen = app.screen
            chats = screen.query_one("#chat-list")
            await wait_for(pilot, lambda: chat.id in chats.entries, what="the group")  # type: ignore[attr-defined]
            screen.open_chat(chat.id)  # type: ignore[attr-defined]
            await wait_for(pilot, lambda: len(message_texts(app)) == len(strings), what="all messages")
            texts = message_texts(app)
            for s, plain in zip(strings, texts, strict=True):
                assert clean_body(s)[0] in plain
                assert_safe(plain)
            title = screen.query_one("#chat-title").render()
            assert "[blink]evil⟨U+001B⟩[5m title⟨U+202E⟩" in getattr(title, "plain", str(title))
    finally:
        await app.backend.close()


async def test_scrolling_through_a_long_history_keeps_a_bounded_ordered_window() -> None:
    from datetime import timedelta

    from melo_tui.widgets.conversation.message_view import MAX_MOUNTED

    base = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
    n = 750
    messages = [
        Message(
            id=i,
            chat_id=1,
            seq=i,
            sender="a" if i % 7 else "b",
            sender_device="D",
            text=f"m{i}",
            status="ok",
            created_at=base + timedelta(hours=i),
        )
        for i in range(1, n + 1)
    ]
    app = ViewApp(Formatting(day_key=lambda dt: dt.date().isoformat(), day=lambda dt: dt.date().isoformat()))

    def check_window() -> list[int]:
        seqs = [i.message.seq for i in view.query(MessageItem)]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # contiguous, in order
        assert len(seqs) <= MAX_MOUNTED
        days = [c for c in view.children if "day" in c.classes and c.id != "beginning"]
        shown_days = {view.messages[s - 1].created_at.date() for s in seqs}
        assert len(days) == len(shown_days)  # one separator per day shown
        return seqs

    async with app.run_test(size=SIZE) as pilot:
        view = app.query_one(MessageView)
        await view.show_chat(1, messages, complete=True)
        assert check_window()[-1] == n
        while view.shown_from > 0:
            await view.load_older()
            await pilot.pause()
            check_window()
        assert check_window()[0] == 1
        assert "beginning of the conversation" in str(view.children[0].render())
        while view.shown_to < n:
            await view.load_newer()
            await pilot.pause()
            check_window()
        assert check_window()[-1] == n
        # far up in the history, a new message waits; one's own message jumps to the newest
        while view.shown_from > 0:
            await view.load_older()
        await pilot.pause()
        await view.add(
            Message(
                id=n + 1,
                chat_id=1,
                seq=n + 1,
                sender="b",
                sender_device="D",
                text="new",
                status="ok",
                created_at=base + timedelta(hours=n + 1),
            )
        )
        await pilot.pause()
        assert check_window()[0] == 1 and n + 1 not in view.items
        await view.add(
            Message(
                id=n + 2,
                chat_id=1,
                seq=n + 2,
                sender="me",
                sender_device="D",
                text="mine",
                status="ok",
                created_at=base + timedelta(hours=n + 2),
            )
        )
        await pilot.pause()
        assert check_window()[-2:] == [n + 1, n + 2]
