"""The app's actions, by group (chats, admin, profiles, calls), and the command palette's list of them.

Each entry names an ``action_*`` method of the app (with its arguments): the palette (``melo_tui.palette``)
offers them, the key bindings and slash commands reach the same methods.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class PaletteEntry:
    name: str
    help: str
    action: str  # the app's ``action_<action>``
    args: tuple[str, ...] = ()
    admin: bool = False  # offered to admins only


PALETTE: tuple[PaletteEntry, ...] = (
    PaletteEntry("New direct message", "start a DM with a user", "new_dm"),
    PaletteEntry("New group", "an end-to-end encrypted group", "new_chat", ("group",)),
    PaletteEntry("New channel", "a broadcast channel", "new_chat", ("channel",)),
    PaletteEntry("Join by code", "join a chat with an invite code", "join"),
    PaletteEntry("Invite to this chat", "create an invite code for the open chat", "invite_code"),
    PaletteEntry("Chat info", "the open chat: members, roles, slow mode; manage it if you may (F3)", "chat_info"),
    PaletteEntry("Sessions", "your sessions; revoke one or all others", "sessions"),
    PaletteEntry("Switch profile", "another account (profile) of this home, or a new one", "switch_profile"),
    PaletteEntry("Verify contact", "compare safety numbers (digits and QR)", "verify_prompt"),
    PaletteEntry("Verify by emoji (SAS)", "compare 7 emoji live with a contact's device", "sas_prompt"),
    PaletteEntry("Help", "keys and slash commands", "help"),
    PaletteEntry("Admin: ban user", "ban a user and end their sessions", "admin_ban", admin=True),
    PaletteEntry("Admin: revoke user sessions", "log a user out everywhere", "admin_revoke", admin=True),
    PaletteEntry("Admin: rotate keys", "rotate the JWT signing key", "admin_rotate", admin=True),
    PaletteEntry("Admin: audit log", "recent admin and security events", "admin_audit", admin=True),
)
