"""Your sessions: where you are logged in; revoke one, or all the others."""

from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from melo_protocol.client.rest import MeloClient
from melo_protocol.wire.accounts import SessionOut
from melo_tui.formatting import Formatting
from melo_tui.sanitize import clean_line
from melo_tui.workers import ui_handler, ui_work


class SessionsScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back", id="sessions.back"),
        Binding("r", "revoke", "Revoke selected", id="sessions.revoke"),
        Binding("o", "revoke_others", "Revoke all others", id="sessions.revoke_others"),
        Binding("f5", "reload", "Reload", id="sessions.reload"),
    ]

    def __init__(self, client: MeloClient, formatting: Formatting) -> None:
        super().__init__()
        self.client = client
        self.formatting = formatting
        self.sessions: list[SessionOut] = []

    def compose(self) -> ComposeResult:
        yield Static(Text("Melo · sessions", style="bold"), classes="screen-header")
        yield Static(Text("Sessions — r revokes the selected one, o revokes all others", style="bold"))
        yield DataTable(id="sessions-table", cursor_type="row", zebra_stripes=True)
        yield Footer()

    @ui_handler
    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("", "device", "created", "last seen", "address", "client")
        table.focus()
        self.action_reload()

    @ui_work(exclusive=True, group="sessions", what="Listing sessions")
    async def action_reload(self) -> None:
        self.show(await self.client.list_sessions())

    def show(self, sessions: list[SessionOut]) -> None:
        self.sessions = sorted(sessions, key=lambda s: (not s.current, s.created_at))
        table = self.query_one(DataTable)
        table.clear()
        f = self.formatting
        for s in self.sessions:
            table.add_row(
                Text("● this device", style="green") if s.current else Text(""),
                Text(clean_line(s.device_name or s.device_id, 30)),
                Text(f.day_key(s.created_at) + " " + f.time(s.created_at)),
                Text(f.time(s.last_seen_at) if s.last_seen_at else "—"),
                Text(clean_line(s.ip or "—", 40)),
                Text(clean_line(s.user_agent or "—", 30)),
                key=s.id,
            )

    @on(DataTable.RowSelected)
    def _selected(self, event: DataTable.RowSelected) -> None:
        self.action_revoke()

    def action_revoke(self) -> None:
        table = self.query_one(DataTable)
        if not self.sessions:
            return
        session = self.sessions[table.cursor_row]
        if session.current:
            self.notify("That is this session: log out instead, or revoke the others.", severity="warning")
            return
        self._revoke(session.id)

    @ui_work(exclusive=True, group="sessions", what="Revoking the session")
    async def _revoke(self, session_id: str) -> None:
        await self.client.revoke_session(session_id)
        self.notify("Session revoked.")
        self.show(await self.client.list_sessions())

    @ui_work(exclusive=True, group="sessions", what="Revoking the other sessions")
    async def action_revoke_others(self) -> None:
        n = await self.client.revoke_other_sessions()
        self.notify(f"Revoked {n} other session(s).")
        self.show(await self.client.list_sessions())
