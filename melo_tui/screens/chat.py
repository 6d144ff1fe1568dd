"""The main screen: chat list, message view, typing indicator and composer.

Network work runs in workers on this screen through the injected Messenger; SDK errors become
notifications (``ui_work``). Composing and sending, with the outbox and the slash commands, are the
base class's (``ComposingScreen``); this class shows chats and follows the live events.
"""

from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Footer, Input, Static

from melo_protocol.client import events as ev
from melo_protocol.client.errors import MeloError
from melo_protocol.client.messenger import Messenger
from melo_protocol.timetext import human_duration
from melo_tui.formatting import Formatting
from melo_tui.messages import ChatJoined, ChatLeft, ConnectionChanged, LiveEvent
from melo_tui.sanitize import clean_line
from melo_tui.screens.composing import ComposingScreen
from melo_tui.widgets.call_bar import CallBar
from melo_tui.widgets.chats.chat_list import ChatList, chat_title
from melo_tui.widgets.conversation.composer import Composer
from melo_tui.widgets.conversation.message_view import MessageView
from melo_tui.widgets.conversation.pinned_banner import PinnedBanner
from melo_tui.widgets.conversation.typing_indicator import TypingIndicator
from melo_tui.widgets.members import MemberPanel
from melo_tui.workers import ui_work

HISTORY_PAGE = 50


def preview_of(message: ev.Message) -> str:
    if message.status == "deleted":
        return "message deleted"
    if message.status != "ok" or message.text is None:
        return "🔒 encrypted message"
    prefix = f"* {message.sender} " if message.kind == "emote" else f"{message.sender}: "
    return prefix + message.text[:200]


def timer_notice(by: object, seconds: object) -> Text:
    who = clean_line(str(by), 64) if by else "someone"
    if isinstance(seconds, int) and seconds > 0:
        return Text(f"⏱ {who} set messages to disappear {human_duration(seconds)} after sending", style="yellow")
    return Text(f"⏱ {who} turned disappearing messages off", style="yellow")


