"""The member panel (F2): who is in the open chat, their role, and whether they are online.

The member list says who is online when it is loaded (``MemberOut.user.online``); after that the server
announces changes (a ``presence`` event to everyone sharing a chat). The panel remembers both, across
chats, and shows a member it has heard nothing about as unknown (``·``).
The widget only renders: the chat screen loads the members and forwards the events.
"""

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from melo_protocol.wire.chats import MemberOut, Role
from melo_tui.sanitize import clean_line

ROLE_RANK = {Role.OWNER: 0, Role.ADMIN: 1, Role.MEMBER: 2}
ROLE_STYLE = {Role.OWNER: "bold magenta", Role.ADMIN: "bold cyan", Role.MEMBER: "dim"}


def sorted_members(members: list[MemberOut]) -> list[MemberOut]:
    """Owners first, then admins, then members; by name within a role."""
    return sorted(members, key=lambda m: (ROLE_RANK.get(m.role, len(ROLE_RANK)), m.user.username.lower()))


def presence_mark(online: bool | None) -> tuple[str, str]:
    """(symbol, style): ● online, ○ offline, · not known."""
    if online is None:
        return "·", "dim"
    return ("●", "green") if online else ("○", "dim")


class MemberPanel(VerticalScroll):
    DEFAULT_CSS = """
    MemberPanel { width: 32; display: none; padding: 0 1; }
    MemberPanel.-open { display: block; }
    MemberPanel #members-title { text-style: bold; }
    """

    def __init__(self, me: str, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.me = me
        self.chat_id: int | None = None
        self.members: list[MemberOut] = []
        self.presence: dict[str, bool] = {}

    def compose(self) -> ComposeResult:
        yield Static(Text("Members", style="bold"), id="members-title")
        yield Static(Text("No chat open.", style="dim"), id="members-body")

    def on_mount(self) -> None:
        self._render_members()

    @property
    def is_open(self) -> bool:
        return self.has_class("-open")

    def toggle(self) -> bool:
        """Show or hide the panel; True if it is now shown."""
        self.toggle_class("-open")
        return self.is_open

    def show_members(self, chat_id: int, members: list[MemberOut]) -> None:
        self.chat_id = chat_id
        self.members = sorted_members(members)
        for member in members:
            if member.user.online is not None:
                self.presence[member.user.username] = member.user.online
        self._render_members()

    def clear(self) -> None:
        self.chat_id = None
        self.members = []
        self._render_members()

    def set_presence(self, username: str, online: bool) -> None:
        self.presence[username] = online
        if any(m.user.username == username for m in self.members):
            self._render_members()

    def online(self, username: str) -> bool | None:
        return self.presence.get(username)

    def lines(self) -> list[str]:
        """The rows as plain text (what the panel shows, one member a line)."""
        return [self.render_member(m).plain for m in self.members]

    def render_member(self, member: MemberOut) -> Text:
        name = member.user.username
        symbol, style = presence_mark(self.online(name))
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(symbol + " ", style=style)
        text.append(clean_line(name, 24), style="bold" if name == self.me else "")
        if name == self.me:
            text.append(" (you)", style="dim")
        text.append("  " + member.role.value, style=ROLE_STYLE.get(member.role, ""))
        return text

    def _render_members(self) -> None:
        if not self.is_mounted:
            return
        title = Text("Members", style="bold")
        if self.chat_id is None:
            body = Text("No chat open.", style="dim")
        else:
            title.append(f"  {len(self.members)}", style="dim")
            body = Text("\n").join(self.render_member(m) for m in self.members)
        self.query_one("#members-title", Static).update(title)
        self.query_one("#members-body", Static).update(body)
