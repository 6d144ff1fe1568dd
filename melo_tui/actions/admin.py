"""The admin toolkit of the palette (shown to admins only): ban, revoke a user's sessions, rotate keys,
read the audit log. The server decides; a refusal is a notification (``ui_work``)."""

from rich.text import Text

from melo_tui.actions.base import AppBase
from melo_tui.sanitize import clean_line
from melo_tui.screens.info import InfoScreen
from melo_tui.workers import ui_work


class AdminActions(AppBase):
    def action_admin_ban(self) -> None:
        self._prompt(
            "Ban user",
            [("username", "Username"), ("reason", "Reason (optional)")],
            lambda v: self.admin_ban(v["username"], v["reason"]),
        )

    def action_admin_revoke(self) -> None:
        self._prompt("Revoke all sessions of", [("username", "Username")], lambda v: self.admin_revoke(v["username"]))

    def action_admin_rotate(self) -> None:
        self.admin_rotate()

    def action_admin_audit(self) -> None:
        self.admin_audit()

    @ui_work(group="admin", what="Ban")
    async def admin_ban(self, username: str, reason: str) -> None:
        await self._messenger().client.admin_ban(username, reason or None)
        self.notify(f"Banned {clean_line(username, 64)}.")

    @ui_work(group="admin", what="Revoke")
    async def admin_revoke(self, username: str) -> None:
        n = await self._messenger().client.admin_revoke_user_sessions(username)
        self.notify(f"Revoked {n} session(s) of {clean_line(username, 64)}.")

    @ui_work(group="admin", what="Rotate keys")
    async def admin_rotate(self) -> None:
        await self._messenger().client.admin_rotate_keys(jwt=True)
        self.notify("Keys rotated.")

    @ui_work(group="admin", what="Audit log")
    async def admin_audit(self) -> None:
        audit = await self._messenger().client.admin_audit(limit=100)
        body = Text()
        for entry in audit.entries:
            body.append(entry.created_at.astimezone().strftime("%Y-%m-%d %H:%M:%S  "), style="dim")
            body.append(f"{clean_line(entry.actor or '-', 32):<20} ", style="cyan")
            body.append(f"{clean_line(entry.action, 40):<24} ", style="bold")
            body.append(f"{clean_line(entry.target or '', 40):<24} ")
            body.append(clean_line(entry.outcome, 20) + "\n", style="green" if entry.outcome == "ok" else "red")
        if not audit.entries:
            body.append("No entries yet.", style="dim")
        self.push_screen(InfoScreen("Audit log (newest first)", body))
