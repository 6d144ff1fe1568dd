"""Verify a contact: the safety number as digit groups and as a QR code, to compare in person; or, with
"Compare emoji instead" (e), an interactive SAS verification (dismissed with True to start one)."""

from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from melo_tui.sanitize import clean, clean_line


class VerifyScreen(ModalScreen[bool]):
    BINDINGS: ClassVar[list[BindingType]] = [
        ("escape", "app.pop_screen", "Close"),
        ("q", "app.pop_screen", "Close"),
        ("e", "compare_emoji", "Compare emoji instead"),
    ]

    def __init__(self, username: str, digits: str, qr: str) -> None:
        super().__init__()
        self.username, self.digits, self.qr = username, digits, qr

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="modal-box", id="verify-box"):
            yield Static(Text(f"Safety number with {clean_line(self.username, 64)}", style="bold"))
            yield Static(Text("Compare these digits, or scan the code, with your contact's screen.", style="dim"))
            yield Static(Text(clean(self.digits), style="bold cyan"), id="safety-digits")
            yield Button("Compare emoji instead (e)", id="compare-emoji")  # above the tall QR: seen unscrolled
            yield Static(Text(clean(self.qr)), id="safety-qr")
            yield Static(Text("Escape closes.", style="dim"))

    def action_compare_emoji(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#compare-emoji")
    def _compare_emoji(self) -> None:
        self.dismiss(True)
