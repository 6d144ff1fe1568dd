"""Command palette provider: every action of the chat screen, and the admin toolkit for admins."""

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from melo_tui.app import MeloApp

Action = tuple[str, str, Callable[[], object]]


class MeloCommands(Provider):
    def _actions(self) -> list[Action]:
        app: MeloApp = self.app  # type: ignore[assignment]
        if app.backend.messenger is None:
            return []
        actions: list[Action] = [
            ("New direct message", "start a DM with a user", app.action_new_dm),
            ("New group", "an end-to-end encrypted group", partial(app.action_new_chat, "group")),
            ("New channel", "a broadcast channel", partial(app.action_new_chat, "channel")),
            ("Join by code", "join a chat with an invite code", app.action_join),
            ("Invite to this chat", "create an invite code for the open chat", app.action_invite_code),
            ("Chat info", "the open chat: members, roles, slow mode; manage it if you may (F3)",
             app.action_chat_info),
            ("Sessions", "your sessions; revoke one or all others", app.action_sessions),
            ("Switch profile", "another account (profile) of this home, or a new one", app.action_switch_profile),
            ("Verify contact", "compare safety numbers (digits and QR)", app.action_verify_prompt),
            ("Verify by emoji (SAS)", "compare 7 emoji live with a contact's device", app.action_sas_prompt),
            ("Help", "keys and slash commands", app.action_help),
        ]
        if app.backend.is_admin:
            actions += [
                ("Admin: ban user", "ban a user and end their sessions", app.action_admin_ban),
                ("Admin: revoke user sessions", "log a user out everywhere", app.action_admin_revoke),
                ("Admin: rotate keys", "rotate the JWT signing key", app.action_admin_rotate),
                ("Admin: audit log", "recent admin and security events", app.action_admin_audit),
            ]
        return actions

    async def discover(self) -> Hits:
        for name, help_text, callback in self._actions():
            yield DiscoveryHit(name, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, help_text, callback in self._actions():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), callback, help=help_text)
