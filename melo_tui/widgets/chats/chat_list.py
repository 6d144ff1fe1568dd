"""The chat list: DMs by peer, groups and channels by title, unread counts, previews, filter as you type.

The list itself takes the focus (j/k move in it); the filter above it only when asked (/ or Ctrl+F on the
chat screen), and Escape or Down leaves it for the list."""

from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Input, Label, ListItem, ListView

from melo_protocol.wire.chats import ChatOut
from melo_tui.sanitize import clean_line

KIND_ICON = {"direct": "@", "group": "#", "channel": "»"}


@dataclass
class ChatEntry:
    chat: ChatOut
    title: str
    unread: int = 0
    preview: str = ""
    last_at: datetime | None = None
    online: bool | None = None


def chat_title(chat: ChatOut) -> str:
    if chat.kind == "direct" and chat.peer is not None:
        return chat.peer.username
    return chat.title or f"chat {chat.id}"


class ChatRow(ListItem):
    def __init__(self, entry: ChatEntry) -> None:
        self.entry = entry
        super().__init__(Label(self.render_entry(entry), markup=False), id=f"chat-{entry.chat.id}")

    @staticmethod
    def render_entry(entry: ChatEntry) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
        if entry.online is not None:
            text.append("● " if entry.online else "○ ", style="green" if entry.online else "dim")
        text.append(KIND_ICON.get(entry.chat.kind, "?") + " ", style="dim")
        text.append(clean_line(entry.title, 40), style="bold" if entry.unread else "")
        if entry.unread:
            text.append(f" ({entry.unread})", style="bold yellow")
        text.append("\n  " + clean_line(entry.preview or " ", 60), style="dim")
        return text


class ChatList(Vertical):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("j", "move(1)", "Next chat", show=False, id="chats.next"),
        Binding("k", "move(-1)", "Previous chat", show=False, id="chats.previous"),
    ]

    class Opened(Message):
        def __init__(self, chat_id: int) -> None:
            super().__init__()
            self.chat_id = chat_id

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.entries: dict[int, ChatEntry] = {}

    def compose(self) -> ComposeResult:
        yield Input(placeholder="filter chats…", id="chat-filter")
        yield ListView(id="chats")

    @property
    def list_view(self) -> ListView:
        return self.query_one("#chats", ListView)

    def shown_entries(self) -> list[ChatEntry]:
        needle = self.query_one("#chat-filter", Input).value.strip().lower()
        entries = [e for e in self.entries.values() if needle in e.title.lower()]
        return sorted(entries, key=lambda e: (e.last_at is None, -(e.last_at.timestamp() if e.last_at else 0),
                                              e.chat.id))

    async def set_chats(self, chats: list[ChatOut], previews: dict[int, str]) -> None:
        self.entries = {}
        for c in chats:
            last = c.last_message
            self.entries[c.id] = ChatEntry(c, chat_title(c), c.unread_count, previews.get(c.id, ""),
                                           last.created_at if last else c.created_at,
                                           c.peer.online if c.peer is not None else None)
        await self.redraw()

    async def redraw(self) -> None:
        view = self.list_view
        selected = self.selected_chat_id()
        await view.clear()
        rows = [ChatRow(e) for e in self.shown_entries()]
        await view.extend(rows)
        ids = [r.entry.chat.id for r in rows]
        if rows:
            view.index = ids.index(selected) if selected in ids else 0

    def selected_chat_id(self) -> int | None:
        item = self.list_view.highlighted_child
        return item.entry.chat.id if isinstance(item, ChatRow) else None

    def update_entry(self, chat_id: int, **changes: object) -> None:
        entry = self.entries.get(chat_id)
        if entry is None:
            return
        for key, value in changes.items():
            setattr(entry, key, value)
        for row in self.list_view.query(ChatRow):
            if row.entry.chat.id == chat_id:
                row.query_one(Label).update(ChatRow.render_entry(entry))

    @on(Input.Changed, "#chat-filter")
    async def _filter(self, event: Input.Changed) -> None:
        await self.redraw()

    @on(Input.Submitted, "#chat-filter")
    def _open_first(self, event: Input.Submitted) -> None:
        chat_id = self.selected_chat_id()
        if chat_id is not None:
            self.post_message(self.Opened(chat_id))

    @on(ListView.Selected, "#chats")
    def _open(self, event: ListView.Selected) -> None:
        if isinstance(event.item, ChatRow):
            self.post_message(self.Opened(event.item.entry.chat.id))

    def action_move(self, step: int) -> None:
        # j/k reach here only from the list: the filter input keeps its letters
        if step > 0:
            self.list_view.action_cursor_down()
        else:
            self.list_view.action_cursor_up()

    def key_down(self) -> None:
        if self.query_one("#chat-filter", Input).has_focus:
            self.list_view.focus()

    def key_escape(self) -> None:
        """Escape leaves the filter for the list (the filter keeps its text: j/k then move in what it shows)."""
        self.key_down()