class ChatScreen(ComposingScreen):
    """Panes, in the order Tab visits them (Shift+Tab backwards): the chat list, the messages, the
    composer, then the members (when F2 shows them) and the call bar (during a call). The focused one
    has a highlighted border. The chat list has the focus first, so j/k move in it; / or Ctrl+F goes to
    its filter, and Escape (or Down) back to the list."""

    AUTO_FOCUS = "#chats"  # focused when the screen is shown (never queried before it exists)
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "app.sessions", "Sessions", id="chat.sessions"),
        Binding("ctrl+o", "focus_chats", "Chats", id="chat.focus_chats"),
        Binding("ctrl+f", "focus_filter", "Filter", id="chat.filter"),
        Binding("slash", "focus_filter", "Filter", show=False, id="chat.filter_slash"),
        Binding("tab", "cycle_pane(1)", "Next pane", show=False, id="chat.next_pane"),
        Binding("shift+tab", "cycle_pane(-1)", "Previous pane", show=False, id="chat.previous_pane"),
        Binding("ctrl+r", "reload_chats", "Reload", id="chat.reload"),
        Binding("f2", "toggle_members", "Members", show=False, id="chat.members"),
        Binding("f3", "app.chat_info", "Chat info", show=False, id="chat.info"),
    ]

    @dataclass
    class JoinWanted(Message):
        """Join the chat of this invite code (and open it)."""

        code: str

    @dataclass
    class Alerted(Message):
        """Someone else's message arrived (``here``: in the open chat): ring, notify as the user chose."""

        message: ev.Message
        chat_title: str
        here: bool

    def __init__(self, messenger: Messenger, formatting: Formatting, *, join_code: str | None = None) -> None:
        super().__init__()
        self.messenger = messenger
        self.formatting = formatting
        self.join_code = join_code  # an invite code given at login: joined, and its chat opened, once shown
        self.chat_id: int | None = None
        self.previews: dict[int, str] = {}
        self.status = ""

    def compose(self) -> ComposeResult:
        yield Static(Text("Melo", style="bold"), id="status-header")
        yield CallBar(id="call-bar")
        with Horizontal(id="main"):
            chats = ChatList(id="chat-list")
            chats.border_title = "Chats"
            yield chats
            with Vertical(id="conversation"):
                yield Static(
                    Text("Choose a chat on the left (Enter), or press Ctrl+P for actions.", style="dim"),
                    id="chat-title",
                )
                yield PinnedBanner(id="pinned-banner")
                yield MessageView(self.messenger.username, self.formatting, id="messages")
                yield TypingIndicator(id="typing")
                yield Static("", id="composer-mode")
                yield Composer(id="composer")
            yield MemberPanel(self.messenger.username, id="members")
        yield Footer()

    @on(ConnectionChanged)
    def show_status(self, change: ConnectionChanged) -> None:
        """The header line: who is logged in, and the connection state; back online, the outbox goes."""
        self.status = f"{change.username} · {change.state}"
        text = Text("Melo", style="bold")
        text.append(f"  {clean_line(change.username, 64)}", style="cyan")
        text.append(f"  ● {change.state}", style="green" if change.state == "connected" else "yellow")
        self.query_one("#status-header", Static).update(text)
        if change.state == "connected":
            self._retry_outbox()

    @on(ChatJoined)
    def _joined(self, joined: ChatJoined) -> None:
        self.list_and_open(joined.chat_id)

    @ui_work(group="open-new")
    async def list_and_open(self, chat_id: int) -> None:
        """A chat that is new to the list: load the list, then open it."""
        await self.load_chats().wait()
        self.open_chat(chat_id)

    @on(ChatLeft)
    def _left(self, left: ChatLeft) -> None:
        if self.chat_id == left.chat_id:
            self.chat_id = None
        self.load_chats()

    @on(LiveEvent)
    async def _live(self, live: LiveEvent) -> None:
        try:
            await self.handle_event(live.event)
        except Exception as exc:  # one bad event must not end the stream
            self.log.error("event handling failed", event=live.event, error=exc)

    def on_mount(self) -> None:
        self.load_chats()
        self.set_interval(3.0, self._retry_outbox)
        if self.join_code:
            code, self.join_code = self.join_code, None
            self.post_message(self.JoinWanted(code))

    # -- chats ------------------------------------------------------------------------------------------
    @ui_work(exclusive=True, group="chats", what="Loading chats")
    async def load_chats(self) -> None:
        chats = await self.messenger.client.list_chats()
        for chat in chats:
            if chat.id not in self.previews and chat.last_message is not None:
                last = chat.last_message
                self.previews[chat.id] = (
                    "message deleted"
                    if last.deleted
                    else f"{last.sender}: {last.text}"
                    if last.text
                    else "🔒 encrypted message"
                )
        await self.query_one(ChatList).set_chats(chats, self.previews)
        if self.chat_id is not None:
            self._show_title()  # slow mode or the timer may have changed

    def action_reload_chats(self) -> None:
        self.load_chats()

    def action_focus_chats(self) -> None:
        self.query_one(ChatList).list_view.focus()

    def action_focus_filter(self) -> None:
        self.query_one("#chat-filter", Input).focus()

    def _panes(self) -> list[tuple[Widget, Widget]]:
        """(the pane, the widget that takes its focus), in Tab order; hidden ones are left out."""
        chats, view, composer = self.query_one(ChatList), self.query_one(MessageView), self.query_one(Composer)
        members, bar = self.query_one(MemberPanel), self.query_one(CallBar)
        panes: list[tuple[Widget, Widget]] = [(chats, chats.list_view), (view, view), (composer, composer)]
        if members.is_open:
            panes.append((members, members))
        if bar.display:
            panes.append((bar, bar))
        return panes

    def action_cycle_pane(self, step: int) -> None:
        panes = self._panes()
        focused = self.focused
        here = next(
            (i for i, (pane, _) in enumerate(panes) if focused is not None and pane in focused.ancestors_with_self),
            None,
        )
        target = (step if step > 0 else -1) if here is None else here + step
        panes[target % len(panes)][1].focus()

    # -- members panel (F2) ------------------------------------------------------------------------------
    def action_toggle_members(self) -> None:
        self.query_one(MemberPanel).toggle()

    @ui_work(exclusive=True, group="members", what="Loading members", severity="warning")
    async def load_members(self, chat_id: int) -> None:
        panel = self.query_one(MemberPanel)
        members = await self.messenger.client.list_members(chat_id)
        if chat_id == self.chat_id:
            stream = self.messenger.stream
            panel.set_presence(self.messenger.username, stream is not None and stream.state == "connected")
            panel.show_members(chat_id, members)

    @on(ChatList.Opened)
    def _opened(self, event: ChatList.Opened) -> None:
        self.open_chat(event.chat_id)

    @ui_work(exclusive=True, group="open", what="Loading messages")
    async def open_chat(self, chat_id: int) -> None:
        chats = self.query_one(ChatList)
        self.chat_id = chat_id
        self.load_members(chat_id)
        self.editing = self.replying = None
        self._show_mode()
        self.query_one(TypingIndicator).clear()
        self._show_title()
        self.query_one(PinnedBanner).show_pins([])
        self.load_pins(chat_id)
        messages = await self.messenger.history(chat_id, limit=HISTORY_PAGE)
        view = self.query_one(MessageView)
        await view.show_chat(chat_id, messages, complete=len(messages) < HISTORY_PAGE)
        self.query_one(Composer).focus()
        if messages:  # the list's preview of an E2E chat stays "encrypted" until we have read it here
            self.previews[chat_id] = preview_of(messages[-1])
        chats.update_entry(chat_id, unread=0, preview=self.previews.get(chat_id, ""))
        if messages:
            self.show_receipts(chat_id, messages[-1].seq)

    @ui_work(exclusive=True, group="receipts", what="Marking as read", severity="warning")
    async def show_receipts(self, chat_id: int, last_seq: int) -> None:
        """The others' read and delivered ticks of a chat just opened, and its messages marked read."""
        view = self.query_one(MessageView)
        members = await self.messenger.client.list_members(chat_id)
        others = [m for m in members if m.user.username != self.messenger.username]
        if others and view.chat_id == chat_id:
            view.receipt(max(m.read_seq for m in others), max(m.delivered_seq for m in others))
        await self.messenger.mark_read(chat_id, last_seq)

    def _show_title(self) -> None:
        """The open chat's title line: name, kind, E2E, slow mode and the disappearing-messages timer."""
        entry = self.query_one(ChatList).entries.get(self.chat_id or 0)
        title = Text(clean_line(entry.title if entry else f"chat {self.chat_id}", 80), style="bold")
        if entry is not None:
            chat = entry.chat
            title.append(f"  {chat.kind}{' · end-to-end encrypted' if chat.e2e else ''}", style="dim")
            if chat.slow_mode_seconds:
                title.append(f" · slow mode {human_duration(chat.slow_mode_seconds)}", style="dim")
            if chat.message_ttl_seconds:
                title.append(f"  ⏱ {human_duration(chat.message_ttl_seconds)}", style="yellow")  # disappearing
        self.query_one("#chat-title", Static).update(title)

    @ui_work(exclusive=True, group="pins", what="Loading pinned messages", severity="warning")
    async def load_pins(self, chat_id: int) -> None:
        pins = await self.messenger.pins(chat_id)
        if self.chat_id == chat_id:
            self.query_one(PinnedBanner).show_pins(pins)

    @on(MessageView.OlderWanted)
    def _older(self, event: MessageView.OlderWanted) -> None:
        self.load_older(event.chat_id, event.before_seq)

    @ui_work(exclusive=True, group="older", what="Loading older messages")
    async def load_older(self, chat_id: int, before_seq: int) -> None:
        view = self.query_one(MessageView)
        try:
            older = await self.messenger.history(chat_id, before=before_seq, limit=HISTORY_PAGE)
        except MeloError:
            view.loading_older = False  # scrolling up asks again
            raise
        if view.chat_id == chat_id:
            await view.prepend(older, complete=len(older) < HISTORY_PAGE)

    # -- live events ------------------------------------------------------------------------------------
    def _after_message(self, message: ev.Message, *, own: bool) -> None:
        chats = self.query_one(ChatList)
        preview = preview_of(message)
        self.previews[message.chat_id] = preview
        entry = chats.entries.get(message.chat_id)
        if entry is None:
            self.load_chats()
            return
        unread = entry.unread if own or message.chat_id == self.chat_id else entry.unread + 1
        chats.update_entry(message.chat_id, preview=preview, unread=unread, last_at=message.created_at)

    async def handle_event(self, event: ev.Event) -> None:
        view = self.query_one(MessageView)
        here = event.chat_id is not None and event.chat_id == self.chat_id
        if isinstance(event, ev.MessageReceived) and event.message is not None:
            message = event.message
            own = message.sender == self.messenger.username
            if here:
                await view.add(message)
                if message.sender != self.messenger.username:
                    self.query_one(TypingIndicator).set_typing(message.sender, False)
                    self.mark_read(message.chat_id, message.seq)
            if not own:
                self.post_message(self.Alerted(message, self.chat_title_for(message.chat_id), here))
            self._after_message(message, own=own)
        elif isinstance(event, ev.MessageEdited) and event.message is not None:
            if here:
                view.replace_message(event.message)
            if self.previews.get(event.message.chat_id, "").startswith("🔒"):
                self.previews[event.message.chat_id] = preview_of(event.message)
                self.query_one(ChatList).update_entry(event.message.chat_id, preview=preview_of(event.message))
        elif isinstance(event, ev.MessageDeleted) and here:
            view.mark_deleted(event.message_id)
        elif isinstance(event, ev.ReactionChanged) and here:
            view.change_reaction(event.message_id, event.user, event.emoji, event.added)
        elif isinstance(event, ev.PinChanged) and here:
            view.change_pin(event.message_id, event.pinned)
            self.load_pins(self.chat_id or 0)
        elif isinstance(event, ev.ReceiptUpdated) and here and event.user != self.messenger.username:
            view.receipt(event.read_seq, event.delivered_seq)
        elif isinstance(event, ev.Typing) and here and event.user != self.messenger.username:
            self.query_one(TypingIndicator).set_typing(event.user, event.typing, event.expires_in)
        elif isinstance(event, ev.KeyWarning):
            warning = Text(
                f"⚠ {clean_line(event.user, 64)}'s security key changed "
                f"({event.reason.replace('_', ' ')}, device {clean_line(event.device_id, 40)}). "
                "Verify them with /verify before trusting new messages.",
                style="bold red",
            )
            await view.add_notice(warning)
            self.notify(warning.plain, severity="warning", timeout=10)
        elif isinstance(event, ev.Presence):
            self.query_one(MemberPanel).set_presence(event.user, event.online)
            for entry in self.query_one(ChatList).entries.values():
                if entry.chat.peer is not None and entry.chat.peer.username == event.user:
                    self.query_one(ChatList).update_entry(entry.chat.id, online=event.online)
        elif isinstance(event, (ev.ChatChanged, ev.MemberChanged, ev.ResyncRequired)):
            if isinstance(event, ev.ChatChanged) and here and "message_ttl_seconds" in event.data:
                await view.add_notice(timer_notice(event.data.get("by"), event.data.get("message_ttl_seconds")))
            if (
                isinstance(event, ev.MemberChanged)
                and event.user == self.messenger.username
                and event.change in ("left", "removed")
                and here
            ):
                self.chat_id = None
                view.chat_id = None
            panel = self.query_one(MemberPanel)
            if isinstance(event, ev.MemberChanged) and event.chat_id is not None and event.chat_id == panel.chat_id:
                if event.chat_id == self.chat_id:
                    self.load_members(event.chat_id)
                else:
                    panel.clear()  # we left it (here, or by /leave)
            self.load_chats()

    @ui_work(group="read")
    async def mark_read(self, chat_id: int, seq: int) -> None:
        try:
            await self.messenger.mark_read(chat_id, seq)
        except MeloError:
            pass  # the next open marks it again

    def chat_title_for(self, chat_id: int) -> str:
        entry = self.query_one(ChatList).entries.get(chat_id)
        return chat_title(entry.chat) if entry else str(chat_id)
