"""The message view: a conversation grouped by day and sender, rendered from untrusted text safely.

Only a window of the loaded messages is mounted as widgets (the newest ``WINDOW`` at first, never more
than ``MAX_MOUNTED``): scrolling to the top mounts older loaded ones (unmounting the newest beyond the cap)
and, when all are shown, asks for older history (``MessageView.OlderWanted``); scrolling back to the
bottom mounts the newer ones again. Every piece
of user text goes through ``melo_tui.sanitize`` into ``rich.text.Text`` (never markup).
"""

from dataclasses import dataclass, replace
from datetime import timedelta
from typing import ClassVar

from rich.text import Text
from textual.binding import BindingType
from textual.containers import VerticalScroll
from textual.message import Message as TextualMessage
from textual.widgets import Static

from melo_protocol.client.events import Message
from melo_tui.formatting import Formatting
from melo_tui.sanitize import clean_body, clean_line

WINDOW = 200
MORE = 100
MAX_MOUNTED = 500  # scrolled far away, the other end is unmounted: layout cost stays bounded
GROUP_GAP = timedelta(minutes=5)


@dataclass
class Rendering:
    """What a message item needs besides the message: fixed when the item is (re)built."""

    own_name: str
    formatting: Formatting
    show_header: bool = True
    quoted: Message | None = None
    read: bool = False
    delivered: bool = False


def render_message(message: Message, r: Rendering) -> Text:
    text = Text(no_wrap=False, overflow="fold")
    sender = clean_line(message.sender, 64)
    if r.show_header:
        text.append(sender, style="bold magenta" if message.sender == r.own_name else "bold cyan")
        text.append(f"  {r.formatting.time(message.created_at)}", style="dim")
        if not message.verified:
            text.append("  unverified", style="dim yellow")
        text.append("\n")
    if message.reply_to is not None:
        if r.quoted is not None:
            quoted = r.quoted.text if r.quoted.status == "ok" and r.quoted.text is not None else "…"
            text.append(f"│ ↳ {clean_line(r.quoted.sender, 64)}: {clean_line(quoted, 80)}\n", style="dim italic")
        else:
            text.append("│ ↳ reply to an earlier message\n", style="dim italic")
    if message.status == "deleted":
        text.append("🗑 message deleted", style="dim italic")
    elif message.status == "waiting_for_key":
        text.append("🔑 waiting for the key to this message…", style="yellow italic")
    elif message.status == "undecryptable" or message.text is None:
        text.append("⚠ this message could not be decrypted", style="red italic")
    else:
        body, omitted = clean_body(message.text)
        if message.kind == "emote":
            text.append(f"* {sender} ", style="italic")
            text.append(body, style="italic")
        else:
            text.append(body)
        if omitted:
            text.append(f"\n… {omitted:,} more characters not shown", style="dim reverse")
        if r.own_name and f"@{r.own_name}" in body:
            text.highlight_words([f"@{r.own_name}"], style="bold reverse yellow")  # a mention of us
        if message.edited_at is not None:
            text.append(" (edited)", style="dim")
    if message.pinned:
        text.append("  📌", style="yellow")
    if message.sender == r.own_name and message.status != "deleted":
        # ✓ the server has it, ✓✓ dim: a device of the other side has it, ✓✓ green: read
        text.append("  ✓✓" if r.read or r.delivered else "  ✓", style="green" if r.read else "dim")
    if message.reactions and message.status != "deleted":
        parts = [f"{clean_line(emoji, 16)} {len(users)}" for emoji, users in sorted(message.reactions.items()) if users]
        if parts:
            text.append("\n" + "  ".join(parts), style="bold")
    return text


class MessageItem(Static):
    """One message; ``rendered`` is the exact text on screen (tests read it)."""

    def __init__(self, message: Message, rendering: Rendering) -> None:
        super().__init__(classes="message", markup=False)
        self.message = message
        self.rendering = rendering
        self.rendered = render_message(message, rendering)
        self.update(self.rendered)

    def rerender(self, message: Message | None = None, **changes: object) -> None:
        if message is not None:
            self.message = message
        if changes:
            self.rendering = replace(self.rendering, **changes)  # type: ignore[arg-type]
        self.rendered = render_message(self.message, self.rendering)
        self.update(self.rendered)


