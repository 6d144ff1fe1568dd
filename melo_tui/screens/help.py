"""Help (F1 or ?): key bindings and slash commands."""

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from melo_tui.slash import COMMANDS

KEYS = [
    ("F1, ?", "this help"),
    ("Ctrl+P", "command palette: new DM/group/channel, join, chat info, sessions, verify, switch profile, admin"),
    ("Tab / Shift+Tab", "next / previous pane (its border lights up):"),
    ("", "chats → messages → composer → members (F2) → call bar"),
    ("j / k", "move in the chat list and the messages"),
    ("/, Ctrl+F", "filter the chats; Escape or Down back to the list"),
    ("Ctrl+O", "back to the chat list (it has the focus at start)"),
    ("Enter", "send (in the composer) / open (in the chat list)"),
    ("Shift+Enter, Ctrl+J", "new line in the composer"),
    ("Up", "edit your last message (empty composer)"),
    ("Escape", "cancel editing or replying; leave the composer"),
    ("Ctrl+S", "sessions"),
    ("F2", "show/hide the members of the open chat: role, ● online"),
    ("F3", "chat info; owners/admins edit it, slow mode, roles;"),
    ("", "t disappearing messages (either person of a DM)"),
    ("a / r", "accept / reject an incoming call"),
    ("y / n", "emoji verification (SAS, from the palette): they match / don't match"),
    ("m, h / Ctrl+H", "on the call bar: mute, hang up (Ctrl+H anywhere)"),
    ("Ctrl+Q", "quit"),
]


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [("escape", "app.pop_screen", "Close"), ("q", "app.pop_screen", "Close")]

    def compose(self) -> ComposeResult:
        text = Text()
        text.append("Melo — keys\n\n", style="bold")
        for key, what in KEYS:
            text.append(f"{key:<22}", style="bold cyan")
            text.append(what + "\n")
        text.append("\nSlash commands\n\n", style="bold")
        for line in COMMANDS.values():
            text.append(line + "\n")
        text.append("\nEscape closes this help.", style="dim")
        with VerticalScroll(id="help-box", classes="modal-box"):
            yield Static(text, id="help-text")
