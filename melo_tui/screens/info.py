"""A read-only modal for anything long: an invite code, the audit log."""

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


class InfoScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [("escape", "app.pop_screen", "Close"), ("q", "app.pop_screen", "Close")]

    def __init__(self, title: str, body: Text) -> None:
        super().__init__()
        self.title_text = title
        self.body = body

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="modal-box"):
            yield Static(Text(self.title_text, style="bold"))
            yield Static(self.body, id="info-body")
            yield Static(Text("Escape closes.", style="dim"))