class PendingItem(Static):
    """A message sent while offline: shown until the server has it."""

    def __init__(self, txn_id: str, body: str) -> None:
        text = Text("⏳ ", style="dim")
        text.append(clean_body(body)[0], style="dim")
        super().__init__(text, classes="pending", markup=False)
        self.txn_id = txn_id


class MessageView(VerticalScroll, can_focus=True):
    BINDINGS: ClassVar[list[BindingType]] = [("j", "scroll_down", "Down"), ("k", "scroll_up", "Up")]

    class OlderWanted(TextualMessage):
        def __init__(self, chat_id: int, before_seq: int) -> None:
            super().__init__()
            self.chat_id = chat_id
            self.before_seq = before_seq

    def __init__(self, own_name: str = "", formatting: Formatting | None = None, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.own_name = own_name
        self.formatting = formatting or Formatting()
        self.chat_id: int | None = None
        self.messages: list[Message] = []  # loaded, oldest first
        self.by_id: dict[int, Message] = {}
        self.items: dict[int, MessageItem] = {}
        self.shown_from = 0  # index in ``messages`` of the first mounted message
        self.shown_to = 0  # one past the last mounted message
        self.read_seq = 0  # highest seq read by someone else
        self.delivered_seq = 0  # highest seq a device of someone else has received
        self.history_complete = False
        self.loading_older = False

    # -- building ----------------------------------------------------------------------------------------
    def _rendering(self, message: Message, previous: Message | None) -> Rendering:
        f = self.formatting
        new_day = previous is None or f.day_key(previous.created_at) != f.day_key(message.created_at)
        header = (new_day or previous is None or previous.sender != message.sender or message.kind == "emote"
                  or message.created_at - previous.created_at > GROUP_GAP)
        quoted = self.by_id.get(message.reply_to) if message.reply_to is not None else None
        return Rendering(self.own_name, f, header, quoted, message.seq <= self.read_seq,
                         message.seq <= max(self.delivered_seq, self.read_seq))

    def _widgets_for(self, messages: list[Message], previous: Message | None) -> list[Static]:
        out: list[Static] = []
        for message in messages:
            f = self.formatting
            if previous is None or f.day_key(previous.created_at) != f.day_key(message.created_at):
                out.append(Static(Text(f"── {f.day(message.created_at)} ──", style="dim"), classes="day"))
            item = MessageItem(message, self._rendering(message, previous))
            self.items[message.id] = item
            out.append(item)
            previous = message
        return out

    async def _rebuild(self) -> None:
        self.items.clear()
        await self.remove_children()
        shown = self.messages[self.shown_from:self.shown_to]
        widgets: list[Static] = []
        if self.history_complete and self.shown_from == 0:
            widgets.append(self._beginning())
        widgets.extend(self._widgets_for(shown, None))
        if widgets:
            await self.mount_all(widgets)

    async def show_chat(self, chat_id: int, messages: list[Message], *, complete: bool) -> None:
        """Replace the view with this chat's latest history (oldest first)."""
        self.chat_id = chat_id
        self.messages = sorted(messages, key=lambda m: m.seq)
        self.by_id = {m.id: m for m in self.messages}
        self.history_complete = complete
        self.read_seq = self.delivered_seq = 0
        await self.jump_to_latest()

    async def jump_to_latest(self) -> None:
        self.shown_to = len(self.messages)
        self.shown_from = max(0, self.shown_to - WINDOW)
        await self._rebuild()
        # anchored: stays at the newest as content and size change, until the reader scrolls away
        self.anchor()

    async def prepend(self, older: list[Message], *, complete: bool) -> None:
        """Older history arrived (after an OlderWanted)."""
        self.loading_older = False
        self.history_complete = complete
        fresh = [m for m in older if m.id not in self.by_id]
        if not fresh and not complete:
            return
        self.messages = sorted(fresh + self.messages, key=lambda m: m.seq)
        self.by_id.update({m.id: m for m in fresh})
        self.shown_from += len(fresh)  # the same messages, now further down the list
        self.shown_to += len(fresh)
        await self._show_more(len(fresh))

    async def _show_more(self, count: int) -> None:
        """Mount ``count`` more loaded messages above the shown ones, keeping what the reader looks at."""
        new_from = max(0, self.shown_from - count)
        if new_from == self.shown_from:
            if self.history_complete and self.shown_from == 0 and not self.query("#beginning"):
                await self.mount(self._beginning(), before=0)
            return
        fresh = self.messages[new_from:self.shown_from]
        old_first = self.messages[self.shown_from]
        anchor = self.items.get(old_first.id)
        widgets: list[Static] = []
        if self.history_complete and new_from == 0:
            widgets.append(self._beginning())
        widgets.extend(self._widgets_for(fresh, None))
        f = self.formatting
        if f.day_key(fresh[-1].created_at) == f.day_key(old_first.created_at) and self.children \
                and "day" in self.children[0].classes:
            await self.children[0].remove()  # the day already has its separator above
        if anchor is not None:
            anchor.rerender(show_header=self._rendering(old_first, fresh[-1]).show_header)
        self.shown_from = new_from
        await self.mount_all(widgets, before=0)
        await self._trim_bottom()
        if anchor is not None:  # the reader was at the top: keep the message they saw there
            self.call_after_refresh(self.scroll_to_widget, anchor, top=True, animate=False, immediate=True)

    async def _unmount(self, messages: list[Message]) -> None:
        gone = [self.items.pop(m.id) for m in messages if m.id in self.items]
        if gone:
            await self.remove_children(gone)

    async def _trim_bottom(self) -> None:
        if self.shown_to - self.shown_from <= MAX_MOUNTED:
            return
        new_to = self.shown_from + MAX_MOUNTED
        await self._unmount(self.messages[new_to:self.shown_to])
        self.shown_to = new_to
        trailing = []
        for child in reversed(self.children):
            if isinstance(child, MessageItem):
                break
            if "day" in child.classes:  # a separator left without its day's messages
                trailing.append(child)
        if trailing:
            await self.remove_children(trailing)

    async def load_newer(self) -> None:
        """Scrolled back to the bottom of a window that does not reach the newest message."""
        if self.shown_to >= len(self.messages):
            return
        new_to = min(len(self.messages), self.shown_to + MORE)
        previous = self.messages[self.shown_to - 1] if self.shown_to else None
        fresh = self.messages[self.shown_to:new_to]
        last_item = self.items.get(previous.id) if previous else None
        widgets = self._widgets_for(fresh, previous)
        if last_item is not None:
            await self.mount_all(widgets, after=last_item)
        else:
            await self.mount_all(widgets)
        self.shown_to = new_to
        if self.shown_to - self.shown_from > MAX_MOUNTED:
            new_from = self.shown_to - MAX_MOUNTED
            await self._unmount(self.messages[self.shown_from:new_from])
            self.shown_from = new_from
            leading = []
            for child in self.children:
                if isinstance(child, MessageItem):
                    break
                leading.append(child)
            if leading:
                await self.remove_children(leading)
            first = self.items.get(self.messages[self.shown_from].id)
            if first is not None:
                day = self.formatting.day(first.message.created_at)
                await self.mount(Static(Text(f"── {day} ──", style="dim"), classes="day"), before=first)
                first.rerender(show_header=True)
        if last_item is not None:
            self.call_after_refresh(self.scroll_to_widget, last_item, animate=False, immediate=True)

    @staticmethod
    def _beginning() -> Static:
        return Static(Text("beginning of the conversation", style="dim italic"), classes="day", id="beginning")

    # -- live changes --------------------------------------------------------------------------------------
    async def add(self, message: Message) -> None:
        if message.chat_id != self.chat_id:
            return
        if message.id in self.by_id:
            self.replace_message(message)
            return
        at_bottom = self.is_vertical_scroll_end or self.max_scroll_y == 0
        at_latest = self.shown_to == len(self.messages)
        previous = self.messages[-1] if self.messages else None
        self.messages.append(message)
        self.by_id[message.id] = message
        if not at_latest:  # the reader is far up in the history: mount it when they come back down
            if message.sender == self.own_name:
                await self.jump_to_latest()
            return
        self.shown_to = len(self.messages)
        if previous is not None and previous.seq > message.seq:  # out of order: rare, rebuild
            self.messages.sort(key=lambda m: m.seq)
            await self._rebuild()
        else:
            await self.mount_all(self._widgets_for([message], previous))
        if at_bottom or message.sender == self.own_name:
            self.scroll_end(animate=False)

    def replace_message(self, message: Message) -> None:
        old = self.by_id.get(message.id)
        if old is None:
            return
        if not message.reactions and old.reactions:
            message = replace(message, reactions=old.reactions)
        self.by_id[message.id] = message
        self.messages[self.messages.index(old)] = message
        if message.id in self.items:
            self.items[message.id].rerender(message)

    def mark_deleted(self, message_id: int) -> None:
        old = self.by_id.get(message_id)
        if old is not None:
            self.replace_message(replace(old, status="deleted", text=None, reactions={}))

    def change_reaction(self, message_id: int, user: str, emoji: str, added: bool) -> None:
        old = self.by_id.get(message_id)
        if old is None:
            return
        reactions = {k: list(v) for k, v in old.reactions.items()}
        users = reactions.setdefault(emoji, [])
        if added and user not in users:
            users.append(user)
        elif not added and user in users:
            users.remove(user)
        reactions = {k: v for k, v in reactions.items() if v}
        new = replace(old, reactions=reactions)
        self.by_id[message_id] = new
        self.messages[self.messages.index(old)] = new
        if message_id in self.items:
            self.items[message_id].rerender(new)

    def change_pin(self, message_id: int, pinned: bool) -> None:
        old = self.by_id.get(message_id)
        if old is not None:
            self.replace_message(replace(old, pinned=pinned))

    def receipt(self, read_seq: int, delivered_seq: int = 0) -> None:
        """Someone else read up to ``read_seq`` and has received up to ``delivered_seq``: tick our messages."""
        delivered_seq = max(delivered_seq, read_seq)
        if read_seq <= self.read_seq and delivered_seq <= self.delivered_seq:
            return
        self.read_seq, self.delivered_seq = max(self.read_seq, read_seq), max(self.delivered_seq, delivered_seq)
        for item in self.items.values():
            m = item.message
            if m.sender != self.own_name:
                continue
            read, delivered = m.seq <= self.read_seq, m.seq <= self.delivered_seq
            if (read, delivered) != (item.rendering.read, item.rendering.delivered):
                item.rerender(read=read, delivered=delivered)

    async def add_notice(self, text: Text) -> None:
        await self.mount(Static(text, classes="notice"))
        self.scroll_end(animate=False)

    async def add_pending(self, txn_id: str, body: str) -> None:
        await self.mount(PendingItem(txn_id, body))
        self.scroll_end(animate=False)

    async def remove_pending(self, txn_id: str) -> None:
        for item in self.query(PendingItem):
            if item.txn_id == txn_id:
                await item.remove()

    # -- queries -------------------------------------------------------------------------------------------
    def last_own(self) -> Message | None:
        return next((m for m in reversed(self.messages) if m.sender == self.own_name and m.status == "ok"), None)

    def last_message(self, *, from_others: bool = False) -> Message | None:
        for m in reversed(self.messages):
            if m.status != "deleted" and (not from_others or m.sender != self.own_name):
                return m
        return None

    # -- older history on scroll-up ------------------------------------------------------------------------
    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if new_value <= 0 < old_value:
            self.call_later(self.load_older)
        elif new_value >= self.max_scroll_y > old_value and self.shown_to < len(self.messages):
            self.call_later(self.load_newer)

    async def load_older(self) -> None:
        if self.chat_id is None or self.loading_older:
            return
        if self.shown_from > 0:
            await self._show_more(MORE)
        elif not self.history_complete and self.messages:
            self.loading_older = True
            self.post_message(self.OlderWanted(self.chat_id, self.messages[0].seq))

    def action_scroll_up(self) -> None:  # k, and the top of the view loads more
        if self.scroll_y <= 0:
            self.call_later(self.load_older)
        super().action_scroll_up()
