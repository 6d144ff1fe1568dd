"""Verify a contact: the safety number as digit groups and as a QR code, to compare in person."""

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from melo_tui.sanitize import clean, clean_line


class VerifyScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [("escape", "app.pop_screen", "Close"), ("q", "app.pop_screen", "Close")]

    def __init__(self, username: str, digits: str, qr: str) -> None:
        super().__init__()
        self.username, self.digits, self.qr = username, digits, qr

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="modal-box", id="verify-box"):
            yield Static(Text(f"Safety number with {clean_line(self.username, 64)}", style="bold"))
            yield Static(Text("Compare these digits, or scan the code, with your contact's screen.", style="dim"))
            yield Static(Text(clean(self.digits), style="bold cyan"), id="safety-digits")
            yield Static(Text(clean(self.qr)), id="safety-qr")
            yield Static(Text("Escape closes.", style="dim"))
