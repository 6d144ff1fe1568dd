"""Chat info (F3, or "Chat info" in the palette): what a chat is, who is in it, and for its owners and
admins the settings and member management. In a direct chat either person sets the disappearing-messages
timer, its one setting.

Everything goes through the SDK in workers on this screen. The server decides who may do what; the
screen only spares a plain member the round trip with a polite notice, and turns every refusal
(403 and the like) into a notification, never a crash.
"""

from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from melo_protocol.client import events as ev
from melo_protocol.client.rest import MeloClient
from melo_protocol.wire.chats import ChatKind, ChatOut, MemberOut, Role
from melo_tui.messages import LiveEvent
from melo_tui.sanitize import clean_line
from melo_tui.screens.prompt import PromptScreen
from melo_tui.slash import timer_seconds
from melo_tui.widgets.chats.chat_list import chat_title
from melo_tui.widgets.members import ROLE_STYLE, sorted_members
from melo_tui.workers import ui_handler, ui_work

MANAGERS = (Role.OWNER, Role.ADMIN)
KIND_NAME = {ChatKind.DIRECT: "direct message", ChatKind.GROUP: "group", ChatKind.CHANNEL: "channel"}


def duration(seconds: int | None) -> str:
    """A short human duration: off, 45 s, 5 min, 2 h, 7 d (a remainder shows the smaller unit)."""
    if not seconds:
        return "off"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


class ChatInfoScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    #chat-info-members { height: auto; max-height: 12; margin: 1 0; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Close", id="chat_info.close"),
        Binding("q", "app.pop_screen", "Close", show=False, id="chat_info.close_q"),
        Binding("e", "edit", "Edit title/description", id="chat_info.edit"),
        Binding("s", "slow_mode", "Slow mode", id="chat_info.slow_mode"),
        Binding("t", "timer", "Disappearing messages", id="chat_info.timer"),
        Binding("a", "set_role('admin')", "Make admin", id="chat_info.make_admin"),
        Binding("m", "set_role('member')", "Make member", id="chat_info.make_member"),
        Binding("x", "remove", "Remove member", id="chat_info.remove"),
        Binding("f5", "reload", "Reload", id="chat_info.reload"),
    ]

    def __init__(self, client: MeloClient, chat_id: int, me: str) -> None:
        super().__init__()
        self.client = client
        self.chat_id = chat_id
        self.me = me
        self.chat: ChatOut | None = None
        self.members: list[MemberOut] = []

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="modal-box", id="chat-info-box"):
            yield Static(Text("Loading…", style="dim"), id="chat-info-body")
            yield DataTable(id="chat-info-members", cursor_type="row", zebra_stripes=True)
            yield Static("", id="chat-info-keys")

    @ui_handler
    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("member", "role")
        table.focus()
        self.action_reload()

    # -- showing ------------------------------------------------------------------------------------------
    @property
    def role(self) -> Role | None:
        return self.chat.role if self.chat is not None else None

    @on(LiveEvent)
    def _live(self, live: LiveEvent) -> None:
        self.follow(live.event)

    def follow(self, event: ev.Event) -> None:
        """A live event while this screen is open: changes to this chat or its members show at once."""
        if event.chat_id != self.chat_id:
            return
        if isinstance(event, ev.MemberChanged) and event.user == self.me and event.change in ("left", "removed"):
            self.notify("You are no longer a member of this chat.", severity="warning", markup=False)
            self.dismiss()
        elif isinstance(event, ev.ChatChanged | ev.MemberChanged):
            self.action_reload()

    @ui_work(exclusive=True, group="chat-info-load", what="Loading the chat info")
    async def action_reload(self) -> None:
        chat = await self.client.get_chat(self.chat_id)
        members = await self.client.list_members(self.chat_id)
        self.show(chat, members)

    def show(self, chat: ChatOut, members: list[MemberOut]) -> None:
        self.chat, self.members = chat, sorted_members(members)
        self.query_one("#chat-info-body", Static).update(self.describe(chat))
        table = self.query_one(DataTable)
        selected = self.selected_member()
        table.clear()
        for m in self.members:
            name = Text(clean_line(m.user.username, 40))
            if m.user.username == self.me:
                name.append(" (you)", style="dim")
            table.add_row(name, Text(m.role.value, style=ROLE_STYLE.get(m.role, "")), key=m.user.username)
        if selected is not None:
            for row, m in enumerate(self.members):
                if m.user.username == selected.user.username:
                    table.move_cursor(row=row)
        self.query_one("#chat-info-keys", Static).update(self.key_hints(chat))

    def describe(self, chat: ChatOut) -> Text:
        text = Text()
        text.append(clean_line(chat_title(chat), 80) + "\n", style="bold")
        text.append(KIND_NAME.get(chat.kind, str(chat.kind)), style="cyan")
        text.append(
            " · end-to-end encrypted\n" if chat.e2e else " · not end-to-end encrypted\n",
            style="green" if chat.e2e else "yellow",
        )
        if chat.description:
            text.append(clean_line(chat.description, 300) + "\n", style="italic")
        rows = [
            ("Slow mode", duration(chat.slow_mode_seconds)),
            ("Disappearing messages", duration(getattr(chat, "message_ttl_seconds", None))),
            ("Members", str(chat.member_count)),
            ("Your role", chat.role.value if chat.role is not None else "—"),
        ]
        for label, value in rows:
            text.append(f"\n{label + ':':<24}", style="bold")
            text.append(value)
        return text

    def key_hints(self, chat: ChatOut) -> Text:
        if chat.kind == ChatKind.DIRECT:
            return Text(
                "t disappearing messages (either of you sets it; a direct chat has no roles or other "
                "settings) · Escape closes",
                style="dim",
            )
        if chat.role not in MANAGERS:
            return Text("Only owners and admins can change this chat. Escape closes.", style="dim")
        hints = "e edit title/description · s slow mode · t disappearing messages · x remove the selected member"
        if chat.role == Role.OWNER:
            hints += " · a / m make the selected member admin / member"
        return Text(hints + " · Escape closes", style="dim")

    def selected_member(self) -> MemberOut | None:
        table = self.query_one(DataTable)
        if not self.members or not 0 <= table.cursor_row < len(self.members):
            return None
        return self.members[table.cursor_row]

    # -- managing -----------------------------------------------------------------------------------------
    def _allowed(self, what: str, *, owner_only: bool = False, in_direct: bool = False) -> bool:
        """False, with a polite notice, when the server would refuse anyway. ``in_direct``: either person of
        a direct chat may (the disappearing-messages timer)."""
        if self.chat is None:
            self.notify("The chat info is still loading.", severity="warning")
            return False
        if self.chat.kind == ChatKind.DIRECT:
            if not in_direct:
                self.notify(
                    "A direct chat has no roles, title or slow mode; t sets its disappearing messages.",
                    severity="warning",
                )
            return in_direct
        if self.role not in ((Role.OWNER,) if owner_only else MANAGERS):
            who = "the owner" if owner_only else "owners and admins"
            self.notify(f"Only {who} can {what} in this chat.", severity="warning")
            return False
        return True

    @ui_work(group="chat-info-change", what=lambda what, change, done: what)
    async def apply(self, what: str, change: Callable[[], Awaitable[Any]], done: str) -> None:
        """Run one change through the SDK (a refusal becomes a notification), then show the new state."""
        try:
            await change()
            self.notify(done, markup=False)
        finally:
            self.action_reload()

    def _prompt(self, title: str, fields: list[tuple[str, str]], then: Callable[[dict[str, str]], None]) -> None:
        def submitted(values: dict[str, str] | None) -> None:
            if values is not None:
                then(values)

        self.app.push_screen(PromptScreen(title, fields), submitted)

    def action_edit(self) -> None:
        if not self._allowed("edit the title and description"):
            return
        self._prompt(
            "Edit chat (empty keeps the current value)",
            [("title", "Title"), ("description", "Description")],
            self._edit,
        )

    def _edit(self, values: dict[str, str]) -> None:
        title, description = values["title"] or None, values["description"] or None
        if title is None and description is None:
            return
        self.apply(
            "Editing the chat",
            lambda: self.client.update_chat(self.chat_id, title=title, description=description),
            "Chat updated.",
        )

    def action_slow_mode(self) -> None:
        if not self._allowed("set slow mode"):
            return
        self._prompt(
            "Slow mode", [("seconds", "Seconds between messages per member (0 turns it off)")], self._slow_mode
        )

    def _slow_mode(self, values: dict[str, str]) -> None:
        try:
            seconds = int(values["seconds"])
        except ValueError:
            seconds = -1
        if not 0 <= seconds <= 86400:
            self.notify("Slow mode takes whole seconds from 0 to 86400.", severity="warning")
            return
        self.apply(
            "Setting slow mode",
            lambda: self.client.update_chat(self.chat_id, slow_mode_seconds=seconds),
            f"Slow mode: {duration(seconds)}.",
        )

    def action_timer(self) -> None:
        if not self._allowed("set disappearing messages", in_direct=True):
            return
        self._prompt(
            "Disappearing messages",
            [
                (
                    "duration",
                    "Messages sent from now on disappear after: 30s (at least 5s), 10m, 1h, 1d, 1w; off ends it",
                )
            ],
            self._timer,
        )

    def _timer(self, values: dict[str, str]) -> None:
        if not values["duration"].strip():
            return
        try:
            seconds = timer_seconds(values["duration"])
        except ValueError as exc:
            self.notify(clean_line(str(exc), 200), severity="warning", markup=False)
            return
        self.apply(
            "Setting disappearing messages",
            lambda: self.client.set_timer(self.chat_id, seconds),
            f"Disappearing messages: {duration(seconds)}.",
        )

    def _other_member(self, if_yourself: str) -> MemberOut | None:
        """The selected member, unless it is you (then ``if_yourself`` is shown)."""
        member = self.selected_member()
        if member is not None and member.user.username == self.me:
            self.notify(if_yourself, severity="warning")
            return None
        return member

    def action_set_role(self, role: str) -> None:
        if not self._allowed("change roles", owner_only=True):
            return
        member = self._other_member("You cannot change your own role.")
        if member is None:
            return
        name = member.user.username
        if member.role == role:
            self.notify(f"{clean_line(name, 64)} is already {'an' if role == 'admin' else 'a'} {role}.", markup=False)
            return
        self.apply(
            f"Making {clean_line(name, 64)} {role}",
            lambda: self.client.change_role(self.chat_id, name, role),
            f"{clean_line(name, 64)} is now {'an' if role == 'admin' else 'a'} {role}.",
        )

    def action_remove(self) -> None:
        if not self._allowed("remove members"):
            return
        member = self._other_member("To leave the chat, use /leave.")
        if member is None:
            return
        name = member.user.username
        shown = clean_line(name, 64)
        self._prompt(
            f"Remove {shown}?",
            [("confirm", "Type yes to remove them from the chat")],
            lambda v: self._remove(name) if v["confirm"].lower() == "yes" else None,
        )

    def _remove(self, name: str) -> None:
        shown = clean_line(name, 64)
        self.apply(f"Removing {shown}", lambda: self.client.remove_member(self.chat_id, name), f"Removed {shown}.")
