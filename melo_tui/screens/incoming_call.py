"""An incoming call: who calls, Accept (a / Enter) or Reject (r / Escape). Dismissed with True or False
(None when the caller gave up first)."""

from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from melo_tui.sanitize import clean_line


class IncomingCallScreen(ModalScreen[bool | None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "answer(True)", "Accept", id="call.accept"),
        Binding("enter", "answer(True)", "Accept", show=False, id="call.accept_enter", priority=True),
        Binding("r", "answer(False)", "Reject", id="call.reject"),
        Binding("escape", "answer(False)", "Reject", show=False, id="call.reject_escape"),
    ]

    def __init__(self, caller: str) -> None:
        super().__init__()
        self.caller = caller

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal-box", id="incoming-call-box"):
            yield Static(Text("Incoming call", style="bold"))
            yield Static(Text(clean_line(self.caller, 64), style="bold cyan"), id="incoming-caller")
            with Horizontal(id="incoming-call-buttons"):
                yield Button("Accept (a)", variant="success", id="accept")
                yield Button("Reject (r)", variant="error", id="reject")

    def action_answer(self, accept: bool) -> None:
        self.dismiss(accept)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "accept")
